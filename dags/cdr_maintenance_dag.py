"""Airflow DAG cdr_report_retention: every day at 05:30 local time, deletes reports older than CDR_REPORT_RETENTION_DAYS.

Unset (the default) keeps reports forever: the DAG runs and deletes nothing. The logic lives in
cdr_reports.integration.maintenance. It never reads MongoDB nor builds a report, so a bad value of
those settings (CDR_GLOBAL_FILTER, ...) does not stop it: it imports and runs.
"""

from cdr_reports.integration.maintenance import build_maintenance_dag
from cdr_reports.pipeline.config import REPORT_ONLY_SETTINGS, SOURCE_SETTINGS, load_settings

cdr_report_retention = build_maintenance_dag(load_settings(ignore=REPORT_ONLY_SETTINGS | SOURCE_SETTINGS))
