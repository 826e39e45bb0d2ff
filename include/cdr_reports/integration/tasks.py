"""The bodies of the report DAG's tasks: plan → extract (mapped) → aggregate → load.

`dag_factory` wraps each in a thin `@task`; the bodies take plain values (the settings, the
XCom payloads, the fields of the run they need), so they read like the pipeline they drive.
Heavy imports (pymongo, SQLAlchemy, provider hooks) happen here, at run time, never at parse;
so do the pipeline modules (runner, extract, aggregate...), which the DAG processor need not load
to parse the DAG files (tests/dags/test_top_level_imports.py keeps them out).
"""

from __future__ import annotations

import heapq
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cdr_reports.integration.failures import fail_fast
from cdr_reports.pipeline.config import Settings

log = logging.getLogger(__name__)

# Task logs name a bounded sample of operators, never all of them: a day of 100,000 operators
# once wrote 27 MB of log per run, its XCom return values printed in full (issue 22). Airflow's
# own "Returned value was" line is off for every task (task_policy.task_default_args).
LOG_SAMPLE = 3
_LOG_ID_CHARS = 40


def _sample(calls: Iterable[tuple[str, int]], operators: int) -> str:
    """The LOG_SAMPLE operators with the most calls, ids cut to a readable length."""
    top = heapq.nlargest(LOG_SAMPLE, calls, key=lambda item: (item[1], item[0]))
    shown = ", ".join(f"{key[:_LOG_ID_CHARS]!r}{'...' if len(key) > _LOG_ID_CHARS else ''}: {n}" for key, n in top)
    return f"top {len(top)} of {operators:,} operators by calls: {shown}" if top else "no operators"


def _xcom_bytes(payload: Mapping[str, Any]) -> int:
    return len(json.dumps(payload, separators=(",", ":"), default=str))


def plan(report_type: str, settings: Settings, context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's period as windows: one mapped `extract` each.

    A daily period (or any, with `CDR_ROLLUP=off`) is split into `CDR_EXTRACT_SLICES[_<TYPE>]`
    slices of CDRs. A weekly or monthly period is split into runs of days: those whose stored
    daily report qualifies are rolled up, the others extracted (pipeline/rollup.py).
    """
    from cdr_reports.pipeline.plan import resolve_period
    from cdr_reports.pipeline.rollup import rules_fingerprint
    from cdr_reports.pipeline.runner import plan_report_windows, rolls_up

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
    where = f"reading which daily reports qualify via connection {settings.sql_conn_id!r} (CDR_SQL_CONN_ID)"
    with fail_fast(where if rolls_up(report_type, settings) else "planning the windows"):
        from cdr_reports.integration.connections import sql_engine

        engine = sql_engine(settings) if rolls_up(report_type, settings) else None
        windows = plan_report_windows(engine, period, settings, rules_fingerprint(settings))
    log.info(
        "reporting %s: %s .. %s UTC in %d slice(s)", period.label(), period.start_utc, period.end_utc, len(windows)
    )
    return windows


def extract(window: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Counts of one window: CDRs by the extract strategy that suits the server, or stored daily reports."""
    from bson import json_util

    from cdr_reports.integration.connections import mongo_collection, sql_engine
    from cdr_reports.pipeline.rollup import ROLLUP
    from cdr_reports.pipeline.runner import count_window

    # The message names the connection, the filter and their settings: what to fix when wrong.
    where = (
        f"connection {settings.mongo_conn_id!r} (CDR_MONGO_CONN_ID), "
        f"CDR_GLOBAL_FILTER={json_util.dumps(settings.global_filter)}"
    )
    with fail_fast(f"extracting {window['start']}..{window['end']} via {where}"):
        engine = sql_engine(settings) if window.get("method") == ROLLUP else None
        counts = count_window(lambda: mongo_collection(settings), engine, dict(window), settings)
    payload = counts.to_dict()
    log.info(
        "returning the counts of %s..%s: source=%d valid=%d rejected=%d, %s; XCom %s bytes (per-operator counts packed)",
        window["start"],
        window["end"],
        counts.source_records,
        counts.valid_records,
        counts.rejected_records,
        _sample(counts.total_calls.items(), len(counts.total_calls)),
        f"{_xcom_bytes(payload):,}",
    )
    return payload


def aggregate(windows: list[dict[str, Any]], slices: list[dict[str, Any]], run_id: str) -> dict[str, Any]:
    """Merge the slices into the report and check its invariants."""
    from cdr_reports.pipeline.aggregate import build_report
    from cdr_reports.pipeline.extract import SliceCounts
    from cdr_reports.pipeline.plan import period_from_dict

    period = period_from_dict(windows[0]["period"])
    report = build_report(
        period,
        (SliceCounts.from_dict(s) for s in slices),  # decoded one at a time, as build_report merges them
        dag_run_id=run_id,
        rules_fingerprint=windows[0].get("rules_fingerprint"),
    )
    payload = report.to_dict()
    log.info(
        "returning the %s report of %s: %s, source=%d valid=%d rejected=%d; XCom %s bytes (rows packed)",
        report.report_type,
        report.period_start,
        _sample(((row.operator_id, row.total_calls) for row in report.rows), report.operators),
        report.source_records,
        report.valid_records,
        report.rejected_records,
        f"{_xcom_bytes(payload):,}",
    )
    return payload


def load(report_data: Mapping[str, Any], settings: Settings, rebuild_reason: str | None = None) -> dict[str, Any]:
    """Replace the period's stored report in one transaction; returns a summary for XCom.

    A roll-up whose daily reports were replaced after `extract` read them (a late-data re-report,
    a re-run) is not stored stale: it is built again here, in this task, from what is stored now.
    A weekly or monthly report's `rebuilt` finding commits in the same transaction
    (rollup_tasks.rebuilt_finding): why this run rebuilt it, or none when this run is not a rebuild.
    """
    from cdr_reports.integration.connections import mongo_collection, sql_engine
    from cdr_reports.pipeline.aggregate import Report
    from cdr_reports.pipeline.load import load_report
    from cdr_reports.pipeline.periods import period_containing
    from cdr_reports.pipeline.rollup import StaleRollupError
    from cdr_reports.pipeline.runner import run_report

    report = Report.from_dict(report_data)
    where = f"via connection {settings.sql_conn_id!r} (CDR_SQL_CONN_ID)"
    with fail_fast(f"loading the {report.report_type} report of {report.period_start} {where}"):
        engine = sql_engine(settings)
        also = None
        if report.report_type != "daily":
            from cdr_reports.integration.rollup_tasks import rebuilt_finding

            also = rebuilt_finding(engine, report, rebuild_reason, settings)
        try:
            result = load_report(engine, report, schema=settings.sql_schema, also=also)
        except StaleRollupError as exc:
            log.warning("%s", exc)
            period = period_containing(report.report_type, report.period_start, report.time_zone, settings.week_start)
            report = run_report(mongo_collection(settings), engine, period, settings, report.dag_run_id, also=also)
            result = None  # stored by the rebuild
    return {
        "report_type": report.report_type,
        "period_start": report.period_start.isoformat(),
        "operators": report.operators,
        "replaced_rows": result.replaced_operator_rows if result is not None else None,
        "source_records": report.source_records,
        "valid_records": report.valid_records,
        "rejected_records": report.rejected_records,
        "method": report.method,
        "days_extracted": report.days_extracted,
    }
