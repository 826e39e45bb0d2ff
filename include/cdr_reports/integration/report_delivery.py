"""Report delivery by e-mail: the stored report goes to its subscribers, once per distinct content.

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

Run-time only (the `email_report` task of email_task.py and the daily DAG's `rebuild_rollups`
call it), so SQLAlchemy and the view's query and rendering modules are imported at the top. The
e-mail itself is composed by the view's rendering (report_view/email.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from airflow.providers.common.compat.sdk import conf
from airflow.providers.smtp.hooks.smtp import SmtpHook

from cdr_reports.integration.connections import sql_engine
from cdr_reports.integration.report_view.email import compose_email
from cdr_reports.integration.report_view.queries import StoredReport, read_stored_report
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.errors import PermanentError
from cdr_reports.pipeline.migrations import ensure_schema
from cdr_reports.pipeline.schema import report_tables

log = logging.getLogger(__name__)

# Values that say when/by whom a report was computed, not what it says.
# How the numbers were computed is provenance, not content either: a week rebuilt from its daily
# reports with the same numbers as its direct extract is not a correction.
NOT_CONTENT = frozenset(
    {"generated_at", "dag_run_id", "extract_strategy", "method", "days_extracted", "rules_fingerprint",
     "rollup_inputs_sha256"}
)  # fmt: skip
MAX_RECIPIENTS_TEXT = 2000  # the width of cdr_report_delivery.recipients (schema.py)


def delivery_table(schema: str | None = None) -> sa.Table:
    """The delivery log `DELIVERY_TABLE` (declared in schema.py, created by the migrations with the report tables)."""
    return report_tables(schema).delivery


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # exact: the stored double, not a rounded text
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def content_hash(report: StoredReport) -> str:
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


def _previous(engine: sa.engine.Engine, table: sa.Table, report_type: str, period_start: date) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(table).where(table.c.report_type == report_type, table.c.period_start == period_start)
            )
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


def _record(engine: sa.engine.Engine, table: sa.Table, row: Mapping[str, Any]) -> None:
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
    from_email = conf.get("email", "from_email", fallback=None) or None
    with tempfile.TemporaryDirectory(prefix="cdr-report-mail-") as folder:
        path = Path(folder) / attachment_name
        path.write_text(attachment, encoding="utf-8")
        with SmtpHook(smtp_conn_id=smtp_conn_id) as hook:
            hook.send_email_smtp(
                to=list(to), subject=subject, html_content=html_content, from_email=from_email, files=[str(path)]
            )


def deliver_report(
    settings: Settings,
    report_type: str,
    period_start: date,
    dag_run_id: str,
    *,
    engine: sa.engine.Engine | None = None,
) -> DeliveryResult:
    """E-mail the stored report of (report_type, period_start) unless this content was already sent."""
    to = settings.emails_for(report_type)
    if not to:
        return DeliveryResult("off", report_type, period_start.isoformat())
    if engine is None:
        engine = sql_engine(settings)
    report = read_stored_report(engine, report_type, period_start, schema=settings.sql_schema)
    if report is None:
        raise PermanentError(f"no stored {report_type} report for {period_start.isoformat()} to e-mail")
    digest = content_hash(report)
    table = delivery_table(settings.sql_schema)
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
    email = compose_email(
        report,
        corrected=corrected,
        previous=previous,
        airflow_base_url=conf.get("api", "base_url", fallback="") or "",
    )
    send_email(settings.smtp_conn_id, to, email.subject, email.html, email.attachment_name, email.attachment)
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
