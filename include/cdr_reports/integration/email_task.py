"""The report DAG's `email_report` task: the stored report e-mailed after `load` and the checks.

Added only when ``CDR_REPORT_EMAILS_<TYPE>`` names recipients. The delivery itself (once per
distinct content, CORRECTED copies) is report_delivery.py's; the e-mail's content is the view's
rendering (report_view/email.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowSkipException

from cdr_reports.integration.failures import fail_fast
from cdr_reports.pipeline.config import Settings

EMAIL_TASK_DOC = (
    "### E-mail the stored report\n"
    "After `load` and the data-quality tasks, sends the report just stored (HTML table, reconciliation "
    "line, checks, data-quality findings, CSV attachment) to "
    "`CDR_REPORT_EMAILS_<TYPE>` through the SMTP connection `CDR_SMTP_CONN_ID`. A re-run whose stored "
    "content is unchanged sends nothing (skipped); a changed one sends a copy marked CORRECTED."
)


def email_report_task(
    report_type: str, settings: Settings, loaded: Mapping[str, Any] | None, run_id: str
) -> dict[str, Any]:
    """Body of the DAG's ``email_report`` task (after ``load``): skipped when the content was already sent."""
    # Deferred: SQLAlchemy, the SMTP hook and the view's queries, which DAG parsing must not pay for (TID253).
    from cdr_reports.integration.report_delivery import deliver_report

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


def add_email_task(report_type: str, settings: Settings, loaded: Any, after: Sequence[Any] = ()) -> Any:
    """Add ``email_report`` (inside the DAG context) when recipients are configured.

    It runs after ``load`` (`loaded`, its XComArg) and after the data-quality tasks (`after`),
    whatever their outcome (``all_done``), so that the e-mail carries this run's findings and a
    failed check does not hold the report back; it skips itself when the load stored nothing.
    """
    if not settings.emails_for(report_type):
        return None

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
