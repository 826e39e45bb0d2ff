"""The plumbing of a real Airflow stack on loopback, shared by tests/security, tests/ui and tests/celery.

Each of those suites starts real Airflow processes (dag-processor, scheduler, api-server, Celery
workers) in a fresh AIRFLOW_HOME with a fresh PostgreSQL metadata database (several processes
write to it at once, so SQLite will not do). What they share lives here, once:

- `stack_dirs()`: a temp dir with `home/`, `dags/` and `process-logs/`, removed afterwards;
- `fresh_database()`: a PostgreSQL database created on the `make services` server and dropped
  (WITH (FORCE): processes may still hold connections) afterwards;
- `new_secrets()` and `airflow_env()`: per-stack random secrets and the AIRFLOW__* keys every
  stack sets, with nothing of the outer environment's Airflow/CDR settings leaking in;
- `AirflowProcesses`: start processes (one log file each, one process group each), check they
  are alive, wait for a condition, run a CLI command, log tails, keep logs as test artifacts, stop;
- `supervised()`: on a failed start-up or a session with failures, print the log tails and
  keep the logs as artifacts; always stop the processes;
- `artifacts_folder()`: a test-artifacts folder without an earlier session's failure screenshots.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tests.support.services import require

REPO_ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


class StackDirs(NamedTuple):
    tmp: Path
    home: Path
    dags: Path
    log_dir: Path


@contextlib.contextmanager
def stack_dirs(prefix: str) -> Iterator[StackDirs]:
    """A fresh temp dir holding AIRFLOW_HOME, the DAGs folder and the process logs; removed on exit."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    dirs = StackDirs(tmp, tmp / "home", tmp / "dags", tmp / "process-logs")
    for folder in (dirs.home, dirs.dags, dirs.log_dir):
        folder.mkdir()
    try:
        yield dirs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class FreshDatabase:
    name: str
    url: str  # SQLAlchemy URL of the new database (psycopg 3)
    server_url: str  # SQLAlchemy URL of the server's default database (psycopg 3)
    admin: Any  # AUTOCOMMIT engine on the server: CREATE/DROP DATABASE, schemas


@contextlib.contextmanager
def fresh_database(pg_uri: str, name: str) -> Iterator[FreshDatabase]:
    """Database `name` on the PostgreSQL server of `pg_uri`, dropped on exit.

    An unreachable server skips the tests locally and fails them under CI=true.
    """
    import sqlalchemy as sa

    pg = sa.engine.make_url(pg_uri).set(drivername="postgresql+psycopg")
    server_url = pg.render_as_string(hide_password=False)
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        require(False, f"PostgreSQL at {pg.render_as_string()} is configured but unreachable: {exc}")
    try:
        # Airflow's own connection uses psycopg2, as compose does: with psycopg 3, Airflow 3.3.2's
        # DAG dependency query fails on PostgreSQL (docs/security.md, "/ui/dependencies").
        metadata = pg.set(drivername="postgresql+psycopg2", database=name)
        yield FreshDatabase(name, metadata.render_as_string(hide_password=False), server_url, admin)
    finally:
        with contextlib.suppress(Exception), admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def new_secrets() -> dict[str, str]:
    """Random per-stack secrets: JWT (HS512 wants >= 64 bytes of key), API secret key, Fernet key."""
    from cryptography.fernet import Fernet

    return {
        "jwt_secret": "jwt-" + secrets.token_urlsafe(64),
        "api_secret_key": "key-" + secrets.token_urlsafe(32),
        "fernet_key": Fernet.generate_key().decode(),
    }


def airflow_env(
    home: Path, dags: Path, api_port: int, metadata_url: str, stack_secrets: dict[str, str], executor: str
) -> dict[str, str]:
    """The environment every process of a test stack shares; the suites add their own keys on top."""
    # Nothing from the outer environment's Airflow/CDR settings may leak into this stack.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CDR_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": stack_secrets["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": stack_secrets["api_secret_key"],
            "AIRFLOW__CORE__FERNET_KEY": stack_secrets["fernet_key"],
            # The files do not change during the session: parse once.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            # Process logs are read while the processes run (and dumped on failure).
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            # A failed task is retried at once (production: 60 s, doubling).
            "CDR_RETRY_DELAY_SECONDS": "1",
            "CDR_MAX_RETRY_DELAY_SECONDS": "2",
        }
    )
    return env


@dataclass(kw_only=True)
class AirflowProcesses:
    """The processes of one stack, each with its log file in `log_dir` and its own process group."""

    home: Path
    log_dir: Path
    env: dict[str, str]
    metadata_url: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Processes a test stopped or killed on purpose: not an error when found dead.
    down: set[str] = field(default_factory=set)
    # Seconds since the stack object was made, per setup step (printed when the stack is ready).
    timings: dict[str, float] = field(default_factory=dict)
    _t0: float = field(default_factory=time.monotonic)

    def mark(self, step: str) -> None:
        self.timings[step] = round(time.monotonic() - self._t0, 1)

    def start(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> None:
        env = {**self.env, **(extra_env or {})}
        # The child keeps its own descriptor: ours can close at once.
        with open(self.log_dir / f"{name}.log", "a") as log_file:
            # A session of its own: a kill or the teardown reaches every child (pool processes,
            # task supervisors, task processes).
            self.processes[name] = subprocess.Popen(
                list(args), env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=self.home, start_new_session=True
            )

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
        """A command whose output the caller collects (`communicate`) while it does other work."""
        return subprocess.Popen(
            list(args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.home
        )

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if name in self.down:
                continue
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.log_tails()}")

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
        """The first truthy result of `check()`; fails at once when a stack process died."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                last = check()
                if last:
                    return last
            except Exception as exc:
                last = exc
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})\n{self.log_tails()}")

    def log_tails(self, chars: int = 4000) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"----- {path.name} (last {chars} chars) -----\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def keep_logs(self, target: Path) -> None:
        """Process logs and task logs copied to `target` (a test-artifacts folder; replaced)."""
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for path in self.log_dir.glob("*.log"):
            shutil.copy(path, target / path.name)
        if (self.home / "logs").exists():
            shutil.copytree(self.home / "logs", target / "task-logs", dirs_exist_ok=True)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10  # then SIGKILL: the temp home is thrown away anyway
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group (task processes)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


@contextlib.contextmanager
def supervised(stack: AirflowProcesses, session: Any, logs_target: Path) -> Iterator[AirflowProcesses]:
    """Stops the stack on exit; a failed start-up, or a pytest `session` with failures, prints the
    process log tails and keeps the logs in `logs_target` (so that CI shows why)."""
    try:
        yield stack
    except BaseException:
        print(stack.log_tails())
        stack.keep_logs(logs_target)
        raise
    finally:
        stack.stop()
        if session is not None and session.testsfailed:
            print(f"\n===== Airflow process logs (tests failed) =====\n{stack.log_tails()}")
            stack.keep_logs(logs_target)


def artifacts_folder(folder: Path) -> Path:
    """`folder` (a test-artifacts folder) made, without the screenshots of an earlier session's failures
    (leftovers would read as this session's)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("FAILED-*.png"):
        stale.unlink()
    return folder
