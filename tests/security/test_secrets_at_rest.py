"""Secrets at rest of the local servers (`scripts/services.sh`): private modes, SCRAM passwords.

A second PostgreSQL and FerretDB are started in a state folder under a mode-755 parent, on free
ports, and stopped afterwards. (The demo's own state: tests/e2e/test_demo.py; passwords kept off
command lines: the stacks' `ensure-user` and tests/security/test_token_revocation.py.)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.services]

REPO = Path(__file__).resolve().parents[2]
PG_USER, PG_PASSWORD, PG_DB = "cdr", "cdr-test-only", "cdr_test"


def _services(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "services.sh"), *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def _login(port: int, user: str, password: str | None) -> str:
    """'ok', or the server's reason for refusing the TCP login."""
    import psycopg

    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user=user, password=password, dbname=PG_DB, connect_timeout=10
        ) as conn:
            conn.execute("SELECT 1")
        return "ok"
    except psycopg.OperationalError as exc:
        return str(exc)


def _loose_modes(root: Path) -> list[str]:
    loose = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink() or path.is_socket():
            continue
        mode = path.stat().st_mode & 0o777
        if (path.is_dir() and mode != 0o700) or (path.is_file() and mode & 0o077):
            loose.append(f"{oct(mode)} {path.relative_to(root)}")
    return loose


@pytest.fixture
def own_services(tmp_path):
    """services.sh with its own state folder (under a 755 parent) and ports; stopped afterwards."""
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o755)
    state = parent / "services"
    state.mkdir()
    state.chmod(0o755)
    (state / "left-by-an-older-version.log").write_text("old\n")
    (state / "left-by-an-older-version.log").chmod(0o644)
    pg_port, mongo_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDR_")},
        "CDR_SERVICES_DIR": str(state),
        "CDR_PG_PORT": str(pg_port),
        "CDR_FERRETDB_PORT": str(mongo_port),
    }
    yield env, state, pg_port
    _services(env, "stop", "postgres", "ferretdb")
    if os.geteuid() == 0:  # root's cluster lives outside the state folder (services.sh: pg_home)
        digest = hashlib.sha256(str(state).encode()).hexdigest()[:16]
        shutil.rmtree(f"/var/tmp/cdr-reports-pg-{digest}", ignore_errors=True)


def test_services_keep_their_state_private_and_postgres_requires_a_password(own_services):
    env, state, port = own_services
    started = _services(env, "start", "postgres", "ferretdb")
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    assert _loose_modes(state) == []
    env_file = (state / "env").read_text()
    assert f"CDR_TEST_PG_URI=postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}/{PG_DB}" in env_file

    # TCP logins need the password, checked with SCRAM; the superuser has none over TCP.
    assert _login(port, PG_USER, PG_PASSWORD) == "ok"
    assert "password authentication failed" in _login(port, PG_USER, "wrong")
    assert "password" in _login(port, PG_USER, None)
    assert "password" in _login(port, "postgres", None)
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname=PG_DB) as conn:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (PG_USER,)).fetchone()[0]
        rules = conn.execute("SELECT type, auth_method FROM pg_hba_file_rules").fetchall()
    assert stored.startswith("SCRAM-SHA-256$")
    assert {method for kind, method in rules if kind.startswith("host")} == {"scram-sha-256"}


def test_a_cluster_that_trusted_tcp_logins_is_switched_to_scram(own_services):
    env, state, port = own_services
    assert _services(env, "start", "postgres").returncode == 0
    assert _services(env, "stop", "postgres").returncode == 0
    # What an older services.sh initialised: `initdb --auth=trust`.
    home = Path(f"/var/tmp/cdr-reports-pg-{hashlib.sha256(str(state).encode()).hexdigest()[:16]}")
    hba = (home if os.geteuid() == 0 else state) / "pgdata" / "pg_hba.conf"
    text = hba.read_text()
    hba.write_text(text.replace("scram-sha-256", "trust"))
    assert "trust" in hba.read_text()
    again = _services(env, "start", "postgres")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "requiring SCRAM passwords for TCP logins" in again.stderr
    assert "password" in _login(port, PG_USER, None)
    assert _login(port, PG_USER, PG_PASSWORD) == "ok"
