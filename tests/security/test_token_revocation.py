"""Tokens end with the credentials they were issued for (`CdrFabAuthManager`), on the real stack.

A password change, a role change and a deactivation each make every token issued before them
useless: as a bearer token (REST API), as the UI's `_token` cookie, and for renewal through
`POST /ui/auth/token`, which before this change handed a leaked token a fresh hour forever.
Tokens issued afterwards work at once.
"""

from __future__ import annotations

import secrets

import pytest

pytestmark = pytest.mark.e2e

ROLE = "ReportViewer"


def _create_user(stack, username: str, password: str, role: str = ROLE) -> None:
    created = stack.request(
        "admin", "POST", "/auth/fab/v1/users",
        json={"username": username, "password": password, "email": f"{username}@example.test",
              "first_name": username, "last_name": "Test", "roles": [{"name": role}]},
    )  # fmt: skip
    assert created.status_code == 200, created.text


def _login(stack, username: str, password: str) -> str:
    with stack.client() as client:
        response = client.post("/auth/token", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


def _bearer(stack, token: str, method: str = "GET", path: str = "/api/v2/dags", **kwargs):
    return stack.request(None, method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)


def _cookie(stack, token: str, path: str = "/api/v2/dags"):
    # The UI sends its token as the `_token` cookie, never as a header.
    with stack.client(cookies={"_token": token}) as client:
        return client.get(path)


def _renew(stack, token: str) -> str | None:
    response = _bearer(stack, token, "POST", "/ui/auth/token", json={"token_type": "api"})
    return response.json()["access_token"] if response.status_code == 200 else None


def _all_refused(stack, tokens: list[str]) -> None:
    for token in tokens:
        for response in (_bearer(stack, token), _cookie(stack, token)):
            assert response.status_code in (401, 403), (response.status_code, response.text)
        assert _renew(stack, token) is None


@pytest.fixture
def account(airflow_stack):
    username = "revoke-" + secrets.token_hex(4)
    password = "Pw-" + secrets.token_urlsafe(12)
    _create_user(airflow_stack, username, password)
    yield username, password
    airflow_stack.request("admin", "DELETE", f"/auth/fab/v1/users/{username}")


def _tokens_before(stack, username: str, password: str) -> list[str]:
    """An API token, a CLI token and one renewed from the first: all valid now."""
    token = _login(stack, username, password)
    with stack.client() as client:
        cli = client.post("/auth/token/cli", json={"username": username, "password": password}).json()["access_token"]
    renewed = _renew(stack, token)
    assert renewed is not None and renewed != token
    for each in (token, cli, renewed):
        assert _bearer(stack, each).status_code == 200
        assert _cookie(stack, each).status_code == 200
    return [token, cli, renewed]


def test_a_password_change_ends_every_earlier_token(airflow_stack, account):
    username, password = account
    tokens = _tokens_before(airflow_stack, username, password)
    new_password = "Pw-new-" + secrets.token_urlsafe(12)
    changed = airflow_stack.request(
        "admin", "PATCH", f"/auth/fab/v1/users/{username}", params={"update_mask": "password"},
        json={"password": new_password},
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    _all_refused(airflow_stack, tokens)
    # The new password gives a token that works at once (no stale cache entry refuses it).
    fresh = _login(airflow_stack, username, new_password)
    assert _bearer(airflow_stack, fresh).status_code == 200
    assert _renew(airflow_stack, fresh) is not None


def test_a_role_change_ends_every_earlier_token(airflow_stack, account):
    username, password = account
    tokens = _tokens_before(airflow_stack, username, password)
    changed = airflow_stack.request(
        "admin", "PATCH", f"/auth/fab/v1/users/{username}", params={"update_mask": "roles"},
        json={"roles": [{"name": "ReportOperator"}]},
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    _all_refused(airflow_stack, tokens)
    fresh = _login(airflow_stack, username, password)
    # The new token carries the new role at once: ReportOperator may trigger, ReportViewer may not.
    assert _bearer(airflow_stack, fresh, "GET", "/api/v2/dags/cdr_daily_report").status_code == 200


def test_a_deactivation_ends_every_earlier_token(airflow_stack, account):
    import sqlalchemy as sa

    username, password = account
    tokens = _tokens_before(airflow_stack, username, password)
    # FAB's users API has no "active" field; the user edit form and the database do.
    engine = sa.create_engine(airflow_stack.metadata_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE ab_user SET active = false WHERE username = :u"), {"u": username})
    finally:
        engine.dispose()
    _all_refused(airflow_stack, tokens)
    with airflow_stack.client() as client:
        assert client.post("/auth/token", json={"username": username, "password": password}).status_code == 401


def test_an_unrelated_change_keeps_tokens(airflow_stack, account):
    username, password = account
    token = _login(airflow_stack, username, password)
    changed = airflow_stack.request(
        "admin", "PATCH", f"/auth/fab/v1/users/{username}", params={"update_mask": "first_name"},
        json={"first_name": "Renamed"},
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert _bearer(airflow_stack, token).status_code == 200


def test_tokens_without_the_credentials_claim_are_refused(airflow_stack):
    """A token signed with the right key but made as plain FabAuthManager makes it (sub only)."""
    import time

    import jwt

    secret = airflow_stack.env["AIRFLOW__API_AUTH__JWT_SECRET"]
    good = _login(airflow_stack, "viewer", airflow_stack.passwords["viewer"])
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    assert "cdr_cred" in claims
    stripped = {key: value for key, value in claims.items() if key != "cdr_cred"}
    stripped["iat"] = stripped["nbf"] = int(time.time()) - 5
    forged = jwt.encode(stripped, secret, algorithm=header["alg"], headers={"kid": header.get("kid")})
    assert _bearer(airflow_stack, forged).status_code == 403
    assert _bearer(airflow_stack, good).status_code == 200
