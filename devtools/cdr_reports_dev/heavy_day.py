"""A heavy day: one report day with very many operators, and what a run of it costs in Airflow.

Shared by the heavy-day benchmark (bench/heavy_day.py) and its test (tests/reliability/
test_heavy_day.py), so that both measure the same thing the same way:

- `heavy_day_documents` generates the CDRs of a day with `operators` distinct operators, each
  with `calls_per_operator` calls spread evenly over the day (so every extract slice of the day
  sees every operator: the worst case for per-slice partial counts), a third of them unanswered.
  Deterministic; the expected report follows from the arguments alone (`expected_totals`,
  `expected_row`).
- `run_daily_report` runs the daily report DAG with `dag.test()` in a fresh process with a fresh
  Airflow home, and returns what it cost: the XCom bytes each task stored (read back from the
  metadata DB), the bytes of log the run wrote (everything the process printed, at the default
  INFO level, plus any task log files), the peak RSS (VmHWM) of the whole run and of each task,
  the wall time, and the totals of the stored report.

`python -m cdr_reports_dev.heavy_day --worker <home>` is the measured process (internal).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

# An answered call lasts 1..600 s; every third call is unanswered (no Connect, Duration 0).
_MAX_SECONDS = 600
_BATCH = 10_000


def operator_id(index: int) -> Any:
    """Operator ids mix strings and integers, as in real CDRs (`operator_key` turns ints to str)."""
    return f"OP-{index:06d}" if index % 2 == 0 else 1_000_000 + index


def _call(index: int, call: int) -> tuple[bool, int]:
    """(answered, duration seconds) of an operator's call."""
    answered = (index + call) % 3 != 0
    return answered, (1 + (index * 31 + call * 17) % _MAX_SECONDS) if answered else 0


def heavy_day_documents(
    start: datetime, end: datetime, operators: int, calls_per_operator: int = 2
) -> Iterator[dict[str, Any]]:
    """The day's CDRs: call `c` of every operator lies in the c-th of `calls_per_operator` equal parts."""
    part = (end - start) / calls_per_operator
    spread_ms = max(1, int(part.total_seconds() * 1000) - 60_000)  # a minute clear of the part's end
    for call in range(calls_per_operator):
        for index in range(operators):
            at = start + call * part + timedelta(milliseconds=(index * 7_919) % spread_ms)
            answered, seconds = _call(index, call)
            times: dict[str, Any] = {"Start": at}
            if answered:
                times["Connect"] = at + timedelta(seconds=2)
            yield {
                "Operator": {"Id": operator_id(index), "Name": f"Carrier {index}"},
                "DateTime": times,
                "Duration": seconds,
                "IsDeleted": False,
            }


def seed_heavy_day(collection: Any, start: datetime, end: datetime, operators: int, calls_per_operator: int = 2) -> int:
    """Insert the heavy day into a pymongo collection in batches; returns the documents inserted."""
    inserted = 0
    batch: list[dict[str, Any]] = []
    for document in heavy_day_documents(start, end, operators, calls_per_operator):
        batch.append(document)
        if len(batch) >= _BATCH:
            inserted += len(collection.insert_many(batch, ordered=False).inserted_ids)
            batch = []
    if batch:
        inserted += len(collection.insert_many(batch, ordered=False).inserted_ids)
    return inserted


def expected_row(index: int, calls_per_operator: int = 2) -> dict[str, Any]:
    """One operator's expected report row (id as the report stores it)."""
    calls = [_call(index, call) for call in range(calls_per_operator)]
    return {
        "operator_id": str(operator_id(index)),
        "total_calls": calls_per_operator,
        "answered_calls": sum(answered for answered, _ in calls),
        "total_duration_seconds": sum(seconds for _, seconds in calls),
    }


def expected_totals(operators: int, calls_per_operator: int = 2) -> dict[str, int]:
    """The report's totals over all operators, computed from the generator's rules alone."""
    answered = duration = 0
    for index in range(operators):
        for call in range(calls_per_operator):
            was_answered, seconds = _call(index, call)
            answered += was_answered
            duration += seconds
    return {
        "operators": operators,
        "valid_records": operators * calls_per_operator,
        "answered_calls": answered,
        "total_duration_seconds": duration,
    }


# --------------------------------------------------------------------------- the measured run


def run_daily_report(
    home: Path,
    report_date: date,
    mongo_uri: str,
    database: str,
    settings: Mapping[str, str],
    code: Path | None = None,
    repo: Path | None = None,
    timeout: float = 1800,
) -> dict[str, Any]:
    """dag.test() of the daily report of `report_date` in a fresh process; what the run cost.

    `code`: a folder with include/, dags/ and plugins/ to run instead of the installed package
    (an earlier revision, for a before/after comparison); `settings`: CDR_* variables.
    """
    repo = repo or Path(__file__).resolve().parents[2]
    source = code or repo
    dags = home / "dags"
    dags.mkdir(parents=True)
    shutil.copy(source / "dags" / "cdr_report_dags.py", dags / "cdr_report_dags.py")
    host = mongo_uri.split("://", 1)[1].split("/", 1)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDR_", "AIRFLOW"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(source / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # the default: what an operator's logs hold
            "AIRFLOW_CONN_CDR_MONGO": f"mongo://{host}/{database}",
            "AIRFLOW_CONN_CDR_REPORTS_DB": json.dumps({"conn_type": "sqlite", "host": str(home / "reports.db")}),
            "CDR_RETRIES": "0",
            **settings,
        }
    )
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code / "include"), env.get("PYTHONPATH")) if p)
    airflow = Path(sys.executable).with_name("airflow")
    migrate = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=1200)
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-2000:]}\n{migrate.stderr[-2000:]}")
    out, err, result_file = home / "run.stdout", home / "run.stderr", home / "result.json"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.run(
            [sys.executable, "-m", "cdr_reports_dev.heavy_day", "--worker", str(home), report_date.isoformat()],
            env=env,
            stdout=stdout,
            stderr=stderr,
            cwd=home,
            timeout=timeout,
        )
    if proc.returncode != 0 or not result_file.exists():
        raise RuntimeError(f"dag.test() of the heavy day failed ({proc.returncode}):\n{err.read_text()[-6000:]}")
    result: dict[str, Any] = json.loads(result_file.read_text())
    files = [p for p in (home / "logs").rglob("*") if p.is_file()] if (home / "logs").exists() else []
    console = out.stat().st_size + err.stat().st_size
    result["log_bytes"] = {"console": console, "files": sum(p.stat().st_size for p in files)}
    result["log_bytes"]["total"] = sum(result["log_bytes"].values())
    lines = [line for path in (out, err, *files) for line in path.read_text(errors="replace").splitlines()]
    result["log_lines"] = len(lines)
    result["longest_log_line"] = max((len(line) for line in lines), default=0)
    result["log_path"] = str(out)
    return result


def xcom_bytes(metadata_url: str, dag_id: str, run_id: str) -> dict[str, int]:
    """{task_id: bytes of its stored XCom return values} of one run (mapped instances summed)."""
    import sqlalchemy as sa

    engine = sa.create_engine(metadata_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT task_id, value FROM xcom WHERE dag_id = :d AND run_id = :r AND key = 'return_value'"),
                {"d": dag_id, "r": run_id},
            ).all()
    finally:
        engine.dispose()
    sizes: dict[str, int] = {}
    for task_id, value in rows:
        text = value if isinstance(value, (str, bytes)) else json.dumps(value)
        sizes[task_id] = sizes.get(task_id, 0) + len(text.encode("utf-8") if isinstance(text, str) else text)
    return sizes


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _task_memory() -> Any:
    """A task SDK listener: each task's peak RSS while it ran, and its growth over its start.

    dag.test() runs every task in this process, one after the other, so resetting the high-water
    mark (VmHWM, `echo 5 > /proc/self/clear_refs`) when a task starts and reading it when it ends
    gives that task's own peak; the whole run's peak is the largest VmHWM seen. (Built here so
    that importing this module does not import Airflow.)
    """
    from airflow.sdk._shared.listeners import hookimpl

    class TaskMemory:
        def __init__(self) -> None:
            self.per_task: dict[str, dict[str, int]] = {}
            self.run_peak = _status_bytes("VmHWM")
            self.resets = True
            self._start_rss = 0

        @hookimpl
        def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
            self.run_peak = max(self.run_peak, _status_bytes("VmHWM"))
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:  # a kernel without the reset: the task's peak is then the run's so far
                self.resets = False
            self._start_rss = _status_bytes("VmRSS")

        @hookimpl
        def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
            peak = _status_bytes("VmHWM")
            self.run_peak = max(self.run_peak, peak)
            index = task_instance.map_index
            key = task_instance.task_id if index is None or index < 0 else f"{task_instance.task_id}[{index}]"
            self.per_task[key] = {"peak_rss_bytes": peak, "growth_bytes": max(0, peak - self._start_rss)}

    return TaskMemory()


def _worker(home: Path, report_date: str) -> None:
    """The measured process: dag.test() of the daily report; writes its figures to result.json."""
    import runpy

    import sqlalchemy as sa
    from airflow.sdk.listener import get_listener_manager

    dag = runpy.run_path(str(home / "dags" / "cdr_report_dags.py"))["cdr_daily_report"]
    memory = _task_memory()
    get_listener_manager().add_listener(memory)
    began = time.perf_counter()
    run = dag.test(run_conf={"report_date": report_date})
    wall = time.perf_counter() - began
    if str(run.state) not in ("success", "DagRunState.SUCCESS"):
        raise SystemExit(f"dag.test() ended {run.state}")
    engine = sa.create_engine(f"sqlite:///{home / 'reports.db'}")
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT count(*), sum(total_calls), sum(answered_calls), sum(total_duration_seconds) "
                "FROM cdr_operator_report"
            )
        ).one()
        sample = conn.execute(
            sa.text(
                "SELECT operator_id, total_calls, answered_calls, total_duration_seconds FROM cdr_operator_report "
                "ORDER BY operator_id LIMIT 5"
            )
        ).all()
    engine.dispose()
    result = {
        "wall_s": round(wall, 2),
        "peak_rss_bytes": max(memory.run_peak, _status_bytes("VmHWM")),
        "peak_reset_ok": memory.resets,
        "tasks": memory.per_task,
        "xcom_bytes": xcom_bytes(f"sqlite:///{home / 'airflow.db'}", dag.dag_id, run.run_id),
        "stored": dict(
            zip(("operators", "valid_records", "answered_calls", "total_duration_seconds"), stored, strict=True)
        ),
        "stored_sample": [list(row) for row in sample],
    }
    (home / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="internal: the measured dag.test() process")
    parser.add_argument("--worker", type=Path, required=True)
    parser.add_argument("report_date")
    arguments = parser.parse_args()
    _worker(arguments.worker, arguments.report_date)
