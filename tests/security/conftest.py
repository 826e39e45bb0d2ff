"""A real Airflow 3 stack with the FAB auth manager, for the dashboard security tests.

One session fixture starts, on free loopback ports, in a fresh AIRFLOW_HOME (temp dir) with a
fresh PostgreSQL metadata database on the `make services` server (several processes write to it
at once, and PostgreSQL never reuses user ids): `airflow db migrate`, then the init step (`python -m cdr_reports.integration.security ensure-roles` and an
Admin from `airflow users create`), then `airflow dag-processor`, `airflow scheduler`
(LocalExecutor) and `airflow api-server`; a ReportViewer and a ReportOperator user come from the
FAB users API. The DAGs folder holds the product's
dags/cdr_report_dags.py (symlink), a foreign `other_team_dag` and a `secret_probe` DAG that
prints a connection password (full of URL-special characters) in several encodings. Secrets (JWT,
API secret key, Fernet key) are random per session; the hardening settings are the deployment's
(`cdr_reports.integration.security.AIRFLOW_HARDENING_ENV`).
Process logs are dumped (and copied to test-artifacts/security/logs/) when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cdr_reports.integration.security import AIRFLOW_HARDENING_ENV
from tests.support.services import free_port, require, require_service

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "security"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
REPORT_DAG_IDS = ("cdr_daily_report", "cdr_weekly_report", "cdr_monthly_report")
OTHER_DAG_ID = "other_team_dag"
PROBE_DAG_ID = "secret_probe"
PROBE_CONN_ID = "cdr_probe_secret"
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
# The report date the Admin's log-producing run and the operator's API trigger use.
REPORT_DATE = "2026-11-27"
EARLIEST_REPORT_DATE = "2025-06-01"

OTHER_DAG_SOURCE = """
import pendulum
from airflow.sdk import DAG, task

with DAG("other_team_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), tags=["other-team"]):

    @task
    def hello():
        return "not a report"

    hello()
"""

PROBE_DAG_SOURCE = f'''
import logging
import urllib.parse

import pendulum
import sqlalchemy as sa
from airflow.sdk import DAG, BaseHook, task

log = logging.getLogger(__name__)

with DAG("{PROBE_DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), is_paused_upon_creation=False):

    @task
    def leak():
        conn = BaseHook.get_connection("{PROBE_CONN_ID}")
        # Deliberately careless task code: both must come out masked in the task log.
        print("probe password=" + conn.password)
        log.info("probe uri %s", conn.get_uri())
        # The same password as SQLAlchemy and form encoding write it into URLs.
        url = sa.engine.URL.create("postgresql", conn.login, conn.password, conn.host, conn.port, conn.schema)
        log.info("probe sqlalchemy url %s", url.render_as_string(hide_password=False))
        print("probe form password=" + urllib.parse.quote_plus(conn.password))
        return len(conn.password)

    leak()
'''


@dataclass
class AirflowStack:
    base_url: str
    home: Path
    env: dict[str, str]
    secrets: dict[str, str]
    passwords: dict[str, str]
    probe_password: str
    log_dir: Path
    metadata_url: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # dag_id -> run_id of the runs the fixture triggered as Admin.
    started_runs: dict[str, str] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)
    # Seconds since the fixture started, per setup step (printed; the budget is ~4 minutes).
    timings: dict[str, float] = field(default_factory=dict)
    _t0: float = field(default_factory=time.monotonic)

    def mark(self, step: str) -> None:
        self.timings[step] = round(time.monotonic() - self._t0, 1)

    # -- HTTP helpers ----------------------------------------------------------------------
    def client(self, **kwargs: Any):
        import httpx

        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)

    def token(self, username: str) -> str:
        if username not in self._tokens:
            with self.client() as client:
                response = client.post("/auth/token", json={"username": username, "password": self.passwords[username]})
            assert response.status_code == 201, f"token for {username}: {response.status_code} {response.text}"
            self._tokens[username] = response.json()["access_token"]
        return self._tokens[username]

    def request(self, username: str | None, method: str, path: str, **kwargs: Any):
        headers = dict(kwargs.pop("headers", {}))
        if username is not None:
            headers["Authorization"] = f"Bearer {self.token(username)}"
        with self.client() as client:
            return client.request(method, path, headers=headers, **kwargs)

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        response = self.request("admin", "GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})
        assert response.status_code == 200, response.text
        return response.json()["dag_runs"]

    def wait_run_finished(self, dag_id: str, run_id: str, timeout: float = 150) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}"
        state = None
        while time.monotonic() < deadline:
            self.check_alive()
            response = self.request("admin", "GET", path)
            assert response.status_code == 200, response.text
            run = response.json()
            state = run["state"]
            if state in ("success", "failed"):
                return run
            time.sleep(2)
        raise AssertionError(f"{dag_id} run {run_id} still {state} after {timeout} s\n{self.log_tails()}")

    # -- process helpers -------------------------------------------------------------------
    def run_cli(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.home
        )
        if check:
            assert result.returncode == 0, (
                f"{' '.join(args)} -> {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def popen_cli(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            list(args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.home
        )

    def start(self, name: str, *args: str) -> None:
        # The child keeps its own descriptor: ours can close at once.
        with open(self.log_dir / f"{name}.log", "w") as log_file:
            # A new session: teardown signals the whole process group (workers, task processes).
            self.processes[name] = subprocess.Popen(
                list(args),
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited with {proc.returncode}\n{self.log_tails()}")

    def log_tails(self, chars: int = 4000) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"----- {path.name} (last {chars} chars) -----\n{text[-chars:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 8  # then SIGKILL: the temp home is thrown away anyway
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group (task processes)
            with contextlib.suppress(ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _airflow_env(home: Path, dags: Path, port: int, stack_secrets: dict[str, str], metadata_url: str) -> dict[str, str]:
    # Nothing from the outer environment's Airflow/CDR settings may leak into this stack.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CDR_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
            "AIRFLOW__FAB__CONFIG_FILE": str(REPO_ROOT / "config" / "webserver_config.py"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": stack_secrets["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": stack_secrets["api_secret_key"],
            "AIRFLOW__CORE__FERNET_KEY": stack_secrets["fernet_key"],
            # The files do not change during the session: parse once.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            # Process logs are read while the processes run (and dumped on failure).
            "PYTHONUNBUFFERED": "1",
            # Retries on, so that a test can tell a permanent failure (no retry) from a transient one.
            "CDR_RETRIES": "2",
            "CDR_RETRY_DELAY_SECONDS": "1",
            # Earlier than the default (2026-01-01), so that a backfill can exceed the run cap
            # (366) without reaching back before this date.
            "CDR_EARLIEST_REPORT_DATE": EARLIEST_REPORT_DATE,
            # The report view (and the report runs' load, never reached here: no cdr_mongo) read
            # a SQLite report database holding one stored report.
            "AIRFLOW_CONN_CDR_REPORTS_DB": f"sqlite:///{home / 'reports.db'}",
            "CDR_MAX_RETRY_DELAY_SECONDS": "2",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    # The deployment's hardening (token lifetimes, sessions, masking, Swagger off), as compose sets it.
    env.update(AIRFLOW_HARDENING_ENV)
    return env


def _wait_until(what: str, check, stack: AirflowStack, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            last = check()
            if last:
                return last
        except Exception as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{stack.log_tails()}")


@pytest.fixture(scope="session")
def airflow_stack(request) -> Iterator[AirflowStack]:
    import sqlalchemy as sa
    from cryptography.fernet import Fernet

    pg_uri = require_service("CDR_TEST_PG_URI", "PostgreSQL server (the stack's metadata database)")
    pg = sa.engine.make_url(pg_uri).set(drivername="postgresql+psycopg")
    metadata_db = f"cdr_security_meta_{secrets.token_hex(5)}"
    admin_engine = sa.create_engine(pg.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    try:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{metadata_db}"'))
    except sa.exc.OperationalError as exc:
        admin_engine.dispose()
        require(False, f"PostgreSQL at {pg.render_as_string()} is configured but unreachable: {exc}")
    metadata_url = pg.set(database=metadata_db).render_as_string(hide_password=False)

    tmp = Path(tempfile.mkdtemp(prefix="cdr-security-"))
    home, dags, log_dir = tmp / "home", tmp / "dags", tmp / "process-logs"
    for folder in (home, dags, log_dir):
        folder.mkdir()
    (dags / "cdr_report_dags.py").symlink_to(REPO_ROOT / "dags" / "cdr_report_dags.py")
    (dags / "other_team_dag.py").write_text(OTHER_DAG_SOURCE)
    (dags / "secret_probe_dag.py").write_text(PROBE_DAG_SOURCE)

    port = free_port()
    stack_secrets = {
        # HS512 wants >= 64 bytes of key.
        "jwt_secret": "jwt-" + secrets.token_urlsafe(64),
        "api_secret_key": "key-" + secrets.token_urlsafe(32),
        "fernet_key": Fernet.generate_key().decode(),
    }
    stack = AirflowStack(
        base_url=f"http://127.0.0.1:{port}",
        home=home,
        env=_airflow_env(home, dags, port, stack_secrets, metadata_url),
        secrets=stack_secrets,
        passwords={name: f"pw-{name}-" + secrets.token_urlsafe(12) for name in ("admin", "viewer", "operator")},
        # Every character that needs escaping in a URL: / @ : # ! % (and '%zz', no valid escape).
        probe_password="pr0be/P@ss:w0rd#OT!%zz%41-" + secrets.token_hex(8),
        metadata_url=metadata_url,
        log_dir=log_dir,
    )
    try:
        _store_report(home / "reports.db")
        stack.run_cli(AIRFLOW, "db", "migrate", timeout=300)
        stack.mark("db migrated")
        # The init step, as docker/airflow-init.sh: the report roles (they must exist before the
        # DAG processor syncs the DAGs' access_control) and the first Admin through the FAB CLI.
        # Both only write FAB rows, and FAB tolerates concurrent creators: run them side by side.
        init = {
            "ensure-roles": stack.popen_cli(sys.executable, "-m", "cdr_reports.integration.security", "ensure-roles"),
            "users create": stack.popen_cli(
                AIRFLOW,
                "users",
                "create",
                "--username",
                "admin",
                "--password",
                stack.passwords["admin"],
                "--role",
                "Admin",
                "--email",
                "admin@example.test",
                "--firstname",
                "admin",
                "--lastname",
                "Test",
            ),
        }
        outputs = {name: proc.communicate(timeout=300)[0] for name, proc in init.items()}
        for name, proc in init.items():
            assert proc.returncode == 0, f"{name} -> {proc.returncode}\n{outputs[name][-3000:]}"
        assert "ReportViewer: (role created)" in outputs["ensure-roles"], outputs["ensure-roles"]
        assert 'User "admin" created with role "Admin"' in outputs["users create"], outputs["users create"][-3000:]
        stack.mark("roles and admin created")
        stack.start("dag-processor", AIRFLOW, "dag-processor")
        # --skip-serve-logs: no log server on all interfaces; the API server reads the log files.
        stack.start("scheduler", AIRFLOW, "scheduler", "--skip-serve-logs")
        stack.start("api-server", AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port))

        def healthy() -> bool:
            with stack.client() as client:
                body = client.get("/api/v2/monitor/health").json()
            return body["metadatabase"]["status"] == "healthy"

        _wait_until("api-server health", healthy, stack, timeout=180)
        stack.mark("api-server healthy")
        # The other users through the FAB users API, as that Admin (the same `add_user` as the
        # CLI, without two more Airflow CLI start-ups).
        for username, role in (("viewer", "ReportViewer"), ("operator", "ReportOperator")):
            created_user = stack.request(
                "admin", "POST", "/auth/fab/v1/users",
                json={"username": username, "password": stack.passwords[username], "email": f"{username}@example.test",
                      "first_name": username, "last_name": "Test", "roles": [{"name": role}]},
            )  # fmt: skip
            assert created_user.status_code == 200, created_user.text
        stack.mark("users created")
        expected = {*REPORT_DAG_IDS, OTHER_DAG_ID, PROBE_DAG_ID}

        def all_dags_registered() -> bool:
            response = stack.request("admin", "GET", "/api/v2/dags", params={"limit": 100})
            return response.status_code == 200 and {d["dag_id"] for d in response.json()["dags"]} == expected

        _wait_until(f"DAGs {sorted(expected)} registered", all_dags_registered, stack, timeout=180)
        stack.mark("DAGs registered")

        # Work for the scheduler, started now so that it runs while the first tests do:
        # a connection with a known password and the probe run that prints it...
        created = stack.request(
            "admin", "POST", "/api/v2/connections",
            json={"connection_id": PROBE_CONN_ID, "conn_type": "postgres", "host": "127.0.0.1", "port": 5432,
                  "login": "probe", "password": stack.probe_password, "schema": "probe"},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        probe = stack.request("admin", "POST", f"/api/v2/dags/{PROBE_DAG_ID}/dagRuns", json={"logical_date": None})
        assert probe.status_code == 200, probe.text
        # ...and a daily report run (fails fast at `extract`: no cdr_mongo connection here)
        # whose `plan` task log the ReportViewer reads. Paused DAGs never get scheduled.
        report = stack.request(
            "admin", "POST", "/api/v2/dags/cdr_daily_report/dagRuns",
            json={"logical_date": None, "conf": {"report_date": REPORT_DATE}},
        )  # fmt: skip
        assert report.status_code == 200, report.text
        unpaused = stack.request("admin", "PATCH", "/api/v2/dags/cdr_daily_report", json={"is_paused": False})
        assert unpaused.status_code == 200, unpaused.text
        stack.started_runs = {PROBE_DAG_ID: probe.json()["dag_run_id"], "cdr_daily_report": report.json()["dag_run_id"]}
        stack.mark("runs triggered")
        print(f"\nAirflow stack ready: {stack.timings}")
        yield stack
    except BaseException:
        print(stack.log_tails())
        _keep_logs(stack)
        raise
    finally:
        stack.stop()
        if request.session.testsfailed:
            print(f"\n===== Airflow process logs (tests failed) =====\n{stack.log_tails()}")
            _keep_logs(stack)
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(Exception), admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{metadata_db}" WITH (FORCE)'))
        admin_engine.dispose()


def _store_report(path: Path) -> None:
    """One stored daily report (REPORT_DATE) for the report view to show."""
    import sqlalchemy as sa

    from cdr_reports.pipeline.load import load_report
    from tests.support.reports import make_report

    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        load_report(engine, make_report("security-stack", range(3), 100))
    finally:
        engine.dispose()


def _keep_logs(stack: AirflowStack) -> None:
    target = ARTIFACTS / "logs"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in stack.log_dir.glob("*.log"):
        shutil.copy(path, target / path.name)
    task_logs = stack.home / "logs"
    if task_logs.exists():
        shutil.copytree(task_logs, target / "task-logs", dirs_exist_ok=True)


def task_log_text(stack: AirflowStack, username: str, dag_id: str, run_id: str, task_id: str, try_number: int = 1):
    """(status, text) of a task log read through the REST API as `username`."""
    response = stack.request(
        username, "GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances/{task_id}/logs/{try_number}",
        headers={"Accept": "application/json"},
    )  # fmt: skip
    if response.status_code != 200:
        return response.status_code, response.text
    content = response.json()["content"]
    lines = [json.dumps(item) if not isinstance(item, str) else item for item in content]
    return 200, "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets fixtures see whether their test failed (the browser fixture screenshots failures).
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Leftovers of an earlier failed session would read as this one's.
    for stale in ARTIFACTS.glob("FAILED-*.png"):
        stale.unlink()
    return ARTIFACTS
