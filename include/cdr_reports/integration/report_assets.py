"""The Asset of each report type: the load task's outlet, and the extra of its asset events.

A downstream DAG schedules on a report with ``schedule=[report_asset("daily")]`` (or the same
``Asset(name=..., uri=...)`` spelled out) and reads the period and counts from the triggering
event (``triggering_asset_events``); see docs/report-view.md.

The names and URIs are the report-type table's (pipeline/report_types.py). Only ``airflow.sdk``
is imported: the DAG factory uses this module while the DAG file is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset

from cdr_reports.pipeline import report_types

ASSET_GROUP = "cdr_reports"

# Keys of the asset event extra (JSON values), in this order.
EVENT_EXTRA_KEYS = (
    "report_type",
    "period_start",
    "period_end",
    "time_zone",
    "operators",
    "source_records",
    "valid_records",
    "rejected_records",
    "method",
    "days_extracted",
    "dag_run_id",
)


def report_asset(report_type: str) -> Asset:
    """The Asset updated each time a report of `report_type` is stored (one per type)."""
    row = report_types.of(report_type)
    # The URI has a custom scheme (report_types.py): Airflow leaves "x-" URIs unnormalised, and no
    # connection (host, database) is known while parsing, so it names the logical report.
    return Asset(
        name=row.asset_name,
        uri=row.asset_uri,
        group=ASSET_GROUP,
        extra={"tables": ["cdr_operator_report", "cdr_report_run"], "report_type": report_type},
    )


def event_extra(loaded: Mapping[str, Any]) -> dict[str, Any]:
    """The asset event extra from what the load task returns (only JSON-able, known keys)."""
    extra: dict[str, Any] = {}
    for key in EVENT_EXTRA_KEYS:
        value = loaded.get(key)
        if value is None:
            continue
        extra[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return extra
