"""The report DAG's data-quality tasks, after `load`: `check_volume` and (daily) `check_late_data`.

Both are off the report's hot path: the report is stored before they start, and a failure of
theirs fails the run (and alerts like any failed task) without touching the stored report.
Each sends at most ONE alert per run on the existing channels (alerts.py: e-mail, Slack), counting
every finding of the run and listing the first FINDINGS_LISTED (quality/rules.py); a run without
findings sends nothing.

- `check_volume` (every report type, unless `CDR_VOLUME_CHECK_HISTORY=0`): quality.checks.check_volume.
- `check_late_data` (daily, unless `CDR_LATE_DATA_LOOKBACK_DAYS=0`): quality.checks.check_late_data.
  Its alert lists every late-data finding stored by this run, retries included: a try that
  re-reported a day and then failed is not forgotten by the retry (which finds the day equal).

Findings are as durable as reports (docs/reliability.md, "Findings and alerts"): each is committed
before its alert is sent (a late-data finding even before its re-report, marked done after), and
the alert is built from the stored findings of the run. A kill anywhere leaves a try that Airflow
retries; the retry finds the stored findings and alerts them. An alert that no configured channel
accepted fails the try (transient), so the retry sends it again: at least once, never silently lost.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from airflow.sdk import task

from cdr_reports.integration.alerts import AlertChannels, AlertMessage, send
from cdr_reports.integration.connections import mongo_collection, sql_engine
from cdr_reports.integration.failures import fail_fast
from cdr_reports.pipeline import report_types
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.periods import period_containing
from cdr_reports.pipeline.quality.rules import FINDINGS_LISTED, LATE_DATA, VOLUME_VERDICTS, Finding, finding_lines

log = logging.getLogger(__name__)

CHECK_VOLUME_DOC = (
    "### Check volumes\n"
    "Compares every operator's `total_calls` in the report just stored with the median of its previous "
    "`CDR_VOLUME_CHECK_HISTORY` reports of the same type. Operators below `CDR_VOLUME_DROP_THRESHOLD` × median "
    "(`drop`), without calls (`vanished`) or absent from every previous report (`new`) are stored in "
    "`cdr_quality_check` (replacing this period's earlier volume findings) and alerted in one message."
)
CHECK_LATE_DATA_DOC = (
    "### Check for late data\n"
    "Re-counts the source CDRs of the previous `CDR_LATE_DATA_LOOKBACK_DAYS` days (one `$match` + `$count` "
    "per day) and compares them with the stored `source_records`. A changed day is re-reported with the same "
    "idempotent load (`CDR_LATE_DATA_ACTION=rereport`, the default) or only alerted (`alert`); either way "
    "it is stored in `cdr_quality_check` (verdict `late_data`) and alerted in one message."
)


def _dag_id(context: Mapping[str, Any], report_type: str) -> str:
    dag = context.get("dag")
    return getattr(dag, "dag_id", None) or report_types.of(report_type).dag_id


def volume_message(
    dag_id: str, run_id: str, report_type: str, period_start: date, findings: Sequence[Finding], settings: Settings
) -> AlertMessage:
    """One alert with every volume finding of the run: counted by verdict, the first ones listed."""
    counts = Counter(finding.verdict for finding in findings)
    summary = ", ".join(f"{counts[verdict]:,} {verdict}" for verdict in ("drop", "vanished", "new") if counts[verdict])
    lines = [
        f"DAG: {dag_id}",
        f"Run: {run_id}",
        f"Report: {report_type} {period_start.isoformat()}",
        (
            f"Compared with: the median of each operator's previous {settings.volume_check_history} {report_type} "
            f"reports (threshold {settings.volume_drop_threshold:g}, operators expecting < "
            f"{settings.volume_min_expected_calls} calls not judged)"
        ),
        f"Findings ({len(findings):,}, stored in cdr_quality_check):",
        *(f"- {line}" for line in finding_lines(findings)),
    ]
    subject = f"[cdr-reports] VOLUME {dag_id} ({report_type} {period_start.isoformat()}): {summary}"
    return AlertMessage(subject=subject, text="\n".join(lines))


def late_data_message(dag_id: str, run_id: str, findings: Sequence[Finding], settings: Settings) -> AlertMessage:
    """One alert with every late-data finding of the run (one per re-counted day: a short list)."""
    action = "re-reported" if settings.late_data_action == "rereport" else "NOT re-reported (alert only)"
    days = ", ".join(finding.period_start.isoformat() for finding in findings)
    lines = [
        f"DAG: {dag_id}",
        f"Run: {run_id}",
        f"Re-counted: the previous {settings.late_data_lookback_days} day(s) (CDR_LATE_DATA_LOOKBACK_DAYS)",
        f"Action: {action} (CDR_LATE_DATA_ACTION={settings.late_data_action})",
        f"Findings ({len(findings):,}, stored in cdr_quality_check):",
        *(f"- {line}" for line in finding_lines(findings)),
    ]
    subject = f"[cdr-reports] LATE DATA {dag_id}: source count changed for {days} ({action})"
    return AlertMessage(subject=subject, text="\n".join(lines))


class AlertNotDelivered(RuntimeError):
    """No configured channel accepted a findings alert: transient, so Airflow retries the task (and the alert)."""


def deliver(settings: Settings, message: AlertMessage, context: Mapping[str, Any]) -> list[str]:
    """Send a findings alert; raise AlertNotDelivered when channels are configured and none accepted it."""
    channels = AlertChannels.from_settings(settings)
    sent = send(channels, message, context)
    if channels.names and not sent:
        raise AlertNotDelivered(
            f"no alert channel ({', '.join(channels.names)}) accepted {message.subject!r}; the findings are stored, "
            "the retry sends the alert again"
        )
    return sent


def check_volume_task(
    report_type: str, settings: Settings, loaded: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Body of `check_volume`: judge the report just loaded, store the findings, alert once."""
    # Deferred: they import SQLAlchemy, which DAG parsing must not pay for (TID253).
    from cdr_reports.pipeline.quality.checks import check_volume
    from cdr_reports.pipeline.quality.store import read_findings

    period_start = date.fromisoformat(str(loaded["period_start"]))
    run_id = str(context["run_id"])
    where = f"via connection {settings.sql_conn_id!r} (CDR_SQL_CONN_ID)"
    with fail_fast(f"checking the volumes of the {report_type} report {period_start} {where}"):
        engine = sql_engine(settings)
        check_volume(engine, report_type, period_start, settings, run_id)
        # The alert says what is stored (committed above), not what this process computed.
        stored = read_findings(
            engine, report_type, period_start, settings.sql_schema, verdicts=VOLUME_VERDICTS, dag_run_id=run_id
        )
    findings = [Finding.from_row(row) for row in stored]
    sent: list[str] = []
    if findings:
        message = volume_message(_dag_id(context, report_type), run_id, report_type, period_start, findings, settings)
        log.warning("volume findings, alerting: %s", message.subject)
        sent = deliver(settings, message, context)
    return {**findings_xcom(findings), "alerted_via": sent}


def findings_xcom(findings: Sequence[Finding]) -> dict[str, Any]:
    """The XCom form of a check's findings: their number by verdict, and a bounded sample."""
    return {
        "findings_total": len(findings),
        "findings_by_verdict": dict(Counter(finding.verdict for finding in findings)),
        "findings": [finding.to_dict() for finding in findings[:FINDINGS_LISTED]],
    }


def check_late_data_task(
    report_type: str, settings: Settings, loaded: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Body of `check_late_data`: re-count the previous days, re-report or flag changed ones, alert once."""
    # Deferred: bson, and SQLAlchemy through the quality modules, which DAG parsing must not pay for (TID253).
    from bson import json_util

    from cdr_reports.pipeline.quality.checks import check_late_data
    from cdr_reports.pipeline.quality.store import read_findings

    period = period_containing(
        report_type, date.fromisoformat(str(loaded["period_start"])), settings.time_zone, settings.week_start
    )
    run_id = str(context["run_id"])
    where = (
        f"via connections {settings.mongo_conn_id!r} (CDR_MONGO_CONN_ID) and {settings.sql_conn_id!r} "
        f"(CDR_SQL_CONN_ID), CDR_GLOBAL_FILTER={json_util.dumps(settings.global_filter)}"
    )
    with fail_fast(f"re-counting the {settings.late_data_lookback_days} period(s) before {period.label()} {where}"):
        engine = sql_engine(settings)
        _, recounts = check_late_data(mongo_collection(settings), engine, period, settings, run_id)
        # Every late-data finding this run stored, earlier tries included (see the module docstring).
        checked = {recount.period_start for recount in recounts}
        stored = read_findings(
            engine, report_type, schema=settings.sql_schema, verdicts=(LATE_DATA,), dag_run_id=run_id
        )
    findings = [Finding.from_row(row) for row in stored if row["period_start"] in checked]
    sent: list[str] = []
    if findings:
        message = late_data_message(_dag_id(context, report_type), run_id, findings, settings)
        log.warning("late data, alerting: %s", message.subject)
        sent = deliver(settings, message, context)
    return {
        "recounts": [{**recount.__dict__, "period_start": recount.period_start.isoformat()} for recount in recounts],
        "findings": [finding.to_dict() for finding in findings],
        "alerted_via": sent,
    }


def add_quality_tasks(report_type: str, settings: Settings, loaded: Any) -> list[Any]:
    """Add the data-quality tasks after the load (inside the DAG context); the settings may turn each off."""
    added: list[Any] = []
    if settings.volume_check_history > 0:

        @task(task_id="check_volume", doc_md=CHECK_VOLUME_DOC)
        def check_volume(loaded_summary: dict[str, Any], **context: Any) -> dict[str, Any]:
            return check_volume_task(report_type, settings, loaded_summary, context)

        added.append(check_volume(loaded))
    if report_type == "daily" and settings.late_data_lookback_days > 0:

        @task(task_id="check_late_data", doc_md=CHECK_LATE_DATA_DOC)
        def check_late_data(loaded_summary: dict[str, Any], **context: Any) -> dict[str, Any]:
            return check_late_data_task(report_type, settings, loaded_summary, context)

        added.append(check_late_data(loaded))
    return added
