"""The bodies of the report DAG's tasks: plan → extract (mapped) → aggregate → load.

`dag_factory` wraps each in a thin `@task`; the bodies take plain values (the settings, the
XCom payloads, the fields of the run they need), so they read like the pipeline they drive.
Heavy imports (pymongo, SQLAlchemy, provider hooks) happen here, at run time, never at parse.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cdr_reports.integration.failures import fail_fast
from cdr_reports.pipeline.config import Settings

log = logging.getLogger(__name__)


def plan(report_type: str, settings: Settings, context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's period, split into `CDR_EXTRACT_SLICES[_<TYPE>]` windows (one mapped extract each)."""
    from cdr_reports.pipeline.plan import plan_windows, resolve_period

    with fail_fast("planning the report"):
        dag_run = context.get("dag_run")
        period = resolve_period(
            report_type,
            settings,
            (context.get("params") or {}).get("report_date"),
            getattr(dag_run, "data_interval_start", None) or context.get("data_interval_start"),
            getattr(dag_run, "run_after", None),
            # Only complete periods are reported: the period must have ended by now.
            now=datetime.now(UTC),
        )
        windows = plan_windows(period, settings.slices_for(report_type))
    log.info(
        "reporting %s: %s .. %s UTC in %d slice(s)", period.label(), period.start_utc, period.end_utc, len(windows)
    )
    return windows


def extract(window: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Counts of one window, computed by the extract strategy that suits the server."""
    from bson import json_util

    from cdr_reports.integration.connections import mongo_collection
    from cdr_reports.pipeline.runner import extract_window

    start, end = datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])
    # The message names the connection, the filter and their settings: what to fix when wrong.
    where = (
        f"connection {settings.mongo_conn_id!r} (CDR_MONGO_CONN_ID), "
        f"CDR_GLOBAL_FILTER={json_util.dumps(settings.global_filter)}"
    )
    with fail_fast(f"extracting {window['start']}..{window['end']} via {where}"):
        collection = mongo_collection(settings)
        counts = extract_window(collection, start, end, settings)
    return counts.to_dict()


def aggregate(windows: list[dict[str, Any]], slices: list[dict[str, Any]], run_id: str) -> dict[str, Any]:
    """Merge the slices into the report and check its invariants."""
    from cdr_reports.pipeline.aggregate import build_report
    from cdr_reports.pipeline.extract import SliceCounts
    from cdr_reports.pipeline.plan import period_from_dict

    period = period_from_dict(windows[0]["period"])
    report = build_report(period, [SliceCounts.from_dict(s) for s in slices], dag_run_id=run_id)
    return report.to_dict()


def load(report_data: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Replace the period's stored report in one transaction; returns a summary for XCom."""
    from cdr_reports.integration.connections import sql_engine
    from cdr_reports.pipeline.aggregate import Report
    from cdr_reports.pipeline.load import load_report

    report = Report.from_dict(report_data)
    where = f"via connection {settings.sql_conn_id!r} (CDR_SQL_CONN_ID)"
    with fail_fast(f"loading the {report.report_type} report of {report.period_start} {where}"):
        result = load_report(sql_engine(settings), report, schema=settings.sql_schema)
    return {
        "report_type": report.report_type,
        "period_start": report.period_start.isoformat(),
        "operators": result.operator_rows,
        "replaced_rows": result.replaced_operator_rows,
        "source_records": report.source_records,
        "valid_records": report.valid_records,
        "rejected_records": report.rejected_records,
    }
