"""Alerts: a finally failed task e-mails / posts to Slack once; the daily deadline alert fires when late.

Real servers only: aiosmtpd (SMTP) and a local HTTP server speaking the Slack Web API, reached
through Airflow connections and the providers' SmtpNotifier / SlackNotifier.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

import pytest

from cdr_reports.integration.alerts import NO_CHANNEL, deadline_interval
from cdr_reports.integration.dag_factory import build_report_dags
from cdr_reports.pipeline.config import load_settings
from tests.support.processes import build_dag, free_port, slack_connection_uri, smtp_connection_uri, task_states
from tests.support.reports import DAY

RECIPIENTS = ["ops@example.org", "noc@example.net"]


def _dead_source() -> str:
    """A MongoDB connection to a loopback port nobody listens on: every try fails (transiently)."""
    return f"mongo://127.0.0.1:{free_port()}/cdr"


def _body(message) -> str:
    part = message.get_body(preferencelist=("html", "plain"))
    return part.get_content()


def test_failed_run_sends_exactly_one_email_and_one_slack_message(dag_env, smtp_server, slack_server, tmp_path):
    dag_env(
        {
            "CDR_RETRIES": "1",  # two tries: the alert must come once, after the last
            "CDR_MONGO_TIMEOUT_MS": "500",
            "CDR_ALERT_EMAILS": ", ".join(RECIPIENTS),
            "CDR_SLACK_CONN_ID": "cdr_slack",
            "CDR_SLACK_CHANNEL": "#cdr-alerts",
        },
        {
            "cdr_mongo": _dead_source(),
            "cdr_reports_db": f"sqlite:///{tmp_path / 'r.db'}",
            "smtp_default": smtp_connection_uri(smtp_server),
            "cdr_slack": slack_connection_uri(slack_server),
        },
    )
    run = build_dag("daily").test(run_conf={"report_date": DAY.start_date.isoformat()})
    states = task_states(run)
    assert str(run.state) == "failed" and states["extract[0]"] == ("failed", 2), states

    mails = smtp_server.received()
    assert len(mails) == 1, [m["message"]["Subject"] for m in mails]
    mail = mails[0]
    assert sorted(mail["to"]) == sorted(RECIPIENTS)
    assert mail["from"] == "cdr-alerts@example.org"
    subject = mail["message"]["Subject"]
    body = _body(mail["message"])
    print(f"\nSubject: {subject}\n{body}")
    assert "cdr_daily_report" in subject and "daily 2026-11-27" in subject and "try 2" in subject
    text = re.sub(r"<[^>]+>", "", body)
    assert "DAG: cdr_daily_report" in text
    assert f"Run: {run.run_id}" in text
    assert "Task: extract [map index 0]" in text
    assert "Period: daily 2026-11-27 (2026-11-27 .. 2026-11-28 exclusive, Europe/Istanbul)" in text
    assert "Try: 2 of 2" in text
    assert "Error: ServerSelectionTimeoutError" in text and "Connection refused" in text

    posts = slack_server.received()
    assert len(posts) == 1
    post = posts[0]
    assert post["path"] == "/api/chat.postMessage"
    assert post["auth"] == "Bearer xoxb-test-token"
    payload = json.loads(post["body"])
    assert payload["channel"] == "#cdr-alerts"
    for field in (
        "DAG: cdr_daily_report",
        "Period: daily 2026-11-27",
        "Try: 2 of 2",
        "Error: ServerSelectionTimeoutError",
    ):
        assert field in payload["text"], payload["text"]


def test_without_a_channel_the_failure_is_only_logged(dag_env, smtp_server, caplog, tmp_path):
    dag_env(
        {"CDR_RETRIES": "0", "CDR_MONGO_TIMEOUT_MS": "500"},
        {
            "cdr_mongo": _dead_source(),
            "cdr_reports_db": f"sqlite:///{tmp_path / 'r.db'}",
            "smtp_default": smtp_connection_uri(smtp_server),
        },  # a working server, but nobody to write to
    )
    caplog.set_level(logging.INFO, logger="cdr_reports.integration.alerts")
    run = build_dag("daily").test(run_conf={"report_date": DAY.start_date.isoformat()})
    assert str(run.state) == "failed"
    alerts = [r.getMessage() for r in caplog.records if r.name == "cdr_reports.integration.alerts"]
    print(f"\n{alerts}")
    no_channel = [m for m in alerts if m.startswith(NO_CHANNEL)]
    assert len(no_channel) == 1, alerts
    assert "[cdr-reports] FAILED cdr_daily_report.extract (daily 2026-11-27), try 1" in no_channel[0]
    assert smtp_server.received() == []


def test_a_broken_channel_does_not_stop_the_others(dag_env, slack_server, tmp_path):
    """E-mail to an SMTP port nobody listens on fails; the Slack alert still goes out."""
    dead_smtp = json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": free_port(),
            "extra": {
                "disable_tls": True,
                "disable_ssl": True,
                "from_email": "a@example.org",
                "timeout": 2,
                "retry_limit": 1,
            },
        }
    )
    dag_env(
        {
            "CDR_RETRIES": "0",
            "CDR_MONGO_TIMEOUT_MS": "500",
            "CDR_ALERT_EMAILS": RECIPIENTS[0],
            "CDR_SLACK_CONN_ID": "cdr_slack",
            "CDR_SLACK_CHANNEL": "#cdr-alerts",
        },
        {
            "cdr_mongo": _dead_source(),
            "cdr_reports_db": f"sqlite:///{tmp_path / 'r.db'}",
            "smtp_default": dead_smtp,
            "cdr_slack": slack_connection_uri(slack_server),
        },
    )
    run = build_dag("daily").test(run_conf={"report_date": DAY.start_date.isoformat()})
    assert str(run.state) == "failed"
    assert len(slack_server.received()) == 1


# --------------------------------------------------------------------------- deadline


def test_deadline_alert_is_on_the_daily_dag_only():
    settings = load_settings({"CDR_DAILY_DEADLINE_LOCAL_TIME": "06:00", "CDR_ALERT_EMAILS": RECIPIENTS[0]})
    dags = build_report_dags(settings)
    assert dags["cdr_weekly_report"].deadline is None and dags["cdr_monthly_report"].deadline is None
    [alert] = dags["cdr_daily_report"].deadline
    from airflow.sdk import AsyncCallback, DeadlineReference

    assert alert.reference == DeadlineReference.DAGRUN_LOGICAL_DATE
    assert alert.interval == timedelta(days=1, hours=6)
    assert isinstance(alert.callback, AsyncCallback)
    assert alert.callback.path == "cdr_reports.integration.alerts.deadline_missed"
    assert alert.callback.kwargs["channels"]["emails"] == [RECIPIENTS[0]]
    assert build_report_dags(load_settings({}))["cdr_daily_report"].deadline is None  # unset: no alert


@pytest.mark.parametrize("day", [date(2026, 11, 27), date(2026, 3, 29)])
def test_deadline_is_the_local_time_the_day_after_each_scheduled_period(day):
    """Logical date of a scheduled run (timetable) + interval = 06:00 local on the next day."""
    from airflow.timetables.base import DataInterval, TimeRestriction

    settings = load_settings({"CDR_DAILY_DEADLINE_LOCAL_TIME": "06:00"})
    dag = build_report_dags(settings)["cdr_daily_report"]
    zone = ZoneInfo(settings.time_zone)
    previous_start = datetime.combine(day - timedelta(days=1), dtime(), zone)
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(previous_start, datetime.combine(day, dtime(), zone)),
        restriction=TimeRestriction(earliest=None, latest=None, catchup=True),
    )
    deadline = info.logical_date + dag.deadline[0].interval
    assert deadline == datetime.combine(day + timedelta(days=1), dtime(6, 0), zone)
    assert info.run_after < deadline  # due (02:00) before the deadline (06:00)
    assert deadline_interval("06:00") == timedelta(days=1, hours=6)


def _store_dags_like_the_dag_processor() -> None:
    """Parse dags/ and write the serialized DAGs (and their DeadlineAlert rows) to the metadata DB."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    manager = DagBundlesManager()
    with create_session() as session:
        manager.sync_bundles_to_db(session=session)
    bundle = manager.get_bundle("dags-folder")
    bundle.initialize()
    bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
    assert not bag.import_errors, bag.import_errors
    sync_bag_to_db(bag, bundle.name, bundle.version)


def _scheduled_run_that_succeeds(sdag, day: date, session):
    """Create the daily run of `day` as the scheduler does, then finish it successfully now."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import delete

    zone = ZoneInfo("Europe/Istanbul")
    start = datetime.combine(day, dtime(), zone)
    end = datetime.combine(day + timedelta(days=1), dtime(), zone)
    session.execute(delete(DagRun).where(DagRun.dag_id == sdag.dag_id, DagRun.logical_date == start))
    run = sdag.create_dagrun(
        run_id=f"scheduled__{start.isoformat()}",
        logical_date=start,
        data_interval=(start, end),
        run_after=end + timedelta(hours=2),
        conf={},
        run_type=DagRunType.SCHEDULED,
        triggered_by=DagRunTriggeredByType.TIMETABLE,
        state=DagRunState.RUNNING,
        session=session,
    )
    session.flush()
    created = _deadline_rows(run, session)
    for ti in run.get_task_instances(session=session):
        ti.state = TaskInstanceState.SUCCESS
    session.flush()
    run.dag = sdag
    run.update_state(session=session)  # success: prunes the deadlines that were met
    session.flush()
    assert run.state == DagRunState.SUCCESS
    return run, created


def _deadline_rows(run, session):
    from airflow.models.deadline import Deadline
    from sqlalchemy import select

    return list(session.scalars(select(Deadline).where(Deadline.dagrun_id == run.id)))


def test_airflow_creates_prunes_and_fires_the_daily_deadline(dag_env, smtp_server, monkeypatch):
    """Airflow's own deadline machinery on the DAG as the scheduler stores it: the run's Deadline
    row, its pruning when the run is on time, the scheduler's miss handling when late, and the
    triggerer's CallbackTrigger running our callback, which e-mails through aiosmtpd.

    (dag.test() cannot be used: in Airflow 3.3.2 it crashes finishing a run of a DAG with a
    deadline, because its in-memory scheduler DAG holds serialized alerts instead of alert ids.)
    """
    from airflow.models.callback import Callback
    from airflow.models.deadline import Deadline
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.triggers.callback import CallbackTrigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag_env(
        {"CDR_DAILY_DEADLINE_LOCAL_TIME": "06:00", "CDR_ALERT_EMAILS": RECIPIENTS[0]},
        {"smtp_default": smtp_connection_uri(smtp_server)},
    )
    # Earlier tests stored this DAG moments ago; Airflow skips rewrites within 30 s by default.
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")
    _store_dags_like_the_dag_processor()
    zone = ZoneInfo("Europe/Istanbul")
    with create_session() as session:
        sdag = SerializedDagModel.get_dag("cdr_daily_report", session=session)
        assert sdag.deadline, "the stored daily DAG has no deadline alert"

        # On time: the period of 2030-01-01 is due long after now; the run succeeds before it.
        on_time, created = _scheduled_run_that_succeeds(sdag, date(2030, 1, 1), session)
        assert [d.deadline_time for d in created] == [datetime(2030, 1, 2, 6, 0, tzinfo=zone)]
        assert _deadline_rows(on_time, session) == []  # met: pruned, no alert

        # Late: the run of 2026-11-27 finishes now, long after 2026-11-28 06:00 local.
        late, _ = _scheduled_run_that_succeeds(sdag, DAY.start_date, session)
        [deadline] = _deadline_rows(late, session)
        assert deadline.deadline_time == datetime(2026, 11, 28, 6, 0, tzinfo=zone)
        assert deadline.missed is False

        # The scheduler's query for deadlines to handle (scheduler_job_runner), then its handling.
        due = session.scalars(
            select(Deadline)
            .where(Deadline.deadline_time < datetime.now(zone))
            .where(~Deadline.missed)
            .where(Deadline.dagrun_id == late.id)
        ).all()
        assert [d.id for d in due] == [deadline.id]
        deadline.handle_miss(session)
        session.flush()
        assert deadline.missed is True
        data = dict(session.get(Callback, deadline.callback_id).data)
        session.rollback()  # leave the metadata DB as it was
    assert data["path"] == "cdr_reports.integration.alerts.deadline_missed"

    async def run_trigger():
        trigger = CallbackTrigger(callback_path=data["path"], callback_kwargs=dict(data["kwargs"]))
        return [event.payload async for event in trigger.run()]

    events = asyncio.run(run_trigger())
    print(f"\ntrigger events: {events}")
    assert events[-1] == {"state": "success", "body": ["email"]}

    [mail] = smtp_server.received()
    subject = mail["message"]["Subject"]
    text = re.sub(r"<[^>]+>", "", _body(mail["message"]))
    print(f"Subject: {subject}\n{text}")
    assert mail["to"] == [RECIPIENTS[0]]
    assert "LATE cdr_daily_report (daily 2026-11-27)" in subject
    assert "Deadline: 06:00 Europe/Istanbul" in text and "Period: daily 2026-11-27" in text
    assert f"Run: {late.run_id}" in text
