"""The whole report for one period, without Airflow: extract every slice, aggregate, load.

The DAG tasks call the same functions one step per task; this module is what the tests, the
demo and the benchmarks call directly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cdr_reports.pipeline import extract
from cdr_reports.pipeline.aggregate import Report, build_report
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.extract import SliceCounts
from cdr_reports.pipeline.periods import ReportPeriod


def extract_window(collection: Any, start: datetime, end: datetime, settings: Settings) -> SliceCounts:
    """One slice, with the filter, rules and strategy of the settings (what each extract task does)."""
    return extract.extract_slice(
        collection, start, end, settings.global_filter, settings.max_call_duration_seconds, settings.extract_strategy
    )


def extract_period(collection: Any, period: ReportPeriod, settings: Settings) -> list[SliceCounts]:
    slices = period.slices(settings.slices_for(period.report_type))
    return [extract_window(collection, start, end, settings) for start, end in slices]


def run_report(collection: Any, engine: Any, period: ReportPeriod, settings: Settings, dag_run_id: str) -> Report:
    from cdr_reports.pipeline.load import load_report

    report = build_report(period, extract_period(collection, period, settings), dag_run_id=dag_run_id)
    load_report(engine, report, schema=settings.sql_schema)
    return report
