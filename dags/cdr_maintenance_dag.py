"""Airflow DAG cdr_report_retention: daily deletion of reports older than CDR_REPORT_RETENTION_DAYS.

Unset (the default) keeps reports forever: the DAG runs and deletes nothing. The logic lives in
cdr_reports.maintenance.
"""

from cdr_reports.maintenance import DAG_ID, build_maintenance_dag

globals()[DAG_ID] = build_maintenance_dag()
