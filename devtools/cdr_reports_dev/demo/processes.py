"""The Airflow processes of the demo: one-off `airflow` commands, DAG runs, supervised components.

Each long-lived component runs in its own session (process group), so that stopping it also stops
what it started (task processes, API workers); nothing is ever stopped by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cdr_reports_dev.demo.state import log

HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def airflow(
    env: Mapping[str, str], *args: str, timeout: float = 600, log_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """One `airflow ...` command to completion; its command line and output go to `log_file`."""
    command = [airflow_bin(), *args]
    result = subprocess.run(command, env=dict(env), capture_output=True, text=True, timeout=timeout)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text(f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    return result


def start(name: str, argv: Sequence[str], env: Mapping[str, str], logs: Path) -> subprocess.Popen[bytes]:
    """An `airflow` component in its own session, its output appended to `logs/<name>.out`."""
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.out", "ab") as out:
        return subprocess.Popen(
            [airflow_bin(), *argv], env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(processes: Mapping[str, subprocess.Popen[bytes]], grace: float = 30) -> None:
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


def wait_healthy(url: str, processes: Mapping[str, subprocess.Popen[bytes]], timeout: float) -> dict[str, Any]:
    """Poll Airflow's health endpoint until every component reports healthy (or one exits)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                health: dict[str, Any] = json.load(response)
            # Announce the UI only once every component reports in: a user who opens it then sees
            # the DAGs parsed and the scheduler running.
            if all((health.get(part) or {}).get("status") == "healthy" for part in HEALTH_COMPONENTS):
                return health
            last = health
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
        time.sleep(2)
    raise RuntimeError(f"Airflow did not become healthy within {timeout:.0f} s (last: {last!r})")


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def execution_api(env: Mapping[str, str], logs: Path) -> Iterator[dict[str, str]]:
    """A `--apps execution` API server on a free loopback port; yields `env` pointing at it.

    The LocalExecutor's task processes talk to Airflow through the execution API.
    """
    port = free_loopback_port()
    env = {**env, "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/"}
    argv = ["api-server", "--apps", "execution", "--host", "127.0.0.1", "--port", str(port)]
    server = start("execution-api", argv, env, logs)
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
        yield env
    finally:
        stop({"execution-api": server}, grace=15)


def dags_test(env: Mapping[str, str], dag_id: str, logical_date: str, logs: Path, timeout: float) -> None:
    """`airflow dags test --use-executor`: one run of `dag_id` through the LocalExecutor.

    Through the executor, not in-process: then each task writes its log file under the demo's
    log folder, where `make airflow`'s API server reads it (an in-process `dags test` only prints
    the logs, and the UI answered "Could not read served logs ... Connection refused").
    """
    began = time.monotonic()
    log_file = logs / f"dags-test-{dag_id}.log"
    result = airflow(env, "dags", "test", dag_id, logical_date, "--use-executor", timeout=timeout, log_file=log_file)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"airflow dags test {dag_id} failed (full output: {log_file})")
    log(f"airflow dags test {dag_id}: success in {time.monotonic() - began:.1f} s (log: {log_file})")


def supervise(
    components: Mapping[str, Sequence[str]],
    env: Mapping[str, str],
    logs: Path,
    health_url: str,
    start_timeout: float,
    on_healthy: Callable[[], None],
) -> int:
    """Run the components until Ctrl-C/SIGTERM (0) or until one exits (1); every one is stopped after.

    `on_healthy()` runs once every component reports healthy (the demo prints the UI's address).
    """

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C

    signal.signal(signal.SIGTERM, on_signal)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, argv in components.items():
            processes[name] = start(name, argv, env, logs)
        log(f"starting {', '.join(components)} (logs: {logs}/*.out)")
        wait_healthy(health_url, processes, timeout=start_timeout)
        on_healthy()
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    log(f"{name} exited with status {process.returncode}; stopping (see {logs / (name + '.out')})")
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        log("stopping Airflow")
        return 0
    except RuntimeError as exc:
        log(f"{exc}; see {logs}/*.out")
        return 1
    finally:
        stop(processes)
        log("stopped")
