"""The CSV of a stored report: every column of ``cdr_operator_report``, one line per operator.

Cells are neutralised against spreadsheet formula injection (OWASP "CSV injection"): a text
cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
apostrophe, so Excel, LibreOffice and Google Sheets show it as text instead of evaluating it.
Numbers are written as numbers (they are never negative in a report).
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

from cdr_reports.integration.report_view.queries import StoredReport
from cdr_reports.pipeline import report_types

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """`value` made inert for spreadsheets (a leading apostrophe when it could start a formula)."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def cell(value: Any) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if value.tzinfo is None else "")
    if isinstance(value, date):
        return value.isoformat()
    return neutralise(str(value))


def report_csv(report: StoredReport) -> str:
    """The report as CSV text (RFC 4180 quoting, CRLF line ends, header line first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(report.columns)
    for row in report.rows:
        writer.writerow([cell(row.get(column)) for column in report.columns])
    return buffer.getvalue()


def csv_filename(report: StoredReport) -> str:
    # Named after the DAG that wrote it: cdr_daily_report_2026-11-27.csv.
    return f"{report_types.of(report.report_type).dag_id}_{report.period_start.isoformat()}.csv"
