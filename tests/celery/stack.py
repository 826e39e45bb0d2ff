"""A real CeleryExecutor stack on loopback: used by the scale-out tests and bench/celery_workers.py.

`open_stack()` starts, in a fresh AIRFLOW_HOME (temp dir):
  * Debian's `redis-server` on a free port (the Celery broker);
  * a fresh PostgreSQL database as the Airflow metadata DB and the Celery result backend, in the
    PostgreSQL server of `make services`, then `airflow db migrate`;
  * `airflow dag-processor`, `airflow scheduler`, `airflow api-server` (the workers' task
    supervisors talk to its execution API) and `airflow celery worker`s named `w1@host`,
    `w2@host`..., each recording its name as the task-instance hostname (worker_identity.py).
The DAGs folder links the product's dags/*.py; plugins/ is the product's. The Celery keys come
from config/celery.env, the file docker-compose.yaml's Airflow services read too.

Source: a fresh database in the MongoDB-wire server (FerretDB), seeded by the caller, reached as
connection `cdr_mongo`; sink: a fresh schema in the PostgreSQL test database, connection
`cdr_reports_db`; both as AIRFLOW_CONN_* variables of every process. The scheduler creates no
scheduled runs here (use_job_schedule off): only the triggered runs exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from tests.support import airflow_stack
from tests.support.airflow_stack import AIRFLOW, REPO_ROOT, AirflowProcesses
from tests.support.services import free_port

CELERY_ENV_FILE = REPO_ROOT / "config" / "celery.env"
DAG_ID = "cdr_daily_report"
WORKERS = ("w1", "w2")
SLICES = 4
TZ = "Europe/Istanbul"


def read_env_file(path: Path = CELERY_ENV_FILE) -> dict[str, str]:
    """KEY=VALUE lines of a compose env_file (comments and blank lines skipped, no quoting)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{path}:{number}: not a KEY=VALUE line: {line!r}")
        values[key] = value
    return values


def worker_of(hostname: str | None) -> str | None:
    """The test worker (`w1`, `w2`) a task-instance hostname names (see worker_identity.py)."""
    if not hostname or "@" not in hostname:
        return None
    return hostname.split("@", 1)[0]


def redis_server_binary() -> str | None:
    """redis-server; scripts/install-test-packages.sh installs Debian's package first when missing (as root)."""

    def find() -> str | None:
        return shutil.which("redis-server") or next(
            (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)), None
        )

    if not find():
        subprocess.run(["bash", str(REPO_ROOT / "scripts" / "install-test-packages.sh")], check=False, timeout=600)
    return find()


@dataclass(kw_only=True)
class CeleryStack(AirflowProcesses):
    """The shared process plumbing (tests/support/airflow_stack.py) plus workers and metadata-DB reads."""

    metadata_url: str  # SQLAlchemy URL of the metadata DB (psycopg 3)
    sink_url: str  # SQLAlchemy URL of the report database
    sink_schema: str
    _engine: Any = None
    # Like compose's `restart: always`: a process that exits (not stopped by a test) is started
    # again with its own command, instead of failing the wait. Off unless a test turns it on.
    restart_exited: bool = False
    restarts: list[tuple[str, int | None, float]] = field(default_factory=list)  # (name, exit code, when)
    _commands: dict[str, tuple[tuple[str, ...], dict[str, str] | None]] = field(default_factory=dict)

    def start(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> None:
        self._commands[name] = (args, extra_env)
        super().start(name, *args, extra_env=extra_env)

    def check_alive(self) -> None:
        if self.restart_exited:
            for name, proc in list(self.processes.items()):
                if name not in self.down and proc.poll() is not None:
                    self.restarts.append((name, proc.returncode, time.monotonic()))
                    args, extra_env = self._commands[name]
                    super().start(name, *args, extra_env=extra_env)
        super().check_alive()

    def start_worker(self, name: str, concurrency: int | None = None) -> None:
        self.down.discard(f"worker-{name}")
        # Truncated: readiness is read from this start's log only.
        (self.log_dir / f"worker-{name}.log").write_text("")
        extra = ["--concurrency", str(concurrency)] if concurrency else []
        self.start(
            f"worker-{name}",
            AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@%h", *extra,
            # Two workers on one host would both bind the log server's port; the API server reads
            # the task logs from the shared AIRFLOW_HOME instead.
            "--skip-serve-logs",
            extra_env={
                "CDR_TEST_WORKER_NAME": name,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.celery.worker_identity.hostname",
                "PYTHONPATH": str(REPO_ROOT),
            },
        )  # fmt: skip

    def worker_alive(self, name: str) -> bool:
        proc = self.processes.get(f"worker-{name}")
        return proc is not None and proc.poll() is None

    def worker_ready(self, name: str) -> bool:
        # Celery logs "<node name> ready." once it consumes from the queue.
        text = (self.log_dir / f"worker-{name}.log").read_text(errors="replace")
        return self.worker_alive(name) and f"{name}@" in text and " ready." in text

    def ensure_workers(
        self, names: tuple[str, ...] = WORKERS, timeout: float = 180, concurrency: int | None = None
    ) -> None:
        """Exactly `names` up and consuming: starts missing ones (e.g. killed by a test)."""
        for name in names:
            if not self.worker_alive(name):
                self.start_worker(name, concurrency)
        self.wait_until(f"Celery workers {names} ready", lambda: all(self.worker_ready(n) for n in names), timeout)

    def stop_worker(self, name: str, timeout: float = 60) -> None:
        """Warm shutdown (SIGTERM): the worker finishes its tasks and leaves."""
        proc = self.processes[f"worker-{name}"]
        self.down.add(f"worker-{name}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def freeze_worker(self, name: str, frozen: bool = True) -> None:
        """SIGSTOP (or SIGCONT) every process of the worker's node: what it runs stays as it is."""
        sig = signal.SIGSTOP if frozen else signal.SIGCONT
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.processes[f"worker-{name}"].pid, sig)
        for pid in self.node_processes(name):  # task processes may sit in process groups of their own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill_worker(self, name: str, timeout: float = 30) -> None:
        """SIGKILL every process of the worker's node, as a crash or the loss of the machine would."""
        proc = self.processes[f"worker-{name}"]
        self.down.add(f"worker-{name}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + timeout
        while survivors := self.node_processes(name):
            if time.monotonic() > deadline:
                raise AssertionError(f"processes of worker {name} outlived SIGKILL: {describe_processes(survivors)}")
            for pid in survivors:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def node_processes(self, name: str) -> list[int]:
        """PIDs of this stack's processes of worker `name` (never another stack's of the same name)."""
        return node_processes(name, self.home)

    def stop(self) -> None:
        super().stop()
        if self._engine is not None:
            self._engine.dispose()

    # -- Airflow state, read from the metadata DB --------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            import sqlalchemy as sa

            self._engine = sa.create_engine(self.metadata_url, pool_pre_ping=True)
        return self._engine

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.text(sql), params)]

    def trigger(self, report_date: date) -> str:
        run_id = f"celery_{report_date.isoformat()}_{uuid.uuid4().hex[:8]}"
        conf = json.dumps({"report_date": report_date.isoformat()})
        self.run_cli(AIRFLOW, "dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", conf, timeout=300)
        return run_id

    def dag_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT state, queued_at, start_date, end_date FROM dag_run WHERE dag_id = :d AND run_id = :r",
            d=DAG_ID,
            r=run_id,
        )
        return rows[0] if rows else None

    def run_state(self, run_id: str) -> str | None:
        run = self.dag_run(run_id)
        return run["state"] if run else None

    def wait_run(self, run_id: str, timeout: float) -> str:
        def finished() -> str | None:
            state = self.run_state(run_id)
            return state if state in ("success", "failed") else None

        return self.wait_until(f"run {run_id} to finish", finished, timeout)

    def task_instances(self, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT task_id, map_index, state, try_number, hostname, start_date, end_date, queued_dttm "
            "FROM task_instance WHERE dag_id = :d AND run_id = :r ORDER BY task_id, map_index",
            d=DAG_ID, r=run_id,
        )  # fmt: skip
        return [row for row in rows if task_id is None or row["task_id"] == task_id]

    def history(self, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Earlier tries (Airflow copies a try here when the task instance is retried)."""
        return self.query(
            "SELECT map_index, state, try_number, hostname, start_date, end_date FROM task_instance_history "
            "WHERE dag_id = :d AND run_id = :r AND task_id = :t ORDER BY map_index, try_number",
            d=DAG_ID, r=run_id, t=task_id,
        )  # fmt: skip

    def slice_seconds(self, run_id: str, attempt: int = 1) -> dict[int, float]:
        """Query time of each extract slice, from its log line `extract ..: done in X s`."""
        found = {}
        for index in range(SLICES):
            if match := re.search(r": done in ([0-9.]+) s", self.task_log(run_id, "extract", index, attempt)):
                found[index] = float(match.group(1))
        return found

    def task_log(self, run_id: str, task_id: str, map_index: int, attempt: int) -> str:
        folder = self.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
        path = (folder / f"map_index={map_index}" if map_index >= 0 else folder) / f"attempt={attempt}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def stack_env(
    home: Path,
    dags: Path,
    api_port: int,
    redis_port: int,
    metadata_url: str,
    mongo_conn: str,
    sink_uri: str,
    schema: str,
) -> dict[str, str]:
    """The environment of every process of the stack: the shared keys, config/celery.env, this stack's own keys."""
    env = airflow_stack.airflow_env(home, dags, api_port, metadata_url, airflow_stack.new_secrets(), "CeleryExecutor")
    env.update(read_env_file())  # the shared Celery keys, exactly as compose reads them
    env.update(
        {
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            # Only the triggered runs: no scheduled run of a report DAG competes with them.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # The report, through the connections of the README.
            "AIRFLOW_CONN_CDR_MONGO": mongo_conn,
            "AIRFLOW_CONN_CDR_REPORTS_DB": sink_uri,
            "CDR_SQL_SCHEMA": schema,
            "CDR_EXTRACT_SLICES": str(SLICES),
            # FerretDB scans the whole collection per query: seconds per query here, several times
            # that when slices run side by side on 2 cores. Each query's socket timeout is
            # CDR_MONGO_QUERY_TIMEOUT_SECONDS (default: half the task timeout), so the default holds.
            # A lost slice is retried at once (airflow_env's CDR_RETRY_DELAY_SECONDS); detection is
            # the shared heartbeat timeout, which the kill test measures.
        }
    )
    return env


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    return body["metadatabase"]["status"] == "healthy" and body["scheduler"]["status"] == "healthy"


@contextlib.contextmanager
def open_stack(
    mongo_uri: str,
    pg_uri: str,
    redis_bin: str,
    seed: Callable[[Any], None],
    workers: tuple[str, ...] = WORKERS,
    on_exit: Callable[[CeleryStack, bool], None] | None = None,
    metadata_pg_uri: str | None = None,
) -> Iterator[CeleryStack]:
    """Start the stack; `seed(collection)` fills the source first. Everything is removed on exit.

    `on_exit(stack, failed)` runs before the processes stop; `failed` when the start-up or the
    body raised (e.g. to keep the process logs). The metadata DB is a fresh database on
    `metadata_pg_uri`'s server (a private cluster a test may crash) or else on `pg_uri`'s; the
    report sink is a fresh schema on `pg_uri`'s server.
    """
    import pymongo
    import sqlalchemy as sa

    began = time.monotonic()
    tag = uuid.uuid4().hex[:10]
    schema, mongo_name = f"cdr_celery_{tag}", f"cdr_celery_{tag}"
    sink_url = sa.engine.make_url(pg_uri).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    sink_admin = sa.create_engine(sink_url, isolation_level="AUTOCOMMIT")
    with (
        airflow_stack.fresh_database(metadata_pg_uri or pg_uri, f"cdr_celery_meta_{tag}") as metadata,
        airflow_stack.stack_dirs("cdr-celery-") as (tmp, home, dags, log_dir),
        pymongo.MongoClient[dict[str, Any]](mongo_uri, serverSelectionTimeoutMS=5000, tz_aware=True) as mongo_client,
    ):
        for dag_file in sorted((REPO_ROOT / "dags").glob("*.py")):
            (dags / dag_file.name).symlink_to(dag_file)
        address = mongo_client.address  # waits for the server; None only without a primary to talk to
        assert address is not None, f"no MongoDB-wire server answers at {mongo_uri}"
        host, port = address
        stack: CeleryStack | None = None
        failed = False
        try:
            with sink_admin.connect() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            seed(mongo_client[mongo_name].CdrRecords)
            seeded = round(time.monotonic() - began, 1)

            api_port = free_port()
            redis_port = free_port()
            while redis_port == api_port:  # each call only picks a port that is free now
                redis_port = free_port()
            env = stack_env(
                home, dags, api_port, redis_port, metadata.url, f"mongo://{host}:{port}/{mongo_name}", pg_uri, schema
            )
            stack = CeleryStack(
                home=home,
                log_dir=log_dir,
                env=env,
                metadata_url=metadata.url,
                sink_url=sink_url,
                sink_schema=schema,
            )
            stack.timings["seeded"] = seeded
            stack.start(
                "redis", redis_bin, "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no",
                "--dir", str(tmp),
            )  # fmt: skip
            stack.run_cli(AIRFLOW, "db", "migrate", timeout=600)
            stack.mark("db migrated")
            stack.start("dag-processor", AIRFLOW, "dag-processor")
            stack.start("scheduler", AIRFLOW, "scheduler", "--skip-serve-logs")
            stack.start("api-server", AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(api_port))
            for name in workers:
                stack.start_worker(name)
            health = f"http://127.0.0.1:{api_port}/api/v2/monitor/health"
            stack.wait_until("api-server and scheduler healthy", lambda: _healthy(health), 240)
            stack.mark("api-server healthy")
            stack.wait_until(
                f"{DAG_ID} parsed and active",
                lambda: stack.query("SELECT 1 FROM dag WHERE dag_id = :d AND NOT is_stale AND NOT is_paused", d=DAG_ID),
                240,
            )
            stack.mark("DAG registered")
            stack.ensure_workers(workers)
            stack.mark("workers ready")
            yield stack
        except BaseException:
            failed = True
            raise
        finally:
            if stack is not None:
                if on_exit is not None:
                    on_exit(stack, failed)
                stack.stop()
            with contextlib.suppress(Exception):
                mongo_client.drop_database(mongo_name)
            with contextlib.suppress(Exception), sink_admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            sink_admin.dispose()


def node_processes(name: str, home: Path) -> list[int]:
    """PIDs of live processes of test worker `name` of the stack whose AIRFLOW_HOME is `home`.

    Both markers are inherited by every process the worker starts (pool processes, task
    supervisors, task processes), whatever their process group. Matching the worker name alone
    would also match the workers of another engineer's or CI's stack on this machine: each stack
    has its own temporary AIRFLOW_HOME, so the pair names this stack's processes only.
    """
    markers = {f"CDR_TEST_WORKER_NAME={name}".encode(), f"AIRFLOW_HOME={home}".encode()}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if markers <= set((proc / "environ").read_bytes().split(b"\0")):
                status = (proc / "status").read_text()
                if "\nState:\tZ" not in status:  # a zombie is dead, only not yet reaped
                    pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def describe_processes(pids: list[int]) -> str:
    """pid, state, process group and command line of each, for a failure message."""
    described = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            described.append(f"{pid} state={fields[0]} ppid={fields[1]} pgrp={fields[2]} {command[:120]}")
        except OSError:
            described.append(f"{pid} (gone)")
    return "; ".join(described)
