"""Readable text tables of stored reports (what `make demo` prints).

The end-to-end test parses this text back, so keep it regular: one header line per report,
a column line, one line per operator (operator id first, then five numeric columns, no
thousands separators), a TOTAL line and a `run:` line with the run row's counts and how it was built (method: extract,
rollup or mixed, and the days extracted from MongoDB).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa

from cdr_reports.pipeline.load import read_report
from cdr_reports.pipeline.periods import REPORT_TYPES
from cdr_reports.pipeline.schema import report_tables

# Short headers of the printed table, keyed by the schema's metric columns (schema.METRIC_COLUMNS,
# checked by tests/unit/test_schema.py) so that a column added to the report cannot be forgotten here.
HEADERS = {
    "operator_id": "operator",
    "total_calls": "calls",
    "answered_calls": "answered",
    "answer_ratio": "ratio",
    "total_duration_seconds": "duration_s",
    "avg_answered_duration_seconds": "avg_s",
}
COLUMNS = tuple(HEADERS.values())


def _avg(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _days(run: Mapping[str, Any]) -> str:
    """Days read from MongoDB (`-`: a report stored before the roll-up release records none)."""
    days = run.get("days_extracted")
    return "-" if days is None else str(days)


def format_report(stored: Mapping[str, Any]) -> str:
    """One stored report (`load.read_report` output) as a text table."""
    run, rows = stored["run"], stored["rows"]
    start, end = run["period_start"], run["period_end"]
    lines = [f"== {run['report_type']} report {start} .. {end} (exclusive), local time {run['time_zone']} =="]
    body = [
        (
            str(row["operator_id"]),
            str(row["total_calls"]),
            str(row["answered_calls"]),
            f"{row['answer_ratio']:.4f}",
            str(row["total_duration_seconds"]),
            _avg(row["avg_answered_duration_seconds"]),
        )
        for row in rows
    ]
    calls = sum(int(row["total_calls"]) for row in rows)
    answered = sum(int(row["answered_calls"]) for row in rows)
    seconds = sum(int(row["total_duration_seconds"]) for row in rows)
    total = (
        "TOTAL",
        str(calls),
        str(answered),
        f"{answered / calls:.4f}" if calls else "-",
        str(seconds),
        _avg(seconds / answered if answered else None),
    )
    widths = [max(len(cells[i]) for cells in (COLUMNS, *body, total)) for i in range(len(COLUMNS))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join(
            [first, *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=False))]
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    lines += [line(COLUMNS), rule, *(line(cells) for cells in body), rule, line(total)]
    lines.append(
        f"run: source={run['source_records']} valid={run['valid_records']} rejected={run['rejected_records']} "
        f"operators={run['operators']} method={run.get('method') or '-'} days_extracted={_days(run)} "
        f"dag_run_id={run['dag_run_id']} generated_at={run['generated_at']:%Y-%m-%d %H:%M:%S} UTC"
    )
    return "\n".join(lines)


def latest_period_starts(engine: sa.engine.Engine, schema: str | None = None) -> dict[str, date]:
    """The most recent stored period of each report type."""
    run = report_tables(schema).run
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(run.name, schema=schema):
            return {}
        rows = conn.execute(
            sa.select(run.c.report_type, sa.func.max(run.c.period_start)).group_by(run.c.report_type)
        ).all()
    return dict(rows)


def format_reports(
    engine: sa.engine.Engine,
    periods: Mapping[str, date] | None = None,
    schema: str | None = None,
) -> str:
    """The given (report_type -> period_start) reports, else the latest of each type, as tables."""
    wanted = dict(periods) if periods is not None else latest_period_starts(engine, schema)
    blocks = []
    for report_type in sorted(wanted, key=lambda t: REPORT_TYPES.index(t) if t in REPORT_TYPES else len(REPORT_TYPES)):
        stored = read_report(engine, report_type, wanted[report_type], schema=schema)
        if stored is None:
            blocks.append(f"== {report_type} report {wanted[report_type]}: not stored ==")
        else:
            blocks.append(format_report(stored))
    return "\n\n".join(blocks) if blocks else "(no reports stored)"
