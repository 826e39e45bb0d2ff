"""One measurement in a fresh process; prints a JSON object on its last stdout line.

Run by bench/run.py, never imported by it: each mode starts from a clean interpreter, so its
peak RSS (VmHWM, printed as it exits) and its import costs are its own.

  worker.py extract  '{"approach": "ours"|"baseline"|"idle", "strategy": "auto", "slices": 1, "uri":..., "database":...,
                      "day":..., "tz":..., "server_pid": N|null}'
  worker.py parse    '{"file": "dags/x.py"}'
  worker.py dagtest  '{"dags_folder":..., "runs": N, "report_date":..., "mongo_uri":..., "database":..., "plain_sink_url":...}'
  worker.py load     '{"url":..., "schema": null|"name", "rows": 10000, "runs": N}'
  worker.py monthly  '{"uri":..., "database":..., "sink_url":..., "schema":..., "rollup": "auto"|"off", "strategy":...,
                      "report_type": "monthly"|"daily", "day":..., "tz":..., "server_pid": N}'  (bench/rollup.py)

Only the standard library is imported at module level.
"""

from __future__ import annotations

import json
import sys
import time
import types
from datetime import UTC
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent


def _extract(args: dict[str, Any]) -> dict[str, Any]:
    """One report's extract + aggregate by one approach, with the cost on both sides of the wire.

    approach: "ours" (the product: `extract_period` + `build_report`, strategy and slices as
    given), "baseline" (bench/baseline.py, fetch-all) or "idle" (same imports and connection, no
    work: the floor of a worker's memory). With `server_pid`, the server process's CPU time over
    the timed section and its peak RSS (reset just before) are read from /proc.
    """
    import resource
    from datetime import date

    stages = {"interpreter": rss_kib()}
    import bson
    import pymongo
    from pymongo import monitoring

    stages["pymongo"] = rss_kib()

    class WireCounter(monitoring.CommandListener):
        """Every command sent (name, in order), documents of every reply and, with `count_bytes`,
        their BSON bytes (re-encoding every document costs client CPU and memory, so the timed
        runs leave it off and one untimed run per approach counts the bytes)."""

        def __init__(self, count_bytes: bool) -> None:
            self.count_bytes = count_bytes
            self.reset()

        def reset(self) -> None:
            self.documents = 0
            self.bytes = 0
            self.sequence: list[str] = []
            self.seconds = 0.0

        def started(self, event: Any) -> None:
            self.sequence.append(event.command_name)

        def failed(self, event: Any) -> None:
            pass

        def succeeded(self, event: Any) -> None:
            cursor = event.reply.get("cursor") or {}
            batch = cursor.get("firstBatch", cursor.get("nextBatch", []))
            self.documents += len(batch)
            if self.count_bytes:
                self.bytes += sum(len(bson.encode(doc)) for doc in batch)
            self.seconds += event.duration_micros / 1e6

    # The same imports in every approach (and before the clock): only the work differs.
    from cdr_reports.pipeline.aggregate import build_report
    from cdr_reports.pipeline.config import Settings
    from cdr_reports.pipeline.extract import STREAM_BATCH_SIZE
    from cdr_reports.pipeline.periods import period_containing
    from cdr_reports.pipeline.runner import extract_period

    sys.path.insert(0, str(BENCH_DIR))
    from baseline import original_approach
    from servers import cpu_seconds, reset_peak_rss, status_kib

    stages["pipeline"] = rss_kib()
    modules, holders = heavy_modules()
    period = period_containing("daily", date.fromisoformat(args["day"]), args["tz"])
    settings = Settings(extract_strategy=args.get("strategy", "auto"), extract_slices=args.get("slices", 1))
    wire = WireCounter(bool(args.get("count_bytes")))
    client = pymongo.MongoClient[dict[str, Any]](args["uri"], tz_aware=True, event_listeners=[wire])
    collection = client[args["database"]]["CdrRecords"]
    client.admin.command("ping")  # connect before the clock starts
    stages["connected"] = rss_kib()
    pid = args.get("server_pid")
    server: dict[str, Any] = {}
    if pid:
        server["peak_reset"] = reset_peak_rss(pid)
        server["rss_before_bytes"] = status_kib(pid, "VmRSS") * 1024
        server_cpu = cpu_seconds(pid)
    wire.reset()

    approach = args["approach"]
    summary: dict[str, Any] = {}
    strategy = None
    own = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    if approach == "ours":
        slices = extract_period(collection, period, settings)
        report = build_report(period, slices, dag_run_id="bench")
        seconds = time.perf_counter() - began
        strategy = sorted({s.strategy for s in slices}, key=str)  # str | None: always set after an extract
        summary = {
            "source_records": report.source_records,
            "valid_records": report.valid_records,
            "rejected_records": report.rejected_records,
            "rows": {r.operator_id: [r.total_calls, r.answered_calls, r.total_duration_seconds] for r in report.rows},
        }
    elif approach == "baseline":
        result = original_approach(collection, period.start_utc, period.end_utc, batch_size=args.get("batch_size", 0))
        seconds = time.perf_counter() - began
        summary = {
            "source_records": result["source_records"],
            "valid_records": result["valid_records"],
            "rejected_records": result["rejected_records"],
            "rows": {
                k: [r["total_calls"], r["answered_calls"], r["total_duration_seconds"]]
                for k, r in result["rows"].items()
            },
        }
    elif approach == "idle":
        seconds = time.perf_counter() - began
    else:
        raise SystemExit(f"unknown approach {approach!r}")
    done = resource.getrusage(resource.RUSAGE_SELF)
    if pid:
        server["cpu_seconds"] = cpu_seconds(pid) - server_cpu
        server["peak_rss_bytes"] = status_kib(pid, "VmHWM") * 1024
    commands = list(wire.sequence)
    client.close()
    return {
        "approach": approach,
        "strategy": strategy,
        "stream_batch_size": STREAM_BATCH_SIZE,
        "slices": settings.extract_slices,
        "seconds": seconds,
        "client_cpu_seconds": (done.ru_utime + done.ru_stime) - (own.ru_utime + own.ru_stime),
        "driver_seconds": wire.seconds,
        "wire_documents": wire.documents,
        "wire_bytes": wire.bytes if wire.count_bytes else None,
        "commands": commands,
        "server": server,
        "summary": summary,
        "rss_stages": {k: v * 1024 for k, v in stages.items()},
        "modules": modules,
        "module_holders": holders,
    }


def _parse(args: dict[str, Any]) -> dict[str, Any]:
    import runpy

    began = time.perf_counter()
    import airflow.sdk  # noqa: F401 - the fixed cost every DAG file pays, measured apart

    imported = time.perf_counter()
    namespace = runpy.run_path(args["file"])
    parsed = time.perf_counter()
    from airflow.sdk import DAG

    dags = sorted(v.dag_id for v in namespace.values() if isinstance(v, DAG))
    if not dags:
        raise SystemExit(f"{args['file']} defines no DAG")
    return {"import_s": imported - began, "parse_s": parsed - imported, "total_s": parsed - began, "dags": dags}


CORE_TASKS = {"plan": [], "extract": ["plan"], "aggregate": ["extract", "plan"], "load": ["aggregate"]}

NOOP_HEADER = """\
# Generated by bench/worker.py: the shape of cdr_daily_report with no work in any task.
from airflow.sdk import DAG, Asset, task

with DAG(dag_id="bench_noop", schedule=None) as dag:

    @task(task_id="plan")
    def plan():
        return [{{"slice": i}} for i in range({slices})]

    @task(task_id="extract")
    def extract(window):
        return {{"slice": window["slice"], "calls": 0}}

    @task(task_id="aggregate")
    def aggregate(windows, slices):
        return {{"slices": len(list(slices)), "windows": len(windows)}}

    @task(task_id="load", outlets=[Asset("bench_noop_report")])
    def load(report):
        return report

    nodes = {{}}
    nodes["plan"] = plan()
    nodes["extract"] = extract.expand(window=nodes["plan"])
    nodes["aggregate"] = aggregate(nodes["plan"], nodes["extract"])
    nodes["load"] = load(nodes["aggregate"])
"""


def dag_shape(dag: Any) -> dict[str, dict[str, Any]]:
    """Task id -> upstream task ids and whether the task is mapped."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    return {
        t.task_id: {"upstream": sorted(t.upstream_task_ids), "mapped": isinstance(t, MappedOperator)} for t in dag.tasks
    }


def noop_source(shape: dict[str, dict[str, Any]], slices: int) -> str:
    """A DAG file with the daily report's shape and no work: its four core tasks (plan -> extract
    mapped over the same slices -> aggregate -> load, passing small XComs as the real ones pass
    theirs), then every other task of the report (the quality checks, ...) as a no-op taking its
    upstreams' XComs."""
    core = {tid: shape.get(tid, {}).get("upstream") for tid in CORE_TASKS}
    if core != CORE_TASKS or not shape["extract"]["mapped"]:
        raise SystemExit(
            f"cdr_daily_report no longer has the plan -> extract (mapped) -> aggregate -> load core: {shape}"
        )
    source = NOOP_HEADER.format(slices=slices)
    done = set(CORE_TASKS)
    extras = [tid for tid in shape if tid not in done]
    # A mapped extra task (trigger_rebuilds) expands over its one upstream's list: that no-op
    # returns [] (nothing to rebuild, as in the bench's runs) and the twin expands over it too.
    expanded_over = {shape[tid]["upstream"][0] for tid in extras if shape[tid]["mapped"]}
    while extras:
        ready = [tid for tid in extras if set(shape[tid]["upstream"]) <= done]
        if not ready or any(shape[tid]["mapped"] and len(shape[tid]["upstream"]) != 1 for tid in ready):
            raise SystemExit(f"cannot mirror the tasks {extras} of cdr_daily_report: {shape}")
        for tid in ready:
            fn = "t_" + "".join(c if c.isalnum() else "_" for c in tid)
            if shape[tid]["mapped"]:
                source += f"\n    @task(task_id={tid!r})\n    def {fn}(item):\n        return None\n\n"
                source += f"    nodes[{tid!r}] = {fn}.expand(item=nodes[{shape[tid]['upstream'][0]!r}])\n"
            else:
                args = ", ".join(f"nodes[{u!r}]" for u in shape[tid]["upstream"])
                result = "[]" if tid in expanded_over else "None"
                source += f"\n    @task(task_id={tid!r})\n    def {fn}(*upstream):\n        return {result}\n\n"
                source += f"    nodes[{tid!r}] = {fn}({args})\n"
            done.add(tid)
            extras.remove(tid)
    return source


def _dagtest(args: dict[str, Any]) -> dict[str, Any]:
    import runpy
    from datetime import date

    import pymongo
    import sqlalchemy as sa

    from cdr_reports.pipeline.config import load_settings
    from cdr_reports.pipeline.periods import period_containing
    from cdr_reports.pipeline.runner import run_report

    folder = Path(args["dags_folder"])
    daily = runpy.run_path(str(folder / "cdr_report_dags.py"))["cdr_daily_report"]
    shape = dag_shape(daily)
    (folder / "bench_noop_dag.py").write_text(noop_source(shape, args["slices"]))
    noop = runpy.run_path(str(folder / "bench_noop_dag.py"))["dag"]
    noop_shape = dag_shape(noop)
    if noop_shape != shape:
        raise SystemExit(f"the no-op DAG's shape {noop_shape} differs from the report's {shape}")
    conf = {"report_date": args["report_date"]}
    settings = load_settings()
    period = period_containing("daily", date.fromisoformat(args["report_date"]), settings.time_zone)

    def timed_dag(dag: Any, **kwargs: Any) -> float:
        began = time.perf_counter()
        run = dag.test(**kwargs)
        seconds = time.perf_counter() - began
        if str(run.state) not in ("success", "DagRunState.SUCCESS"):
            raise SystemExit(f"{dag.dag_id} dag.test() ended {run.state}")
        return seconds

    def timed_plain() -> float:
        # The same report without Airflow (fresh client and engine, as each task makes its own).
        began = time.perf_counter()
        client = pymongo.MongoClient[dict[str, Any]](args["mongo_uri"], tz_aware=True)
        engine = sa.create_engine(args["plain_sink_url"])
        try:
            run_report(client[args["database"]][settings.collection], engine, period, settings, dag_run_id="plain")
        finally:
            engine.dispose()
            client.close()
        return time.perf_counter() - began

    if args.get("warmup", True):  # first calls pay one-off imports, bundle sync and DB page cache
        timed_dag(daily, run_conf=conf)
        timed_dag(noop)
        timed_plain()
    report, baseline, plain = [], [], []
    for _ in range(args["runs"]):  # interleaved so load drift hits all alike
        report.append(timed_dag(daily, run_conf=conf))
        baseline.append(timed_dag(noop))
        plain.append(timed_plain())
    return {"report_s": report, "noop_s": baseline, "plain_s": plain, "shape": shape}


def _load(args: dict[str, Any]) -> dict[str, Any]:
    from datetime import date, datetime, timedelta

    import sqlalchemy as sa

    from cdr_reports.pipeline.aggregate import OperatorRow, Report
    from cdr_reports.pipeline.load import load_report
    from cdr_reports.pipeline.schema import report_tables

    kwargs: dict[str, Any] = {}
    if args.get("schema"):
        kwargs["connect_args"] = {"options": f"-csearch_path={args['schema']}"}
    engine = sa.create_engine(args["url"], **kwargs)
    n = args["rows"]
    rows = tuple(
        OperatorRow(
            operator_id=f"OP-{i:06d}",
            total_calls=1000 + i,
            answered_calls=700 + i // 2,
            total_duration_seconds=90_000 + i,
            answer_ratio=(700 + i // 2) / (1000 + i),
            avg_answered_duration_seconds=(90_000 + i) / (700 + i // 2),
        )
        for i in range(n)
    )

    def report_for(day: date) -> Report:
        return Report(
            report_type="daily",
            period_start=day,
            period_end=day + timedelta(days=1),
            time_zone="Europe/Istanbul",
            source_records=sum(r.total_calls for r in rows),
            valid_records=sum(r.total_calls for r in rows),
            rejected_records=0,
            rows=rows,
            generated_at=datetime.now(UTC),
            dag_run_id=f"bench-{day.isoformat()}",
        )

    first = date(2026, 1, 1)
    load_report(engine, report_for(first))  # warm-up: creates the tables, connects
    seconds = []
    # A new period each run, as in production (one new day per run): pure inserts.
    for i in range(1, args["runs"] + 1):
        began = time.perf_counter()
        result = load_report(engine, report_for(first + timedelta(days=i)))
        seconds.append(time.perf_counter() - began)
        if result.operator_rows != n:
            raise SystemExit(f"loaded {result.operator_rows} rows, expected {n}")
    table = report_tables().operator
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    engine.dispose()
    return {"rows": n, "seconds": seconds, "stored_rows": stored, "dialect": engine.dialect.name}


# Libraries worth naming when they are in a worker's memory (the pipeline does not need them to extract).
HEAVY_MODULES = ("sqlalchemy", "airflow", "pendulum", "pandas", "numpy")


def heavy_modules() -> tuple[list[str], dict[str, list[str]]]:
    """The heavy libraries loaded, and which of our modules hold a module-level reference to each."""
    loaded = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY_MODULES})
    holders: dict[str, set[str]] = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("cdr_reports"):
            continue
        for value in vars(module).values():
            if isinstance(value, types.ModuleType) and (top := value.__name__.split(".")[0]) in HEAVY_MODULES:
                holders.setdefault(top, set()).add(name)
    return loaded, {k: sorted(v) for k, v in holders.items()}


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def vm_hwm_bytes() -> int:
    """This process's peak resident set size since exec (Linux /proc VmHWM).

    ru_maxrss cannot be used for a child started from a big parent: Linux carries the forked
    copy's high-water mark across exec into ru_maxrss, so every child would report at least
    the parent's size. VmHWM belongs to the address space exec created, the worker's own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _monthly(args: dict[str, Any]) -> dict[str, Any]:
    """One monthly (or daily) report by roll-up or extract: bench/rollup.py."""
    sys.path.insert(0, str(BENCH_DIR))
    from rollup import monthly_worker

    return monthly_worker(args)


MODES = {"extract": _extract, "parse": _parse, "dagtest": _dagtest, "load": _load, "monthly": _monthly}

if __name__ == "__main__":
    mode, raw = sys.argv[1], sys.argv[2]
    result = MODES[mode](json.loads(raw))
    result["vm_hwm_bytes"] = vm_hwm_bytes()
    print(json.dumps(result, default=str))
