"""A correction reaches the stored week through the scheduler: the triggered weekly rebuild runs on Celery.

The week of 9-15 November 2026 (none of the other Celery tests' days) is stored in-process first:
its seven daily reports and the week rolled up from them. A late CDR then arrives for Wednesday
11th and Thursday 12th's daily run is triggered through the stack: `check_late_data` re-reports
Wednesday, `rebuild_rollups` finds the stored week stale and `trigger_rebuilds` creates a run of
`cdr_weekly_report`, which the scheduler runs on the workers like any other run. Afterwards the
stored week is that run's, rolled up, and equals the independent reference with the late CDR.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from tests.celery.stack import TZ, CeleryStack
from tests.support.reference import expected_report, random_documents

pytestmark = [pytest.mark.e2e, pytest.mark.services, pytest.mark.celery]

RUN_TIMEOUT = 300  # a liveness bound for the waits, not a performance assertion
THURSDAY = date(2026, 11, 12)


def _source(stack: CeleryStack):
    import pymongo

    uri = stack.env["AIRFLOW_CONN_CDR_MONGO"].replace("mongo://", "mongodb://", 1)
    server, database = uri.rsplit("/", 1)
    return pymongo.MongoClient(server, tz_aware=True)[database].CdrRecords


def test_a_late_cdr_rebuilds_the_stored_week_in_a_scheduled_run_of_the_weekly_dag(
    celery_stack: CeleryStack, sink_engine
):
    from cdr_reports.pipeline.config import Settings
    from cdr_reports.pipeline.load import read_report
    from cdr_reports.pipeline.periods import local_midnight_utc, period_containing
    from cdr_reports.pipeline.quality.store import read_findings
    from cdr_reports.pipeline.runner import run_report

    stack = celery_stack
    week = period_containing("weekly", THURSDAY, TZ)
    collection = _source(stack)
    docs = random_documents(random.Random(912), 600, week.start_utc, week.end_utc)
    collection.insert_many([dict(doc) for doc in docs])
    # The stack's settings (defaults + its schema): the same rules fingerprint as its DAGs.
    settings = Settings(sql_schema=stack.sink_schema)
    for offset in range(7):
        day = week.start_date + timedelta(days=offset)
        run_report(collection, sink_engine, period_containing("daily", day, TZ), settings, f"seed-{day}")
    assert run_report(collection, sink_engine, week, settings, "seed-week").method == "rollup"

    wednesday = THURSDAY - timedelta(days=1)
    late = {"Operator": {"Id": "late-op"}, "DateTime": {"Start": local_midnight_utc(wednesday, TZ)}, "Duration": 3.0}
    collection.insert_one(dict(late))
    docs.append(late)

    stack.ensure_workers()
    daily_run = stack.trigger(THURSDAY)
    assert stack.wait_run(daily_run, RUN_TIMEOUT) == "success", stack.log_tails()
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in stack.task_instances(daily_run)}
    assert states[("check_late_data", -1)] == "success" and states[("trigger_rebuilds", 0)] == "success", states

    def rebuild_run() -> dict | None:
        rows = stack.query(
            "SELECT r.run_id, r.state, r.run_type, r.conf, n.content AS note FROM dag_run r "
            "LEFT JOIN dag_run_note n ON n.dag_run_id = r.id "
            "WHERE r.dag_id = 'cdr_weekly_report' AND r.run_id LIKE 'rebuild\\_\\_%'"
        )
        return rows[0] if rows and rows[0]["state"] in ("success", "failed") else None

    run = stack.wait_until("the triggered weekly rebuild to finish", rebuild_run, RUN_TIMEOUT)
    assert run["state"] == "success", stack.log_tails()
    assert run["run_id"].startswith(f"rebuild__{week.start_date.isoformat()}__")
    assert run["run_type"] == "operator_triggered"
    assert daily_run in run["note"] and wednesday.isoformat() in run["note"]

    stored = read_report(sink_engine, "weekly", week.start_date, schema=stack.sink_schema)
    assert stored is not None
    want = expected_report(docs, week.start_utc, week.end_utc)
    assert (stored["run"]["dag_run_id"], stored["run"]["method"]) == (run["run_id"], "rollup")
    assert (stored["run"]["source_records"], stored["run"]["valid_records"]) == (want["source"], want["valid"])
    rows = {row["operator_id"]: row for row in stored["rows"]}
    assert set(rows) == set(want["rows"])
    for key, row in want["rows"].items():
        got = rows[key]
        assert (got["total_calls"], got["answered_calls"], got["total_duration_seconds"]) == (
            row["total_calls"], row["answered_calls"], row["total_duration_seconds"],
        ), key  # fmt: skip
    assert rows["late-op"]["total_calls"] == 1
    # Why, for the report view and the e-mail: the week's `rebuilt` finding, written by that run.
    [finding] = read_findings(sink_engine, "weekly", week.start_date, stack.sink_schema, verdicts=("rebuilt",))
    assert finding["dag_run_id"] == run["run_id"] and wednesday.isoformat() in finding["detail"]
    assert finding["actual"] == finding["expected"] + 1
