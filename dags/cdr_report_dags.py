"""The three CDR report DAGs: cdr_daily_report, cdr_weekly_report, cdr_monthly_report.

All logic lives in the `cdr_reports` package (include/, installed into the Airflow
environment); settings come from CDR_* environment variables (see the README).
"""

from cdr_reports.dag_factory import build_report_dags

globals().update(build_report_dags())
