"""The three CDR report Airflow DAGs, one factory call each.

Schedules (CalendarPeriodTimetable, local time in CDR_TIMEZONE, default Europe/Istanbul); each
run's data interval is exactly the reported period:

    cdr_daily_report    every day at 02:00 (CDR_DAILY_DUE_HOUR)
                        reports the previous local calendar day, [D 00:00, D+1 00:00)
    cdr_weekly_report   every week on CDR_WEEK_START (default Monday) at 03:00 (CDR_WEEKLY_DUE_HOUR)
                        reports the previous local week, [Monday 00:00, next Monday 00:00)
    cdr_monthly_report  every month on the 1st at 04:00 (CDR_MONTHLY_DUE_HOUR)
                        reports the previous local calendar month, [1st 00:00, next 1st 00:00)

The ids, due hours and settings are those of pipeline/report_types.py (a test compares them).

Tasks: plan → extract (mapped over CDR_EXTRACT_SLICES[_<TYPE>] time slices) → aggregate → load.
All logic lives in the `cdr_reports` package; settings come from CDR_* environment variables.
A bad value of a setting only the tasks read (e.g. CDR_GLOBAL_FILTER) does not stop this file
from importing: every run fails on its first try naming the variable (config.RUN_TIME_SETTINGS).
"""

from cdr_reports.integration.dag_factory import build_report_dag
from cdr_reports.pipeline.config import RETENTION_ONLY_SETTINGS, RUN_TIME_SETTINGS, load_settings

settings = load_settings(defer=RUN_TIME_SETTINGS, ignore=RETENTION_ONLY_SETTINGS)

cdr_daily_report = build_report_dag("daily", settings, dag_id="cdr_daily_report")
cdr_weekly_report = build_report_dag("weekly", settings, dag_id="cdr_weekly_report")
cdr_monthly_report = build_report_dag("monthly", settings, dag_id="cdr_monthly_report")
