"""The view in a real browser (Debian's Chromium driven by Playwright, no browser download).

Screenshots go to test-artifacts/ui/*.png (gitignored); docs/img/report-view.png is copied from
the in-UI screenshot by hand when the view changes.
"""

from __future__ import annotations

import csv
import re
import sqlite3

import pytest

from tests.support.browser import launch_chromium
from tests.ui.conftest import XSS_ATTR, XSS_SCRIPT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def open_page(browser, report_stack, ui_artifacts, request):
    """`open_page(color_scheme=..., height=..., init_script=...)`: a fresh context (logged out) and page."""
    contexts = []

    def make(color_scheme: str = "light", height: int = 1000, init_script: str | None = None):
        context = browser.new_context(
            base_url=report_stack.base_url,
            viewport={"width": 1400, "height": height},
            color_scheme=color_scheme,
            timezone_id="Europe/Istanbul",
            accept_downloads=True,
        )
        context.set_default_timeout(60_000)
        if init_script:
            context.add_init_script(init_script)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message!r}"))
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors
        return page

    yield make
    report = getattr(request.node, "rep_call", None)
    for index, context in enumerate(contexts):
        if report is not None and report.failed and context.pages:
            context.pages[-1].screenshot(
                path=str(ui_artifacts / f"FAILED-{request.node.name}-{index}.png"), full_page=True
            )
        context.close()


def _login(page, stack, username: str, next_path: str) -> None:
    page.goto(f"/auth/login/?next={next_path}", wait_until="domcontentloaded")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", stack.passwords[username])
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"{stack.base_url}{next_path}", wait_until="domcontentloaded")
    # FAB's own login page script fails on a missing time-zone helper ("reading 'tz'"): not ours.
    page.js_errors.clear()


def _latest_daily(stack) -> tuple[dict, list[dict]]:
    with sqlite3.connect(stack.reports_db) as conn:
        conn.row_factory = sqlite3.Row
        run = dict(
            conn.execute(
                "SELECT * FROM cdr_report_run WHERE report_type='daily' ORDER BY period_start DESC LIMIT 1"
            ).fetchone()
        )
        rows = [dict(r) for r in conn.execute(
            "SELECT * FROM cdr_operator_report WHERE report_type='daily' AND period_start=?", (run["period_start"],))]  # fmt: skip
    return run, rows


def test_viewer_sees_the_latest_report_sorts_it_and_downloads_the_csv(
    open_page, report_stack, finished_daily_run, ui_artifacts
):
    page = open_page()
    _login(page, report_stack, "viewer", "/cdr-reports/")
    run, rows = _latest_daily(report_stack)
    assert run["period_start"] == report_stack.last_day.isoformat()
    table = page.locator("#report-table")
    table.wait_for()
    assert page.locator("#period").input_value() == run["period_start"]
    assert table.locator("tbody tr").count() == len(rows) == run["operators"]
    totals = table.locator("tfoot tr.totals")
    assert totals.locator("th").inner_text() == f"Total ({len(rows)} operators)"
    assert totals.locator("td").nth(0).inner_text() == f"{run['valid_records']:,}"
    recon = page.locator("#reconciliation").inner_text()
    for label in ("source", "valid", "rejected", "operators"):
        assert label in recon
    assert f"{run['source_records']:,}" in recon
    # Provenance: a daily report is read from the CDRs of its one day.
    assert page.locator('#reconciliation [data-field="method"] strong').inner_text() == "extract (1 day extracted)"
    # The ids that need escaping show as text, in cells; nothing ran (no dialog, no error).
    assert table.locator("tbody td", has_text=XSS_SCRIPT).count() == 1
    assert table.locator("tbody td", has_text=XSS_ATTR).count() == 1
    # The chart: one line each for total and answered calls, the ratio, a point per period.
    chart = page.locator("#trend-chart")
    assert chart.is_visible()
    assert chart.locator("polyline.s-total").count() == 1 and chart.locator("polyline.s-answered").count() == 1
    with sqlite3.connect(report_stack.reports_db) as conn:
        stored_days = conn.execute("SELECT COUNT(*) FROM cdr_report_run WHERE report_type='daily'").fetchone()[0]
    assert chart.locator("g.pt").count() == min(30, stored_days)
    page.screenshot(path=str(ui_artifacts / "01-viewer-report.png"), full_page=True)

    # Sort by calls: ascending, then descending; the totals row stays last.
    calls_header = table.locator("thead th[title='total_calls']")
    calls_header.locator("button").click()
    assert calls_header.get_attribute("aria-sort") == "ascending"
    calls_header.locator("button").click()
    assert calls_header.get_attribute("aria-sort") == "descending"
    column = [int(cell.replace(",", "")) for cell in table.locator("tbody tr td:nth-child(2)").all_inner_texts()]
    assert column == sorted((row["total_calls"] for row in rows), reverse=True)
    assert (
        table.locator("tbody tr").first.locator("td").first.inner_text()
        == max(rows, key=lambda r: r["total_calls"])["operator_id"].strip()
    )
    page.screenshot(path=str(ui_artifacts / "02-viewer-sorted-by-calls.png"), full_page=True)

    with page.expect_download() as download_info:
        page.locator("#csv-link").click()
    download = download_info.value
    assert download.suggested_filename == f"cdr_daily_report_{run['period_start']}.csv"
    with open(download.path(), encoding="utf-8", newline="") as downloaded:
        lines = list(csv.reader(downloaded))
    assert lines[0][:3] == ["report_type", "period_start", "operator_id"] and len(lines) == 1 + len(rows)
    assert page.js_errors == []


def test_viewer_picks_another_report_type_and_an_operator(open_page, report_stack, ui_artifacts):
    page = open_page()
    _login(page, report_stack, "viewer", "/cdr-reports/")
    page.locator("#report-table").wait_for()
    with page.expect_navigation():
        page.select_option("#type", "weekly")
    assert page.locator("#type").input_value() == "weekly"
    weekly = report_stack.expected["weekly"]
    assert page.locator("#period").input_value() == weekly[-1].isoformat()  # the latest weekly report
    assert page.locator("#period option").count() == len(weekly)
    operator = page.locator("#operator option").nth(1).get_attribute("value")
    with page.expect_navigation():
        page.select_option("#operator", operator)
    heading = page.locator("#trend-heading").inner_text()
    assert heading == f"Trend: last {len(weekly)} weekly period(s), operator {operator}"
    page.screenshot(path=str(ui_artifacts / "03-viewer-weekly-one-operator.png"), full_page=True)
    assert page.js_errors == []


def test_dark_colour_scheme(open_page, report_stack, ui_artifacts):
    page = open_page(color_scheme="dark")
    _login(page, report_stack, "viewer", "/cdr-reports/")
    page.locator("#trend-chart").wait_for()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    total_line = page.evaluate("getComputedStyle(document.querySelector('polyline.s-total')).stroke")
    text = page.evaluate("getComputedStyle(document.querySelector('#trend-chart')).color")
    assert (background, total_line, text) == ("rgb(13, 17, 23)", "rgb(88, 166, 255)", "rgb(230, 237, 243)")
    page.screenshot(path=str(ui_artifacts / "04-viewer-dark.png"), full_page=True)


def test_admin_opens_the_view_from_the_airflow_navigation(open_page, report_stack, finished_daily_run, ui_artifacts):
    page = open_page(height=1500)
    _login(page, report_stack, "admin", "/dags")
    # The UI keeps its light/dark choice in localStorage ("theme"); the view follows the UI, not the OS.
    page.evaluate("window.localStorage.setItem('theme', 'dark')")
    page.reload(wait_until="domcontentloaded")
    page.get_by_role("link", name="CDR Reports").click()
    page.wait_for_url(re.compile(r".*/plugin/cdr-reports.*"))
    frame = page.frame_locator("iframe[title='CDR Reports']")
    frame.locator("#report-table").wait_for()
    frame.locator("#trend-chart").wait_for()
    # app.js (deferred) marks the page embedded and copies the UI's theme.
    frame.locator("html[data-embedded='1'][data-theme='dark']").wait_for(state="attached")
    page.screenshot(path=str(ui_artifacts / "05-admin-in-airflow-ui-dark.png"))
    # Switching the UI's theme switches the view at once (no reload).
    page.evaluate("document.documentElement.classList.replace('dark', 'light')")
    frame.locator("html[data-theme='light']").wait_for(state="attached")
    page.evaluate("window.localStorage.setItem('theme', 'light')")
    page.reload(wait_until="domcontentloaded")
    frame = page.frame_locator("iframe[title='CDR Reports']")
    frame.locator("html[data-embedded='1'][data-theme='light']").wait_for(state="attached")
    frame.locator("#trend-chart").wait_for()
    page.screenshot(path=str(ui_artifacts / "06-admin-in-airflow-ui.png"))

    # The run link opens that run in the Airflow UI itself (not inside the frame).
    run, _ = _latest_daily(report_stack)
    frame.locator("#reconciliation + .meta a").click()
    page.wait_for_url(re.compile(r".*/dags/cdr_daily_report/runs/.+"))
    assert page.url.split("/runs/")[1] in (
        run["dag_run_id"],
        re.sub(r"[:+]", lambda m: f"%{ord(m.group()):02X}", run["dag_run_id"]),
    )
    page.get_by_text(run["dag_run_id"]).first.wait_for()
    page.get_by_role("link", name="aggregate").first.wait_for()  # the run's task instances are listed
    page.screenshot(path=str(ui_artifacts / "07-admin-run-opened-from-the-view.png"))


def test_a_user_without_report_access_is_refused(open_page, report_stack, ui_artifacts):
    page = open_page()
    _login(page, report_stack, "outsider", "/dags")
    response = page.goto("/cdr-reports/", wait_until="domcontentloaded")
    assert response.status == 403
    page.get_by_role("heading", name="No access").wait_for()
    assert page.locator("#report-table").count() == 0
    page.screenshot(path=str(ui_artifacts / "08-outsider-refused.png"), full_page=True)


def test_a_deep_link_opens_the_view_inside_the_ui(open_page, report_stack, ui_artifacts):
    """/plugin/cdr-reports/<view path> opens the UI with the view at that path (bookmarks, sharing)."""
    page = open_page(height=1180)
    _login(page, report_stack, "admin", "/dags")
    page.goto("/plugin/cdr-reports/cdr-reports/?type=weekly&periods=8", wait_until="domcontentloaded")
    frame = page.frame_locator("iframe[title='CDR Reports']")
    frame.locator("#trend-chart").wait_for()
    assert frame.locator("#type").input_value() == "weekly"
    assert frame.locator("#period").input_value() == report_stack.expected["weekly"][-1].isoformat()
    assert frame.locator("#trend-chart g.pt").count() == len(report_stack.expected["weekly"])
    # docs/img/report-view.png (the README's picture) is a copy of this screenshot.
    page.screenshot(path=str(ui_artifacts / "09-deep-link-weekly.png"))


def test_the_assets_page_shows_the_report_events(open_page, report_stack, finished_daily_run, ui_artifacts):
    page = open_page(height=1100)
    _login(page, report_stack, "admin", "/assets")
    page.get_by_role("link", name="cdr_daily_report_table").click()
    page.wait_for_url(re.compile(r".*/assets/.+"))
    # The report runs' events, each with its source DAG and the consumer DAG run it triggered (the
    # events' extra is checked through the REST API in test_assets.py).
    page.get_by_text("cdr_daily_report_consumer").first.wait_for()
    assert page.get_by_role("link", name="cdr_daily_report", exact=True).count() >= 1
    page.get_by_text(re.compile(r"^\d+ Asset Events$")).first.wait_for()
    page.screenshot(path=str(ui_artifacts / "10-admin-assets-page.png"), full_page=True)
