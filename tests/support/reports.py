"""Known reports for the sink tests, and a comparable view of what a sink stores."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from cdr_reports.pipeline.aggregate import OperatorRow, Report
from cdr_reports.pipeline.load import read_report
from cdr_reports.pipeline.periods import ReportPeriod, period_containing
from cdr_reports.pipeline.schema import report_tables

TZ = "Europe/Istanbul"
DAY = period_containing("daily", date(2026, 11, 27), TZ)


def make_report(tag: str, operators: range, base: int, period=DAY) -> Report:
    """A complete report whose every number identifies it (`base`), over `operators`."""
    rows = tuple(
        OperatorRow(
            operator_id=f"op-{i:03d}",
            total_calls=base + i,
            answered_calls=(base + i) // 2,
            total_duration_seconds=(base + i) * 60,
            answer_ratio=((base + i) // 2) / (base + i),
            avg_answered_duration_seconds=120.0,
        )
        for i in operators
    )
    valid = sum(row.total_calls for row in rows)
    return Report(
        report_type=period.report_type,
        period_start=period.start_date,
        period_end=period.end_date,
        time_zone=period.tz_name,
        source_records=valid + base,
        valid_records=valid,
        rejected_records=base,
        rows=tuple(sorted(rows, key=lambda r: r.operator_id)),
        generated_at=datetime(2026, 11, 28, 0, 0, tzinfo=UTC),
        dag_run_id=f"run-{tag}",
    )


def expected_state(report: Report) -> dict[str, Any]:
    return {
        "run": (
            report.dag_run_id,
            report.source_records,
            report.valid_records,
            report.rejected_records,
            report.operators,
        ),
        "rows": {
            r.operator_id: (r.total_calls, r.answered_calls, r.total_duration_seconds, report.dag_run_id)
            for r in report.rows
        },
    }


def stored_state(engine: sa.engine.Engine, period=DAY, schema: str | None = None) -> dict[str, Any] | None:
    """What the sink holds for the period, in the shape of expected_state (None: nothing)."""
    stored = read_report(engine, period.report_type, period.start_date, schema=schema)
    if stored is None:
        return None
    run = stored["run"]
    return {
        "run": (
            run["dag_run_id"],
            run["source_records"],
            run["valid_records"],
            run["rejected_records"],
            run["operators"],
        ),
        "rows": {
            r["operator_id"]: (r["total_calls"], r["answered_calls"], r["total_duration_seconds"], r["dag_run_id"])
            for r in stored["rows"]
        },
    }


def row_counts(engine: sa.engine.Engine, schema: str | None = None) -> dict[str, int]:
    """Physical row counts per table (duplicates would show here even if a read hid them)."""
    tables = report_tables(schema)
    with engine.connect() as conn:
        return {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (tables.operator, tables.run)
        }


def assert_stored_equals_reference(engine: sa.engine.Engine, expected: dict[str, Any], period=DAY) -> None:
    """The stored report of `period` is exactly tests/reference.expected_report's numbers."""
    import pytest

    stored = read_report(engine, period.report_type, period.start_date)
    assert stored is not None, "no report stored"
    run = stored["run"]
    assert (run["source_records"], run["valid_records"], run["rejected_records"]) == (
        expected["source"],
        expected["valid"],
        expected["rejected"],
    )
    assert run["operators"] == len(expected["rows"])
    rows = {row["operator_id"]: row for row in stored["rows"]}
    assert set(rows) == set(expected["rows"])
    for key, want in expected["rows"].items():
        got = rows[key]
        assert (got["total_calls"], got["answered_calls"], got["total_duration_seconds"]) == (
            want["total_calls"],
            want["answered_calls"],
            want["total_duration_seconds"],
        ), key
        assert got["answer_ratio"] == pytest.approx(want["answer_ratio"]), key
        if want["avg_answered_duration_seconds"] is None:
            assert got["avg_answered_duration_seconds"] is None, key
        else:
            assert got["avg_answered_duration_seconds"] == pytest.approx(want["avg_answered_duration_seconds"]), key


def store_daily_reports(
    collection: Any, engine: sa.engine.Engine, period: ReportPeriod, settings: Any, skip=()
) -> None:
    """What the daily runs of `period`'s local days leave behind: their stored reports (days in `skip` left out)."""
    from cdr_reports.pipeline.rollup import period_days
    from cdr_reports.pipeline.runner import run_report

    for day in period_days(period):
        if day not in skip:
            run_report(collection, engine, period_containing("daily", day, period.tz_name), settings, f"daily-{day}")
