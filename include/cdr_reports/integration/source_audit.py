"""The DAG `cdr_source_audit`: every day, count the CDRs no report period can hold.

The counting and storing are pipeline/audit.py; this module is the Airflow glue: one task,
`audit`, that counts (one `$match` + `$count` over the whole collection, after the global filter),
stores the count and up to 5 sample `_id`s in `cdr_source_audit`, and alerts once on the existing
channels (alerts.py) when the count grew since the previous audit. It runs at 05:00 local, after
the three reports are due, in its own DAG so the collection scan it costs on MongoDB (no index
serves it, see audit.py) never delays a report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from cdr_reports.integration.alerts import AlertMessage
from cdr_reports.integration.connections import mongo_collection, sql_engine
from cdr_reports.integration.failures import fail_fast
from cdr_reports.integration.quality_tasks import deliver
from cdr_reports.integration.task_policy import task_default_args
from cdr_reports.integration.timetable import LocalCronTriggerTimetable
from cdr_reports.pipeline.config import Settings, load_settings

log = logging.getLogger(__name__)

DAG_ID = "cdr_source_audit"
SCHEDULE_CRON = "0 5 * * *"  # daily, local time: after the daily (02:00), weekly (03:00) and monthly (04:00) reports

AUDIT_TASK_DOC = (
    "### Audit the source\n"
    "Counts the CDRs that pass the global filter but can never belong to a report period (`DateTime.Start` "
    "missing, not a date, or an array), with one `$match` + `$count`; stores the count and up to 5 sample "
    "`_id`s in `cdr_source_audit`; alerts when the count grew since the previous audit. No index serves "
    "this query on MongoDB: it is one collection scan per day, which is why it is not part of a report."
)


def audit_message(record: Any, dag_id: str, run_id: str, settings: Settings) -> AlertMessage:
    from bson import json_util

    previous = "none (first audit)" if record.previous_records is None else str(record.previous_records)
    lines = [
        f"DAG: {dag_id}",
        f"Run: {run_id}",
        f"Collection: {settings.collection} (connection {settings.mongo_conn_id})",
        f"Global filter: {json_util.dumps(settings.global_filter)}",
        f"CDRs no period can hold (DateTime.Start missing, not a date, or an array): {record.unplaceable_records}",
        f"Previous audit: {previous}",
        f"Sample _ids: {record.sample_ids}",
        "These CDRs are in no report. Fix them at the source (a date in DateTime.Start) and re-run the affected periods.",
    ]
    subject = (
        f"[cdr-reports] SOURCE AUDIT {record.unplaceable_records} CDRs in no period "
        f"(previous audit: {previous.split(' ')[0]})"
    )
    return AlertMessage(subject=subject, text="\n".join(lines))


def audit_task(settings: Settings, context: Mapping[str, Any]) -> dict[str, Any]:
    """Body of the `audit` task."""
    from bson import json_util

    from cdr_reports.pipeline.audit import audit_source, record_audit  # imports SQLAlchemy: run time only

    run_id = str(context["run_id"])
    where = (
        f"via connections {settings.mongo_conn_id!r} (CDR_MONGO_CONN_ID) and {settings.sql_conn_id!r} "
        f"(CDR_SQL_CONN_ID), CDR_GLOBAL_FILTER={json_util.dumps(settings.global_filter)}"
    )
    with fail_fast(f"auditing the source {where}"):
        audit = audit_source(mongo_collection(settings), settings.global_filter)
        record = record_audit(sql_engine(settings), audit, run_id, schema=settings.sql_schema)
    sent: list[str] = []
    if record.grew:
        dag_id = getattr(context.get("dag"), "dag_id", None) or DAG_ID
        message = audit_message(record, dag_id, run_id, settings)
        log.warning("unplaceable CDRs grew, alerting: %s", message.subject)
        # Stored first (committed above); an alert no channel accepted fails the try, and the retry,
        # replacing this run's row with the same comparison, alerts again.
        sent = deliver(settings, message, context)
    else:
        log.info(
            "source audit: %d unplaceable CDR(s), previous %s: no alert",
            record.unplaceable_records,
            record.previous_records,
        )
    return {**record.to_dict(), "alerted_via": sent}


def build_source_audit_dag(settings: Settings | None = None) -> Any:
    """The daily DAG `cdr_source_audit` (one task, `audit`)."""
    settings = settings or load_settings()
    with DAG(
        dag_id=DAG_ID,
        # Airflow's CronTriggerTimetable, shown with its zone in the UI and API (timetable.py).
        schedule=LocalCronTriggerTimetable(SCHEDULE_CRON, timezone=settings.time_zone),
        start_date=pendulum.datetime(
            settings.earliest_report_date.year,
            settings.earliest_report_date.month,
            settings.earliest_report_date.day,
            tz=settings.time_zone,
        ),
        catchup=False,
        max_active_runs=1,
        default_args=task_default_args(settings),
        tags=["cdr", "quality"],
        doc_md=f"""
# CDR source audit

Counts the CDRs of `{settings.collection}` (connection `{settings.mongo_conn_id}`) that pass the global
filter but that **no report period can hold**: `DateTime.Start` missing, null, a string, a number, a
timestamp or an array. No report counts them, so without this audit they would be invisible.
Each run stores the count and up to 5 sample `_id`s in `cdr_source_audit` (connection
`{settings.sql_conn_id}`) and alerts when the count grew since the previous audit.

Cost: one collection scan on MongoDB per day (no index serves the query), off the reports' path.
""",
    ) as dag:

        @task(task_id="audit", doc_md=AUDIT_TASK_DOC)
        def audit(**context: Any) -> dict[str, Any]:
            return audit_task(settings, context)

        audit()
    return dag
