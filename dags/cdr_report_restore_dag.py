"""Airflow DAG cdr_report_restore: triggered by hand, loads archived reports back from CDR_ARCHIVE_URL.

Params: report_type, from, to (period starts, inclusive). The logic lives in
cdr_reports.integration.maintenance and cdr_reports.pipeline.archive. Like retention, it never reads
MongoDB nor builds a report, so a bad value of those settings does not stop it.
"""

from cdr_reports.integration.maintenance import build_restore_dag
from cdr_reports.pipeline.config import REPORT_ONLY_SETTINGS, SOURCE_SETTINGS, load_settings

# Retention's own policy (how long, archive required) does not concern a restore.
NOT_READ = REPORT_ONLY_SETTINGS | SOURCE_SETTINGS | {"CDR_REPORT_RETENTION_DAYS", "CDR_ARCHIVE_REQUIRED"}

cdr_report_restore = build_restore_dag(load_settings(ignore=NOT_READ))
