"""Airflow DAG cdr_report_retention: every day at 05:30 local time, deletes reports older than CDR_REPORT_RETENTION_DAYS.

Unset (the default) keeps reports forever: the DAG runs and deletes nothing. The logic lives in
cdr_reports.integration.maintenance.
"""

from cdr_reports.integration.maintenance import build_maintenance_dag

cdr_report_retention = build_maintenance_dag()
