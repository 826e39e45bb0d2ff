"""HTML of the report view and of the report e-mail, and the server-side SVG trend chart.

Every value that comes from the database or the request goes through ``esc`` (``html.escape``
with quotes), text and attributes alike; URLs are built with ``urllib.parse``. The page loads
its script and stylesheet from the api-server only (``static/``), allows nothing else by its
Content-Security-Policy, and draws the chart as inline SVG whose colours are CSS variables
switched by ``prefers-color-scheme`` or by the Airflow UI's own light/dark choice (``app.js``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, urlencode

from cdr_reports.integration.report_view.display import attribute_value, short_text, visible_text
from cdr_reports.integration.report_view.queries import (
    MAX_TREND_PERIODS,
    PER_REPORT_COLUMNS,
    PeriodInfo,
    StoredReport,
    Trend,
    period_days,
)
from cdr_reports.pipeline import report_types

COLUMN_LABELS = {
    "operator_id": "Operator",
    "total_calls": "Calls",
    "answered_calls": "Answered",
    "answer_ratio": "Answer ratio",
    "total_duration_seconds": "Duration (s)",
    "avg_answered_duration_seconds": "Avg answered duration (s)",
    "report_type": "Type",
    "period_start": "Period start",
    "period_end": "Period end (excl.)",
    "generated_at": "Generated (UTC)",
    "dag_run_id": "DAG run",
}
INTEGER_COLUMNS = frozenset({"total_calls", "answered_calls", "total_duration_seconds"})
RATIO_COLUMNS = frozenset({"answer_ratio"})
DECIMAL_COLUMNS = frozenset({"avg_answered_duration_seconds"})
NUMERIC_COLUMNS = INTEGER_COLUMNS | RATIO_COLUMNS | DECIMAL_COLUMNS

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


# ----------------------------------------------------------------------------- formatting


def fmt_int(value: Any) -> str:
    return "" if value is None else f"{int(value):,}"


def fmt_ratio(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.1f}%"


def fmt_decimal(value: Any) -> str:
    return "–" if value is None else f"{float(value):,.1f}"


def fmt_cell(column: str, value: Any) -> str:
    if column in INTEGER_COLUMNS:
        return fmt_int(value)
    if column in RATIO_COLUMNS:
        return fmt_ratio(value)
    if column in DECIMAL_COLUMNS:
        return fmt_decimal(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


def sort_value(column: str, value: Any) -> str:
    """The raw value the client-side sort compares (numbers as numbers, empty sorts first)."""
    if value is None:
        return ""
    if column in NUMERIC_COLUMNS:
        return repr(float(value))
    return fmt_cell(column, value)


def display_columns(report: StoredReport) -> list[str]:
    """Every column of cdr_operator_report: operator first, then measures, then the per-report ones."""
    columns = list(report.columns)
    head = [c for c in columns if c == "operator_id"]
    measures = [c for c in columns if c not in head and c not in PER_REPORT_COLUMNS]
    tail = [c for c in columns if c in PER_REPORT_COLUMNS]
    return head + measures + tail


def period_label(report_type: str, start: date, end: date) -> str:
    return f"{report_type} {period_days(report_type, start, end)}"


def airflow_run_path(airflow_base: str, dag_id: str, run_id: str) -> str:
    """The Airflow UI page of one DAG run (`airflow_base` is the UI's root path, "" at the host root)."""
    return f"{airflow_base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


# ----------------------------------------------------------------------------- reconciliation


def reconciliation_parts(report: StoredReport) -> list[tuple[str, str]]:
    """(label, value) pairs of the cdr_report_run line; the extract strategy when the run row has one."""
    run = report.run
    parts = [
        ("source", fmt_int(run["source_records"])),
        ("valid", fmt_int(run["valid_records"])),
        ("rejected", fmt_int(run["rejected_records"])),
        ("operators", fmt_int(run["operators"])),
    ]
    strategy = run.get("extract_strategy", run.get("strategy"))
    if strategy is not None:
        parts.append(("strategy", str(strategy)))
    method = run.get("method")
    if method is not None:
        # How the numbers were computed: a roll-up of stored daily reports, CDRs, or both.
        days = run.get("days_extracted")
        parts.append(
            (
                "method",
                f"{method} ({days} day{'s' if days != 1 else ''} extracted)" if days is not None else str(method),
            )
        )
    return parts


def reconciliation_text(report: StoredReport) -> str:
    return " · ".join(f"{label} {value}" for label, value in reconciliation_parts(report))


def reconciliation_html(report: StoredReport, run_link: str | None = None) -> str:
    run = report.run
    items = "".join(
        f'<span class="recon-item" data-field="{esc(label)}"><span class="recon-label">{esc(label)}</span> '
        f"<strong>{esc(value)}</strong></span>"
        for label, value in reconciliation_parts(report)
    )
    generated = run["generated_at"]
    generated_text = generated.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(generated, datetime) else esc(generated)
    run_id = esc(run["dag_run_id"])
    run_html = f'<a href="{esc(run_link)}" data-airflow-link="1">{run_id}</a>' if run_link else f"<code>{run_id}</code>"
    return (
        f'<p class="recon" id="reconciliation">{items}</p>'
        f'<p class="meta">Time zone <strong>{esc(run["time_zone"])}</strong> · generated {esc(generated_text)} '
        f"by DAG run {run_html}</p>"
    )


def checks_html(report: StoredReport, *, inline_style: bool = False) -> str:
    items = []
    for text, ok in report.checks():
        mark = "✓" if ok else "✗"
        if inline_style:
            colour = "#1a7f37" if ok else "#cf222e"
            items.append(f'<li><span style="color:{colour};font-weight:bold">{mark}</span> {esc(text)}</li>')
        else:
            items.append(f'<li class="{"ok" if ok else "bad"}"><span class="mark">{mark}</span> {esc(text)}</li>')
    return f'<ul class="checks" id="checks">{"".join(items)}</ul>'


VERDICT_TEXT = {
    "drop": "volume drop",
    "vanished": "vanished",
    "new": "new operator",
    "late_data": "late data",
    "rebuilt": "rebuilt",
}


def quality_html(report: StoredReport, *, email: bool = False) -> str:
    """The period's stored data-quality findings (cdr_quality_check); nothing when that table is absent."""
    if report.quality is None:
        return ""
    title = (
        "<p><strong>Data-quality findings</strong></p>"
        if email
        else '<h3 class="quality-title">Data-quality findings</h3>'
    )
    if not report.quality:
        return f'{title}<p class="quality-none" id="quality">None for this period.</p>'
    items = []
    for finding in report.quality:
        verdict = VERDICT_TEXT.get(str(finding.get("verdict")), str(finding.get("verdict")))
        who = f"operator {visible_text(finding['operator_id'])}: " if finding.get("operator_id") else ""
        items.append(f'<li data-verdict="{esc(finding.get("verdict"))}"><strong>{esc(verdict)}</strong> '
                     f"{esc(who)}{esc(finding.get('detail') or '')}</li>")  # fmt: skip
    return f'{title}<ul class="quality" id="quality">{"".join(items)}</ul>'


# ----------------------------------------------------------------------------- table


def report_table_html(report: StoredReport, *, email: bool = False) -> str:
    """The operator table with a totals row; sortable in the view (app.js), inline-styled in e-mail."""
    columns = display_columns(report)
    totals = report.totals()
    cell_style = ' style="border:1px solid #d0d7de;padding:4px 8px;text-align:right"' if email else ""
    text_style = ' style="border:1px solid #d0d7de;padding:4px 8px;text-align:left"' if email else ""

    def td(column: str, value: Any) -> str:
        numeric = column in NUMERIC_COLUMNS
        if numeric:
            attrs = "" if email else f' data-v="{esc(sort_value(column, value))}" class="num"'
            return f"<td{attrs}{cell_style}>{esc(fmt_cell(column, value))}</td>"
        # Text from the source (operator ids...): invisible and bidi characters shown as escapes,
        # isolated from the neighbouring cells, wrapped when long (display.py).
        style = text_style.replace('text-align:left"', 'text-align:left;word-break:break-all;max-width:28em"')
        attrs = "" if email else f' data-v="{attribute_value(sort_value(column, value))}" class="text"'
        return f"<td{attrs}{style}><bdi>{esc(visible_text(fmt_cell(column, value)))}</bdi></td>"

    head = []
    for index, column in enumerate(columns):
        label = esc(COLUMN_LABELS.get(column, column))
        if email:
            head.append(f'<th style="border:1px solid #d0d7de;padding:4px 8px;background:#f6f8fa">{label}</th>')
        else:
            kind = "number" if column in NUMERIC_COLUMNS else "text"
            head.append(
                f'<th scope="col" aria-sort="none" data-col="{index}" data-type="{kind}" title="{esc(column)}"'
                + (' class="num"' if column in NUMERIC_COLUMNS else "")
                + f'><button type="button" class="sort">{label}<span class="arrow" aria-hidden="true"></span></button></th>'
            )
    body = "".join("<tr>" + "".join(td(column, row.get(column)) for column in columns) + "</tr>" for row in report.rows)
    total_cells = []
    for column in columns:
        if column == "operator_id":
            total_cells.append(f'<th scope="row"{text_style}>Total ({len(report.rows):,} operators)</th>')
        elif column in totals:
            total_cells.append(f'<td class="num"{cell_style}>{esc(fmt_cell(column, totals[column]))}</td>')
        else:
            total_cells.append(f"<td{text_style}></td>")
    table_attrs = (
        ' style="border-collapse:collapse;font-family:Arial,sans-serif;font-size:13px"'
        if email
        else ' id="report-table" class="report sortable"'
    )
    return (
        f"<table{table_attrs}><thead><tr>{''.join(head)}</tr></thead>"
        f"<tbody>{body}</tbody>"
        f'<tfoot><tr class="totals">{"".join(total_cells)}</tr></tfoot></table>'
    )


# ----------------------------------------------------------------------------- SVG chart


def _axis_step(maximum: float, ticks: int = 4) -> int:
    """A whole 1/2/2.5/3/5 x 10^k step so that `ticks` steps cover `maximum` (integer tick labels)."""
    needed = max(maximum / ticks, 1.0)
    magnitude = 10 ** math.floor(math.log10(needed))
    for factor in (1, 2, 2.5, 3, 5, 10):
        step = factor * magnitude
        if step >= needed and step == int(step):  # 2.5 only from 25 up: whole tick labels
            return int(step)
    return int(10 * magnitude)  # pragma: no cover - factor 10 always qualifies


def _short_label(report_type: str, start: date) -> str:
    if report_type == "monthly":
        return f"{start:%Y-%m}"
    return f"{start:%m-%d}"


@dataclass(frozen=True)
class _Plot:
    """Geometry of the chart: x per period index, y per calls (left axis) or ratio (right axis)."""

    width: int
    height: int
    count: int
    y_max: float
    left: int = 76
    right: int = 64
    top: int = 16
    bottom: int = 58

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom

    def x(self, i: int) -> float:
        return self.left + self.plot_w / self.count * (i + 0.5)

    def y_calls(self, value: float) -> float:
        return self.top + self.plot_h * (1 - value / self.y_max)

    def y_ratio(self, value: float) -> float:
        return self.top + self.plot_h * (1 - value)


def _svg_axes(plot: _Plot, report_type: str, points: Sequence[Any]) -> list[str]:
    """Grid, both axes with their ticks and titles, period labels (currentColor: the theme's text colour)."""
    left, top, plot_w, plot_h = plot.left, plot.top, plot.plot_w, plot.plot_h
    parts = []
    for k in range(5):
        yy = plot.y_calls(plot.y_max * k / 4)
        parts += [
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="currentColor"/>',
            (
                f'<text class="tick" x="{left - 8}" y="{yy + 4:.1f}" text-anchor="end" fill="currentColor">'
                f"{esc(fmt_int(plot.y_max * k / 4))}</text>"
            ),
            f'<text class="tick" x="{left + plot_w + 8}" y="{plot.y_ratio(k / 4) + 4:.1f}" fill="currentColor">{k * 25}%</text>',
        ]
    parts += [
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="currentColor"/>',
        f'<line class="axis" x1="{left + plot_w}" x2="{left + plot_w}" y1="{top}" y2="{top + plot_h}" stroke="currentColor"/>',
        f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="currentColor"/>',
        (
            f'<text class="axis-title" transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" '
            'fill="currentColor">calls</text>'
        ),
        (
            f'<text class="axis-title" transform="translate({plot.width - 10} {top + plot_h / 2:.1f}) rotate(90)" '
            'text-anchor="middle" fill="currentColor">answer ratio</text>'
        ),
    ]
    label_every = max(1, math.ceil(len(points) / 14))
    base = top + plot_h + 16
    for i, point in enumerate(points):
        if i % label_every == 0 or i == len(points) - 1:
            parts.append(
                f'<text class="tick" x="{plot.x(i):.1f}" y="{base}" text-anchor="end" fill="currentColor" '
                f'transform="rotate(-35 {plot.x(i):.1f} {base})">{esc(_short_label(report_type, point.period_start))}</text>'
            )
    return parts


def _polyline(css: str, coords: Sequence[tuple[float, float]]) -> list[str]:
    pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in coords)
    return [f'<polyline class="line {css}" fill="none" points="{pts}"/>'] if pts else []


def _svg_series(plot: _Plot, report_type: str, points: Sequence[Any]) -> list[str]:
    """The three lines, then one marker group per period (with a tooltip)."""
    parts = _polyline("s-total", [(plot.x(i), plot.y_calls(p.total_calls)) for i, p in enumerate(points)])
    parts += _polyline("s-answered", [(plot.x(i), plot.y_calls(p.answered_calls)) for i, p in enumerate(points)])
    # The ratio line breaks where a period had no calls (ratio undefined).
    segment: list[tuple[float, float]] = []
    for i, p in enumerate(points):
        if p.answer_ratio is None:
            parts += _polyline("s-ratio", segment)
            segment = []
        else:
            segment.append((plot.x(i), plot.y_ratio(p.answer_ratio)))
    parts += _polyline("s-ratio", segment)
    for i, p in enumerate(points):
        x = plot.x(i)
        label = period_label(report_type, p.period_start, p.period_end)
        tip = f"{label}: {p.total_calls:,} calls, {p.answered_calls:,} answered, ratio {fmt_ratio(p.answer_ratio)}"
        parts += [
            f'<g class="pt" data-period="{esc(p.period_start.isoformat())}"><title>{esc(tip)}</title>',
            f'<circle class="s-total" cx="{x:.1f}" cy="{plot.y_calls(p.total_calls):.1f}" r="3"/>',
            f'<rect class="s-answered" x="{x - 3:.1f}" y="{plot.y_calls(p.answered_calls) - 3:.1f}" width="6" height="6"/>',
        ]
        if p.answer_ratio is not None:
            cy = plot.y_ratio(p.answer_ratio)
            parts.append(
                f'<path class="s-ratio" d="M{x:.1f} {cy - 4:.1f} L{x + 4:.1f} {cy:.1f} L{x:.1f} {cy + 4:.1f} L{x - 4:.1f} {cy:.1f} Z"/>'
            )
        parts.append("</g>")
    return parts


LEGEND_HTML = (
    '<ul class="legend" aria-hidden="true">'
    '<li><span class="swatch s-total"></span>total calls</li>'
    '<li><span class="swatch s-answered"></span>answered calls</li>'
    '<li><span class="swatch dashed s-ratio"></span>answer ratio (right axis)</li></ul>'
)


def trend_svg(trend: Trend, *, width: int = 960, height: int = 320) -> str:
    """The trend as inline SVG: calls and answered calls (left axis), answer ratio (right axis, dashed).

    Drawn on the server (no chart library, nothing to download); colours are CSS classes of the
    page's stylesheet, axes and labels ``currentColor``, so both follow the light/dark theme.
    """
    points = trend.points
    if not points:
        return f'<p class="empty" id="trend-empty">No stored {esc(trend.report_type)} periods to chart.</p>'
    who = "all operators" if trend.operator_id is None else f"operator {visible_text(trend.operator_id)}"
    title = f"{report_types.of(trend.report_type).label} trend, {who}: {len(points)} period(s)"
    plot = _Plot(width, height, len(points), 4 * _axis_step(max(p.total_calls for p in points)))
    parts = [
        (
            '<svg id="trend-chart" class="chart" role="img" aria-labelledby="trend-title trend-desc" '
            f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet" '
            'xmlns="http://www.w3.org/2000/svg">'
        ),
        f'<title id="trend-title">{esc(title)}</title>',
        (
            '<desc id="trend-desc">Total calls and answered calls per period on the left axis, '
            "answer ratio in percent on the right axis.</desc>"
        ),
        *_svg_axes(plot, trend.report_type, points),
        *_svg_series(plot, trend.report_type, points),
        "</svg>",
    ]
    return "".join(parts) + LEGEND_HTML


# ----------------------------------------------------------------------------- page


@dataclass
class PageModel:
    """Everything the view's page shows; built by the app from the request and the queries."""

    prefix: str  # the plugin app's mount path, e.g. "/cdr-reports"
    airflow_base: str  # the Airflow UI's root path ("" at the host root)
    report_types: Sequence[str]  # the types this user may read
    report_type: str
    periods: Sequence[PeriodInfo]
    report: StoredReport | None
    requested_period: date | None = None
    operators: Sequence[str] = field(default_factory=list)
    operator: str | None = None
    trend_periods: int = 30
    trend: Trend | None = None
    user: str = ""


def _options(values: Iterable[tuple[str, str]], selected: str | None) -> str:
    return "".join(
        f'<option value="{attribute_value(value)}"{" selected" if value == selected else ""}>{esc(label)}</option>'
        for value, label in values
    )


def page_html(model: PageModel) -> str:
    prefix = model.prefix
    report = model.report
    selected_period = report.period_start.isoformat() if report else None
    period_options = [
        (p.period_start.isoformat(), period_days(model.report_type, p.period_start, p.period_end))
        for p in model.periods
    ]
    if report is not None and selected_period not in {value for value, _ in period_options}:
        # An older period than the listed ones (the list is bounded): still shown as selected.
        period_options.insert(
            0,
            (
                report.period_start.isoformat(),
                period_days(model.report_type, report.period_start, report.run["period_end"]),
            ),
        )
    # The exact id as the value; a shortened, visible label (display.py) keeps the select narrow.
    operator_options = [("", "All operators"), *((op, short_text(op)) for op in model.operators)]
    if model.operator and model.operator not in model.operators:
        operator_options.append((model.operator, short_text(model.operator)))
    form = (
        f'<form method="get" action="{esc(prefix)}/" id="picker" class="picker">'
        f'<label>Report <select name="type" id="type">{_options(((t, t) for t in model.report_types), model.report_type)}</select></label>'
        f'<label>Period <select name="period" id="period">{_options(period_options, selected_period)}</select></label>'
        f'<label>Chart operator <select name="operator" id="operator">{_options(operator_options, model.operator or "")}</select></label>'
        f'<label>Periods in chart <input type="number" name="periods" id="periods" min="1" max="{MAX_TREND_PERIODS}" '
        f'value="{model.trend_periods}"></label>'
        '<button type="submit">Show</button></form>'
    )
    if report is None:
        if model.requested_period is not None:
            message = f"No {model.report_type} report is stored for {model.requested_period.isoformat()}."
        else:
            message = f"No {model.report_type} report is stored yet: it appears here after the first successful run."
        main = f'<section class="summary"><p class="empty" id="no-report">{esc(message)}</p></section>'
    else:
        run = report.run
        label = period_label(report.report_type, report.period_start, run["period_end"])
        dag_id = report_types.of(report.report_type).dag_id
        run_link = airflow_run_path(model.airflow_base, dag_id, str(run["dag_run_id"]))
        csv_href = f"{prefix}/report.csv?" + urlencode(
            {"type": report.report_type, "period": report.period_start.isoformat()}
        )
        last_day = run["period_end"].toordinal() - 1
        span = f"{report.period_start.isoformat()} .. {date.fromordinal(last_day).isoformat()}"
        main = (
            '<section class="summary">'
            f'<h2 id="report-title">{esc(label.capitalize())} <small>({esc(span)}, {esc(run["time_zone"])})</small></h2>'
            f"{reconciliation_html(report, run_link)}"
            f"{checks_html(report)}"
            f"{quality_html(report)}"
            f'<p class="actions"><a class="button" id="csv-link" href="{esc(csv_href)}" download>Download CSV</a></p>'
            "</section>"
            f'<section class="table-wrap" aria-label="Operators">{report_table_html(report)}</section>'
        )
    if model.trend is not None:
        operator_id = model.trend.operator_id
        who = (
            "all operators"
            if operator_id is None
            else f'operator <bdi title="{esc(visible_text(operator_id))}">{esc(short_text(operator_id))}</bdi>'
        )
        main += (
            '<section class="trend" aria-labelledby="trend-heading">'
            f'<h2 id="trend-heading">Trend: last {len(model.trend.points)} {esc(model.report_type)} period(s), {who}</h2>'
            f"{trend_svg(model.trend)}</section>"
        )
    title = "CDR Reports" + (
        f" · {period_label(report.report_type, report.period_start, report.run['period_end'])}" if report else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{esc(title)}</title>"
        f'<link rel="stylesheet" href="{esc(prefix)}/static/app.css">'
        f'<script src="{esc(prefix)}/static/app.js" defer></script>'
        "</head><body>"
        f"<header><h1>CDR Reports</h1>{form}</header>"
        f"<main>{main}</main>"
        "</body></html>"
    )


def message_page(prefix: str, title: str, text: str, link: tuple[str, str] | None = None) -> str:
    """A small page for 401/403/404 in the browser (same stylesheet, no script)."""
    anchor = f' <a href="{esc(link[0])}" target="_top">{esc(link[1])}</a>' if link else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="color-scheme" content="light dark">'
        f'<title>{esc(title)}</title><link rel="stylesheet" href="{esc(prefix)}/static/app.css"></head>'
        f'<body><main><h1>{esc(title)}</h1><p class="empty">{esc(text)}{anchor}</p></main></body></html>'
    )


# ----------------------------------------------------------------------------- e-mail


def email_subject(report: StoredReport, *, corrected: bool) -> str:
    label = period_label(report.report_type, report.period_start, report.run["period_end"])
    return f"[cdr-reports] {'CORRECTED ' if corrected else ''}{label} report"


def email_html(
    report: StoredReport, *, corrected: bool, previous: Mapping[str, Any] | None = None, run_url: str | None = None
) -> str:
    """The report e-mail: reconciliation line, checks, the operator table; a corrected copy says so."""
    run = report.run
    label = period_label(report.report_type, report.period_start, run["period_end"])
    notice = ""
    if corrected:
        sent = previous.get("sent_at") if previous else None
        sent_text = sent.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(sent, datetime) else esc(sent or "earlier")
        notice = (
            '<p style="padding:8px;border:2px solid #bc4c00;color:#bc4c00;font-weight:bold">'
            f"CORRECTED: this report replaces the copy sent {esc(sent_text)}"
            + (f" (DAG run {esc(previous.get('dag_run_id'))})" if previous and previous.get("dag_run_id") else "")
            + ". The stored report changed after a re-run of this period.</p>"
        )
    run_ref = f'<a href="{esc(run_url)}">{esc(run["dag_run_id"])}</a>' if run_url else esc(run["dag_run_id"])
    generated = run["generated_at"]
    generated_text = generated.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(generated, datetime) else str(generated)
    return (
        '<html><body style="font-family:Arial,sans-serif;font-size:14px">'
        f"<h2>{'Corrected ' if corrected else ''}{esc(label)} CDR report</h2>{notice}"
        f"<p><strong>Reconciliation:</strong> {esc(reconciliation_text(report))}</p>"
        f"<p>Time zone {esc(run['time_zone'])} · generated {esc(generated_text)} by DAG run {run_ref}</p>"
        f"<p><strong>Checks</strong></p>{checks_html(report, inline_style=True)}"
        f"{quality_html(report, email=True)}"
        f"{report_table_html(report, email=True)}"
        "<p>The same table is attached as CSV.</p></body></html>"
    )
