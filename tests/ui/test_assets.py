"""Reports as Airflow Assets: the load task's outlet, its event extra, and a scheduler-run consumer."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from cdr_reports.integration.report_assets import EVENT_EXTRA_KEYS, report_asset
from tests.ui.conftest import CONSUMER_DAG_ID

REPORT_TYPES = ("daily", "weekly", "monthly")


@pytest.mark.parametrize("report_type", REPORT_TYPES)
def test_each_report_dag_declares_its_asset_on_the_load_task(report_type):
    from cdr_reports.integration.dag_factory import build_report_dag
    from cdr_reports.pipeline.config import load_settings

    dag = build_report_dag(report_type, load_settings({}))
    assert dag.get_task("load").outlets == [report_asset(report_type)]
    assert all(not task.outlets for task in dag.tasks if task.task_id != "load")
    asset = report_asset(report_type)
    assert (asset.name, asset.uri, asset.group) == (
        f"cdr_{report_type}_report_table",
        f"x-cdr-reports://reports/{report_type}",
        "cdr_reports",
    )
    # One asset per type: no two report types share one.
    assert len({report_asset(t).uri for t in REPORT_TYPES}) == 3


@pytest.mark.e2e
def test_a_report_run_emits_an_asset_event_that_triggers_the_consumer(report_stack, finished_daily_run):
    stack = report_stack
    run_id = stack.daily_run_id
    events = stack.request(
        "admin", "GET", "/api/v2/assets/events",
        params={"source_dag_id": "cdr_daily_report", "source_run_id": run_id, "limit": 10},
    )  # fmt: skip
    assert events.status_code == 200, events.text
    [event] = events.json()["asset_events"]
    assert (event["name"], event["uri"], event["source_task_id"]) == (
        "cdr_daily_report_table",
        "x-cdr-reports://reports/daily",
        "load",
    )
    extra = event["extra"]
    assert list(extra) == list(EVENT_EXTRA_KEYS)
    day = stack.last_day.isoformat()
    [stored] = [r for r in _runs_table(stack) if r["period_start"] == day]
    assert extra == {
        "report_type": "daily",
        "period_start": day,
        "period_end": stored["period_end"],
        "time_zone": "Europe/Istanbul",
        "operators": stored["operators"],
        "source_records": stored["source_records"],
        "valid_records": stored["valid_records"],
        "rejected_records": stored["rejected_records"],
        "method": "extract",
        "days_extracted": 1,
        "dag_run_id": run_id,
    }
    assert stored["dag_run_id"] == run_id

    # The scheduler ran the consumer DAG (docs/examples) because of this event...
    consumer_runs = [r for r in event["created_dagruns"] if r["dag_id"] == CONSUMER_DAG_ID]
    assert consumer_runs, event
    consumer_run = stack.stack.wait_run_finished(CONSUMER_DAG_ID, consumer_runs[0]["run_id"], timeout=240)
    assert consumer_run["state"] == "success", consumer_run
    assert consumer_run["run_type"] == "asset_triggered"
    # ...and the consumer read the period and the counts from the event.
    xcom = _xcom(stack, CONSUMER_DAG_ID, consumer_run["dag_run_id"], "publish")
    assert extra in xcom, xcom


@pytest.mark.e2e
def test_the_pipeline_run_stores_what_the_reference_computed(report_stack, finished_daily_run, mongo_uri):
    """The fixture stored the last day from the reference implementation; the DAG run (Airflow,
    FerretDB, the pipeline) recomputed it: every operator row must be the same."""
    import sqlite3

    from tests.support.reference import expected_report
    from tests.ui.conftest import TZ

    day = report_stack.last_day.isoformat()
    with sqlite3.connect(report_stack.reports_db) as conn:
        rows = conn.execute(
            "SELECT operator_id, total_calls, answered_calls, total_duration_seconds, dag_run_id FROM cdr_operator_report "
            "WHERE report_type='daily' AND period_start=?", (day,)
        ).fetchall()  # fmt: skip
    assert {r[4] for r in rows} == {report_stack.daily_run_id}
    import pymongo

    from cdr_reports.pipeline.periods import period_containing

    period = period_containing("daily", report_stack.last_day, TZ)
    with pymongo.MongoClient(mongo_uri, tz_aware=True) as client:
        docs = list(client[report_stack.mongo_database]["CdrRecords"].find({}, projection={"_id": 0}))
    reference = expected_report(docs, period.start_utc, period.end_utc)
    assert {r[0]: (r[1], r[2], r[3]) for r in rows} == {
        key: (v["total_calls"], v["answered_calls"], v["total_duration_seconds"])
        for key, v in reference["rows"].items()
    }


def _runs_table(stack) -> list[dict]:
    import sqlite3

    with sqlite3.connect(stack.reports_db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM cdr_report_run WHERE report_type='daily'")]


def _xcom(stack, dag_id: str, run_id: str, task_id: str):
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/return_value"
    deadline = time.monotonic() + 30
    while True:
        response = stack.request("admin", "GET", path, params={"deserialize": True})
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert response.status_code == 200, response.text
    return response.json()["value"]
