"""The Asset of each report type: the load task's outlet, and the extra of its asset events.

A downstream DAG schedules on a report with ``schedule=[report_asset("daily")]`` (or the same
``Asset(name=..., uri=...)`` spelled out) and reads the period and counts from the triggering
event (``triggering_asset_events``); see docs/report-view.md.

Only ``airflow.sdk`` is imported: the DAG factory uses this module while the DAG file is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset

ASSET_GROUP = "cdr_reports"
# A custom scheme: Airflow leaves "x-" URIs unnormalised, and no connection (host, database) is
# known while parsing, so the URI names the logical report, not a physical table.
ASSET_URI_TEMPLATE = "x-cdr-reports://reports/{report_type}"
ASSET_NAME_TEMPLATE = "cdr_{report_type}_report_table"

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
    return Asset(
        name=ASSET_NAME_TEMPLATE.format(report_type=report_type),
        uri=ASSET_URI_TEMPLATE.format(report_type=report_type),
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
