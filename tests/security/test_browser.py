"""The dashboard in a real browser (Debian's Chromium driven by Playwright): login and roles.

Screenshots go to test-artifacts/security/*.png (gitignored).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.browser import launch_chromium
from tests.support.fab_stack import OTHER_DAG_ID, REPORT_DAG_IDS

pytestmark = pytest.mark.e2e

DAILY = "cdr_daily_report"
# The operator's UI trigger uses its own date, so its run is told apart from the API tests' runs.
UI_REPORT_DATE = "2026-11-26"


@pytest.fixture(scope="module")
def browser():
    # The system Chromium: `playwright install` (a browser download) is never needed.
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def browser_context(browser, airflow_stack):
    # One context for the module: its HTTP cache keeps the UI's 7 MB bundle between tests.
    context = browser.new_context(base_url=airflow_stack.base_url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(60_000)
    yield context
    context.close()


@pytest.fixture
def page(browser_context, artifacts_dir, request):
    browser_context.clear_cookies()  # each test starts logged out
    page = browser_context.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"page at failure: {page.url}")
        page.screenshot(path=str(artifacts_dir / f"FAILED-{request.node.name}.png"), full_page=True)
    page.close()


def _login(page, stack, username: str, next_path: str = "/dags") -> None:
    # Straight to `next_path` after login: one SPA load less than landing on "/" first.
    page.goto(f"/auth/login/?next={next_path}", wait_until="domcontentloaded")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", stack.passwords[username])
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"{stack.base_url}{next_path}", wait_until="domcontentloaded")


def _shot(page, artifacts_dir: Path, name: str) -> None:
    page.screenshot(path=str(artifacts_dir / f"{name}.png"), full_page=True)


def _open_trigger_dialog(page, report_date: str):
    # Client-side navigation from the DAG list (no full page load).
    page.get_by_role("link", name=DAILY, exact=True).click()
    page.wait_for_url(re.compile(rf".*/dags/{DAILY}$"))
    # Wait for the DAG page itself: until then the list's own "Trigger Dag" buttons are still
    # in the DOM, and a click on one of those races the page change.
    page.get_by_text("Latest Dag Version").wait_for()
    page.get_by_role("button", name="Trigger Dag").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"Trigger Dag - {DAILY}").wait_for()
    dialog.locator("#element_report_date").fill(report_date)
    return dialog


def test_anonymous_visitor_is_sent_to_the_login_page(page, airflow_stack, artifacts_dir):
    page.goto("/dags", wait_until="domcontentloaded")
    page.wait_for_url(re.compile(r".*/auth/login/.*"))
    assert page.locator("input[name=password]").is_visible()
    _shot(page, artifacts_dir, "01-anonymous-login-page")
    # A wrong password stays on the login page.
    page.fill("input[name=username]", "viewer")
    page.fill("input[name=password]", "wrong-password")
    page.click("input[type=submit], button[type=submit]")
    page.get_by_text("Invalid login").wait_for()
    assert "/auth/login/" in page.url


def test_viewer_sees_the_report_dags_and_cannot_trigger(page, airflow_stack, artifacts_dir):
    _login(page, airflow_stack, "viewer")
    page.get_by_text("3 Dags").wait_for()
    for dag_id in REPORT_DAG_IDS:
        assert page.get_by_role("link", name=dag_id, exact=True).is_visible()
    assert page.get_by_text(OTHER_DAG_ID).count() == 0
    _shot(page, artifacts_dir, "02-viewer-dag-list")

    runs_before = {r["dag_run_id"] for r in airflow_stack.dag_runs(DAILY)}
    dialog = _open_trigger_dialog(page, UI_REPORT_DATE)
    # The UI shows the button to everyone; the server refuses the viewer's POST.
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(f"/dags/{DAILY}/dagRuns")
    ) as posted:
        dialog.get_by_role("button", name="Trigger").click()
    assert posted.value.status == 403
    page.get_by_text("Access Denied").wait_for()
    _shot(page, artifacts_dir, "03-viewer-trigger-forbidden")
    assert {r["dag_run_id"] for r in airflow_stack.dag_runs(DAILY)} == runs_before


def test_operator_triggers_a_daily_report_from_the_ui(page, airflow_stack, artifacts_dir):
    _login(page, airflow_stack, "operator")
    page.get_by_text("3 Dags").wait_for()
    assert page.get_by_text(OTHER_DAG_ID).count() == 0

    dialog = _open_trigger_dialog(page, UI_REPORT_DATE)
    _shot(page, artifacts_dir, "04-operator-trigger-dialog")
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(f"/dags/{DAILY}/dagRuns")
    ) as posted:
        dialog.get_by_role("button", name="Trigger").click()
    assert posted.value.status == 200, posted.value.text()
    run = posted.value.json()
    assert run["conf"] == {"report_date": UI_REPORT_DATE}

    # The new run is in the DAG's run list.
    page.goto(f"/dags/{DAILY}/runs", wait_until="domcontentloaded")
    page.get_by_text(run["dag_run_id"]).first.wait_for()
    _shot(page, artifacts_dir, "05-operator-run-listed")
    stored = {r["dag_run_id"]: r for r in airflow_stack.dag_runs(DAILY)}
    assert stored[run["dag_run_id"]]["conf"] == {"report_date": UI_REPORT_DATE}


# -- response headers: the Content-Security-Policy the UI must live with -------------------------------

CSP_WATCH = """
document.addEventListener('securitypolicyviolation', (e) => {
  (window.__cspViolations = window.__cspViolations || []).push(
    `${e.effectiveDirective} blocked ${e.blockedURI || 'inline'} in ${e.sourceFile || document.location.href}`);
});
"""


def _violations(page) -> list[str]:
    found = []
    for frame in page.frames:
        found += frame.evaluate("window.__cspViolations || []")
    return found


def test_the_ui_and_the_report_view_work_under_the_content_security_policy(page, airflow_stack, artifacts_dir):
    """Logged in as Admin: the React UI, the DAG pages, the report view (framed by the UI) and FAB's
    pages render with no CSP violation; the control at the end proves violations are caught."""
    from cdr_reports.integration.http_policy.headers import UI_CONTENT_SECURITY_POLICY

    page.add_init_script(CSP_WATCH)
    console = []
    page.on("console", lambda message: console.append(message.text))
    documents = {}
    page.on(
        "response", lambda r: documents.setdefault(r.url, r.headers) if r.request.resource_type == "document" else None
    )

    _login(page, airflow_stack, "admin")
    page.get_by_text("5 Dags").wait_for()
    page.get_by_role("link", name=DAILY, exact=True).click()
    page.get_by_text("Latest Dag Version").wait_for()
    page.get_by_role("link", name="Code").first.click()
    page.get_by_text("build_report_dag").first.wait_for()
    page.goto("/connections", wait_until="domcontentloaded")
    page.get_by_text("cdr_probe_secret").wait_for()
    # The report view: an external view the UI shows in a same-origin frame.
    page.goto("/dags", wait_until="domcontentloaded")
    page.get_by_role("link", name=re.compile("CDR Rep")).first.click()
    frame = page.frame_locator("iframe").first
    frame.locator("#report-title").wait_for()
    assert "2026-11-27" in frame.locator("#report-title").inner_text()
    assert frame.locator("table td", has_text="op-001").count() == 1  # the stored report's rows
    _shot(page, artifacts_dir, "06-report-view-under-csp")
    page.goto("/auth/users/list/", wait_until="domcontentloaded")
    page.get_by_text("List Users").first.wait_for()

    assert _violations(page) == [] and not [m for m in console if "Content Security Policy" in m], console
    ui_documents = [h for url, h in documents.items() if "/auth/" not in url and "/cdr-reports/" not in url]
    assert ui_documents and all(h.get("content-security-policy") == UI_CONTENT_SECURITY_POLICY for h in ui_documents)
    assert all(h.get("x-frame-options") == "SAMEORIGIN" for h in documents.values())

    # Control: an injected inline script is refused (and reported) under the UI's policy.
    page.goto("/dags", wait_until="domcontentloaded")
    page.get_by_text("5 Dags").wait_for()
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__injected = 1'; document.head.append(s); }"
    )
    page.wait_for_function("(window.__cspViolations || []).length > 0")
    assert page.evaluate("window.__injected === undefined")
    assert any(v.startswith("script-src-elem blocked inline") for v in _violations(page)), _violations(page)


def test_an_expired_ui_token_is_renewed_from_the_session(page, browser_context, airflow_stack):
    """The UI's token lives [api_auth] jwt_expiration_time (1 h); once it expires, the UI gets a
    new one from the FAB session without a password, and without that session it is sent to log in."""
    import time

    import jwt

    from cdr_reports.integration.security import AIRFLOW_HARDENING_ENV

    _login(page, airflow_stack, "viewer")
    page.get_by_text("3 Dags").wait_for()
    cookie = next(c for c in browser_context.cookies() if c["name"] == "_token")
    claims = jwt.decode(cookie["value"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == int(AIRFLOW_HARDENING_ENV["AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME"])

    # The same token, expired a minute ago (signed with the deployment's key).
    header = jwt.get_unverified_header(cookie["value"])
    now = int(time.time())
    expired = jwt.encode(
        {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 60},
        airflow_stack.secrets["jwt_secret"], algorithm=header["alg"], headers={"kid": header.get("kid")},
    )  # fmt: skip
    browser_context.add_cookies([{**cookie, "value": expired}])
    page.goto("/dags", wait_until="domcontentloaded")
    page.get_by_text("Welcome").wait_for()  # signed in again, on the home page
    renewed = next(c for c in browser_context.cookies() if c["name"] == "_token")["value"]
    assert renewed != expired
    assert jwt.decode(renewed, options={"verify_signature": False})["exp"] > time.time() + 3000

    # Without the FAB session the expired token leads to the sign-in form.
    browser_context.add_cookies([{**cookie, "value": expired}])
    browser_context.clear_cookies(name="session")
    page.goto("/dags", wait_until="domcontentloaded")
    page.wait_for_url(re.compile(r".*/auth/login/.*"))
    assert page.locator("input[name=password]").is_visible()


def test_hostile_operator_ids_neither_break_nor_spoof_the_report_view(page, airflow_stack, artifacts_dir):
    """A 255-character id, a right-to-left override and a zero-width space in a stored report:
    the numbers stay on screen (1400 px), the select keeps its width, the ids read as escapes."""
    from .conftest import DISPLAY_REPORT_DATE, LONG_ID

    _login(page, airflow_stack, "viewer", "/dags")
    page.goto(f"/cdr-reports/?type=daily&period={DISPLAY_REPORT_DATE}&operator=abc%E2%80%AEgnp.exe")
    page.locator("#report-table").wait_for()
    _shot(page, artifacts_dir, "07-report-view-hostile-ids")
    width = page.viewport_size["width"]
    for column in ("total_calls", "answered_calls", "answer_ratio", "dag_run_id"):
        box = page.locator(f'#report-table th[title="{column}"]').bounding_box()
        assert box is not None and box["x"] + box["width"] <= width, (column, box)
    select = page.locator("#operator").bounding_box()
    assert select is not None and select["width"] <= 24 * 14 + 1, select  # 24em at the page's 14 px
    cells = page.locator("#report-table tbody td.text bdi").all_inner_texts()
    assert "abc\\u202Egnp.exe" in cells and "op\\u200B-001" in cells
    assert LONG_ID in cells  # whole, wrapped
    assert not [c for c in cells if "\u202e" in c or "\u200b" in c]
    # The chart follows the RTL id, which the select holds as its exact value.
    assert page.locator("#operator").input_value() == "abc\u202egnp.exe"
    assert "operator abc\\u202Egnp.exe" in page.locator("#trend-heading").inner_text()


def test_the_ui_token_ends_with_a_password_or_role_change(page, browser_context, airflow_stack):
    """The UI's `_token` cookie is refused once the user's password or roles change: a password
    change sends the browser to the sign-in form; after a role change the UI signs in again from
    its FAB session and shows what the new role may see."""
    import secrets

    username, password = "ui-revoke-" + secrets.token_hex(3), "Pw-" + secrets.token_urlsafe(12)
    created = airflow_stack.request(
        "admin", "POST", "/auth/fab/v1/users",
        json={"username": username, "password": password, "email": f"{username}@example.test",
              "first_name": "ui", "last_name": "Revoke", "roles": [{"name": "ReportViewer"}]},
    )  # fmt: skip
    assert created.status_code == 200, created.text

    def sign_in(secret: str) -> str:
        page.goto("/auth/login/?next=/dags", wait_until="domcontentloaded")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", secret)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(f"{airflow_stack.base_url}/dags", wait_until="domcontentloaded")
        return next(c for c in browser_context.cookies() if c["name"] == "_token")["value"]

    def accepted(token: str) -> bool:
        response = airflow_stack.request(None, "GET", "/api/v2/dags", headers={"Authorization": f"Bearer {token}"})
        return response.status_code == 200

    try:
        first = sign_in(password)
        page.get_by_text("3 Dags").wait_for()
        assert accepted(first)
        new_password = "Pw-new-" + secrets.token_urlsafe(12)
        changed = airflow_stack.request(
            "admin", "PATCH", f"/auth/fab/v1/users/{username}", params={"update_mask": "password"},
            json={"password": new_password},
        )  # fmt: skip
        assert changed.status_code == 200, changed.text
        assert not accepted(first)
        page.goto("/dags", wait_until="domcontentloaded")
        page.wait_for_url(re.compile(r".*/auth/login/.*"))  # the UI's token and FAB session both ended

        second = sign_in(new_password)
        page.get_by_text("3 Dags").wait_for()
        changed = airflow_stack.request(
            "admin", "PATCH", f"/auth/fab/v1/users/{username}", params={"update_mask": "roles"},
            json={"roles": [{"name": "WeeklyReaders"}]},
        )  # fmt: skip
        assert changed.status_code == 200, changed.text
        assert not accepted(second)
        page.goto("/dags", wait_until="domcontentloaded")
        page.get_by_text("Welcome").wait_for()  # signed in again from the FAB session, on the home page
        page.goto("/dags", wait_until="domcontentloaded")
        page.get_by_text("1 Dag").wait_for()  # with the new role: the weekly report only
        third = next(c for c in browser_context.cookies() if c["name"] == "_token")["value"]
        assert third != second and accepted(third)
    finally:
        airflow_stack.request("admin", "DELETE", f"/auth/fab/v1/users/{username}")
