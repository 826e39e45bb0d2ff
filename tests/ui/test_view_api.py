"""The "CDR Reports" view through a real api-server: authentication, per-DAG authorization,
escaping, the CSV, bounds, and agreement with the report database."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from datetime import timedelta
from urllib.parse import quote

import pytest

from tests.ui.conftest import FORMULA_IDS, SPECIAL_IDS, XSS_ATTR, XSS_SCRIPT

pytestmark = pytest.mark.e2e

TYPES = ("daily", "weekly", "monthly")
ROLES = ("viewer", "operator", "admin")
ENDPOINTS = (
    "/cdr-reports/",
    "/cdr-reports/report.csv",
    "/cdr-reports/api/report",
    "/cdr-reports/api/periods",
    "/cdr-reports/api/trend",
)


def _get(stack, user, path, **params):
    return stack.request(user, "GET", path, params=params or None)


def _db_rows(stack, sql, *args):
    with sqlite3.connect(stack.reports_db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, args)]


# -- who may see what --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*ENDPOINTS, "/cdr-reports/static/app.js"])
def test_anonymous_requests_are_unauthorized(report_stack, path):
    response = _get(report_stack, None, path, type="daily")
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Not authenticated"}


def test_anonymous_browser_gets_a_sign_in_page(report_stack):
    with report_stack.client() as client:
        response = client.get("/cdr-reports/", params={"type": "weekly"}, headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert "Sign in required" in response.text
    # Back to the same view after signing in.
    assert 'href="/auth/login/?next=%2Fcdr-reports%2F%3Ftype%3Dweekly"' in response.text


def test_a_token_not_signed_by_the_deployment_is_refused(report_stack):
    import jwt

    claims = jwt.decode(report_stack.token("viewer"), options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-secret-" + "x" * 64, algorithm="HS512")
    response = report_stack.request(None, "GET", "/cdr-reports/api/periods", params={"type": "daily"},
                                    headers={"Authorization": f"Bearer {forged}"})  # fmt: skip
    assert response.status_code == 403
    assert response.json()["detail"] == "Invalid JWT token"


@pytest.mark.parametrize("report_type", TYPES)
@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_user_without_access_to_the_report_dag_is_forbidden(report_stack, path, report_type):
    response = _get(report_stack, "outsider", path, type=report_type)
    assert response.status_code == 403, response.text


def test_the_outsider_is_authenticated_but_not_authorized(report_stack):
    # Same token, accepted by Airflow itself: the 403 above is the report DAG permission, not the login.
    me = _get(report_stack, "outsider", "/ui/auth/me")
    assert me.status_code == 200 and me.json()["username"] == "outsider"
    assert _get(report_stack, "outsider", "/api/v2/dags/cdr_daily_report").status_code == 403
    page = report_stack.request("outsider", "GET", "/cdr-reports/", headers={"Accept": "text/html"})
    assert page.status_code == 403 and "No access" in page.text


@pytest.mark.parametrize("user", ROLES)
@pytest.mark.parametrize("report_type", TYPES)
def test_report_roles_read_every_report_type(report_stack, user, report_type):
    periods = _get(report_stack, user, "/cdr-reports/api/periods", type=report_type, limit=500)
    assert periods.status_code == 200, periods.text
    listed = {p["period_start"] for p in periods.json()["periods"]}
    assert {d.isoformat() for d in report_stack.expected[report_type]} <= listed
    for path in ("/cdr-reports/", "/cdr-reports/report.csv", "/cdr-reports/api/report", "/cdr-reports/api/trend"):
        response = _get(report_stack, user, path, type=report_type)
        assert response.status_code == 200, f"{user} {path} {report_type}: {response.status_code} {response.text[:300]}"


def test_the_ui_cookie_authenticates_like_the_ui(report_stack):
    """The browser sends no Authorization header: the api-server's `_token` cookie is enough."""
    with report_stack.client(cookies={"_token": report_stack.token("viewer")}) as client:
        response = client.get("/cdr-reports/api/periods", params={"type": "monthly"})
    assert response.status_code == 200, response.text


# -- content -----------------------------------------------------------------------------------


def test_report_json_is_what_the_database_holds(report_stack):
    week = report_stack.expected["weekly"][-2].isoformat()
    response = _get(report_stack, "viewer", "/cdr-reports/api/report", type="weekly", period=week)
    assert response.status_code == 200, response.text
    body = response.json()
    run = _db_rows(report_stack, "SELECT * FROM cdr_report_run WHERE report_type='weekly' AND period_start=?", week)[0]
    rows = _db_rows(
        report_stack,
        "SELECT * FROM cdr_operator_report WHERE report_type='weekly' AND period_start=? ORDER BY operator_id",
        week,
    )
    assert body["run"]["source_records"] == run["source_records"] and body["run"]["operators"] == len(rows) > 0
    assert body["columns"] == list(rows[0])  # every column of cdr_operator_report, declaration order
    assert [r["operator_id"] for r in body["rows"]] == [r["operator_id"] for r in rows]
    assert [r["total_calls"] for r in body["rows"]] == [r["total_calls"] for r in rows]
    assert body["totals"]["total_calls"] == run["valid_records"]
    assert all(check["ok"] for check in body["checks"]), body["checks"]


def test_a_date_inside_a_period_selects_that_period(report_stack):
    week = report_stack.expected["weekly"][0]
    response = _get(
        report_stack, "viewer", "/cdr-reports/api/report", type="weekly", period=(week + timedelta(days=3)).isoformat()
    )
    assert response.status_code == 200
    assert response.json()["run"]["period_start"] == week.isoformat()


def test_the_page_defaults_to_the_latest_report_and_links_its_run(report_stack, finished_daily_run):
    latest = _db_rows(
        report_stack, "SELECT * FROM cdr_report_run WHERE report_type='daily' ORDER BY period_start DESC LIMIT 1"
    )[0]
    page = _get(report_stack, "viewer", "/cdr-reports/", type="daily")
    assert page.status_code == 200
    html = page.text
    assert f'<option value="{latest["period_start"]}" selected>' in html
    link = f"/dags/cdr_daily_report/runs/{quote(latest['dag_run_id'], safe='')}"
    assert f'href="{link}"' in html
    # The link names a real run of the DAG, readable by the viewer.
    run = _get(report_stack, "viewer", f"/api/v2/dags/cdr_daily_report/dagRuns/{quote(latest['dag_run_id'], safe='')}")
    assert run.status_code == 200, run.text
    # Every column of the operator table is a column header, plus the totals row and the chart.
    for column in _db_rows(report_stack, "SELECT * FROM cdr_operator_report LIMIT 1")[0]:
        assert f'title="{column}"' in html, column
    assert re.search(r'<tr class="totals"><th scope="row"[^>]*>Total \(\d+ operators\)</th>', html)
    assert html.count('<polyline class="line s-total"') == 1 and 'id="trend-chart"' in html


def test_operator_ids_are_html_escaped(report_stack):
    day = report_stack.last_day.isoformat()
    html = _get(report_stack, "viewer", "/cdr-reports/", type="daily", period=day).text
    assert "&lt;script&gt;alert(&quot;cdr&quot;)&lt;/script&gt;" in html
    assert "&quot;onerror=alert(1) x=&quot;" in html
    # Nothing of either id reaches the page unescaped: no <script> but the page's own, no "onerror=.
    assert "<script>" not in html and XSS_SCRIPT not in html
    assert XSS_ATTR not in html and '"onerror=' not in html
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/cdr-reports/static/app.js" defer>']
    # The ids reflected from the query string (the chart's operator) are escaped too.
    reflected = _get(report_stack, "viewer", "/cdr-reports/", type="daily", period=day, operator=XSS_ATTR).text
    assert '"onerror=' not in reflected and "operator &quot;onerror=alert(1) x=&quot;" in reflected


def test_csv_download_is_the_shown_report_with_formulas_neutralised(report_stack):
    day = report_stack.last_day.isoformat()
    response = _get(report_stack, "viewer", "/cdr-reports/report.csv", type="daily", period=day)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="cdr_daily_report_{day}.csv"'
    lines = list(csv.reader(io.StringIO(response.text, newline="")))
    stored = _db_rows(
        report_stack,
        "SELECT * FROM cdr_operator_report WHERE report_type='daily' AND period_start=? ORDER BY operator_id",
        day,
    )
    assert lines[0] == list(stored[0])
    assert len(lines) == 1 + len(stored)
    by_id = {line[lines[0].index("operator_id")]: dict(zip(lines[0], line, strict=True)) for line in lines[1:]}
    for operator_id in FORMULA_IDS:
        assert "'" + operator_id in by_id, (operator_id, sorted(by_id))
        assert operator_id not in by_id
    for operator_id in (XSS_SCRIPT, XSS_ATTR):  # no formula trigger: unchanged
        assert operator_id in by_id
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for line in lines for cell in line)
    for row in stored:
        key = "'" + row["operator_id"] if row["operator_id"] in FORMULA_IDS else row["operator_id"]
        assert int(by_id[key]["total_calls"]) == row["total_calls"]
        assert float(by_id[key]["answer_ratio"]) == row["answer_ratio"]
    assert set(SPECIAL_IDS) <= {row["operator_id"] for row in stored}


# -- bounds and errors -------------------------------------------------------------------------


@pytest.mark.parametrize("periods", [0, 101, -1, 1000000])
def test_trend_periods_are_bounded(report_stack, periods):
    for path in ("/cdr-reports/api/trend", "/cdr-reports/"):
        response = _get(report_stack, "viewer", path, type="daily", periods=periods)
        assert response.status_code == 422, (path, response.text)


def test_trend_returns_at_most_the_requested_periods(report_stack):
    stored = _db_rows(
        report_stack, "SELECT period_start FROM cdr_report_run WHERE report_type='daily' ORDER BY period_start"
    )
    full = _get(report_stack, "viewer", "/cdr-reports/api/trend", type="daily", periods=100).json()["points"]
    assert [p["period_start"] for p in full] == [r["period_start"] for r in stored][-100:]
    five = _get(report_stack, "viewer", "/cdr-reports/api/trend", type="daily", periods=5).json()["points"]
    assert five == full[-5:]
    sums = {r["period_start"]: r["calls"] for r in _db_rows(
        report_stack, "SELECT period_start, SUM(total_calls) AS calls FROM cdr_operator_report WHERE report_type='daily' GROUP BY period_start")}  # fmt: skip
    assert all(p["total_calls"] == sums.get(p["period_start"], 0) for p in full)


def test_trend_of_one_operator(report_stack):
    operator = XSS_SCRIPT
    points = _get(report_stack, "viewer", "/cdr-reports/api/trend", type="daily", periods=10, operator=operator).json()
    assert points["operator_id"] == operator
    stored = {r["period_start"]: r for r in _db_rows(
        report_stack, "SELECT * FROM cdr_operator_report WHERE report_type='daily' AND operator_id=?", operator)}  # fmt: skip
    assert stored, "the special operator has calls on the last day"
    for point in points["points"]:
        expected = stored.get(point["period_start"])
        assert point["total_calls"] == (expected["total_calls"] if expected else 0)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"type": "yearly"}, 422),
        ({"type": "daily", "period": "2026-13-01"}, 422),
        ({"type": "daily", "period": "1999-01-01"}, 404),
        ({"type": "daily", "limit": 501}, 422),
        ({"type": "daily", "operator": "x" * 256}, 422),
    ],
)
def test_bad_parameters(report_stack, params, status):
    path = "/cdr-reports/api/periods" if "limit" in params else "/cdr-reports/api/report"
    if "operator" in params:
        path = "/cdr-reports/api/trend"
    response = _get(report_stack, "viewer", path, **params)
    assert response.status_code == status, response.text


def test_an_unknown_period_in_the_browser_says_so(report_stack):
    response = report_stack.request("viewer", "GET", "/cdr-reports/", params={"type": "daily", "period": "1999-01-01"})
    assert response.status_code == 404
    assert "No daily report is stored for 1999-01-01." in response.text


def test_responses_carry_the_security_headers_and_load_nothing_foreign(report_stack):
    response = _get(report_stack, "viewer", "/cdr-reports/", type="daily")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'self'" in csp
    assert response.headers["cache-control"] == "no-store"
    urls = re.findall(r'(?:src|href)="([^"]*)"', response.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css"), ("icon.svg", "image/svg+xml")):
        asset = _get(report_stack, "viewer", f"/cdr-reports/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        text = asset.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, never fetched
        assert "http://" not in text and "https://" not in text
    assert _get(report_stack, "viewer", "/cdr-reports/static/../app.py").status_code == 404


@pytest.mark.parametrize("user", ["admin", "viewer"])
def test_the_plugin_registers_the_view_and_its_nav_entry(report_stack, user):
    """The navigation comes from /api/v2/plugins: the report roles get it too (docs/report-view.md)."""
    plugins = _get(report_stack, user, "/api/v2/plugins").json()["plugins"]
    [plugin] = [p for p in plugins if p["name"] == "cdr_reports"]
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == ["/cdr-reports"]
    [view] = plugin["external_views"]
    assert (view["name"], view["url_route"], view["destination"], view["nav_top_level"]) == (
        "CDR Reports",
        "cdr-reports",
        "nav",
        True,
    )
    assert any("CalendarPeriodTimetable" in t for t in plugin["timetables"])
