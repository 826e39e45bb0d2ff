"""Whole DAG runs through Airflow 3.3's dag.test() against FerretDB and real SQL sinks.

Each test seeds a fresh MongoDB database, points the `cdr_mongo` / `cdr_reports_db`
connections at it through AIRFLOW_CONN_* variables, runs one DAG for one `report_date`, and
compares what the load stored with the independent reference in tests/reference.py. Task
states and try numbers are read back from Airflow's metadata DB.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta

import pytest

from cdr_reports.pipeline.load import ensure_tables, read_report
from cdr_reports.pipeline.periods import ReportPeriod, period_containing
from cdr_reports_dev.synthetic import SyntheticConfig, generate_cdrs
from tests.e2e.conftest import run_dag, task_instances
from tests.support.reference import edge_case_documents, expected_report, random_documents

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("run_env")]

TZ = "Europe/Istanbul"


def assert_stored_report(engine, schema, period: ReportPeriod, expected: dict, dag_run) -> dict:
    stored = read_report(engine, period.report_type, period.start_date, schema=schema)
    assert stored is not None, f"no {period.report_type} report stored for {period.start_date}"
    run = stored["run"]
    assert (run["period_start"], run["period_end"], run["time_zone"]) == (period.start_date, period.end_date, TZ)
    assert (run["source_records"], run["valid_records"], run["rejected_records"]) == (
        expected["source"],
        expected["valid"],
        expected["rejected"],
    )
    assert run["operators"] == len(expected["rows"]) == len(stored["rows"])
    assert run["dag_run_id"] == dag_run.run_id
    got = {row["operator_id"]: row for row in stored["rows"]}
    assert set(got) == set(expected["rows"])
    for key, want in expected["rows"].items():
        row = got[key]
        assert (row["total_calls"], row["answered_calls"], row["total_duration_seconds"]) == (
            want["total_calls"],
            want["answered_calls"],
            want["total_duration_seconds"],
        ), key
        assert row["answer_ratio"] == pytest.approx(want["answer_ratio"]), key
        if want["avg_answered_duration_seconds"] is None:
            assert row["avg_answered_duration_seconds"] is None, key
        else:
            assert row["avg_answered_duration_seconds"] == pytest.approx(want["avg_answered_duration_seconds"]), key
        assert row["dag_run_id"] == dag_run.run_id
    return stored


def _count_rows(engine, schema, table: str) -> int:
    import sqlalchemy as sa

    from cdr_reports.pipeline.schema import report_tables

    tables = report_tables(schema)
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(getattr(tables, table))).scalar_one()


def _day_docs(period: ReportPeriod, seed: int, count: int) -> list[dict]:
    return random_documents(random.Random(seed), count, period.start_utc, period.end_utc) + edge_case_documents(
        period.start_utc, period.end_utc
    )


# --------------------------------------------------------------------------- one run per DAG


@pytest.mark.parametrize("sink", ["sqlite_sink", "postgres_sink"])
def test_daily_report_run(request, sink, sources, run_env):
    engine, schema = request.getfixturevalue(sink)
    slices = 3 if sink == "sqlite_sink" else 1
    run_env.setenv("CDR_EXTRACT_SLICES", str(slices))
    day = period_containing("daily", date(2026, 11, 27), TZ)
    docs = sources(_day_docs(day, seed=27, count=300))
    expected = expected_report(docs, day.start_utc, day.end_utc)
    assert expected["valid"] > 100 and expected["rejected"] > 10 and len(expected["rows"]) >= 5  # a real dataset

    _dag, dag_run = run_dag("daily", date(2026, 11, 27))

    assert dag_run.state == "success"
    tis = task_instances(dag_run)
    assert sorted(tis) == sorted(
        [("plan", -1), ("aggregate", -1), ("load", -1), ("check_volume", -1), ("check_late_data", -1)]
        + [("rebuild_rollups", -1), ("trigger_rebuilds", -1)]
        + [("extract", i) for i in range(slices)]
    )
    # No stored week or month to rebuild: the mapped trigger_rebuilds expands to nothing (skipped).
    assert tis.pop(("trigger_rebuilds", -1)) == ("skipped", 0)
    assert set(tis.values()) == {("success", 1)}
    assert_stored_report(engine, schema, day, expected, dag_run)


def test_weekly_report_run(sources, sqlite_sink, run_env):
    engine, schema = sqlite_sink
    run_env.setenv("CDR_EXTRACT_SLICES", "2")
    run_env.setenv("CDR_EXTRACT_SLICES_WEEKLY", "3")  # the weekly DAG's own count wins
    week = period_containing("weekly", date(2026, 11, 18), TZ)
    assert (week.start_date, week.end_date) == (date(2026, 11, 16), date(2026, 11, 23))  # Monday to Monday
    docs = sources(_day_docs(week, seed=46, count=400))
    expected = expected_report(docs, week.start_utc, week.end_utc)

    # any date inside the week selects it
    _dag, dag_run = run_dag("weekly", date(2026, 11, 22))

    assert dag_run.state == "success"
    tis = task_instances(dag_run)
    assert sorted(i for task, i in tis if task == "extract") == [0, 1, 2]
    assert set(tis.values()) == {("success", 1)}
    assert_stored_report(engine, schema, week, expected, dag_run)


def test_monthly_report_run(sources, sqlite_sink):
    engine, schema = sqlite_sink
    month = period_containing("monthly", date(2026, 10, 9), TZ)
    config = SyntheticConfig(
        seed=10,
        start=month.start_utc - timedelta(days=2),  # calls on both sides of the month
        end=month.end_utc + timedelta(days=2),
        calls=400,
        operators=6,
        malformed_share=0.1,
        deleted_share=0.05,
    )
    docs = sources(list(generate_cdrs(config)))
    expected = expected_report(docs, month.start_utc, month.end_utc)
    assert 0 < expected["source"] < len(docs) and expected["rejected"] > 0

    _dag, dag_run = run_dag("monthly", date(2026, 10, 9))

    assert dag_run.state == "success"
    assert set(task_instances(dag_run).values()) == {("success", 1)}
    stored = assert_stored_report(engine, schema, month, expected, dag_run)
    assert (stored["run"]["period_start"], stored["run"]["period_end"]) == (date(2026, 10, 1), date(2026, 11, 1))


# --------------------------------------------------------------------------- retries and failures


def test_transient_mongo_errors_are_retried_and_the_report_is_stored_once(sources, sqlite_sink, run_env):
    """The server drops the connection on the first two tries of extract; the third succeeds."""
    import pymongo.collection
    from pymongo.errors import AutoReconnect

    engine, schema = sqlite_sink
    day = period_containing("daily", date(2026, 11, 27), TZ)
    docs = sources(_day_docs(day, seed=5, count=200))
    expected = expected_report(docs, day.start_utc, day.end_utc)

    real_find = pymongo.collection.Collection.find
    failures = []

    def flaky_find(self, *args, **kwargs):
        # The extract's one query of a try (FerretDB: the stream strategy's find); tries 1 and 2
        # lose the connection.
        if self.name == "CdrRecords" and len(failures) < 2:
            failures.append(self.full_name)
            raise AutoReconnect("connection closed by peer (injected)")
        return real_find(self, *args, **kwargs)

    run_env.setattr(pymongo.collection.Collection, "find", flaky_find)

    _dag, dag_run = run_dag("daily", date(2026, 11, 27))

    assert len(failures) == 2
    assert dag_run.state == "success"
    tis = task_instances(dag_run)
    assert tis[("extract", 0)] == ("success", 3)
    assert tis[("plan", -1)] == tis[("aggregate", -1)] == tis[("load", -1)] == ("success", 1)
    assert_stored_report(engine, schema, day, expected, dag_run)
    assert _count_rows(engine, schema, "run") == 1
    assert _count_rows(engine, schema, "operator") == len(expected["rows"])


@pytest.mark.parametrize("cause", ["query_rejected_by_mongodb", "missing_connection"])
def test_permanent_error_fails_the_run_at_once(cause, sources, sqlite_sink, run_env, capfd):
    engine, schema = sqlite_sink
    day = period_containing("daily", date(2026, 11, 27), TZ)
    sources(_day_docs(day, seed=9, count=50))
    if cause == "query_rejected_by_mongodb":
        # Valid JSON and a valid top-level shape, so parsing accepts it; MongoDB refuses the query.
        run_env.setenv("CDR_GLOBAL_FILTER", '{"Duration": {"$bogusop": 1}}')
        reason = "MongoDB refused the operation (code 2): unknown operator: $bogusop"
    else:
        conn_id = f"cdr_mongo_missing_{uuid.uuid4().hex[:8]}"
        run_env.setenv("CDR_MONGO_CONN_ID", conn_id)
        reason = f"The conn_id `{conn_id}` isn't defined (create the Airflow connection, see the README)"
    ensure_tables(engine, schema)  # so that "nothing stored" is a query, not a missing table

    _dag, dag_run = run_dag("daily", date(2026, 11, 27))

    assert dag_run.state == "failed"
    tis = task_instances(dag_run)
    assert tis[("plan", -1)] == ("success", 1)
    assert tis[("extract", 0)] == ("failed", 1)  # no retry: 3 were allowed
    assert tis[("aggregate", -1)][0] == tis[("load", -1)][0] == "upstream_failed"
    assert read_report(engine, "daily", day.start_date, schema=schema) is None
    assert _count_rows(engine, schema, "run") == _count_rows(engine, schema, "operator") == 0
    out, err = capfd.readouterr()
    assert f"AirflowFailException: extracting {day.start_utc.isoformat()}" in out + err
    assert reason in out + err  # failed for the reason injected, not another one
