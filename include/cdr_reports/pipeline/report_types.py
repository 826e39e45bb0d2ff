"""The report types and every fact derived from them, declared once.

One row per report type: its DAG id, its Asset (name and URI), its schedule (when it runs and which
setting moves its due hour), the settings that belong to it, and its label in the UI. Every module
reads these rows (``report_types.of("daily").dag_id``); none rebuilds an id or a setting name from
the type's name.

Pure standard library (no Airflow, no SQLAlchemy): the DAG files, the plugin and the web view
import it while parsing.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

__all__ = [
    "REPORTS",
    "REPORT_TYPES",
    "ROLLED_UP_TYPES",
    "ROLLUP_SOURCE",
    "ReportType",
    "ReportTypeName",
    "of",
]

# The type of a report-type name (FastAPI validates the view's `type` query parameter with it).
ReportTypeName = Literal["daily", "weekly", "monthly"]


@dataclass(frozen=True)
class ReportType:
    """One report type: the facts every module reads about it."""

    name: ReportTypeName
    # Airflow: the DAG writing these reports, and the Asset its `load` task updates.
    dag_id: str
    asset_name: str
    asset_uri: str
    # Schedule: what a run covers and when it runs (dag_docs.py; the DAG file's docstring, checked
    # against these rows by tests/unit/test_report_types.py).
    period: str
    cadence: str  # when a run is due: `cadence` at the due hour, local time
    due_hour_setting: str  # the environment variable of the due hour (local wall clock)
    due_hour_field: str  # its field of config.DueTimes
    default_due_hour: int
    # Settings of this type alone: environment variable and config.Settings field.
    slices_setting: str
    slices_field: str
    emails_setting: str
    emails_field: str
    # The report view (type picker, headings) and the DAG's documentation.
    label: str


_ROWS = (
    ReportType(
        name="daily",
        dag_id="cdr_daily_report",
        asset_name="cdr_daily_report_table",
        asset_uri="x-cdr-reports://reports/daily",
        period="the previous local calendar day, [D 00:00, D+1 00:00)",
        cadence="every day",
        due_hour_setting="CDR_DAILY_DUE_HOUR",
        due_hour_field="daily_hour",
        default_due_hour=2,
        slices_setting="CDR_EXTRACT_SLICES_DAILY",
        slices_field="extract_slices_daily",
        emails_setting="CDR_REPORT_EMAILS_DAILY",
        emails_field="report_emails_daily",
        label="Daily",
    ),
    ReportType(
        name="weekly",
        dag_id="cdr_weekly_report",
        asset_name="cdr_weekly_report_table",
        asset_uri="x-cdr-reports://reports/weekly",
        period="the previous local week, [Monday 00:00, next Monday 00:00)",
        cadence="every week on CDR_WEEK_START (default Monday)",
        due_hour_setting="CDR_WEEKLY_DUE_HOUR",
        due_hour_field="weekly_hour",
        default_due_hour=3,
        slices_setting="CDR_EXTRACT_SLICES_WEEKLY",
        slices_field="extract_slices_weekly",
        emails_setting="CDR_REPORT_EMAILS_WEEKLY",
        emails_field="report_emails_weekly",
        label="Weekly",
    ),
    ReportType(
        name="monthly",
        dag_id="cdr_monthly_report",
        asset_name="cdr_monthly_report_table",
        asset_uri="x-cdr-reports://reports/monthly",
        period="the previous local calendar month, [1st 00:00, next 1st 00:00)",
        cadence="every month on the 1st",
        due_hour_setting="CDR_MONTHLY_DUE_HOUR",
        due_hour_field="monthly_hour",
        default_due_hour=4,
        slices_setting="CDR_EXTRACT_SLICES_MONTHLY",
        slices_field="extract_slices_monthly",
        emails_setting="CDR_REPORT_EMAILS_MONTHLY",
        emails_field="report_emails_monthly",
        label="Monthly",
    ),
)

# Name -> row, in reporting order (daily, weekly, monthly): the order of the view's type picker,
# of the RBAC roles' DAG list and of `make demo`.
REPORTS: MappingProxyType[str, ReportType] = MappingProxyType({row.name: row for row in _ROWS})
REPORT_TYPES: tuple[ReportTypeName, ...] = tuple(row.name for row in _ROWS)

# Weekly and monthly reports are rolled up from the stored daily reports (pipeline/rollup.py).
ROLLUP_SOURCE: ReportTypeName = "daily"
ROLLED_UP_TYPES: tuple[ReportTypeName, ...] = tuple(name for name in REPORT_TYPES if name != ROLLUP_SOURCE)

if get_args(ReportTypeName) != REPORT_TYPES:  # the Literal and the rows must name the same types
    raise RuntimeError(f"report_types: rows {REPORT_TYPES} differ from ReportTypeName {get_args(ReportTypeName)}")


def of(name: str) -> ReportType:
    """The row of report type `name`; ValueError naming the known types for any other value."""
    row = REPORTS.get(name) if isinstance(name, str) else None
    if row is None:
        raise ValueError(f"unknown report type {name!r}: expected one of {', '.join(REPORT_TYPES)}")
    return row
