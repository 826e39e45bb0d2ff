"""The environment every Airflow process of the demo runs with.

Airflow is configured through the environment only (AIRFLOW__* variables and AIRFLOW_CONN_*
connections), never through the demo home's airflow.cfg, which Airflow writes with its defaults.
`make demo`, `make airflow` and `make airflow-cli` build the same environment here, so one migrated
metadata DB and one set of keys serve all three.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

from cryptography.fernet import Fernet
from pymongo.uri_parser import parse_uri

from cdr_reports.integration.security import AIRFLOW_HARDENING_ENV
from cdr_reports.pipeline.config import load_settings
from cdr_reports_dev.demo import state
from cdr_reports_dev.demo.metadata_db import demo_metadata_url
from cdr_reports_dev.demo.state import DemoPaths

# FAB, with tokens that end with the user's credentials (cdr_reports.integration.auth_manager).
FAB_AUTH_MANAGER = "cdr_reports.integration.auth_manager.CdrFabAuthManager"


def mongo_connection(uri: str, database: str) -> dict[str, Any]:
    """An Airflow connection (JSON form) for MongoHook, from a mongodb:// URI."""
    parsed = parse_uri(uri)
    if len(parsed["nodelist"]) != 1:
        raise SystemExit(f"the demo needs a single-host MongoDB URI, got {uri!r}")
    host, port = parsed["nodelist"][0]
    conn: dict[str, Any] = {"conn_type": "mongo", "host": host, "port": port, "schema": database}
    if parsed.get("username"):
        conn["login"], conn["password"] = parsed["username"], parsed.get("password") or ""
    auth_source = parsed["options"].get("authsource")
    if auth_source:
        conn["extra"] = {"authSource": auth_source}
    return conn


def airflow_env(paths: DemoPaths, mongo_uri: str, mongo_database: str) -> dict[str, str]:
    """Environment of every Airflow process of the demo: PostgreSQL metadata, env connections."""
    settings = load_settings()
    home = paths.airflow_home
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(paths.repo / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(paths.repo / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # The same auth manager in `run` and `airflow`, so one migrated DB serves both.
            "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": demo_metadata_url(paths),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            f"AIRFLOW_CONN_{settings.mongo_conn_id.upper()}": json.dumps(mongo_connection(mongo_uri, mongo_database)),
            f"AIRFLOW_CONN_{settings.sql_conn_id.upper()}": json.dumps(
                {"conn_type": "sqlite", "host": str(paths.reports_db)}
            ),
            "CDR_MONGO_DATABASE": mongo_database,
            "CDR_SQL_SCHEMA": "",  # SQLite has no schemas
        }
    )
    # The deployment's hardening (token lifetimes, sessions, masking, Swagger off), as compose sets it.
    for key, value in AIRFLOW_HARDENING_ENV.items():
        env.setdefault(key, value)
    # The repository's FAB settings (login, no public access), as in the Docker stack.
    fab_config = paths.repo / "config" / "webserver_config.py"
    if fab_config.is_file():
        env["AIRFLOW__FAB__CONFIG_FILE"] = str(fab_config)
    # A demo should not sit in minute-long retry delays, and FerretDB answers every query with a
    # full collection scan (seconds per query); the LocalExecutor forks `parallelism` task workers at
    # start (Airflow's default 32): one per CPU core is plenty here. Explicit settings still win.
    for key, value in (
        ("AIRFLOW__CORE__PARALLELISM", str(max(2, os.cpu_count() or 2))),
        ("CDR_RETRIES", "1"),
        ("CDR_RETRY_DELAY_SECONDS", "2"),
        ("CDR_MAX_RETRY_DELAY_SECONDS", "4"),
        ("CDR_MONGO_TIMEOUT_MS", "300000"),
    ):
        if not env.get(key):
            env[key] = value
    return env


def demo_secrets(paths: DemoPaths) -> dict[str, str]:
    """Keys the Airflow processes must share, generated once and kept in the demo home (mode 600)."""
    path = paths.airflow_home / "demo-secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = {
        "AIRFLOW__CORE__FERNET_KEY": lambda: Fernet.generate_key().decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": lambda: secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": lambda: secrets.token_hex(32),
    }
    changed = False
    for key, make in wanted.items():
        if not stored.get(key):
            stored[key] = make()
            changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2) + "\n")
    # Values exported by the user win over the stored ones.
    return {key: os.environ.get(key) or value for key, value in stored.items()}


def demo_cli_env(paths: DemoPaths) -> dict[str, str]:
    """The environment of `make airflow`'s processes (metadata DB, auth manager, keys, connections)."""
    env = airflow_env(paths, state.demo_mongo_uri(paths.repo), state.mongo_database())
    env.update(demo_secrets(paths))
    return env
