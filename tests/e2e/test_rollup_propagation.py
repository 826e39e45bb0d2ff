"""Corrections propagate through Airflow: a daily run that changes a day starts the rebuild of its week and month.

dag.test() runs (FerretDB, SQLite sink, the metadata DB of tests/conftest.py). The daily DAG's
`rebuild_rollups` lists the stored weeks and months that no longer match their daily reports and
`trigger_rebuilds` (TriggerDagRunOperator) creates one run of the weekly / monthly DAG for each,
with the period in its conf and the reason as its note. dag.test() cannot execute a run it did not
create, so the weekly and monthly DAGs are then run with the conf of the triggered runs, exactly
what the scheduler would run (tests/celery runs a triggered rebuild through the scheduler).
"""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import date

import pytest

from cdr_reports.integration.rollup_tasks import rebuild_requests
from cdr_reports.pipeline.aggregate import build_report
from cdr_reports.pipeline.config import load_settings
from cdr_reports.pipeline.load import read_report
from cdr_reports.pipeline.periods import local_midnight_utc, period_containing
from cdr_reports.pipeline.quality.store import read_findings
from cdr_reports.pipeline.rollup import rules_fingerprint
from cdr_reports.pipeline.runner import count_window, extract_period, plan_report_windows, run_report
from tests.e2e.conftest import run_dag, task_instances
from tests.support.processes import mail_text, smtp_connection_uri
from tests.support.reference import expected_report, random_documents
from tests.support.reports import store_daily_reports
from tests.support.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.services]

TZ = "Europe/Istanbul"
WEEK = period_containing("weekly", date(2026, 11, 18), TZ)  # Monday 16 .. Sunday 22 November 2026
MONTH = period_containing("monthly", date(2026, 11, 18), TZ)


# Runs triggered before this test (the metadata DB outlives a session): not this test's.
_EARLIER: set[str] = set()


def _triggered_runs(dag_id: str) -> list[dict]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id.like("rebuild__%")).order_by(DagRun.id)
        ).all()
        return [
            {"run_id": r.run_id, "conf": dict(r.conf or {}), "note": r.note, "state": str(r.state), "type": r.run_type}
            for r in runs
            if r.run_id not in _EARLIER
        ]


def _stored_totals(engine, schema, period) -> dict:
    stored = read_report(engine, period.report_type, period.start_date, schema=schema)
    assert stored is not None
    return {
        "run": stored["run"]["dag_run_id"],
        "method": stored["run"]["method"],
        "source": stored["run"]["source_records"],
        "rows": {row["operator_id"]: (row["total_calls"], row["total_duration_ms"]) for row in stored["rows"]},
    }


def test_a_late_cdr_and_a_manual_rerun_trigger_the_rebuild_of_the_stored_week_and_month(sources, sqlite_sink, run_env):
    engine, schema = sqlite_sink
    _EARLIER.update(
        r["run_id"] for dag_id in ("cdr_weekly_report", "cdr_monthly_report") for r in _triggered_runs(dag_id)
    )
    run_env.setenv("CDR_LATE_DATA_LOOKBACK_DAYS", "2")
    docs = sources(random_documents(random.Random(18), 700, MONTH.start_utc, MONTH.end_utc))
    settings, collection = load_settings(), _collection()
    # The week's daily reports, then the week (rolled up) and the month (mixed) through their DAGs.
    store_daily_reports(collection, engine, WEEK, settings)
    _, weekly = run_dag("weekly", WEEK.start_date)
    _, monthly = run_dag("monthly", MONTH.start_date)
    assert (weekly.state, monthly.state) == ("success", "success")
    assert _stored_totals(engine, schema, WEEK)["method"] == "rollup"
    assert _stored_totals(engine, schema, MONTH)["method"] == "mixed"
    assert _triggered_runs("cdr_weekly_report") == []

    # A late CDR for Wednesday 18th; Thursday's daily run re-counts it (check_late_data), re-reports
    # it, and then finds the stored week and month stale.
    wednesday = date(2026, 11, 18)
    late = {"Operator": {"Id": "late-op"}, "DateTime": {"Start": local_midnight_utc(wednesday, TZ)}, "Duration": 2.5}
    docs += sources([late])
    _, thursday = run_dag("daily", date(2026, 11, 19))
    assert thursday.state == "success"
    tis = task_instances(thursday)
    assert tis[("check_late_data", -1)] == ("success", 1)
    assert (tis[("trigger_rebuilds", 0)], tis[("trigger_rebuilds", 1)]) == (("success", 1), ("success", 1))
    [week_run] = _triggered_runs("cdr_weekly_report")
    [month_run] = _triggered_runs("cdr_monthly_report")
    for run, period in ((week_run, WEEK), (month_run, MONTH)):
        assert run["run_id"].startswith(f"rebuild__{period.start_date.isoformat()}__")
        assert run["conf"]["report_date"] == period.start_date.isoformat()
        assert "2026-11-18" in run["conf"]["rebuild_reason"]
        # Wednesday re-reported by check_late_data, Thursday stored by this run: both after the week.
        assert run["note"].startswith(
            f"Rebuild of the {period.label()}: daily report(s) of 2026-11-18, 2026-11-19 stored after it"
        )
        assert thursday.run_id in run["note"] and run["state"] == "queued" and run["type"] == "operator_triggered"
    assert (
        _stored_totals(engine, schema, WEEK)["source"]
        == expected_report(docs[:-1], WEEK.start_utc, WEEK.end_utc)["source"]
    )  # not rebuilt yet: the stored week still lacks the late CDR

    # A retry of rebuild_rollups (or any later check before the rebuild ran) names the same runs:
    # trigger_rebuilds skips a run id that exists (skip_when_already_exists), so no second run.
    retry = rebuild_requests(load_settings(), {"period_start": "2026-11-19"}, "a-retry", "cdr_daily_report")
    assert sorted(r["trigger_run_id"] for r in retry) == sorted([week_run["run_id"], month_run["run_id"]])

    # What the scheduler runs: the weekly and monthly DAGs with the triggered conf.
    for run, report_type in ((week_run, "weekly"), (month_run, "monthly")):
        dag_run = run_dag(report_type, date.fromisoformat(run["conf"]["report_date"]), run["conf"])[1]
        assert dag_run.state == "success"
    for period, method in ((WEEK, "rollup"), (MONTH, "mixed")):
        # Why, where the report view and the e-mail show it: the period's `rebuilt` finding.
        [finding] = read_findings(engine, period.report_type, period.start_date, schema, verdicts=("rebuilt",))
        assert finding["detail"].startswith(f"by run {finding['dag_run_id']} ({method}, ")
        assert "daily report(s) of 2026-11-18, 2026-11-19 stored after it" in finding["detail"]
        assert finding["actual"] == finding["expected"] + 1  # the late CDR
        stored = _stored_totals(engine, schema, period)
        want = expected_report(docs, period.start_utc, period.end_utc)
        assert (stored["method"], stored["source"]) == (method, want["source"])
        assert stored["rows"]["late-op"] == (1, 2500)
        direct = _direct(collection, period, settings)
        assert stored["rows"] == {r.operator_id: (r.total_calls, r.total_duration_ms) for r in direct.rows}

    # A run of the week that is not a rebuild (a manual re-run) removes the finding: it described the old report.
    assert run_dag("weekly", WEEK.start_date)[1].state == "success"
    assert read_findings(engine, "weekly", WEEK.start_date, schema, verdicts=("rebuilt",)) == []

    # A manual re-run of Saturday 21st after a CDR arrived for it: a new correction, a new rebuild run.
    docs += sources([{**late, "DateTime": {"Start": local_midnight_utc(date(2026, 11, 21), TZ)}, "Duration": 1.0}])
    _, saturday = run_dag("daily", date(2026, 11, 21))
    assert saturday.state == "success"
    runs = _triggered_runs("cdr_weekly_report")
    assert len(runs) == 2 and runs[1]["run_id"] != week_run["run_id"]
    assert "2026-11-21" in runs[1]["note"] and saturday.run_id in runs[1]["note"]
    assert len(_triggered_runs("cdr_monthly_report")) == 2


def test_a_rebuilt_week_is_mailed_corrected_and_a_failed_rebuild_alerts_and_keeps_the_week(
    sources, sqlite_sink, run_env, smtp_server
):
    """The rebuild run is the weekly DAG: its e-mail is the CORRECTED copy with the `rebuilt` finding,
    and when it fails the alert says which rebuild failed while the stored week stays as it was."""
    engine, schema = sqlite_sink
    readers, on_call = "finance@example.org", "ops@example.org"
    run_env.setenv("CDR_REPORT_EMAILS_WEEKLY", readers)
    run_env.setenv("CDR_ALERT_EMAILS", on_call)
    run_env.setenv("CDR_RETRIES", "0")  # the failure below alerts on its only try
    run_env.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection_uri(smtp_server))
    docs = sources(random_documents(random.Random(22), 300, WEEK.start_utc, WEEK.end_utc))
    settings, collection = load_settings(), _collection()
    store_daily_reports(collection, engine, WEEK, settings)
    first = run_dag("weekly", WEEK.start_date)[1]
    assert first.state == "success" and _stored_totals(engine, schema, WEEK)["method"] == "rollup"
    [mail] = smtp_server.received()
    assert (
        mail["to"] == [readers] and mail["message"]["Subject"] == "[cdr-reports] weekly 2026-11-16..2026-11-22 report"
    )

    # Late data re-reports Wednesday; the weekly run that trigger_rebuilds would start, with its conf.
    wednesday = date(2026, 11, 18)
    late = {"Operator": {"Id": "late-op"}, "DateTime": {"Start": local_midnight_utc(wednesday, TZ)}, "Duration": 2.5}
    docs += sources([late])
    run_report(collection, engine, period_containing("daily", wednesday, TZ), settings, "late-data-of-wednesday")
    [request] = rebuild_requests(settings, {"period_start": wednesday.isoformat()}, "a-daily-run", "cdr_daily_report")
    assert request["trigger_dag_id"] == "cdr_weekly_report"
    rebuilt = run_dag("weekly", WEEK.start_date, request["conf"])[1]
    assert rebuilt.state == "success"
    mails = smtp_server.received()
    assert len(mails) == 2 and mails[1]["to"] == [readers]
    corrected = mails[1]["message"]
    assert corrected["Subject"] == "[cdr-reports] CORRECTED weekly 2026-11-16..2026-11-22 report"
    text = mail_text(corrected)
    assert "CORRECTED: this report replaces the copy sent" in text and first.run_id in text
    assert f"rebuilt by run {rebuilt.run_id} (rollup, 0 day(s) read from MongoDB)" in text
    assert request["conf"]["rebuild_reason"] in text
    assert "method rollup (0 days extracted)" in text  # provenance in the reconciliation line
    want = expected_report(docs, WEEK.start_utc, WEEK.end_utc)
    assert _stored_totals(engine, schema, WEEK)["source"] == want["source"]
    # The report view of the week shows the same: the method and why it was rebuilt.
    page = _view_page(engine, "weekly", WEEK.start_date)
    assert re.search(r'data-field="method">.*?<strong>rollup \(0 days extracted\)</strong>', page)
    assert f'<li data-verdict="rebuilt"><strong>rebuilt</strong> by run {rebuilt.run_id} (rollup, ' in page
    # ...and the weekly Asset event of the rebuild carries the provenance too.
    extra = _asset_event_extra(rebuilt)
    assert (extra["method"], extra["days_extracted"], extra["source_records"]) == ("rollup", 0, want["source"])

    # Thursday is re-reported too, and Sunday's daily report was stored under another global filter:
    # the next rebuild must read Sunday's CDRs, and MongoDB is down.
    thursday, sunday = date(2026, 11, 19), date(2026, 11, 22)
    docs += sources([{**late, "DateTime": {"Start": local_midnight_utc(thursday, TZ)}}])
    run_report(collection, engine, period_containing("daily", thursday, TZ), settings, "late-data-of-thursday")
    other_rules = dataclasses.replace(settings, global_filter={"Operator.Id": {"$ne": "nobody"}})
    run_report(collection, engine, period_containing("daily", sunday, TZ), other_rules, "sunday-other-filter")
    week_before = _stored_totals(engine, schema, WEEK)
    finding_before = read_findings(engine, "weekly", WEEK.start_date, schema, verdicts=("rebuilt",))
    [request] = rebuild_requests(settings, {"period_start": sunday.isoformat()}, "a-daily-run", "cdr_daily_report")
    run_env.setenv("AIRFLOW_CONN_CDR_MONGO", f"mongo://127.0.0.1:{free_port()}/cdr")
    run_env.setenv("CDR_MONGO_TIMEOUT_MS", "500")
    failed = run_dag("weekly", WEEK.start_date, request["conf"])[1]
    assert failed.state == "failed"
    tis = task_instances(failed)
    assert tis[("extract", 1)] == ("failed", 1) and tis[("load", -1)][0] == "upstream_failed", tis
    assert tis[("watcher", -1)] == ("failed", 1)  # what marks the run failed (email_report is all_done)
    # One alert, naming the rebuild and its reason; no report e-mail for a week that was not stored.
    [alert] = smtp_server.received()[2:]
    assert alert["to"] == [on_call]
    subject = alert["message"]["Subject"]
    assert subject.startswith("[cdr-reports] FAILED rebuild cdr_weekly_report.extract (weekly 2026-11-16..2026-11-22)")
    body = mail_text(alert["message"])
    assert f"Rebuild: {request['conf']['rebuild_reason']} Try: 1" in body  # the line before Try
    assert "2026-11-19" in request["conf"]["rebuild_reason"] and "ServerSelectionTimeoutError" in body
    # The week and its finding are exactly what the last successful rebuild stored.
    assert _stored_totals(engine, schema, WEEK) == week_before
    assert read_findings(engine, "weekly", WEEK.start_date, schema, verdicts=("rebuilt",)) == finding_before


def test_a_load_whose_daily_reports_changed_since_extract_stores_the_week_built_again(sources, sqlite_sink, run_env):
    """The load task (integration/tasks.py) of a roll-up that went stale between extract and load:
    StaleRollupError inside the load's transaction, then the week built again in the same task."""
    from cdr_reports.integration import tasks

    engine, schema = sqlite_sink
    docs = sources(random_documents(random.Random(7), 200, WEEK.start_utc, WEEK.end_utc))
    settings, collection = load_settings(), _collection()
    store_daily_reports(collection, engine, WEEK, settings)
    # What `aggregate` handed to `load`: the week rolled up from the days as they were.
    fingerprint = rules_fingerprint(settings)
    windows = plan_report_windows(engine, WEEK, settings, fingerprint)
    parts = [count_window(lambda: collection, engine, window, settings) for window in windows]
    handed_over = build_report(WEEK, parts, dag_run_id="scheduled__week", rules_fingerprint=fingerprint)
    assert handed_over.method == "rollup"
    # Meanwhile a late CDR re-reports Friday.
    friday = date(2026, 11, 20)
    late = {"Operator": {"Id": "late-op"}, "DateTime": {"Start": local_midnight_utc(friday, TZ)}, "Duration": 1.5}
    docs += sources([late])
    run_report(collection, engine, period_containing("daily", friday, TZ), settings, "late-data-of-friday")

    loaded = tasks.load(handed_over.to_dict(), settings)
    want = expected_report(docs, WEEK.start_utc, WEEK.end_utc)
    assert (loaded["method"], loaded["source_records"], loaded["replaced_rows"]) == ("rollup", want["source"], None)
    stored = _stored_totals(engine, schema, WEEK)
    assert (stored["run"], stored["method"], stored["source"]) == ("scheduled__week", "rollup", want["source"])
    assert stored["rows"]["late-op"] == (1, 1500)
    direct = _direct(collection, WEEK, settings)
    assert stored["rows"] == {r.operator_id: (r.total_calls, r.total_duration_ms) for r in direct.rows}


def _view_page(engine, report_type: str, period_start: date) -> str:
    from cdr_reports.integration.report_view import queries, render

    report = queries.read_stored_report(engine, report_type, period_start)
    assert report is not None
    model = render.PageModel(
        prefix="/cdr-reports",
        airflow_base="",
        report_types=[report_type],
        report_type=report_type,
        periods=queries.list_periods(engine, report_type),
        report=report,
    )
    return render.page_html(model)


def _asset_event_extra(dag_run) -> dict:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(AssetEvent).where(
            AssetEvent.source_dag_id == dag_run.dag_id, AssetEvent.source_run_id == dag_run.run_id
        )
        [event] = session.scalars(query).all()
        return dict(event.extra)


def _collection():
    import os

    import pymongo

    uri = os.environ["AIRFLOW_CONN_CDR_MONGO"].replace("mongo://", "mongodb://", 1)
    client = pymongo.MongoClient(uri.rsplit("/", 1)[0], tz_aware=True)
    return client[uri.rsplit("/", 1)[1]].CdrRecords


def _direct(collection, period, settings):
    return build_report(period, extract_period(collection, period, settings), dag_run_id="direct")
