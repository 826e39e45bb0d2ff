"""Airflow DAG cdr_source_audit: every day at 05:00 local time, counts the CDRs no report period can hold.

Those are CDRs passing the global filter whose DateTime.Start is missing, not a date, or an array:
no report counts them. The count and up to 5 sample _ids go to the table cdr_source_audit; an alert
goes out when the count grew. The logic lives in cdr_reports.integration.source_audit.
Settings only the report or retention DAGs read are ignored here; a bad CDR_GLOBAL_FILTER fails each audit run
on its first try, naming it.
"""

from cdr_reports.integration.source_audit import build_source_audit_dag
from cdr_reports.pipeline.config import (
    REPORT_ONLY_SETTINGS,
    RETENTION_ONLY_SETTINGS,
    RUN_TIME_SETTINGS,
    load_settings,
)

cdr_source_audit = build_source_audit_dag(
    load_settings(defer=RUN_TIME_SETTINGS - REPORT_ONLY_SETTINGS, ignore=REPORT_ONLY_SETTINGS | RETENTION_ONLY_SETTINGS)
)
