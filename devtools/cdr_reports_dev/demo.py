"""The local demo and the seed step of the Docker stack.

    python -m cdr_reports_dev.demo seed ...   index + synthetic CDRs (compose service `mongo-seed`)
    python -m cdr_reports_dev.demo run        `make demo`: seed FerretDB, run the three DAGs, print the reports
    python -m cdr_reports_dev.demo airflow    `make airflow`: the Airflow components in the foreground
    python -m cdr_reports_dev.demo print ...  print stored reports (latest period of each type)

`run` and `airflow` need no Docker: they use the FerretDB and the PostgreSQL started by `make
services` (the Airflow metadata DB is a PostgreSQL database, one per state directory, shared by
`run` and `airflow`; the Airflow home is .services/demo_airflow_home), a SQLite report DB
.services/demo_reports.db, and the connections passed as AIRFLOW_CONN_* variables. Knobs
(environment): DEMO_DAYS, DEMO_CALLS_PER_DAY, DEMO_SEED, DEMO_REPORTS, DEMO_MONGO_URI,
DEMO_MONGO_DATABASE, DEMO_STATE_DIR, DEMO_AIRFLOW_PORT, DEMO_METADATA_DB_URL, CDR_DEMO_ADMIN_USER,
CDR_DEMO_ADMIN_PASSWORD.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cdr_reports_dev.services import services_env

# FAB, with tokens that end with the user's credentials (cdr_reports.integration.auth_manager).
FAB_AUTH_MANAGER = "cdr_reports.integration.auth_manager.CdrFabAuthManager"
DEFAULT_MONGO_URI = "mongodb://127.0.0.1:27027/"
# 35 days x 5,000 calls = 175,000 CDRs: the largest volume at which `make demo` (seed, three
# DAG runs through Airflow, printed reports) finished within 3 minutes on the 2-core development
# machine: 2 min 41 s measured with the machine also running a benchmark (load average ~3).
# FerretDB decodes the whole collection for each extract (one projected find per slice).
DEMO_DAYS = 35
DEMO_CALLS_PER_DAY = 5000
DAG_FILE = Path("dags") / "cdr_report_dags.py"


def _log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


# --------------------------------------------------------------------------- seed


def seed(
    uri: str,
    database: str,
    collection: str = "CdrRecords",
    days: int = DEMO_DAYS,
    calls_per_day: int = DEMO_CALLS_PER_DAY,
    seed_value: int = 42,
    mode: str = "drop",
) -> str:
    """Seed `database.collection` through the `cdr-seed` CLI, then ensure the report index.

    mode: "drop" replaces the collection (re-runs need no clean-up), "if-empty" leaves existing
    data alone (a restarted stack keeps the data its reports were computed from), "append" adds.
    Returns the name of the index serving `DateTime.Start` range queries.
    """
    import pymongo

    from cdr_reports.pipeline.extract import ensure_indexes
    from cdr_reports_dev.synthetic import main as cdr_seed

    if mode not in ("drop", "if-empty", "append"):
        raise ValueError(f"unknown seed mode {mode!r}")
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        target: Any = client[database][collection]
        if mode == "if-empty" and target.find_one({}, projection={"_id": 1}) is not None:
            _log(f"{database}.{collection} already holds CDRs: not seeding (mode if-empty)")
        else:
            argv = [
                "--uri",
                uri,
                "--database",
                database,
                "--collection",
                collection,
                "--days",
                str(days),
                "--calls-per-day",
                str(calls_per_day),
                "--seed",
                str(seed_value),
            ]
            if mode == "drop":
                argv.append("--drop")
            status = cdr_seed(argv)
            if status:
                raise SystemExit(status)
        # Index after the bulk insert: cheaper than maintaining it during the inserts.
        index = ensure_indexes(target)
    _log(f"index on DateTime.Start: {index}")
    return index


# --------------------------------------------------------------------------- local Airflow


@dataclass(frozen=True)
class DemoPaths:
    repo: Path
    state: Path

    @property
    def airflow_home(self) -> Path:
        return self.state / "demo_airflow_home"

    @property
    def reports_db(self) -> Path:
        return self.state / "demo_reports.db"


def _repo_root() -> Path:
    for candidate in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (candidate / DAG_FILE).is_file():
            return candidate
    raise SystemExit(f"cannot find {DAG_FILE}: run the demo from the repository (make demo)")


def demo_mongo_uri(repo: Path) -> str:
    return (
        os.environ.get("DEMO_MONGO_URI")
        or os.environ.get("CDR_TEST_MONGO_URI")
        or services_env(repo / ".services" / "env").get("CDR_TEST_MONGO_URI")
        or DEFAULT_MONGO_URI
    )


def mongo_connection(uri: str, database: str) -> dict[str, Any]:
    """An Airflow connection (JSON form) for MongoHook, from a mongodb:// URI."""
    from pymongo.uri_parser import parse_uri

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


def demo_metadata_url(paths: DemoPaths) -> str:
    """The demo's Airflow metadata DB: DEMO_METADATA_DB_URL, else a PostgreSQL database (created
    if missing, one per state directory) on the server `make services` started.

    Not SQLite: `make airflow` runs four processes that write to it at once (with SQLite a backfill
    request answered 503 "database is locked" and the scheduler exited), and SQLite hands a deleted
    user's id to the next user created, whose rights a still-valid token of the deleted user
    then carries (docs/security.md).
    """
    import hashlib

    import sqlalchemy as sa

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


def airflow_env(paths: DemoPaths, mongo_uri: str, mongo_database: str) -> dict[str, str]:
    """Environment of every Airflow process of the demo: PostgreSQL metadata, env connections."""
    from cdr_reports.integration.security import AIRFLOW_HARDENING_ENV
    from cdr_reports.pipeline.config import load_settings

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


def _airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def _airflow(
    env: dict[str, str], *args: str, timeout: float = 600, log_file: Path | None = None
) -> subprocess.CompletedProcess:
    command = [_airflow_bin(), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text(f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    return result


def ensure_metadata_db(paths: DemoPaths, env: dict[str, str]) -> None:
    """`airflow db migrate` and the report roles, redone only when Airflow or the roles change.

    Both take seconds even when there is nothing to do, hence the marker file.
    """
    import hashlib
    from importlib.metadata import version
    from importlib.util import find_spec

    security = find_spec("cdr_reports.integration.security")
    roles_digest = (
        hashlib.sha256(Path(security.origin).read_bytes()).hexdigest()[:16] if security and security.origin else "-"
    )
    marker = paths.airflow_home / ".migrated"
    import sqlalchemy as sa

    database = sa.engine.make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).render_as_string(hide_password=True)
    access = hashlib.sha256(env.get("CDR_REPORT_ACCESS", "").encode()).hexdigest()[:16]
    wanted = f"apache-airflow-core=={version('apache-airflow-core')} roles={roles_digest} access={access} db={database}"
    if marker.exists() and marker.read_text().strip() == wanted:
        return
    paths.airflow_home.mkdir(parents=True, exist_ok=True)
    logs = paths.airflow_home / "logs"
    _log(f"airflow db migrate ({database})")
    result = _airflow(env, "db", "migrate", log_file=logs / "db-migrate.log")
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit("airflow db migrate failed")
    if security is not None:
        # The DAGs' access_control names these roles; FAB rejects the DAGs' permissions without them.
        command = [sys.executable, "-m", "cdr_reports.integration.security", "ensure-roles"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        (logs / "ensure-roles.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
            raise SystemExit("python -m cdr_reports.integration.security ensure-roles failed")
    marker.write_text(wanted + "\n")


def _report_types() -> list[str]:
    """DEMO_REPORTS: comma-separated subset of daily,weekly,monthly (default: all three)."""
    from cdr_reports.pipeline.periods import REPORT_TYPES

    raw = os.environ.get("DEMO_REPORTS", "").strip()
    if not raw:
        return list(REPORT_TYPES)
    wanted = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = sorted(set(wanted) - set(REPORT_TYPES))
    if unknown or not wanted:
        raise SystemExit(f"DEMO_REPORTS={raw!r}: expected a comma-separated subset of {','.join(REPORT_TYPES)}")
    return [report_type for report_type in REPORT_TYPES if report_type in wanted]


def _report_periods(report_types: list[str], run_after: datetime) -> dict[str, date]:
    from cdr_reports.pipeline.config import load_settings
    from cdr_reports.pipeline.periods import last_complete_period

    settings = load_settings()
    return {
        report_type: last_complete_period(report_type, run_after, settings.time_zone, settings.week_start).start_date
        for report_type in report_types
    }


def run_dags(
    paths: DemoPaths, env: dict[str, str], report_types: list[str], run_after: datetime, timeout: float
) -> None:
    """`airflow dags test --use-executor` per DAG, same logical date: each reports its last complete period.

    Through the LocalExecutor, not in-process: then each task writes its log file under the demo's
    log folder, where `make airflow`'s API server reads it (an in-process `dags test` only prints
    the logs, and the UI answered "Could not read served logs ... Connection refused"). The
    executor's task processes talk to Airflow through the execution API: a `--apps execution` API
    server runs on a free loopback port meanwhile.
    """
    import socket
    import urllib.error
    import urllib.request

    from cdr_reports.integration.dag_factory import DAG_IDS

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **env,
        **_demo_secrets(paths),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
    }
    logs = paths.airflow_home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "execution-api.out", "ab") as out:
        server = subprocess.Popen(
            [_airflow_bin(), "api-server", "--apps", "execution", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/execution/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"the execution API server did not start (see {logs / 'execution-api.out'})"
                    ) from None
                time.sleep(0.5)
        logical_date = run_after.isoformat()
        for report_type in report_types:
            dag_id = DAG_IDS[report_type]
            began = time.monotonic()
            log_file = logs / f"dags-test-{dag_id}.log"
            result = _airflow(
                env, "dags", "test", dag_id, logical_date, "--use-executor", timeout=timeout, log_file=log_file
            )
            if result.returncode != 0:
                sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
                raise SystemExit(f"airflow dags test {dag_id} failed (full output: {log_file})")
            _log(f"airflow dags test {dag_id}: success in {time.monotonic() - began:.1f} s (log: {log_file})")
    finally:
        _stop({"execution-api": server}, grace=15)


def print_reports(paths: DemoPaths, periods: dict[str, date]) -> str:
    import sqlalchemy as sa

    from cdr_reports_dev.report_print import format_reports

    engine = sa.create_engine(f"sqlite:///{paths.reports_db}")
    try:
        text = format_reports(engine, periods)
    finally:
        engine.dispose()
    print(text, flush=True)
    return text


def _paths() -> DemoPaths:
    repo = _repo_root()
    state = Path(os.environ.get("DEMO_STATE_DIR") or repo / ".services").resolve()
    return DemoPaths(repo=repo, state=state)


# What the demo keeps in its state folder: Airflow's home (secrets, logs, marker), the report
# database, the services' URIs with the test PostgreSQL password.
_PRIVATE_STATE_ENTRIES = (
    "demo_airflow_home",
    "demo_reports.db",
    "demo_reports.db-journal",
    "demo_reports.db-wal",
    "env",
)


def make_private(paths: DemoPaths) -> None:
    """Owner-only modes for the demo's state, whatever the parent folder's mode and the umask.

    Everything created from here on is private through the umask (0077, inherited by the Airflow
    processes and their task processes); what an earlier run left with wider modes is narrowed:
    folders 0700, files 0600 (docs/security.md, "Secrets at rest").
    """
    os.umask(0o077)
    paths.state.mkdir(parents=True, exist_ok=True)
    paths.state.chmod(0o700)
    for name in _PRIVATE_STATE_ENTRIES:
        top = paths.state / name
        if top.is_symlink() or not top.exists():
            continue
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            if path.is_symlink():
                continue
            path.chmod(0o700 if path.is_dir() else 0o600)


def _int_env(name: str, default: int, low: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number") from None
    if value < low:
        raise SystemExit(f"{name}={raw!r} must be >= {low}")
    return value


def _mongo_database() -> str:
    return os.environ.get("DEMO_MONGO_DATABASE") or "cdr_demo"


def cmd_run(args: argparse.Namespace) -> int:
    paths = _paths()
    make_private(paths)
    uri, database = demo_mongo_uri(paths.repo), _mongo_database()
    days, per_day = _int_env("DEMO_DAYS", DEMO_DAYS), _int_env("DEMO_CALLS_PER_DAY", DEMO_CALLS_PER_DAY, low=0)
    _log(f"seeding {days} days x {per_day} calls into {database} at {uri}")
    seed(uri, database, days=days, calls_per_day=per_day, seed_value=_int_env("DEMO_SEED", 42, low=0), mode="drop")
    env = airflow_env(paths, uri, database)
    ensure_metadata_db(paths, env)
    report_types = _report_types()
    run_after = datetime.now(UTC).replace(microsecond=0)
    periods = _report_periods(report_types, run_after)
    _log("running the DAGs for the last complete periods: " + ", ".join(f"{t} {d}" for t, d in periods.items()))
    run_dags(paths, env, report_types, run_after, timeout=_int_env("DEMO_DAG_TIMEOUT_SECONDS", 900))
    print()
    print_reports(paths, periods)
    print()
    _log(f"reports stored in {paths.reports_db}; `make airflow` shows these runs in the Airflow UI")
    return 0


# --------------------------------------------------------------------------- make airflow


def _demo_secrets(paths: DemoPaths) -> dict[str, str]:
    """Keys the Airflow processes must share, generated once and kept in the demo home (mode 600)."""
    from cryptography.fernet import Fernet

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


def ensure_admin(paths: DemoPaths, env: dict[str, str]) -> str:
    """Create the FAB admin user; returns a line describing the credentials.

    The password goes to ``ensure-user`` on stdin: never on a command line (the process list shows
    it to every local user) nor in the log, which holds the command and its output only.
    """
    user = os.environ.get("CDR_DEMO_ADMIN_USER") or "admin"
    given = os.environ.get("CDR_DEMO_ADMIN_PASSWORD")
    password = given or secrets.token_urlsafe(12)
    command = [sys.executable, "-m", "cdr_reports.integration.security", "ensure-user"]
    command += ["--username", user, "--role", "Admin", "--email", f"{user}@example.invalid"]
    if given:
        command.append("--reset")  # the password the user chose, also for an existing admin
    result = subprocess.run(command, env=env, input=password + "\n", capture_output=True, text=True, timeout=600)
    log_file = paths.airflow_home / "logs" / "users.log"
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


HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def _wait_healthy(url: str, processes: dict[str, subprocess.Popen], timeout: float) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                health = json.load(response)
            # Announce the UI only once every component reports in: a user who opens it then sees
            # the DAGs parsed and the scheduler running.
            if all((health.get(part) or {}).get("status") == "healthy" for part in HEALTH_COMPONENTS):
                return health
            last = health
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
        time.sleep(2)
    raise RuntimeError(f"Airflow did not become healthy within {timeout:.0f} s (last: {last!r})")


def _stop(processes: dict[str, subprocess.Popen], grace: float = 30) -> None:
    """SIGTERM each component's process group (its own session), then SIGKILL stragglers."""
    for process in processes.values():
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Also once the component itself has gone: a child it left behind (a task process, a
        # gunicorn worker) would otherwise outlive the demo.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def cmd_airflow(args: argparse.Namespace) -> int:
    import pymongo

    paths = _paths()
    make_private(paths)
    uri, database = demo_mongo_uri(paths.repo), _mongo_database()
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        empty = client[database]["CdrRecords"].find_one({}, projection={"_id": 1}) is None
    if empty:
        seed(
            uri,
            database,
            days=_int_env("DEMO_DAYS", DEMO_DAYS),
            calls_per_day=_int_env("DEMO_CALLS_PER_DAY", DEMO_CALLS_PER_DAY, low=0),
            seed_value=_int_env("DEMO_SEED", 42, low=0),
            mode="drop",
        )
    port = _int_env("DEMO_AIRFLOW_PORT", 8080)
    base_url = f"http://127.0.0.1:{port}"
    env = airflow_env(paths, uri, database)
    env.update(_demo_secrets(paths))
    env.update(
        {
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        }
    )
    ensure_metadata_db(paths, env)
    credentials = ensure_admin(paths, env)

    logs = paths.airflow_home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    components = {
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(port)],
        # Everything runs on this host: the API server reads task logs from the local folder, so
        # no log-serving ports (they would listen on every interface).
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }
    processes: dict[str, subprocess.Popen] = {}

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C

    signal.signal(signal.SIGTERM, on_signal)
    try:
        for name, argv in components.items():
            out = open(logs / f"{name}.out", "ab")  # noqa: SIM115 - closed with the process
            # Own session per component so that stopping kills its whole process tree.
            processes[name] = subprocess.Popen(
                [_airflow_bin(), *argv], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            out.close()
        _log(f"starting api-server, scheduler, dag-processor and triggerer (logs: {logs}/*.out)")
        _wait_healthy(
            f"{base_url}/api/v2/monitor/health", processes, timeout=_int_env("DEMO_AIRFLOW_START_TIMEOUT", 300)
        )
        _log(f"Airflow UI: {base_url}  ({credentials})")
        _log("the report DAGs start paused; unpause them in the UI to let the scheduler run them. Ctrl-C stops.")
        _log(f"the stored reports: {base_url}/plugin/cdr-reports (CDR Reports in the navigation)")
        # Airflow 3.3 has no server-side default (webserver.default_ui_timezone was removed): the UI
        # shows the browser's zone until the user picks one, kept per browser.
        _log("times in the UI: your browser's time zone; pick Europe/Istanbul with the clock icon (bottom left)")
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    _log(f"{name} exited with status {process.returncode}; stopping (see {logs / (name + '.out')})")
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        _log("stopping Airflow")
        return 0
    except RuntimeError as exc:
        _log(f"{exc}; see {logs}/*.out")
        return 1
    finally:
        _stop(processes)
        _log("stopped")


# --------------------------------------------------------------------------- make airflow-cli


def demo_cli_env(paths: DemoPaths) -> dict[str, str]:
    """The environment of `make airflow`'s processes (metadata DB, auth manager, keys, connections)."""
    env = airflow_env(paths, demo_mongo_uri(paths.repo), _mongo_database())
    env.update(_demo_secrets(paths))
    return env


def cmd_cli(args: argparse.Namespace) -> int:
    """`make airflow-cli ARGS="users list"`: the airflow CLI against the demo's Airflow.

    `AIRFLOW_HOME=.services/demo_airflow_home airflow ...` alone fails: the demo configures Airflow
    through the environment (PostgreSQL metadata DB, the FAB auth manager, shared keys), not through
    that folder's airflow.cfg, which Airflow writes with its defaults (SQLite, simple auth manager).
    """
    paths = _paths()
    make_private(paths)
    env = demo_cli_env(paths)
    ensure_metadata_db(paths, env)
    binary = shutil.which(_airflow_bin())
    if binary is None:
        raise SystemExit("no airflow executable next to this Python nor on PATH: run `make install`")
    command = [binary, *args.airflow_args]
    sys.stdout.flush()
    os.execve(command[0], command, env)  # the CLI's own exit status, stdin and terminal


# --------------------------------------------------------------------------- print


def cmd_print(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from cdr_reports_dev.report_print import format_reports

    if args.conn_id:
        from dataclasses import replace

        from cdr_reports.integration.connections import sql_engine
        from cdr_reports.pipeline.config import load_settings

        engine = sql_engine(replace(load_settings(), sql_conn_id=args.conn_id))
    else:
        url = args.sql_url or f"sqlite:///{_paths().reports_db}"
        engine = sa.create_engine(url)
    try:
        print(format_reports(engine, schema=args.schema or None))
    finally:
        engine.dispose()
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    uri = args.uri or os.environ.get("CDR_SEED_MONGO_URI")
    if not uri:
        raise SystemExit("give --uri or set CDR_SEED_MONGO_URI")
    seed(uri, args.database, args.collection, args.days, args.calls_per_day, args.seed, args.mode)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cdr_reports_dev.demo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("seed", help="ensure the DateTime.Start index and seed synthetic CDRs")
    p.add_argument("--uri", help="MongoDB URI (default: $CDR_SEED_MONGO_URI)")
    p.add_argument("--database", default=os.environ.get("CDR_SEED_DATABASE") or "cdr")
    p.add_argument("--collection", default=os.environ.get("CDR_SEED_COLLECTION") or "CdrRecords")
    p.add_argument("--days", type=int, default=int(os.environ.get("CDR_SEED_DAYS") or 35))
    p.add_argument(
        "--calls-per-day", type=int, default=int(os.environ.get("CDR_SEED_CALLS_PER_DAY") or DEMO_CALLS_PER_DAY)
    )
    p.add_argument("--seed", type=int, default=int(os.environ.get("CDR_SEED_SEED") or 42))
    p.add_argument("--mode", choices=("drop", "if-empty", "append"), default="if-empty")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("run", help="make demo: seed, run the three DAGs, print the reports")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("airflow", help="make airflow: api-server, scheduler, dag-processor, triggerer (Ctrl-C stops)")
    p.set_defaults(func=cmd_airflow)

    p = sub.add_parser("cli", help="make airflow-cli: run the airflow CLI against the demo's Airflow")
    p.add_argument("airflow_args", nargs=argparse.REMAINDER, help="e.g. users list, dags list-runs cdr_daily_report")
    p.set_defaults(func=cmd_cli)

    p = sub.add_parser("print", help="print the latest stored report of each type")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--sql-url", help="SQLAlchemy URL (default: the demo's SQLite report DB)")
    source.add_argument("--conn-id", help="an Airflow connection id, e.g. cdr_reports_db")
    p.add_argument("--schema", help="schema of the report tables")
    p.set_defaults(func=cmd_print)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
