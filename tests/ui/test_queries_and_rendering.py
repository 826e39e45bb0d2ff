"""The view's queries on the real SQL servers (SQLite and PostgreSQL), and its HTML/CSV/SVG output.

The queries run against reports stored by the pipeline's own load; the rendering is checked on
those stored reports, with operator ids and run ids chosen to break naive HTML and CSV.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from cdr_reports.integration.report_view import csv_export, queries, render
from cdr_reports.pipeline.load import load_report
from cdr_reports.pipeline.schema import report_tables
from tests.support.reports import make_report
from tests.ui.conftest import FORMULA_IDS, XSS_ATTR, XSS_SCRIPT

TZ = "Europe/Istanbul"


def _days(count: int, last: date = date(2026, 11, 27)) -> list:
    from cdr_reports.pipeline.periods import period_containing

    return [period_containing("daily", last - timedelta(days=n), TZ) for n in reversed(range(count))]


@pytest.fixture
def stored(sql_engine):
    """Five daily reports with 3 operators each (the last one also has the hostile ids)."""
    from dataclasses import replace

    from cdr_reports.pipeline.aggregate import OperatorRow

    periods = _days(5)
    for n, period in enumerate(periods):
        report = make_report(f"d{n}", range(3), base=10 * (n + 1), period=period)
        if n == len(periods) - 1:
            # Stored directly (validity would reject a tab): the CSV's tab rule is checked too.
            hostile = (XSS_SCRIPT, XSS_ATTR, *FORMULA_IDS, "\tTAB")
            extra = tuple(OperatorRow(op, 2, 1, 30, 0.5, 30.0) for op in hostile)
            rows = tuple(sorted(report.rows + extra, key=lambda r: r.operator_id))
            report = replace(
                report,
                rows=rows,
                valid_records=report.valid_records + 2 * len(extra),
                source_records=report.source_records + 2 * len(extra),
                dag_run_id='manual__<b>"x"</b>',
            )
        load_report(sql_engine, report)
    return sql_engine, periods


def test_periods_latest_and_containing_day(stored):
    engine, periods = stored
    listed = queries.list_periods(engine, "daily", limit=3)
    assert [p.period_start for p in listed] == [p.start_date for p in reversed(periods)][:3]
    assert queries.find_period(engine, "daily", None) == periods[-1].start_date
    assert queries.find_period(engine, "daily", periods[1].start_date) == periods[1].start_date
    assert queries.find_period(engine, "daily", date(2020, 1, 1)) is None
    assert queries.find_period(engine, "weekly", None) is None
    assert (
        queries.list_periods(engine, "daily", limit=10**9) and len(queries.list_periods(engine, "daily", limit=0)) == 1
    )


def test_trend_is_bounded_ordered_and_per_operator(stored):
    engine, periods = stored
    overall = queries.read_trend(engine, "daily", periods=10**6)
    assert [p.period_start for p in overall.points] == [p.start_date for p in periods]
    assert [p.total_calls for p in overall.points][:4] == [sum(10 * (n + 1) + i for i in range(3)) for n in range(4)]
    last_two = queries.read_trend(engine, "daily", periods=2, until=periods[-2].start_date)
    assert [p.period_start for p in last_two.points] == [periods[-3].start_date, periods[-2].start_date]
    hostile = queries.read_trend(engine, "daily", periods=5, operator_id=XSS_SCRIPT)
    assert [p.total_calls for p in hostile.points] == [0, 0, 0, 0, 2]
    assert hostile.points[0].answer_ratio is None and hostile.points[-1].answer_ratio == 0.5


def test_reads_cannot_write(stored):
    engine, _ = stored
    with pytest.raises(sa.exc.DBAPIError), queries.read_only(engine) as conn:
        conn.exec_driver_sql("DELETE FROM cdr_report_run")
    # ...and the pooled connection is usable for writing again afterwards (SQLite's pragma reset).
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE cdr_report_run SET operators = operators")
    assert len(queries.list_periods(engine, "daily")) == 5


def test_page_table_chart_and_csv_of_a_hostile_report(stored):
    engine, periods = stored
    report = queries.read_stored_report(engine, "daily", periods[-1].start_date)
    assert report is not None and all(ok for _, ok in report.checks())
    trend = queries.read_trend(engine, "daily", 30, operator_id=XSS_ATTR, until=report.period_start)
    model = render.PageModel(
        prefix="/cdr-reports",
        airflow_base="",
        report_types=["daily", "weekly"],
        report_type="daily",
        periods=queries.list_periods(engine, "daily"),
        report=report,
        operators=queries.operator_choices(report),
        operator=XSS_ATTR,
        trend=trend,
    )
    html = render.page_html(model)
    assert XSS_SCRIPT not in html and XSS_ATTR not in html and "<b>" not in html
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/cdr-reports/static/app.js" defer>']
    assert 'href="/dags/cdr_daily_report/runs/manual__%3Cb%3E%22x%22%3C%2Fb%3E"' in html
    assert ">manual__&lt;b&gt;&quot;x&quot;&lt;/b&gt;</a>" in html
    # Every cdr_operator_report column is a header; one body row per operator; totals in <tfoot>.
    assert re.findall(r'<th scope="col"[^>]*title="([^"]+)"', html) == render.display_columns(report)
    assert sorted(render.display_columns(report)) == sorted(c.name for c in report_tables().operator.columns)
    assert html.count("<tr><td") == len(report.rows) == 3 + 2 + len(FORMULA_IDS) + 1
    # The chart is well-formed XML with the hostile id escaped in its title.
    svg = re.search(r"<svg .*?</svg>", html, re.S).group(0)
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)
    assert root.find("{http://www.w3.org/2000/svg}title").text.startswith(f"Daily trend, operator {XSS_ATTR}")
    # The CSV: header = columns, formula cells neutralised, everything else verbatim.
    lines = list(csv.reader(io.StringIO(csv_export.report_csv(report), newline="")))
    assert lines[0] == list(report.columns)
    cells = [cell for line in lines[1:] for cell in line]
    assert not any(cell.startswith(csv_export.FORMULA_TRIGGERS) for cell in cells)
    assert {"'" + op for op in (*FORMULA_IDS, "\tTAB")} <= set(cells) and XSS_SCRIPT in cells


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@A1", "'@A1"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=1", "a=1"),
        ("", ""),
        ("'=", "'="),
    ],
)
def test_neutralise(value, expected):
    assert csv_export.neutralise(value) == expected


def test_csv_numbers_stay_numbers():
    assert csv_export.cell(-5) == -5 and csv_export.cell(0.5) == 0.5 and csv_export.cell(None) == ""


@pytest.mark.parametrize(
    ("maximum", "top"), [(0, 4), (1, 4), (5, 8), (9, 12), (127, 200), (850, 1000), (1000, 1000), (12345, 20000)]
)
def test_axis_has_whole_ticks_above_the_maximum(maximum, top):
    assert 4 * render._axis_step(maximum) == top >= maximum


def test_empty_trend_and_missing_report_pages():
    assert 'id="trend-empty"' in render.trend_svg(queries.Trend("weekly", None))
    html = render.page_html(
        render.PageModel(prefix="/p", airflow_base="", report_types=["daily"], report_type="daily", periods=[], report=None,
                         requested_period=date(2026, 1, 2))
    )  # fmt: skip
    assert "No daily report is stored for 2026-01-02." in html
