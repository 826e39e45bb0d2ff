"""Findings and their alerts are as durable as reports: a kill at any step boundary loses neither.

`check_late_data`, `check_volume` and the source audit's task run in a child process exactly as
Airflow runs them (their task bodies, connections from AIRFLOW_CONN_* variables, alerts through a
real SMTP server). The child counts its step boundaries: after every COMMIT on the report
database, and before and after sending the alert. For every boundary N, a fresh source and sink
are prepared, the child is `kill -9`-ed at boundary N (Airflow would retry the task: its heartbeat
stops), and a second child runs the same task with the same run id (the retry). Then the finding
is stored, done, and at least one alert carrying it reached the SMTP server; the re-reported day
is exact. (Before this release a kill between the late-data re-report and its finding left the
day silently changed: the retry found nothing to report.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from cdr_reports.pipeline.audit import read_audits
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.quality.rules import REREPORT_PENDING
from cdr_reports.pipeline.quality.store import read_findings
from cdr_reports.pipeline.runner import run_report
from tests.support.findings import calls
from tests.support.findings import mails as _mails
from tests.support.processes import SmtpSink, smtp_connection_uri
from tests.support.reference import expected_report
from tests.support.reports import DAY, assert_stored_equals_reference
from tests.support.services import free_port

RUN_ID = "scheduled__2026-11-27T23:00:00+00:00"
YESTERDAY = DAY.previous()
HISTORY = [YESTERDAY.previous().previous(), YESTERDAY.previous(), YESTERDAY]

# One task body in a child process; KILL_AT=N: SIGKILL itself at step boundary N (0: never).
_TASK = textwrap.dedent(
    """
    import os, signal, sys
    from sqlalchemy.engine import default

    kill_at, seen = int(os.environ["KILL_AT"]), []

    def boundary(what):
        seen.append(what)
        print(f"BOUNDARY {len(seen)} {what}", flush=True)
        if len(seen) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    original_commit = default.DefaultDialect.do_commit

    def do_commit(self, dbapi_connection):
        original_commit(self, dbapi_connection)
        boundary("after a commit")

    default.DefaultDialect.do_commit = do_commit

    from cdr_reports.integration import alerts

    original_send = alerts.send

    def send(*args, **kwargs):
        boundary("before the alert")
        sent = original_send(*args, **kwargs)
        boundary("after the alert")
        return sent

    alerts.send = send

    from cdr_reports.pipeline.config import load_settings

    settings, task = load_settings(), sys.argv[1]
    context = {"run_id": os.environ["RUN_ID"], "dag": None}
    loaded = {"period_start": os.environ["PERIOD_START"]}
    if task == "check_late_data":
        from cdr_reports.integration.quality_tasks import check_late_data_task as body
        result = body("daily", settings, loaded, context)
    elif task == "check_volume":
        from cdr_reports.integration.quality_tasks import check_volume_task as body
        result = body("daily", settings, loaded, context)
    else:
        from cdr_reports.integration.source_audit import audit_task
        result = audit_task(settings, context)
    print(f"DONE {len(seen)} alerted via {result['alerted_via']}", flush=True)
    """
)


@pytest.fixture
def stage(tmp_path, mongo_uri, mongo_client, smtp_server):
    """Per call: a fresh collection and SQLite sink; returns run(task, kill_at) -> (returncode, output)."""
    made: list[str] = []
    db = mongo_client[f"cdrdurable_{os.getpid()}"]

    class Stage:
        def fresh(self, index: int):
            self.collection = db[f"c{index}"]
            made.append(self.collection.name)
            self.path = tmp_path / f"reports-{index}.db"
            self.engine = sa.create_engine(f"sqlite:///{self.path}")
            self.settings = Settings(collection=self.collection.name)
            return self

        def run(self, task: str, kill_at: int, smtp_uri: str | None = None) -> tuple[int, str]:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_") or k.startswith("CDR_TEST_")}
            env.update(
                {
                    "KILL_AT": str(kill_at),
                    "RUN_ID": RUN_ID,
                    "PERIOD_START": DAY.start_date.isoformat(),
                    "CDR_MONGO_COLLECTION": self.collection.name,
                    "CDR_ALERT_EMAILS": "noc@example.org",
                    "CDR_LATE_DATA_LOOKBACK_DAYS": "1",
                    "CDR_VOLUME_CHECK_HISTORY": "3",
                    "AIRFLOW_CONN_CDR_MONGO": f"mongo://{urlsplit(mongo_uri).netloc}/{db.name}",
                    "AIRFLOW_CONN_CDR_REPORTS_DB": f"sqlite:///{self.path}",
                    "AIRFLOW_CONN_SMTP_DEFAULT": smtp_uri or smtp_connection_uri(smtp_server),
                }
            )
            child = subprocess.run(
                [sys.executable, "-c", _TASK, task], env=env, capture_output=True, text=True, timeout=300
            )
            return child.returncode, child.stdout + child.stderr[-3000:]

    yield Stage()
    for name in made:
        db.drop_collection(name)


def _report(stage, period, docs) -> None:
    stage.collection.insert_many([dict(d) for d in docs])
    run_report(stage.collection, stage.engine, period, stage.settings, dag_run_id=f"seed-{period.start_date}")


def _boundaries(output: str) -> list[str]:
    return [line.split(" ", 2)[2] for line in output.splitlines() if line.startswith("BOUNDARY ")]


def _kill_at_every_boundary(stage, smtp_server, task: str, prepare, check) -> None:
    probe = prepare(stage.fresh(0))
    code, output = stage.run(task, 0)
    assert code == 0, output
    steps = _boundaries(output)
    print(f"\n{task}: {len(steps)} step boundaries: {steps}")
    assert "before the alert" in steps and steps.count("after a commit") >= 1
    check(stage, probe, alerts_before=0)
    for number in range(1, len(steps) + 1):
        before = len(smtp_server.received())
        state = prepare(stage.fresh(number))
        code, output = stage.run(task, number)
        assert code == -signal.SIGKILL, output  # died at the boundary
        code, output = stage.run(task, 0)  # the retry
        assert code == 0, output
        check(stage, state, alerts_before=before, killed_at=f"{number}: {steps[number - 1]}")


def test_late_data_finding_and_alert_survive_a_kill_at_every_step(stage, smtp_server):
    def prepare(st):
        for period in [*HISTORY, DAY]:
            _report(st, period, calls(period, "A", 30) + calls(period, "B", 20))
        late = calls(YESTERDAY, "A", 4, tag="late") + calls(YESTERDAY, "LATE", 3, tag="late")
        st.collection.insert_many([dict(d) for d in late])
        return list(st.collection.find({}, {"_id": 0}))

    def check(st, docs, alerts_before, killed_at="no kill"):
        rows = read_findings(st.engine)
        assert [(r["period_start"], r["verdict"], r["expected"], r["actual"], r["dag_run_id"]) for r in rows] == [
            (YESTERDAY.start_date, "late_data", 50.0, 57, RUN_ID)
        ], killed_at
        assert not rows[0]["detail"].startswith(REREPORT_PENDING) and "re-reported" in rows[0]["detail"], killed_at
        assert_stored_equals_reference(
            st.engine, expected_report(docs, YESTERDAY.start_utc, YESTERDAY.end_utc), period=YESTERDAY
        )
        mails = _mails(smtp_server)[alerts_before:]
        assert mails and all("LATE DATA" in subject for subject, _ in mails), (killed_at, mails)
        assert any("LATE_DATA daily 2026-11-26 whole period: source CDRs 50 when reported" in body for _, body in mails)

    _kill_at_every_boundary(stage, smtp_server, "check_late_data", prepare, check)


def test_volume_findings_and_alert_survive_a_kill_at_every_step(stage, smtp_server):
    def prepare(st):
        for period in HISTORY:
            _report(st, period, calls(period, "A", 30) + calls(period, "B", 40))
        _report(st, DAY, calls(DAY, "A", 5))  # A drops, B vanishes
        return None

    def check(st, _state, alerts_before, killed_at="no kill"):
        rows = read_findings(st.engine)
        assert {(r["operator_id"], r["verdict"], r["actual"], r["dag_run_id"]) for r in rows} == {
            ("A", "drop", 5, RUN_ID),
            ("B", "vanished", 0, RUN_ID),
        }, killed_at
        mails = _mails(smtp_server)[alerts_before:]
        assert mails, killed_at
        for subject, body in mails:
            assert subject.startswith("[cdr-reports] VOLUME") and "1 drop, 1 vanished" in subject, subject
            assert "DROP daily 2026-11-27 operator 'A'" in body and "VANISHED daily 2026-11-27 operator 'B'" in body

    _kill_at_every_boundary(stage, smtp_server, "check_volume", prepare, check)


def test_source_audit_record_and_alert_survive_a_kill_at_every_step(stage, smtp_server):
    def prepare(st):
        mid = DAY.start_utc + timedelta(hours=6)
        st.collection.insert_many(
            [{"Operator": {"Id": 1}, "Duration": 5}, {"Operator": {"Id": 2}, "DateTime": {"Start": mid.isoformat()}}]
        )
        return None

    def check(st, _state, alerts_before, killed_at="no kill"):
        audits = read_audits(st.engine)
        assert [(a["dag_run_id"], a["unplaceable_records"], a["previous_records"]) for a in audits] == [
            (RUN_ID, 2, None)
        ], killed_at
        mails = _mails(smtp_server)[alerts_before:]
        assert mails and {subject for subject, _ in mails} == {
            "[cdr-reports] SOURCE AUDIT 2 CDRs in no period (previous audit: none)"
        }, (killed_at, mails)

    _kill_at_every_boundary(stage, smtp_server, "audit", prepare, check)


def test_an_alert_no_channel_accepted_fails_the_try_and_the_retry_sends_it(stage, smtp_server):
    """SMTP down while alerting: the findings are stored, the try fails (transient), the retry alerts."""
    state = stage.fresh(0)
    for period in HISTORY:
        _report(state, period, calls(period, "A", 30))
    _report(state, DAY, calls(DAY, "A", 5))
    nobody = smtp_connection_uri(SmtpSink(host="127.0.0.1", port=free_port()))
    code, output = stage.run("check_volume", 0, smtp_uri=nobody)
    assert code == 1 and "AlertNotDelivered: no alert channel (email) accepted" in output, output
    assert [(r["operator_id"], r["verdict"]) for r in read_findings(state.engine)] == [("A", "drop")]
    assert smtp_server.received() == []
    code, output = stage.run("check_volume", 0)
    assert code == 0, output
    assert [subject for subject, _ in _mails(smtp_server)] == [
        "[cdr-reports] VOLUME cdr_daily_report (daily 2026-11-27): 1 drop"
    ]
