"""Report delivery by e-mail, end to end: dag.test() of the daily DAG against FerretDB, a SQLite
report database and a real SMTP server (aiosmtpd): one e-mail per distinct report content."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from cdr_reports.pipeline.schema import DELIVERY_TABLE
from tests.support.processes import FAST_RETRIES, SmtpSink, build_dag, mail_text, smtp_connection_uri, task_states
from tests.support.reports import DAY
from tests.support.services import free_port
from tests.ui.conftest import FORMULA_IDS, XSS_ATTR, XSS_SCRIPT

RECIPIENTS = ["finance@example.org", "ops@example.net"]
SENDER = "cdr-reports@example.org"
CONF = {"report_date": DAY.start_date.isoformat()}


@pytest.fixture
def report_env(monkeypatch, airflow_db, mongo_uri, mongo_db, tmp_path):
    """CDR_* settings and connections in os.environ (dag.test() re-parses the DAG file with them)."""
    for key in list(os.environ):
        if key.startswith("CDR_") and not key.startswith("CDR_TEST_"):
            monkeypatch.delenv(key)
    sink = tmp_path / "reports.db"

    def apply(settings: dict[str, str], smtp_uri: str) -> str:
        values = {**FAST_RETRIES, "CDR_RETRIES": "1", **settings}
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AIRFLOW_CONN_CDR_MONGO", f"mongo://{urlsplit(mongo_uri).netloc}/{mongo_db.name}")
        monkeypatch.setenv("AIRFLOW_CONN_CDR_REPORTS_DB", f"sqlite:///{sink}")
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_uri)
        return str(sink)

    return apply


def _calls(operator_id, count: int, answered: int, minute: int = 0) -> list[dict]:
    start = DAY.start_utc + timedelta(hours=10, minutes=minute)
    docs = []
    for k in range(count):
        at = start + timedelta(seconds=30 * k)
        doc: dict[str, Any] = {"Operator": {"Id": operator_id}, "DateTime": {"Start": at}, "Duration": 20 + k}
        if k < answered:
            doc["DateTime"]["Connect"] = at + timedelta(seconds=3)
        docs.append(doc)
    return docs


def _day_documents() -> list[dict]:
    docs = _calls(7, 5, 3) + _calls("ACME", 4, 4, 5) + _calls(XSS_SCRIPT, 3, 1, 10) + _calls(XSS_ATTR, 2, 2, 15)
    docs += _calls(FORMULA_IDS[0], 2, 1, 20) + _calls(FORMULA_IDS[2], 1, 0, 25)
    docs.append({"Operator": {"Id": None}, "DateTime": {"Start": DAY.start_utc + timedelta(hours=3)}, "Duration": 9})
    return docs


def states_before_email(run) -> set[str]:
    """The data-quality tasks that finished before email_report started (they are its upstreams)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = {ti.task_id: ti for ti in session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id)}
    started = tis["email_report"].start_date
    assert started is not None, "email_report never started"
    return {tid for tid, ti in tis.items() if tid.startswith("check_") and ti.end_date and ti.end_date <= started}


def _html(message) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def _attachment(message) -> tuple[str, str]:
    [part] = list(message.iter_attachments())
    return part.get_filename(), part.get_content() if isinstance(
        part.get_content(), str
    ) else part.get_content().decode()


def _stored(sink: str) -> tuple[dict, list[dict], list[dict]]:
    with sqlite3.connect(sink) as conn:
        conn.row_factory = sqlite3.Row
        run = dict(conn.execute("SELECT * FROM cdr_report_run WHERE report_type='daily'").fetchone())
        rows = [
            dict(r)
            for r in conn.execute("SELECT * FROM cdr_operator_report WHERE report_type='daily' ORDER BY operator_id")
        ]
        sent = [dict(r) for r in conn.execute(f"SELECT * FROM {DELIVERY_TABLE}")]
    return run, rows, sent


def test_one_email_per_distinct_report_and_a_corrected_copy_after_a_change(report_env, mongo_db, smtp_server):
    sink = report_env({"CDR_REPORT_EMAILS_DAILY": ", ".join(RECIPIENTS)}, smtp_connection_uri(smtp_server, SENDER))
    mongo_db.CdrRecords.insert_many(_day_documents())
    dag = build_dag("daily")
    # Last, after the e-mail: the watcher that fails the run when any task failed (dag_factory.add_failure_watcher).
    assert [t.task_id for t in dag.tasks][-2:] == ["email_report", "watcher"]

    first = dag.test(run_conf=CONF)
    assert str(first.state) == "success", task_states(first)
    assert task_states(first)["email_report"] == ("success", 1)
    assert task_states(first)["watcher"][0] == "skipped"  # no task failed
    [mail] = smtp_server.received()
    assert sorted(mail["to"]) == sorted(RECIPIENTS) and mail["from"] == SENDER
    message = mail["message"]
    assert message["Subject"] == "[cdr-reports] daily 2026-11-27 report"
    run, rows, sent = _stored(sink)
    html = _html(message)
    text = mail_text(message)
    assert f"source {run['source_records']} · valid {run['valid_records']} · rejected 1 · operators {len(rows)}" in text
    assert "✓ source 18 = valid 17 + rejected 1" in text
    assert "CORRECTED" not in html
    # The data-quality findings stored for the period (the checks ran before the e-mail).
    assert "Data-quality findings" in text
    assert states_before_email(first) == {"check_volume", "check_late_data"}
    # Operator ids escaped in the HTML body: present as text, never as markup.
    assert "&lt;script&gt;alert(&quot;cdr&quot;)&lt;/script&gt;" in html and "<script" not in html
    assert "&quot;onerror=alert(1) x=&quot;" in html and '"onerror=' not in html
    assert f"Total ({len(rows)} operators)" in text
    # The CSV attachment: the stored rows, formula cells neutralised.
    filename, attached = _attachment(message)
    assert filename == "cdr_daily_report_2026-11-27.csv"
    table = list(csv.reader(io.StringIO(attached, newline="")))
    assert table[0] == list(rows[0]) and len(table) == 1 + len(rows)
    ids = [line[table[0].index("operator_id")] for line in table[1:]]
    assert "'" + FORMULA_IDS[0] in ids and "'" + FORMULA_IDS[2] in ids and XSS_SCRIPT in ids
    assert [s["copies"] for s in sent] == [1] and sent[0]["dag_run_id"] == first.run_id

    # A re-run over unchanged data stores the same report: nothing is sent, the task says why.
    second = dag.test(run_conf=CONF)
    assert str(second.state) == "success"
    assert task_states(second)["email_report"] == ("skipped", 1)
    assert len(smtp_server.received()) == 1
    assert _stored(sink)[2] == sent

    # Late CDRs change the report: a copy marked CORRECTED goes out, with the new numbers.
    mongo_db.CdrRecords.insert_many(_calls("ACME", 3, 1, 40))
    third = dag.test(run_conf=CONF)
    assert task_states(third)["email_report"] == ("success", 1)
    mails = smtp_server.received()
    assert len(mails) == 2
    corrected = mails[1]["message"]
    assert corrected["Subject"] == "[cdr-reports] CORRECTED daily 2026-11-27 report"
    corrected_html = _html(corrected)
    assert "CORRECTED: this report replaces the copy sent" in corrected_html and first.run_id in corrected_html
    run, rows, sent = _stored(sink)
    assert run["valid_records"] == 20
    assert "source 21 = valid 20 + rejected 1" in mail_text(corrected)
    acme = next(line for line in csv.reader(io.StringIO(_attachment(corrected)[1], newline="")) if line[2] == "ACME")
    assert acme[4] == "7"  # total_calls of ACME after the late calls
    assert [s["copies"] for s in sent] == [2] and sent[0]["dag_run_id"] == third.run_id


def test_a_refused_send_records_nothing_and_the_next_run_sends(report_env, mongo_db, smtp_server):
    dead = smtp_connection_uri(SmtpSink(host="127.0.0.1", port=free_port()), SENDER)
    sink = report_env({"CDR_REPORT_EMAILS_DAILY": RECIPIENTS[0], "CDR_RETRIES": "0"}, dead)
    mongo_db.CdrRecords.insert_many(_day_documents())
    failed = build_dag("daily").test(run_conf=CONF)
    states = task_states(failed)
    assert states["load"] == ("success", 1) and states["email_report"][0] == "failed", states
    assert str(failed.state) == "failed" and states["watcher"] == ("failed", 1)  # the run says so
    run, _, sent = _stored(sink)
    assert run["valid_records"] == 17 and sent == []  # the report is stored; nothing counts as sent

    os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = smtp_connection_uri(smtp_server, SENDER)  # monkeypatch restores it
    retried = build_dag("daily").test(run_conf=CONF)
    assert task_states(retried)["email_report"] == ("success", 1)
    [mail] = smtp_server.received()
    assert mail["message"]["Subject"] == "[cdr-reports] daily 2026-11-27 report"  # the first copy, not "corrected"


@pytest.mark.parametrize("report_type", ["daily", "weekly", "monthly"])
def test_delivery_is_off_by_default_and_per_report_type(report_type):
    from cdr_reports.integration.dag_factory import build_report_dag
    from cdr_reports.pipeline.config import load_settings

    assert "email_report" not in build_report_dag(report_type, load_settings({})).task_ids
    only_weekly = load_settings({"CDR_REPORT_EMAILS_WEEKLY": "ops@example.org"})
    dag = build_report_dag(report_type, only_weekly)
    assert ("email_report" in dag.task_ids) == ("watcher" in dag.task_ids) == (report_type == "weekly")
    if report_type == "weekly":
        # The watcher follows every task, so any failure fails the run (email_report is all_done).
        watcher = dag.get_task("watcher")
        assert watcher.upstream_task_ids == set(dag.task_ids) - {"watcher"}
        assert (watcher.trigger_rule, watcher.retries, watcher.on_failure_callback) == ("one_failed", 0, [])
