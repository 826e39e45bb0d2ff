"""The api-server's HTTP policy (plugin root middleware `HttpPolicyMiddleware`), on the real stack.

Security headers on every response, the public surface exactly as docs/security.md lists it,
the token endpoints' brute-force brake, the backfill bounds for the report DAGs, the JWT
lifetimes, and user ids that are never reused (PostgreSQL metadata DB).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cdr_reports.integration.http_policy.headers import (
    FAB_CONTENT_SECURITY_POLICY,
    SECURITY_HEADERS,
    UI_CONTENT_SECURITY_POLICY,
)
from cdr_reports.integration.http_policy.run_bounds import backfill_refusal
from cdr_reports.integration.http_policy.token_brake import FailureWindow
from cdr_reports.integration.security import AIRFLOW_HARDENING_ENV
from cdr_reports.pipeline.config import load_settings
from tests.support.airflow_stack import AIRFLOW

from .conftest import EARLIEST_REPORT_DATE, REPO_ROOT

pytestmark = pytest.mark.e2e

DAILY = "cdr_daily_report"
SECURITY_DOC = REPO_ROOT / "docs" / "security.md"


def _assert_policy_headers(response: httpx.Response, csp: str | None = None) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name, dict(response.headers))
    if csp is not None:
        assert response.headers.get("content-security-policy") == csp, response.request.url
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]


# -- headers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "method", "path", "status", "csp"),
    [
        (None, "GET", "/", 200, UI_CONTENT_SECURITY_POLICY),
        (None, "GET", "/dags/cdr_daily_report", 200, UI_CONTENT_SECURITY_POLICY),
        (None, "GET", "/static/pin_32.png", 200, UI_CONTENT_SECURITY_POLICY),
        (None, "GET", "/api/v2/monitor/health", 200, UI_CONTENT_SECURITY_POLICY),
        (None, "GET", "/api/v2/dags", 401, UI_CONTENT_SECURITY_POLICY),
        (None, "GET", "/api/v2/no-such-endpoint", 404, UI_CONTENT_SECURITY_POLICY),
        (None, "GET", "/execution/health", 200, UI_CONTENT_SECURITY_POLICY),
        (None, "GET", "/auth/login/", 200, FAB_CONTENT_SECURITY_POLICY),
        (None, "GET", "/auth/users/list/", 302, FAB_CONTENT_SECURITY_POLICY),
        (None, "GET", "/auth/static/appbuilder/css/bootstrap.min.css", 200, FAB_CONTENT_SECURITY_POLICY),
        ("admin", "GET", "/api/v2/dags", 200, UI_CONTENT_SECURITY_POLICY),
        ("viewer", "GET", "/api/v2/connections", 403, UI_CONTENT_SECURITY_POLICY),
        ("viewer", "GET", "/ui/config", 200, UI_CONTENT_SECURITY_POLICY),
        ("admin", "GET", "/auth/fab/v1/roles", 200, FAB_CONTENT_SECURITY_POLICY),
        ("admin", "POST", "/api/v2/dags/no_such_dag/dagRuns", 404, UI_CONTENT_SECURITY_POLICY),
    ],
)
def test_every_response_carries_the_security_headers(airflow_stack, user, method, path, status, csp):
    kwargs = {"json": {"logical_date": None}} if method == "POST" else {}
    response = airflow_stack.request(user, method, path, **kwargs)
    assert response.status_code == status, response.text[:500]
    _assert_policy_headers(response, csp)


def test_the_token_endpoint_answers_carry_the_headers(airflow_stack):
    with airflow_stack.client() as client:
        response = client.post("/auth/token", json={"username": "nobody", "password": "x" * 12})
    assert response.status_code == 401
    _assert_policy_headers(response, FAB_CONTENT_SECURITY_POLICY)


def test_a_view_keeps_its_own_stricter_policy(airflow_stack):
    """The report view sets `default-src 'none'`; the middleware only fills in missing headers."""
    response = airflow_stack.request("viewer", "GET", "/cdr-reports/")
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert len(response.headers.get_list("content-security-policy")) == 1


# -- the public surface -------------------------------------------------------------------------------


def documented_public_surface() -> dict[tuple[str, str], int]:
    """(method, path) -> anonymous status, from the table between the markers in docs/security.md."""
    text = SECURITY_DOC.read_text()
    block = text.split("<!-- public-surface:begin -->", 1)[1].split("<!-- public-surface:end -->", 1)[0]
    surface = {}
    for line in block.splitlines():
        if match := re.match(r"^\| `(GET|POST) ([^`]+)` \| (\d{3})\b", line):
            surface[(match.group(1), match.group(2))] = int(match.group(3))
    assert len(surface) >= 15, block
    return surface


def _anonymous(stack, method: str, path: str) -> httpx.Response:
    # From 127.0.0.7: the wrong passwords posted here must not eat 127.0.0.1's sign-in budget.
    transport = httpx.HTTPTransport(local_address="127.0.0.7")
    with httpx.Client(base_url=stack.base_url, transport=transport, timeout=30, follow_redirects=False) as client:
        if method == "POST":
            return client.post(
                path, json={"username": "nobody-anonymous", "password": "wrong-password", "provider": "db"}
            )
        return client.get(path)


def test_docs_list_exactly_what_anonymous_visitors_get(airflow_stack):
    """Every row of docs/security.md's public-surface table, requested without credentials."""
    surface = documented_public_surface()
    got = {key: _anonymous(airflow_stack, *key).status_code for key in surface}
    assert got == surface
    # The UI shell is the same static page whatever the path: no data before login.
    shells = {_anonymous(airflow_stack, "GET", path).text for path in ("/", "/dags", "/no/such/page", "/docs-nope")}
    assert len(shells) == 1 and '<div id="root"' in shells.pop()


def test_no_api_route_outside_the_documented_surface_answers_anonymously(airflow_stack):
    """Every GET route of the three API documents (fetched as Admin), requested anonymously:
    the public and UI API, FAB's API under /auth and the task execution API under /execution."""
    documented = {path for method, path in documented_public_surface() if method == "GET"}
    changelog = airflow_stack.request("admin", "GET", "/execution/changelog")
    assert changelog.status_code == 200, changelog.text[:300]
    execution_version = changelog.json()["versions"][0]["value"]
    open_routes = {}
    checked = 0
    for prefix, query in (("", ""), ("/auth", ""), ("/execution", f"?version={execution_version}")):
        spec = airflow_stack.request("admin", "GET", f"{prefix}/openapi.json{query}")
        assert spec.status_code == 200, spec.text[:300]
        for path, operations in spec.json()["paths"].items():
            if "get" not in operations:
                continue
            concrete = prefix + re.sub(r"\{[^}]+\}", "1", path)
            status = _anonymous(airflow_stack, "GET", concrete).status_code
            checked += 1
            if status not in (401, 403):
                open_routes[prefix + path] = status
    assert checked > 100
    assert set(open_routes) <= documented, open_routes
    assert open_routes == {
        path: status for (method, path), status in documented_public_surface().items() if path in open_routes
    }


def test_version_and_api_documents_need_a_login(airflow_stack):
    for path in ("/api/v2/version", "/openapi.json", "/auth/openapi.json", "/execution/changelog"):
        assert _anonymous(airflow_stack, "GET", path).status_code == 401, path
        # A forged token does not pass either.
        forged = airflow_stack.request(None, "GET", path, headers={"Authorization": "Bearer not.a.token"})
        assert forged.status_code == 401, path
    version = airflow_stack.request("viewer", "GET", "/api/v2/version")
    assert version.status_code == 200 and version.json()["version"].startswith("3.3.")
    assert airflow_stack.request("viewer", "GET", "/openapi.json").json()["info"]["title"] == "Airflow API"
    # The UI's cookie counts as a login too.
    with airflow_stack.client(cookies={"_token": airflow_stack.token("viewer")}) as client:
        assert client.get("/api/v2/version").status_code == 200
    # Swagger UI and ReDoc are off for everyone (CDN scripts without integrity hashes).
    for path in ("/docs", "/redoc", "/auth/docs", "/auth/redoc", "/execution/docs"):
        response = airflow_stack.request("admin", "GET", path)
        assert response.status_code == 404, path
        assert "swagger" not in response.text.lower() and "redoc" not in response.text.lower()


# -- brute-force brake ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "source"),
    [("/auth/token", "127.0.0.3"), ("/auth/token/cli", "127.0.0.4"), ("/auth/api/v1/security/login", "127.0.0.5")],
)
def test_thirty_wrong_passwords_get_429(airflow_stack, path, source):
    """Each endpoint from its own loopback address, so the other tests keep their budget."""
    transport = httpx.HTTPTransport(local_address=source)
    body = {"username": "viewer", "password": "wrong-password", "provider": "db"}
    with httpx.Client(base_url=airflow_stack.base_url, transport=transport, timeout=30) as client:
        statuses = [client.post(path, json=body).status_code for _ in range(30)]
        # Blocked means blocked: the right password is refused too while the window lasts.
        right = client.post(path, json={**body, "password": airflow_stack.passwords["viewer"]})
    assert statuses[:10] == [401] * 10, statuses
    assert statuses[10:] == [429] * 20, statuses
    assert right.status_code == 429
    assert 1 <= int(right.headers["retry-after"]) <= 60
    assert "Too many failed sign-in attempts" in right.json()["detail"]
    # Another client address is not affected.
    other = httpx.HTTPTransport(local_address="127.0.0.6")
    with httpx.Client(base_url=airflow_stack.base_url, transport=other, timeout=30) as client:
        ok = client.post(path, json={**body, "password": airflow_stack.passwords["viewer"]})
    assert ok.status_code in (200, 201), ok.text


def test_parallel_wrong_passwords_get_no_more_than_ten_tries(airflow_stack):
    """Thirty attempts in flight at once: attempts count from the moment they arrive."""
    from concurrent.futures import ThreadPoolExecutor

    transport = httpx.HTTPTransport(local_address="127.0.0.8")
    body = {"username": "operator", "password": "wrong-password"}
    with httpx.Client(base_url=airflow_stack.base_url, transport=transport, timeout=60) as client:
        with ThreadPoolExecutor(max_workers=30) as pool:
            statuses = sorted(pool.map(lambda _: client.post("/auth/token", json=body).status_code, range(30)))
    assert statuses.count(401) == 10 and statuses.count(429) == 20, statuses


def test_failure_window_slides():
    window = FailureWindow(limit=3, window_seconds=60)
    for t in (0, 10, 20):
        assert window.retry_after("a", t) is None
        window.record_failure("a", t)
    assert window.retry_after("a", 30) == pytest.approx(30)  # the first failure leaves at t=60
    assert window.retry_after("b", 30) is None
    assert window.retry_after("a", 60.5) is None  # two failures left in the window
    small = FailureWindow(limit=1, window_seconds=60, max_clients=2)
    for client in ("x", "y", "z"):
        small.record_failure(client, 0)
    assert small.retry_after("x", 1) is None  # the oldest client was forgotten, the table stays bounded
    assert small.retry_after("z", 1) is not None
    # An attempt that turned out right is withdrawn.
    window.record_failure("c", 100)
    window.record_failure("c", 101)
    window.forget("c", 101)
    window.forget("c", 999)  # unknown stamps are ignored
    assert list(window._failures["c"]) == [100]


# -- backfill bounds -----------------------------------------------------------------------------------


def _backfill(stack, user: str, dag_id: str, start: str, end: str, dry_run: bool = True) -> httpx.Response:
    path = "/api/v2/backfills/dry_run" if dry_run else "/api/v2/backfills"
    body = {"dag_id": dag_id, "from_date": start, "to_date": end, "max_active_runs": 1}
    return stack.request(user, "POST", path, json=body)


# Every form in which Airflow's BackfillPostBody accepts a date, each before EARLIEST_REPORT_DATE.
EARLY_FORMS = [0, "0", 1.5, "1970-01-01", "1970-01-01T00:00:00", "1970-01-01T00:00:00Z", "2025-05-30T23:00:00+02:00"]


@pytest.mark.parametrize("form", EARLY_FORMS, ids=repr)
def test_backfills_before_the_earliest_date_are_refused_in_every_date_form(airflow_stack, form):
    for dry_run in (True, False):
        response = _backfill(airflow_stack, "operator", DAILY, form, "2026-11-30T00:00:00Z", dry_run)
        assert response.status_code == 422, response.text
        assert f"CDR_EARLIEST_REPORT_DATE={EARLIEST_REPORT_DATE}" in response.json()["detail"]
        # A refusal costs a parse and a few period steps (measured, not asserted: see the report).
        print(f"refused {form!r} dry_run={dry_run} in {response.elapsed.total_seconds() * 1000:.0f} ms")
    # Nothing was created.
    listed = airflow_stack.request("admin", "GET", "/api/v2/backfills", params={"dag_id": DAILY})
    assert listed.status_code == 200 and listed.json()["total_entries"] == 0, listed.text


def test_backfills_over_the_run_cap_are_refused(airflow_stack):
    # 2025-06-01 .. 2026-11-30: 548 daily periods, but only 18 monthly ones.
    start, end = "2025-05-31T21:00:00Z", "2026-11-29T21:00:00Z"
    too_long = _backfill(airflow_stack, "operator", DAILY, start, end)
    assert too_long.status_code == 422, too_long.text
    assert "more than 366 runs" in too_long.json()["detail"]
    monthly = _backfill(airflow_stack, "operator", "cdr_monthly_report", start, end)
    assert monthly.status_code == 200, monthly.text
    assert monthly.json()["total_entries"] == 18
    # A bounded daily backfill goes through to Airflow: 10 days.
    ten = _backfill(airflow_stack, "operator", DAILY, "2026-11-01T21:00:00Z", "2026-11-10T21:00:00Z")
    assert ten.status_code == 200, ten.text
    assert ten.json()["total_entries"] == 10
    # The viewer may not backfill at all (Airflow's own check, not ours).
    assert _backfill(airflow_stack, "viewer", DAILY, "2026-11-01T21:00:00Z", "2026-11-10T21:00:00Z").status_code == 403


def test_a_far_future_end_is_cheap_and_creates_only_ended_periods(airflow_stack):
    # The review's dry run to 9999-12-31 took 98-216 s of api-server CPU; now the timetable stops
    # at the first period that has not ended.
    start = datetime.now(UTC) - timedelta(days=20)
    # Large numbers are milliseconds to pydantic: 253402300799000 is 9999-12-31T23:59:59Z.
    for end in ("9999-12-31T23:59:59Z", 253402300799000):
        response = _backfill(airflow_stack, "operator", "cdr_weekly_report", start.isoformat(), end)
        assert response.status_code == 200, response.text
        runs = response.json()["backfills"]
        assert 1 <= len(runs) <= 3, runs
        assert all(datetime.fromisoformat(r["logical_date"]) <= datetime.now(UTC) for r in runs)
        print(f"dry run to {end!r}: {len(runs)} runs in {response.elapsed.total_seconds() * 1000:.0f} ms")


def test_triggers_outside_the_bounds_are_refused_before_a_run_exists(airflow_stack):
    before = airflow_stack.request("admin", "GET", f"/api/v2/dags/{DAILY}/dagRuns", params={"limit": 1})
    assert before.status_code == 200, before.text
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    for report_date, reason in (
        ("2020-01-01", f"starts before CDR_EARLIEST_REPORT_DATE={EARLIEST_REPORT_DATE}"),
        (tomorrow, "has not ended yet"),
        ("9999-12-31", "outside the dates this system can represent"),
    ):
        response = airflow_stack.trigger_report("operator", DAILY, report_date)
        assert response.status_code == 422, response.text
        assert reason in response.json()["detail"]
    # A logical date (any form) whose period is before the earliest date or not over: Airflow's 400,
    # raised by the timetable while it infers the run's data interval.
    for logical_date in (0, "1970-01-01T00:00:00Z", "2099-01-01T00:00:00Z"):
        body = {"logical_date": logical_date}
        response = airflow_stack.request("operator", "POST", f"/api/v2/dags/{DAILY}/dagRuns", json=body)
        assert response.status_code == 400, (logical_date, response.text)
        assert "no manual run" in response.text
    # An explicit data interval before the earliest date, too.
    body = {"logical_date": "2020-01-01T21:00:00Z", "data_interval_start": "2020-01-01T21:00:00Z",
            "data_interval_end": "2020-01-02T21:00:00Z"}  # fmt: skip
    response = airflow_stack.request("operator", "POST", f"/api/v2/dags/{DAILY}/dagRuns", json=body)
    assert response.status_code == 400 and "no manual run" in response.text, response.text
    after = airflow_stack.request("admin", "GET", f"/api/v2/dags/{DAILY}/dagRuns", params={"limit": 1})
    assert after.json()["total_entries"] == before.json()["total_entries"]


def test_the_cli_backfill_is_bounded_where_airflow_stores_it(airflow_stack):
    """`airflow backfill create` writes to the metadata DB directly, past the API server."""
    cli = (AIRFLOW, "backfill", "create", "--dag-id", DAILY, "--max-active-runs", "1")
    early = airflow_stack.run_cli(*cli, "--from-date", "1970-01-01", "--to-date", "2026-11-30", check=False)
    assert early.returncode != 0
    assert f"CDR_EARLIEST_REPORT_DATE={EARLIEST_REPORT_DATE}" in early.stdout + early.stderr
    long = airflow_stack.run_cli(
        *cli, "--from-date", "2025-06-01T00:00:00+03:00", "--to-date", "2026-11-30", check=False
    )
    assert long.returncode != 0
    assert "more than 366 runs" in long.stdout + long.stderr
    listed = airflow_stack.request("admin", "GET", "/api/v2/backfills", params={"dag_id": DAILY})
    assert listed.json()["total_entries"] == 0, listed.text
    # The CLI's dry run lists no period before the earliest date, whatever it was asked.
    dry = airflow_stack.run_cli(*cli, "--from-date", "1970-01-01", "--to-date", "2025-06-03", "--dry-run")
    dates = re.findall(r"(\d{4}-\d{2}-\d{2})[ T]\d{2}:\d{2}:\d{2}", dry.stdout.split("Runs to be attempted")[-1])
    assert dates and min(dates) >= "2025-05-31", dry.stdout[-2000:]  # 2025-06-01 00:00 +03 = 05-31 21:00Z


def test_backfill_refusal_reads_the_body_as_airflow_does():
    import json

    from cdr_reports.integration.timetable import CalendarPeriodTimetable

    timetable = CalendarPeriodTimetable("daily", earliest=load_settings({}).earliest_report_date)
    now = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)

    def refusal(dag_id, start, end):
        body = json.dumps({"dag_id": dag_id, "from_date": start, "to_date": end}).encode()
        return backfill_refusal(body, now=now, timetable_of=lambda d: timetable if d == DAILY else None)

    for form in (0, "0", 1.5, "1970-01-01", "2025-12-30T21:00:00Z"):
        assert "CDR_EARLIEST_REPORT_DATE=2026-01-01" in refusal(DAILY, form, "2026-01-05T00:00:00Z")
    assert refusal(DAILY, "2025-12-31T21:00:00Z", "9999-12-31T00:00:00Z") is None
    # Other DAGs (another timetable) and malformed bodies are left to Airflow.
    assert refusal("other_team_dag", 0, "2026-11-30T00:00:00Z") is None
    assert backfill_refusal(b"not json", now=now, timetable_of=lambda d: timetable) is None
    assert refusal(DAILY, "not a date", "2026-11-30T00:00:00Z") is None


# -- tokens and user ids --------------------------------------------------------------------------------


def test_tokens_live_as_configured(airflow_stack):
    import jwt

    expected = int(AIRFLOW_HARDENING_ENV["AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME"])
    cli_expected = int(AIRFLOW_HARDENING_ENV["AIRFLOW__API_AUTH__JWT_CLI_EXPIRATION_TIME"])
    assert expected <= 3600 and cli_expected <= 3600
    with airflow_stack.client() as client:
        body = {"username": "viewer", "password": airflow_stack.passwords["viewer"]}
        api = client.post("/auth/token", json=body)
        cli = client.post("/auth/token/cli", json=body)
    assert api.status_code == cli.status_code == 201
    for response, lifetime in ((api, expected), (cli, cli_expected)):
        claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == lifetime


def test_a_deleted_users_token_never_resolves_to_a_new_user(airflow_stack):
    """The review saw a deleted ReportViewer's token read connections as the Admin created next
    (SQLite reused the id). PostgreSQL's sequences never hand out an id twice."""
    import jwt

    password = "Ephemeral-" + airflow_stack.passwords["viewer"][-8:]

    def create(username: str, role: str) -> None:
        created = airflow_stack.request(
            "admin", "POST", "/auth/fab/v1/users",
            json={"username": username, "password": password, "email": f"{username}@example.test",
                  "first_name": username, "last_name": "Test", "roles": [{"name": role}]},
        )  # fmt: skip
        assert created.status_code == 200, created.text

    create("ephemeral", "ReportViewer")
    with airflow_stack.client() as client:
        token = client.post("/auth/token", json={"username": "ephemeral", "password": password}).json()["access_token"]
    old_id = jwt.decode(token, options={"verify_signature": False})["sub"]
    assert airflow_stack.request("admin", "DELETE", "/auth/fab/v1/users/ephemeral").status_code == 204
    create("successor", "Admin")
    try:
        with airflow_stack.client() as client:
            body = {"username": "successor", "password": password}
            new_token = client.post("/auth/token", json=body).json()["access_token"]
        assert jwt.decode(new_token, options={"verify_signature": False})["sub"] != old_id
        for path in ("/api/v2/connections", "/api/v2/dags"):
            response = airflow_stack.request(None, "GET", path, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code in (401, 403), (path, response.status_code, response.text)
    finally:  # other tests count the users
        airflow_stack.request("admin", "DELETE", "/auth/fab/v1/users/successor")


def test_the_metadata_database_is_postgresql(airflow_stack):
    assert airflow_stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    health = airflow_stack.request(None, "GET", "/api/v2/monitor/health").json()
    assert health["metadatabase"]["status"] == "healthy"
    assert Path(airflow_stack.home, "airflow.db").exists() is False


@pytest.mark.parametrize("user", ["admin", "viewer", "operator", "weekly"])
def test_the_dependencies_page_answers(airflow_stack, user):
    """`/ui/dependencies` answered 500 for every role on PostgreSQL through psycopg 3 (Airflow 3.3.2
    compiles `data #> '{dag,dag_dependencies}'` with a VARCHAR parameter: "operator does not exist:
    json #> character varying"); the stacks connect through psycopg2, as compose does."""
    response = airflow_stack.request(user, "GET", "/ui/dependencies")
    assert response.status_code == 200, response.text
    dag_nodes = {n["label"] for n in response.json()["nodes"] if n["type"] == "dag"}
    # The report DAGs emit their Assets: they appear, each only for who may read it.
    assert ("cdr_weekly_report" in dag_nodes) is True
    if user == "weekly":
        assert dag_nodes == {"cdr_weekly_report"}
