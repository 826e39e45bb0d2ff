"""Report delivery by e-mail: after a successful load, the stored report goes to its subscribers.

Per report type, ``CDR_REPORT_EMAILS_DAILY`` / ``_WEEKLY`` / ``_MONTHLY`` name the recipients
(unset: no delivery, and the DAG has no ``email_report`` task). The e-mail is what is *stored*
(read back from the report database, not the task's XCom): the reconciliation line, the checks,
the operator table as HTML, and the same CSV as the view's download, sent through the SMTP
provider's ``SmtpHook`` and the connection ``CDR_SMTP_CONN_ID``.

Never a duplicate: a SHA-256 of the report's content (every stored value except when and by
which run it was generated) is kept per period in the table ``cdr_report_delivery`` of the
report database, written after the SMTP server accepted the message. A re-run of a period whose
content did not change sends nothing (the task is *skipped*, saying so); one whose content
changed sends a copy marked CORRECTED. If the SMTP server refuses, nothing is recorded and the
task's retry sends again; a crash between the accepted send and the record can repeat one
e-mail (at-least-once), never lose one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Values that say when/by whom a report was computed, not what it says.
# How the numbers were computed is provenance, not content either: a week rebuilt from its daily
# reports with the same numbers as its direct extract is not a correction.
NOT_CONTENT = frozenset(
    {"generated_at", "dag_run_id", "extract_strategy", "method", "days_extracted", "rules_fingerprint",
     "rollup_inputs_sha256"}
)  # fmt: skip
MAX_RECIPIENTS_TEXT = 2000  # the width of cdr_report_delivery.recipients (schema.py)
DELIVERY_TABLE = "cdr_report_delivery"  # schema.DELIVERY_TABLE (checked by tests/unit/test_schema.py)


def recipients(settings: Any, report_type: str) -> tuple[str, ...]:
    """The subscribers of `report_type` reports (empty: delivery is off)."""
    return tuple(getattr(settings, f"report_emails_{report_type}", ()) or ())


def delivery_table(schema: str | None = None) -> Any:
    """The delivery log (declared in schema.py, created by the migrations with the report tables)."""
    from cdr_reports.pipeline.schema import build_metadata

    prefix = f"{schema}." if schema else ""
    return build_metadata(schema).tables[prefix + DELIVERY_TABLE]


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # exact: the stored double, not a rounded text
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def content_hash(report: Any) -> str:
    """SHA-256 of what the report says: the run row and operator rows without generated_at/dag_run_id."""
    run = {k: _plain(v) for k, v in sorted(report.run.items()) if k not in NOT_CONTENT}
    rows = sorted(
        ({k: _plain(v) for k, v in sorted(row.items()) if k not in NOT_CONTENT} for row in report.rows),
        key=lambda row: str(row.get("operator_id")),
    )
    payload = json.dumps({"run": run, "rows": rows}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DeliveryResult:
    status: str  # "off" | "sent" | "corrected" | "unchanged"
    report_type: str
    period_start: str
    content_sha256: str | None = None
    recipients: tuple[str, ...] = ()
    previous_sent_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "report_type": self.report_type,
            "period_start": self.period_start,
            "content_sha256": self.content_sha256,
            "recipients": list(self.recipients),
            "previous_sent_at": self.previous_sent_at,
        }


def _previous(engine: Any, table: Any, report_type: str, period_start: date) -> dict[str, Any] | None:
    import sqlalchemy as sa

    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(table).where(table.c.report_type == report_type, table.c.period_start == period_start)
            )
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


def _record(engine: Any, table: Any, row: Mapping[str, Any]) -> None:
    import sqlalchemy as sa

    with engine.begin() as conn:
        conn.execute(
            sa.delete(table).where(
                table.c.report_type == row["report_type"], table.c.period_start == row["period_start"]
            )
        )
        conn.execute(sa.insert(table), dict(row))


def send_email(
    smtp_conn_id: str, to: tuple[str, ...], subject: str, html_content: str, attachment_name: str, attachment: str
) -> None:
    """One e-mail with an attachment through the SMTP provider (sender: the connection's `from_email`)."""
    from airflow.providers.common.compat.sdk import conf
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    from_email = conf.get("email", "from_email", fallback=None) or None
    with tempfile.TemporaryDirectory(prefix="cdr-report-mail-") as folder:
        path = Path(folder) / attachment_name
        path.write_text(attachment, encoding="utf-8")
        with SmtpHook(smtp_conn_id=smtp_conn_id) as hook:
            hook.send_email_smtp(
                to=list(to), subject=subject, html_content=html_content, from_email=from_email, files=[str(path)]
            )


def run_url(report_type: str, dag_run_id: str) -> str | None:
    """Absolute link to the run in the Airflow UI, when ``[api] base_url`` is configured."""
    from airflow.providers.common.compat.sdk import conf

    from cdr_reports.integration.report_view.queries import dag_id_for
    from cdr_reports.integration.report_view.render import airflow_run_path

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    if not base.startswith(("http://", "https://")):
        return None
    return airflow_run_path(base, dag_id_for(report_type), dag_run_id)


def deliver_report(
    settings: Any, report_type: str, period_start: date, dag_run_id: str, *, engine: Any = None
) -> DeliveryResult:
    """E-mail the stored report of (report_type, period_start) unless this content was already sent."""
    from cdr_reports.integration.report_view.csv_export import csv_filename, report_csv
    from cdr_reports.integration.report_view.queries import read_stored_report
    from cdr_reports.integration.report_view.render import email_html, email_subject
    from cdr_reports.pipeline.errors import PermanentError

    to = recipients(settings, report_type)
    if not to:
        return DeliveryResult("off", report_type, period_start.isoformat())
    if engine is None:
        from cdr_reports.integration.connections import sql_engine

        engine = sql_engine(settings)
    report = read_stored_report(engine, report_type, period_start, schema=settings.sql_schema)
    if report is None:
        raise PermanentError(f"no stored {report_type} report for {period_start.isoformat()} to e-mail")
    digest = content_hash(report)
    table = delivery_table(settings.sql_schema)
    from cdr_reports.pipeline.migrations import ensure_schema

    ensure_schema(engine, settings.sql_schema)  # the load ran the migrations already: normally no DDL
    previous = _previous(engine, table, report_type, period_start)
    previous_sent = previous["sent_at"].isoformat() if previous else None
    if previous is not None and previous["content_sha256"] == digest:
        log.info(
            "%s report %s unchanged since the copy sent %s UTC (run %s): not sent again",
            report_type, period_start, previous_sent, previous["dag_run_id"],
        )  # fmt: skip
        return DeliveryResult("unchanged", report_type, period_start.isoformat(), digest, to, previous_sent)
    corrected = previous is not None
    send_email(
        settings.smtp_conn_id,
        to,
        email_subject(report, corrected=corrected),
        email_html(
            report, corrected=corrected, previous=previous, run_url=run_url(report_type, str(report.run["dag_run_id"]))
        ),
        csv_filename(report),
        report_csv(report),
    )
    _record(
        engine,
        table,
        {
            "report_type": report_type,
            "period_start": period_start,
            "content_sha256": digest,
            "sent_at": datetime.now(UTC).replace(tzinfo=None),
            "dag_run_id": dag_run_id,
            "recipients": ", ".join(to)[:MAX_RECIPIENTS_TEXT],
            "copies": (int(previous["copies"]) + 1) if previous else 1,
        },
    )
    status = "corrected" if corrected else "sent"
    log.info("%s report %s e-mailed (%s) to %s", report_type, period_start, status, ", ".join(to))
    return DeliveryResult(status, report_type, period_start.isoformat(), digest, to, previous_sent)


def email_report_task(report_type: str, settings: Any, loaded: Mapping[str, Any] | None, run_id: str) -> dict[str, Any]:
    """Body of the DAG's ``email_report`` task (after ``load``): skipped when the content was already sent."""
    from airflow.sdk.exceptions import AirflowSkipException

    from cdr_reports.integration.failures import fail_fast

    if not loaded:
        raise AirflowSkipException("this run stored no report (load did not succeed): nothing to e-mail")
    period_start = date.fromisoformat(str(loaded["period_start"]))
    where = f"e-mailing the {report_type} report of {period_start} via connection {settings.smtp_conn_id!r} (CDR_SMTP_CONN_ID)"
    with fail_fast(where):
        result = deliver_report(settings, report_type, period_start, run_id)
    if result.status == "unchanged":
        raise AirflowSkipException(
            f"the stored {report_type} report of {period_start} is unchanged since the copy sent "
            f"{result.previous_sent_at} UTC: no e-mail"
        )
    return result.as_dict()


def add_email_task(report_type: str, settings: Any, loaded: Any, after: Sequence[Any] = ()) -> Any:
    """Add ``email_report`` (inside the DAG context) when recipients are configured.

    It runs after ``load`` (`loaded`, its XComArg) and after the data-quality tasks (`after`),
    whatever their outcome (``all_done``), so that the e-mail carries this run's findings and a
    failed check does not hold the report back; it skips itself when the load stored nothing.
    """
    if not recipients(settings, report_type):
        return None
    from airflow.sdk import task

    @task(task_id="email_report", doc_md=EMAIL_TASK_DOC, trigger_rule="all_done")
    def email_report(**context: Any) -> dict[str, Any]:
        # Pulled, not passed as an argument: with all_done the load may have failed (no XCom).
        loaded_summary = context["ti"].xcom_pull(task_ids="load")
        return email_report_task(report_type, settings, loaded_summary, context["run_id"])

    email = email_report()
    loaded >> email
    for upstream in after:
        upstream >> email
    return email


EMAIL_TASK_DOC = (
    "### E-mail the stored report\n"
    "After `load` and the data-quality tasks, sends the report just stored (HTML table, reconciliation "
    "line, checks, data-quality findings, CSV attachment) to "
    "`CDR_REPORT_EMAILS_<TYPE>` through the SMTP connection `CDR_SMTP_CONN_ID`. A re-run whose stored "
    "content is unchanged sends nothing (skipped); a changed one sends a copy marked CORRECTED."
)
