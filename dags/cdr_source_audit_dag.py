"""Airflow DAG cdr_source_audit: every day at 05:00 local time, counts the CDRs no report period can hold.

Those are CDRs passing the global filter whose DateTime.Start is missing, not a date, or an array:
no report counts them. The count and up to 5 sample _ids go to the table cdr_source_audit; an alert
goes out when the count grew. The logic lives in cdr_reports.integration.source_audit.
"""

from cdr_reports.integration.source_audit import build_source_audit_dag

cdr_source_audit = build_source_audit_dag()
