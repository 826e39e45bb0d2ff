"""Bounded storage: report retention (prune_reports, the cdr_report_retention DAG) and the
Airflow metadata purge (`airflow db clean`)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from cdr_reports.integration.maintenance import (
    DAG_ID,
    RETENTION_DISABLED,
    build_maintenance_dag,
    prune_reports,
    retention_cutoff,
)
from cdr_reports.pipeline.config import load_settings
from cdr_reports.pipeline.load import load_report
from cdr_reports.pipeline.periods import period_containing
from cdr_reports.pipeline.schema import report_tables
from tests.support.processes import run_output, task_states
from tests.support.reports import make_report

TZ = "Europe/Istanbul"
REPO = Path(__file__).resolve().parents[2]


def _stored_periods(engine) -> dict[str, set[tuple[str, date]]]:
    tables = report_tables()
    with engine.connect() as conn:
        return {
            "run": {
                (r.report_type, r.period_start)
                for r in conn.execute(sa.select(tables.run.c.report_type, tables.run.c.period_start))
            },
            "operator": {
                (r.report_type, r.period_start)
                for r in conn.execute(
                    sa.select(tables.operator.c.report_type, tables.operator.c.period_start).distinct()
                )
            },
        }


def _load_periods(
    engine, days: Sequence[date], weeks: Sequence[date] = (), months: Sequence[date] = ()
) -> dict[tuple[str, date], int]:
    """Store a report per period; returns {(type, period_start): operator rows}."""
    stored = {}
    for report_type, anchors in (("daily", days), ("weekly", weeks), ("monthly", months)):
        for i, anchor in enumerate(anchors):
            period = period_containing(report_type, anchor, TZ)
            report = make_report(f"{report_type}-{anchor}", range(0, 2 + i % 3), base=10 + i, period=period)
            load_report(engine, report)
            stored[(report_type, period.start_date)] = len(report.rows)
    return stored


def test_prune_reports_deletes_older_periods_only(sql_engine):
    cutoff = date(2026, 11, 20)
    stored = _load_periods(
        sql_engine,
        days=[date(2026, 11, d) for d in (1, 18, 19, 20, 21, 27)],
        weeks=[date(2026, 11, 10), date(2026, 11, 18), date(2026, 11, 25)],  # weeks of Nov 9, 16, 23
        months=[date(2026, 10, 5), date(2026, 11, 5)],
    )
    old = {key for key in stored if key[1] < cutoff}
    counts = prune_reports(sql_engine, cutoff)
    after = _stored_periods(sql_engine)
    assert after["run"] == after["operator"] == set(stored) - old
    assert ("daily", cutoff) in after["run"]  # the boundary day is kept: strictly older goes
    assert ("weekly", date(2026, 11, 16)) not in after["run"]  # a period is judged by its start
    assert (counts.run_rows, counts.operator_rows) == (len(old), sum(stored[key] for key in old))
    assert prune_reports(sql_engine, cutoff).run_rows == 0  # idempotent


def test_prune_reports_on_an_empty_sink_creates_nothing(sqlite_engine):
    counts = prune_reports(sqlite_engine, date(2026, 11, 20))
    assert (counts.run_rows, counts.operator_rows) == (0, 0)
    assert sa.inspect(sqlite_engine).get_table_names() == []


def test_retention_cutoff():
    assert retention_cutoff(date(2026, 11, 28), 30) == date(2026, 10, 29)
    assert retention_cutoff(date(2026, 3, 1), 1) == date(2026, 2, 28)


def _run_maintenance_dag(dag_env, tmp_path, settings: dict[str, str]):
    sink = tmp_path / "reports.db"
    engine = sa.create_engine(f"sqlite:///{sink}")
    dag_env(settings, {"cdr_reports_db": f"sqlite:///{sink}"})
    return engine, build_maintenance_dag(load_settings())


def _around_today(days_back: list[int]) -> list[date]:
    today = datetime.now(ZoneInfo(TZ)).date()
    return [today - timedelta(days=n) for n in days_back]


def test_maintenance_dag_keeps_everything_by_default(dag_env, tmp_path, capfd, caplog):
    engine, dag = _run_maintenance_dag(dag_env, tmp_path, {})
    stored = _load_periods(engine, days=_around_today([3, 400, 4000]))
    capfd.readouterr()
    caplog.set_level(logging.INFO)
    run = dag.test()
    out = run_output(capfd, caplog)
    assert dag.dag_id == DAG_ID == "cdr_report_retention"
    assert str(run.state) == "success" and task_states(run) == {"prune": ("success", 1)}
    assert f"{RETENTION_DISABLED}: CDR_REPORT_RETENTION_DAYS is not set" in out
    assert _stored_periods(engine)["run"] == set(stored)


def test_maintenance_dag_deletes_reports_older_than_the_retention(dag_env, tmp_path):
    engine, dag = _run_maintenance_dag(dag_env, tmp_path, {"CDR_REPORT_RETENTION_DAYS": "30"})
    # Two days of margin around the cutoff: the run's local date is taken when it runs.
    keep = _around_today([0, 5, 28])
    drop = _around_today([32, 90, 800])
    stored = _load_periods(engine, days=keep + drop)
    run = dag.test()
    assert str(run.state) == "success"
    after = _stored_periods(engine)
    assert after["run"] == after["operator"] == {("daily", d) for d in keep}
    assert len(stored) == 6


# --------------------------------------------------------------------------- Airflow metadata

_CREATE_RUNS = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime, timedelta, timezone
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.log import Log
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    manager = DagBundlesManager()
    with create_session() as session:
        manager.sync_bundles_to_db(session=session)
    bundle = manager.get_bundle("dags-folder")
    bundle.initialize()
    sync_bag_to_db(BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name), bundle.name, None)

    now = datetime.now(timezone.utc)
    ages = json.loads(sys.argv[1])  # {run label: age in days}
    with create_session() as session:
        dag = SerializedDagModel.get_dag("cdr_daily_report", session=session)
        for i, (label, age) in enumerate(sorted(ages.items(), key=lambda kv: -kv[1])):
            started = now - timedelta(days=age)
            logical = datetime(2026, 2, 1, tzinfo=timezone.utc) + timedelta(days=i)  # after the DAG start_date
            run = dag.create_dagrun(
                run_id=f"scheduled__{label}", logical_date=logical, data_interval=(logical, logical + timedelta(days=1)),
                run_after=started, conf={}, run_type=DagRunType.SCHEDULED, triggered_by=DagRunTriggeredByType.TIMETABLE,
                state=DagRunState.RUNNING, start_date=started, session=session,
            )
            session.flush()  # task instances exist from here
            for ti in run.get_task_instances(session=session):
                ti.state, ti.start_date, ti.end_date = TaskInstanceState.SUCCESS, started, started + timedelta(minutes=1)
            run.state, run.end_date = DagRunState.SUCCESS, started + timedelta(minutes=2)
            log = Log(event="cdr-reliability-test", dag_id=dag.dag_id, run_id=run.run_id)
            log.dttm = started
            session.add(log)
    print("created", len(ages))
    """
)


def test_airflow_db_clean_purges_old_runs_and_keeps_recent_ones(tmp_path):
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "CDR_"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    }
    airflow = str(Path(sys.executable).with_name("airflow"))

    def run(*command: str, timeout: int = 300) -> str:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    run(airflow, "db", "migrate")
    ages = {"old-400d": 400, "old-120d": 120, "recent-20d": 20, "recent-1d": 1}
    run(sys.executable, "-c", _CREATE_RUNS, json.dumps(ages))

    db = home / "airflow.db"

    def snapshot() -> dict:
        with sqlite3.connect(db) as conn:
            return {
                "runs": sorted(
                    r[0] for r in conn.execute("SELECT run_id FROM dag_run WHERE dag_id='cdr_daily_report'")
                ),
                "ti_runs": sorted(
                    r[0]
                    for r in conn.execute("SELECT DISTINCT run_id FROM task_instance WHERE dag_id='cdr_daily_report'")
                ),
                "logs": sorted(r[0] for r in conn.execute("SELECT run_id FROM log WHERE event='cdr-reliability-test'")),
                "dags": sorted(r[0] for r in conn.execute("SELECT dag_id FROM dag")),
            }

    before = snapshot()
    everything = sorted(f"scheduled__{label}" for label in ages)
    assert before["runs"] == before["ti_runs"] == before["logs"] == everything

    cutoff = (datetime.now(UTC) - timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    output = run(airflow, "db", "clean", "--clean-before-timestamp", cutoff, "--yes", "--skip-archive")
    after = snapshot()
    print(f"\nbefore: {before['runs']}\nafter:  {after['runs']}")
    recent = ["scheduled__recent-1d", "scheduled__recent-20d"]
    assert after["runs"] == after["ti_runs"] == after["logs"] == recent
    assert after["dags"] == before["dags"]  # parsed recently: DAG definitions are kept
    assert "dag_run" in output


def test_prune_reports_also_deletes_old_findings_and_audits(sql_engine):
    from datetime import datetime

    from cdr_reports.pipeline.load import ensure_tables
    from cdr_reports.pipeline.schema import build_metadata

    ensure_tables(sql_engine)
    tables = build_metadata().tables
    finding = {
        "report_type": "daily",
        "operator_id": "op-1",
        "verdict": "drop",
        "expected": 10,
        "actual": 1,
        "detail": "drop",
        "dag_run_id": "r",
        "checked_at": datetime(2026, 11, 28),
    }
    audit = {"unplaceable_records": 3, "previous_records": None, "sample_ids": "[]"}
    with sql_engine.begin() as conn:
        conn.execute(
            tables["cdr_quality_check"].insert(),
            [
                {**finding, "period_start": date(2026, 11, 19)},
                {**finding, "period_start": date(2026, 11, 20)},
            ],
        )
        conn.execute(
            tables["cdr_source_audit"].insert(),
            [
                {**audit, "dag_run_id": "old", "audited_at": datetime(2026, 11, 19, 23, 59)},
                {**audit, "dag_run_id": "new", "audited_at": datetime(2026, 11, 20, 0, 0)},
            ],
        )
    counts = prune_reports(sql_engine, date(2026, 11, 20))
    assert (counts.quality_rows, counts.audit_rows) == (1, 1)
    with sql_engine.connect() as conn:
        assert [r.period_start for r in conn.execute(sa.select(tables["cdr_quality_check"].c.period_start))] == [
            date(2026, 11, 20)
        ]
        assert [r.dag_run_id for r in conn.execute(sa.select(tables["cdr_source_audit"].c.dag_run_id))] == ["new"]
