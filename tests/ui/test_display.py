"""Operator ids that try to break or spoof the display (report_view/display.py), in the view, e-mail and chart.

A stored report carries a 255-character id, a right-to-left override (`abc\u202egnp.exe`, which
renders as "abcexe.png"), zero-width characters and a no-break space. The HTML shows each
invisible or direction-changing character as its escape, isolated in `<bdi>`, wrapped in the
table and shortened in the chart-operator select; the CSV keeps the exact stored values.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import date

import pytest

from cdr_reports.integration.report_view import csv_export, queries, render
from cdr_reports.integration.report_view.display import short_text, visible_text
from cdr_reports.pipeline.load import load_report
from tests.support.reports import make_report

LONG = "L" * 250 + "-tail"  # 255 characters, the longest valid id
RTL = "abc\u202egnp.exe"
ZERO_WIDTH = "op\u200b-001"  # looks exactly like "op-001"
NBSP = "op\u00a0001"
HIDDEN = ("\u202e", "\u200b", "\u00a0", "\u2066", "\u200f")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (RTL, "abc\\u202Egnp.exe"),
        (ZERO_WIDTH, "op\\u200B-001"),
        (NBSP, "op\\u00A0001"),
        ("\u2066x\u2069\u200f", "\\u2066x\\u2069\\u200F"),  # isolates, RLM
        ("a\tb\nc", "a\\u0009b\\u000Ac"),  # controls
        ("tag\U000e0041", "tag\\U000E0041"),  # an invisible tag character
        ("abc\\u202Egnp", "abc\\\\u202Egnp"),  # a literal backslash cannot pass for an escape
        ("Türk Telekom", "Türk Telekom"),  # ordinary letters, Turkish...
        ("שלום-01", "שלום-01"),  # ...and right-to-left letters stay themselves (<bdi> isolates them)
        ("op 001", "op 001"),
        (None, ""),
        (42, "42"),
    ],
)
def test_visible_text(value, shown):
    assert visible_text(value) == shown


def test_short_text_keeps_the_start_and_says_it_is_cut():
    assert short_text("x" * 40) == "x" * 40
    assert short_text(LONG) == "L" * 39 + "…"
    assert len(short_text(LONG)) == 40
    assert short_text(RTL) == "abc\\u202Egnp.exe"


@pytest.fixture
def stored(sqlite_engine):
    from cdr_reports.pipeline.aggregate import OperatorRow

    report = make_report("display", range(2), 50)
    extra = tuple(OperatorRow(op, 4, 2, 60, 0.5, 30.0) for op in (LONG, RTL, ZERO_WIDTH, NBSP))
    report = replace(
        report,
        rows=tuple(sorted(report.rows + extra, key=lambda r: r.operator_id)),
        valid_records=report.valid_records + 16,
        source_records=report.source_records + 16,
    )
    load_report(sqlite_engine, report)
    stored = queries.read_stored_report(sqlite_engine, "daily", date(2026, 11, 27))
    assert stored is not None
    return sqlite_engine, stored


def _assert_nothing_hidden(html: str) -> None:
    assert not [c for c in HIDDEN if c in html], [hex(ord(c)) for c in HIDDEN if c in html]


def test_view_shows_ids_visibly_wrapped_and_isolated(stored):
    engine, report = stored
    trend = queries.read_trend(engine, "daily", 10, operator_id=RTL, until=report.period_start)
    model = render.PageModel(
        prefix="/cdr-reports",
        airflow_base="",
        report_types=["daily"],
        report_type="daily",
        periods=queries.list_periods(engine, "daily"),
        report=report,
        operators=queries.operator_choices(report),
        operator=RTL,
        trend=trend,
    )
    html = render.page_html(model)
    _assert_nothing_hidden(html)
    # Table: every id whole (it wraps: class "text"), escaped, in its own <bdi>.
    cells = re.findall(r'<td data-v="[^"]*" class="text"><bdi>([^<]*)</bdi></td>', html)
    assert LONG in cells and "abc\\u202Egnp.exe" in cells and "op\\u200B-001" in cells and "op\\u00A0001" in cells
    # The select: the exact id as the value (a character reference the browser decodes to the very
    # character, so the query gets it back), a short visible label.
    assert f'<option value="{LONG}">{"L" * 39}…</option>' in html
    assert '<option value="abc&#x202E;gnp.exe" selected>abc\\u202Egnp.exe</option>' in html
    assert 'data-v="op&#x200B;-001" class="text"' in html
    # Chart heading and SVG title.
    assert 'operator <bdi title="abc\\u202Egnp.exe">abc\\u202Egnp.exe</bdi>' in html
    svg = re.search(r"<svg .*?</svg>", html, re.S).group(0)
    title = ET.fromstring(svg).find("{http://www.w3.org/2000/svg}title").text
    assert title.startswith("Daily trend, operator abc\\u202Egnp.exe")


def test_email_shows_ids_visibly(stored):
    _, report = stored
    html = render.email_html(report, corrected=False)
    _assert_nothing_hidden(html)
    assert "<bdi>abc\\u202Egnp.exe</bdi>" in html and "<bdi>op\\u200B-001</bdi>" in html
    assert f"<bdi>{LONG}</bdi>" in html
    assert "word-break:break-all;max-width:28em" in html


def test_csv_keeps_the_exact_ids(stored):
    _, report = stored
    rows = list(csv.reader(io.StringIO(csv_export.report_csv(report), newline="")))
    ids = {row[rows[0].index("operator_id")] for row in rows[1:]}
    assert {LONG, RTL, ZERO_WIDTH, NBSP} <= ids
