"""RBAC through the real REST API: anonymous, ReportViewer, ReportOperator and Admin."""

from __future__ import annotations

import time

import pytest

from tests.support.fab_stack import OTHER_DAG_ID, REPORT_DAG_IDS, quote, task_log_text

from .conftest import PROBE_CONN_ID, PROBE_DAG_ID, REPORT_DATE

pytestmark = pytest.mark.e2e

DAILY = "cdr_daily_report"


def _dag_ids(stack, username):
    response = stack.request(username, "GET", "/api/v2/dags", params={"limit": 100})
    assert response.status_code == 200, response.text
    return sorted(d["dag_id"] for d in response.json()["dags"])


# -- anonymous and tokens ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/dags",
        f"/api/v2/dags/{DAILY}/dagRuns",
        "/api/v2/connections",
        "/api/v2/variables",
        "/auth/fab/v1/users",
        "/ui/dags",
    ],
)
def test_anonymous_api_calls_are_unauthorized(airflow_stack, path):
    response = airflow_stack.request(None, "GET", path)
    assert response.status_code == 401, response.text


def test_anonymous_fab_pages_redirect_to_login(airflow_stack):
    with airflow_stack.client() as client:
        response = client.get("/auth/users/list/")
    assert response.status_code == 302
    assert "/auth/login/" in response.headers["location"]


def test_wrong_password_gets_no_token(airflow_stack):
    with airflow_stack.client() as client:
        response = client.post("/auth/token", json={"username": "viewer", "password": "not-the-password"})
    assert response.status_code == 401, response.text
    assert "access_token" not in response.text


def test_tokens_must_be_signed_with_the_configured_secret(airflow_stack):
    import jwt

    real = airflow_stack.token("admin")
    claims = jwt.decode(real, options={"verify_signature": False})
    header = jwt.get_unverified_header(real)

    def call(token):
        response = airflow_stack.request(
            None, "GET", "/api/v2/connections", headers={"Authorization": f"Bearer {token}"}
        )
        return response.status_code, response.json()["detail"] if response.status_code != 200 else None

    secret = airflow_stack.secrets["jwt_secret"]
    kid = {"kid": header.get("kid")}
    # Control: the same claims re-signed with the deployment's secret are accepted...
    assert call(jwt.encode(claims, secret, algorithm=header["alg"], headers=kid)) == (200, None)
    # ...so a different key, an unsigned token or an expired one is rejected for that reason alone.
    assert call(jwt.encode(claims, "guessed-secret-" + "x" * 64, algorithm=header["alg"], headers=kid)) == (
        403,
        "Invalid JWT token",
    )
    assert call(jwt.encode(claims, None, algorithm="none")) == (403, "Invalid JWT token")
    now = int(time.time())
    expired = {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}
    assert call(jwt.encode(expired, secret, algorithm=header["alg"], headers=kid)) == (401, "Token Expired")


def test_login_form_is_rate_limited_per_client_address(airflow_stack):
    """config/webserver_config.py sets 10 sign-ins a minute (FAB's default is 5 per 40 s).

    Sent from 127.0.0.2 so the other tests' logins (from 127.0.0.1) keep their own budget.
    """
    import re

    import httpx

    statuses = []
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=airflow_stack.base_url, transport=transport, timeout=30) as client:
        for _ in range(11):
            page = client.get("/auth/login/")
            assert page.status_code == 200
            csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
            response = client.post("/auth/login/", data={"csrf_token": csrf, "username": "viewer", "password": "wrong"})
            statuses.append(response.status_code)
    # 6th..10th attempts pass: the file's limit applies, not FAB's default; the 11th is refused.
    assert 429 not in statuses[:10], statuses
    assert statuses[10] == 429, statuses


# -- ReportViewer --------------------------------------------------------------------------------


def test_viewer_lists_exactly_the_report_dags(airflow_stack):
    assert _dag_ids(airflow_stack, "viewer") == sorted(REPORT_DAG_IDS)
    assert _dag_ids(airflow_stack, "admin") == sorted([*REPORT_DAG_IDS, OTHER_DAG_ID, PROBE_DAG_ID])


def test_viewer_reads_report_dag_details_and_runs(airflow_stack):
    run_id = airflow_stack.started_runs[DAILY]
    for dag_id in REPORT_DAG_IDS:
        assert airflow_stack.request("viewer", "GET", f"/api/v2/dags/{dag_id}").status_code == 200
    runs = airflow_stack.request("viewer", "GET", f"/api/v2/dags/{DAILY}/dagRuns")
    assert runs.status_code == 200
    assert run_id in {r["dag_run_id"] for r in runs.json()["dag_runs"]}
    # The cross-DAG listing is filtered to what the role may read.
    all_runs = airflow_stack.request("viewer", "GET", "/api/v2/dags/~/dagRuns", params={"limit": 100})
    assert all_runs.status_code == 200
    assert {r["dag_id"] for r in all_runs.json()["dag_runs"]} <= set(REPORT_DAG_IDS)
    admin_runs = airflow_stack.request("admin", "GET", "/api/v2/dags/~/dagRuns", params={"limit": 100})
    assert PROBE_DAG_ID in {r["dag_id"] for r in admin_runs.json()["dag_runs"]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"/api/v2/dags/{DAILY}/dagRuns", {"logical_date": None, "conf": {"report_date": REPORT_DATE}}),
        ("POST", f"/api/v2/dags/{DAILY}/clearTaskInstances", {"dry_run": True, "only_failed": True}),
        ("PATCH", f"/api/v2/dags/{DAILY}", {"is_paused": True}),
        ("DELETE", f"/api/v2/dags/{DAILY}", None),
        ("GET", f"/api/v2/dags/{OTHER_DAG_ID}", None),
        ("GET", f"/api/v2/dags/{OTHER_DAG_ID}/dagRuns", None),
        ("GET", "/api/v2/connections", None),
        ("GET", f"/api/v2/connections/{PROBE_CONN_ID}", None),
        ("PATCH", f"/api/v2/connections/{PROBE_CONN_ID}", {"connection_id": PROBE_CONN_ID, "conn_type": "http"}),
        ("GET", "/api/v2/variables", None),
        ("GET", "/api/v2/pools", None),
        ("GET", "/api/v2/config", None),
        ("GET", "/auth/fab/v1/users", None),
        ("GET", "/auth/fab/v1/roles", None),
    ],
)
def test_viewer_is_forbidden(airflow_stack, method, path, body):
    response = airflow_stack.request("viewer", method, path, json=body)
    assert response.status_code == 403, f"{method} {path}: {response.status_code} {response.text}"


def test_viewer_trigger_creates_no_run(airflow_stack):
    before = {r["dag_run_id"] for r in airflow_stack.dag_runs(DAILY)}
    response = airflow_stack.request("viewer", "POST", f"/api/v2/dags/{DAILY}/dagRuns", json={"logical_date": None})
    assert response.status_code == 403
    assert {r["dag_run_id"] for r in airflow_stack.dag_runs(DAILY)} == before


def test_viewer_reads_task_instances_and_logs_of_a_finished_run(airflow_stack):
    run_id = airflow_stack.started_runs[DAILY]
    run = airflow_stack.wait_run_finished(DAILY, run_id)
    # No cdr_mongo connection in this stack: plan succeeds, extract fails fast.
    assert run["state"] == "failed"
    tis = airflow_stack.request("viewer", "GET", f"/api/v2/dags/{DAILY}/dagRuns/{quote(run_id)}/taskInstances")
    assert tis.status_code == 200
    states = {(t["task_id"], t["map_index"]): t["state"] for t in tis.json()["task_instances"]}
    assert states[("plan", -1)] == "success"
    assert states[("extract", 0)] == "failed"

    status, text = task_log_text(airflow_stack, "viewer", DAILY, run_id, "plan")
    assert status == 200, text
    # The log of this very run: the period comes from the run's conf.
    assert f"reporting daily {REPORT_DATE}" in text


def test_viewer_cannot_read_other_dags_logs(airflow_stack):
    probe_run = airflow_stack.started_runs[PROBE_DAG_ID]
    status, text = task_log_text(airflow_stack, "viewer", PROBE_DAG_ID, probe_run, "leak")
    assert status == 403, text
    status, _ = task_log_text(airflow_stack, "admin", PROBE_DAG_ID, probe_run, "leak")
    assert status == 200


# -- ReportOperator ------------------------------------------------------------------------------


def test_operator_triggers_a_daily_report_for_a_date(airflow_stack):
    response = airflow_stack.trigger_report("operator", DAILY, REPORT_DATE)
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    stored = {r["dag_run_id"]: r for r in airflow_stack.dag_runs(DAILY)}
    assert stored[run_id]["conf"] == {"report_date": REPORT_DATE}
    # ...and may mark it (edit DAG runs of the report DAGs).
    marked = airflow_stack.request(
        "operator", "PATCH", f"/api/v2/dags/{DAILY}/dagRuns/{quote(run_id)}", json={"state": "failed"}
    )
    assert marked.status_code == 200, marked.text
    assert marked.json()["state"] == "failed"


def test_operator_clears_report_task_instances(airflow_stack):
    response = airflow_stack.request(
        "operator", "POST", f"/api/v2/dags/{DAILY}/clearTaskInstances", json={"dry_run": True, "only_failed": True}
    )
    assert response.status_code == 200, response.text


def test_operator_only_sees_report_dags(airflow_stack):
    assert _dag_ids(airflow_stack, "operator") == sorted(REPORT_DAG_IDS)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"/api/v2/dags/{OTHER_DAG_ID}/dagRuns", {"logical_date": None}),
        ("GET", f"/api/v2/dags/{OTHER_DAG_ID}", None),
        ("PATCH", f"/api/v2/dags/{OTHER_DAG_ID}", {"is_paused": False}),
        ("POST", f"/api/v2/dags/{PROBE_DAG_ID}/clearTaskInstances", {"dry_run": True}),
        ("DELETE", f"/api/v2/dags/{DAILY}", None),
        ("GET", "/api/v2/connections", None),
        ("POST", "/api/v2/connections", {"connection_id": "sneaky", "conn_type": "http"}),
        ("GET", "/api/v2/variables", None),
        ("GET", "/api/v2/config", None),
        ("GET", "/auth/fab/v1/users", None),
        (
            "POST",
            "/auth/fab/v1/users",
            {
                "username": "x",
                "password": "x",
                "email": "x@example.test",
                "first_name": "x",
                "last_name": "x",
                "roles": [{"name": "Admin"}],
            },
        ),
    ],
)
def test_operator_is_forbidden(airflow_stack, method, path, body):
    response = airflow_stack.request("operator", method, path, json=body)
    assert response.status_code == 403, f"{method} {path}: {response.status_code} {response.text}"


# -- Admin ---------------------------------------------------------------------------------------


def test_admin_reads_connections_users_and_other_dags(airflow_stack):
    conn = airflow_stack.request("admin", "GET", f"/api/v2/connections/{PROBE_CONN_ID}")
    assert conn.status_code == 200
    assert conn.json()["login"] == "probe"
    # Even an Admin never gets a stored password back from the API.
    assert conn.json()["password"] == "***"
    assert airflow_stack.probe_password not in conn.text
    users = airflow_stack.request("admin", "GET", "/auth/fab/v1/users")
    assert users.status_code == 200
    assert {u["username"]: [r["name"] for r in u["roles"]] for u in users.json()["users"]} == {
        "admin": ["Admin"],
        "viewer": ["ReportViewer"],
        "operator": ["ReportOperator"],
        "weekly": ["WeeklyReaders"],  # the per-report role of the stack's CDR_REPORT_ACCESS
    }
    assert airflow_stack.request("admin", "GET", f"/api/v2/dags/{OTHER_DAG_ID}").status_code == 200


def test_menus_follow_the_roles(airflow_stack):
    menus = {u: airflow_stack.request(u, "GET", "/ui/auth/menus").json() for u in ("viewer", "operator", "admin")}
    assert "Connections" not in menus["viewer"]["authorized_menu_items"]
    assert "Connections" not in menus["operator"]["authorized_menu_items"]
    assert "Dags" in menus["viewer"]["authorized_menu_items"]
    assert "Connections" in menus["admin"]["authorized_menu_items"]
    assert menus["viewer"]["extra_menu_items"] == []  # no Users/Roles pages
    assert {item["text"] for item in menus["admin"]["extra_menu_items"]} >= {"Users", "Roles"}
