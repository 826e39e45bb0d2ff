"""The demo's Airflow metadata database and its admin user.

A PostgreSQL database per state folder (on the server `make services` started), migrated with
`airflow db migrate` plus the report roles, and the FAB admin user `make airflow` signs in with.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

import sqlalchemy as sa

from cdr_reports_dev.demo.processes import airflow
from cdr_reports_dev.demo.state import DemoPaths, log
from cdr_reports_dev.services import services_env

SECURITY_MODULE = "cdr_reports.integration.security"


def demo_metadata_url(paths: DemoPaths) -> str:
    """The demo's Airflow metadata DB: DEMO_METADATA_DB_URL, else a PostgreSQL database (created
    if missing, one per state directory) on the server `make services` started.

    Not SQLite: `make airflow` runs four processes that write to it at once (with SQLite a backfill
    request answered 503 "database is locked" and the scheduler exited), and SQLite hands a deleted
    user's id to the next user created, whose rights a still-valid token of the deleted user
    then carries (docs/security.md).
    """
    explicit = os.environ.get("DEMO_METADATA_DB_URL", "").strip()
    if explicit:
        return explicit
    server = os.environ.get("CDR_TEST_PG_URI") or services_env(paths.repo / ".services" / "env").get("CDR_TEST_PG_URI")
    if not server:
        raise SystemExit(
            "the demo's Airflow metadata DB is PostgreSQL: run `make services` (or set DEMO_METADATA_DB_URL)"
        )
    name = "cdr_demo_airflow_" + hashlib.sha256(str(paths.state).encode()).hexdigest()[:10]
    url = sa.engine.make_url(server).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).first() is None:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                (paths.airflow_home / ".migrated").unlink(missing_ok=True)  # a new, empty database
    except sa.exc.OperationalError as exc:
        raise SystemExit(
            f"PostgreSQL at {url.render_as_string()} is unreachable ({exc}): run `make services`"
        ) from None
    finally:
        admin.dispose()
    # psycopg2 for Airflow, as compose: with psycopg 3, Airflow 3.3.2's DAG dependency query
    # (`/ui/dependencies`) fails with "operator does not exist: json #> character varying".
    return url.set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)


def ensure_metadata_db(paths: DemoPaths, env: dict[str, str]) -> None:
    """`airflow db migrate` and the report roles, redone only when Airflow or the roles change.

    Both take seconds even when there is nothing to do, hence the marker file.
    """
    security = find_spec(SECURITY_MODULE)
    roles_digest = (
        hashlib.sha256(Path(security.origin).read_bytes()).hexdigest()[:16] if security and security.origin else "-"
    )
    marker = paths.airflow_home / ".migrated"
    database = sa.engine.make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).render_as_string(hide_password=True)
    access = hashlib.sha256(env.get("CDR_REPORT_ACCESS", "").encode()).hexdigest()[:16]
    wanted = f"apache-airflow-core=={version('apache-airflow-core')} roles={roles_digest} access={access} db={database}"
    if marker.exists() and marker.read_text().strip() == wanted:
        return
    paths.airflow_home.mkdir(parents=True, exist_ok=True)
    log(f"airflow db migrate ({database})")
    result = airflow(env, "db", "migrate", log_file=paths.logs / "db-migrate.log")
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit("airflow db migrate failed")
    if security is not None:
        # The DAGs' access_control names these roles; FAB rejects the DAGs' permissions without them.
        command = [sys.executable, "-m", SECURITY_MODULE, "ensure-roles"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        (paths.logs / "ensure-roles.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
            raise SystemExit(f"python -m {SECURITY_MODULE} ensure-roles failed")
    marker.write_text(wanted + "\n")


def ensure_admin(paths: DemoPaths, env: dict[str, str]) -> str:
    """Create the FAB admin user; returns a line describing the credentials.

    The password goes to ``ensure-user`` on stdin: never on a command line (the process list shows
    it to every local user) nor in the log, which holds the command and its output only.
    """
    user = os.environ.get("CDR_DEMO_ADMIN_USER") or "admin"
    given = os.environ.get("CDR_DEMO_ADMIN_PASSWORD")
    password = given or secrets.token_urlsafe(12)
    command = [sys.executable, "-m", SECURITY_MODULE, "ensure-user"]
    command += ["--username", user, "--role", "Admin", "--email", f"{user}@example.invalid"]
    if given:
        command.append("--reset")  # the password the user chose, also for an existing admin
    result = subprocess.run(command, env=env, input=password + "\n", capture_output=True, text=True, timeout=600)
    log_file = paths.logs / "users.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit("could not create the Airflow admin user")
    if given:
        return f"user {user!r}, password from CDR_DEMO_ADMIN_PASSWORD"
    if result.stdout.rstrip().endswith(": created"):
        # Printed once: only this run knows the generated password.
        return f"user {user!r}, password {password!r} (generated; shown only now)"
    return f"user {user!r}, password as printed when it was created (set CDR_DEMO_ADMIN_PASSWORD to reset it)"
