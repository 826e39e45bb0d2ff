#!/usr/bin/env python
"""Benchmark suite: what a report costs, against the original approach and against Airflow itself.

One run measures everything and writes <out>/benchmarks.json (raw samples) and <out>/benchmarks.md:

 1. FerretDB, CDR_EXTRACT_STRATEGY=auto (resolves to `stream`) vs fetch-all (bench/baseline.py, the
    original approach): wall time and FerretDB CPU time (utime+stime of the server process, from
    /proc), medians of interleaved pairs; the worker's peak RSS; FerretDB's own peak RSS; documents
    and bytes over the wire.
 2. mongo-java-server: `pushdown` vs fetch-all on the same server and data: wall time, server CPU,
    documents and bytes over the wire.
 3. Round trips per slice, counted by a pymongo command listener, for 1 and 4 slices.
 4. dag.test() of the daily report vs a no-op DAG of the same shape (plan -> extract mapped over the
    same slices -> aggregate -> load), at the demo's daily volume.
 5. DAG file parse time vs an empty one-task DAG file.
 6. Load throughput (rows/s) into PostgreSQL and SQLite.
Targets (issue 10) are checked in the markdown; a missed one says by how much and why, from the numbers.

Every timed measurement runs in a fresh worker process (bench/worker.py), so peak RSS (VmHWM) and
import costs are that run's own. The MongoDB-wire servers are the benchmark's own processes
(bench/servers.py: same binaries as `make services`, measured alone); PostgreSQL is `make services`'.

    python bench/run.py                                  # full run (as `make bench`), writes docs/
    python bench/run.py --quick --out .services/bq       # tiny sizes, one pair: checks the suite works
    python bench/run.py --render-only --out docs         # re-render benchmarks.md from benchmarks.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORKER = BENCH / "worker.py"
SERVICES_ENV = REPO / ".services" / "env"
DAY = date(2026, 11, 27)
TZ = "Europe/Istanbul"
LOAD_ROWS = 10_000
MIB = 2**20
# Targets of issue 10.
TARGET_RATIO = 1.1  # ours / fetch-all on FerretDB, wall and server CPU
TARGET_CLIENT_MIB = 50.0  # peak RSS of the worker running ours, at every size
TARGET_FLAT_MIB = 2.0  # "flat": ours' peak RSS may differ between sizes by at most this much
TARGET_DAG_TEST = 1.5  # dag.test() of the daily report / a no-op DAG of the same shape
# mongo-java-server answers a getMore without batchSize with every remaining document; capped at
# ~16 MB of CDRs per reply, what MongoDB does by default, or the reply outgrows the 48 MB limit.
MJS_BASELINE_BATCH = 50_000
SLICE_COUNTS = (1, 4)
SECTIONS = ("ferretdb", "mjs", "roundtrips", "dagtest", "parse", "load", "rollup", "heavy_day")

sys.path.insert(0, str(BENCH))
import servers  # noqa: E402

EMPTY_DAG = """\
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(dag_id="bench_empty", schedule=None) as dag:
    EmptyOperator(task_id="noop")
"""


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- helpers


def service_uri(name: str) -> str:
    from cdr_reports_dev.services import service_uri as read_service_uri

    if uri := read_service_uri(name, SERVICES_ENV):
        return uri
    raise SystemExit(f"{name} is not set and not in {SERVICES_ENV}: run `make services`")


def stats(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "values": values,
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class WorkerError(RuntimeError):
    """A worker process failed or timed out."""


def run_worker(
    mode: str, args: dict[str, Any], env: dict[str, str] | None = None, timeout: float = 7200
) -> dict[str, Any]:
    """Run bench/worker.py in a fresh process; its JSON result plus its own peak RSS (VmHWM, bytes).

    VmHWM, not ru_maxrss: Linux carries the forked copy's high-water mark across exec into
    ru_maxrss, so a child of a big parent would report at least the parent's size.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), mode, json.dumps(args)], stdout=out, stderr=err, env=env, cwd=REPO
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise WorkerError(f"worker {mode} timed out after {timeout:.0f} s") from None
        except BaseException:  # SIGTERM/Ctrl-C of the bench: no orphaned worker
            proc.kill()
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise WorkerError(f"worker {mode} {args} failed ({proc.returncode}):\n{stderr[-4000:]}\n{stdout[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_bytes"] = result.pop("vm_hwm_bytes")
    return result


def airflow_env(home: Path, dags_folder: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # dag.test() of Airflow 3.3.2 crashes at the end of a run of a DAG with a deadline; the daily
    # DAG has one only when this is set.
    env.pop("CDR_DAILY_DEADLINE_LOCAL_TIME", None)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            # A failing task must fail the benchmark at once, not wait on retries.
            "CDR_RETRIES": "0",
            "CDR_RETRY_DELAY_SECONDS": "1",
            "CDR_MAX_RETRY_DELAY_SECONDS": "2",
        }
    )
    env.update(extra or {})
    return env


def seed(uri: str, database: str, calls: int) -> dict[str, Any]:
    import pymongo

    from cdr_reports.pipeline.extract import ensure_indexes
    from cdr_reports.pipeline.periods import period_containing
    from cdr_reports_dev.synthetic import SyntheticConfig, seed_collection

    period = period_containing("daily", DAY, TZ)
    config = SyntheticConfig(seed=7, start=period.start_utc, end=period.end_utc, calls=calls, time_zone=TZ)
    with pymongo.MongoClient[dict[str, Any]](uri, tz_aware=True) as client:
        collection = client[database]["CdrRecords"]
        result = seed_collection(collection, config)
        ensure_indexes(collection)  # as in production (FerretDB's SQLite backend cannot use it)
    return {
        "inserted": result.inserted,
        "deleted": result.deleted,
        "malformed": result.malformed,
        "live": result.inserted - result.deleted,
        "seconds": round(result.seconds, 1),
        "docs_per_second": round(result.docs_per_second),
    }


def drop(uri: str, database: str) -> None:
    import pymongo

    with pymongo.MongoClient[dict[str, Any]](uri) as client:
        client.drop_database(database)


def agree(ours: dict[str, Any], baseline: dict[str, Any]) -> tuple[bool, str]:
    """Both approaches must produce the same report, or the comparison means nothing."""
    for key in ("source_records", "valid_records", "rejected_records"):
        if ours[key] != baseline[key]:
            return False, f"{key}: ours {ours[key]} != fetch-all {baseline[key]}"
    if set(ours["rows"]) != set(baseline["rows"]):
        return False, f"operators differ: {sorted(set(ours['rows']) ^ set(baseline['rows']))[:5]}"
    for op, (calls, answered, seconds) in ours["rows"].items():
        b_calls, b_answered, b_seconds = baseline["rows"][op]
        # Float sums in a different order may round to a neighbouring whole second.
        if (calls, answered) != (b_calls, b_answered) or abs(seconds - b_seconds) > 1:
            return False, f"operator {op}: ours {ours['rows'][op]} != fetch-all {baseline['rows'][op]}"
    return True, (
        f"same {len(ours['rows'])} operators; {ours['valid_records']:,} valid, {ours['rejected_records']:,} rejected "
        f"of {ours['source_records']:,} records"
    )


def command_counts(sequence: list[str]) -> dict[str, int]:
    return dict(sorted(Counter(sequence).items()))


# --------------------------------------------------------------------------- 1-2: ours vs fetch-all


def extract_args(server: servers.Server, database: str, **extra: Any) -> dict[str, Any]:
    return {
        "uri": server.uri,
        "database": database,
        "day": DAY.isoformat(),
        "tz": TZ,
        "server_pid": server.pid,
        **extra,
    }


def summarize_runs(rs: list[dict[str, Any]], bytes_run: dict[str, Any]) -> dict[str, Any]:
    commands = command_counts(rs[0]["commands"])
    return {
        "strategy": rs[0]["strategy"],
        "stream_batch_size": rs[0]["stream_batch_size"],
        "wire_documents": rs[0]["wire_documents"],
        "wire_documents_stable": len({r["wire_documents"] for r in [*rs, bytes_run]}) == 1,
        "wire_bytes": bytes_run["wire_bytes"],
        "commands": commands,
        "queries": commands.get("find", 0) + commands.get("aggregate", 0),
        "get_mores": commands.get("getMore", 0),
        "records": rs[0]["summary"]["source_records"],
        "seconds": stats([r["seconds"] for r in rs]),
        "client_cpu_seconds": stats([r["client_cpu_seconds"] for r in rs]),
        "client_peak_rss_bytes": stats([r["peak_rss_bytes"] for r in rs]),
        "server_cpu_seconds": stats([r["server"]["cpu_seconds"] for r in rs]),
        "server_peak_rss_bytes": stats([r["server"]["peak_rss_bytes"] for r in rs]),
        "server_rss_before_bytes": stats([r["server"]["rss_before_bytes"] for r in rs]),
        "server_peak_reset": all(r["server"]["peak_reset"] for r in rs),
    }


def bench_sizes(
    server: servers.Server,
    sizes: list[tuple[int, int]],
    strategy: str,
    baseline_batch: int,
    checkpoint: Callable[[], None],
    results: dict[str, Any],
) -> None:
    """Per size: seed a fresh database; one untimed pair counting bytes; `runs` timed pairs, interleaved."""
    results.setdefault("sizes", {})
    for size, runs in sizes:
        database = f"cdrbench_{size}_{uuid.uuid4().hex[:8]}"
        entry: dict[str, Any] = {"runs": runs, "loadavg_start": loadavg()}
        try:
            log(f"{server.name} {size:,} CDRs: seeding {database}")
            entry["seed"] = seed(server.uri, database, size)
            log(
                f"{server.name} {size:,} CDRs: seeded in {entry['seed']['seconds']} s ({entry['seed']['docs_per_second']:,} docs/s)"
            )
            base = extract_args(server, database, strategy=strategy, batch_size=baseline_batch)
            # Untimed first pair: warms caches, JIT and the server's memory, and counts BSON bytes
            # (re-encoding every reply document costs the client, so timed runs only count documents).
            bytes_pair = {
                "ours": run_worker("extract", {**base, "approach": "ours", "count_bytes": True}),
                "baseline": run_worker("extract", {**base, "approach": "baseline", "count_bytes": True}),
            }
            log(
                f"{server.name} {size:,} CDRs: bytes pair done (ours {bytes_pair['ours']['seconds']:.1f} s, "
                f"fetch-all {bytes_pair['baseline']['seconds']:.1f} s)"
            )
            runs_of: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
            for i in range(runs):
                for approach in ("ours", "baseline"):  # A B A B: load drift hits both alike
                    r = run_worker("extract", {**base, "approach": approach})
                    runs_of[approach].append(r)
                    log(
                        f"{server.name} {size:,} CDRs pair {i + 1}/{runs} {approach}: {r['seconds']:.1f} s, server CPU "
                        f"{r['server']['cpu_seconds']:.1f} s, client peak {r['peak_rss_bytes'] / MIB:.1f} MiB"
                    )
            ok, detail = agree(runs_of["ours"][0]["summary"], runs_of["baseline"][0]["summary"])
            for r in runs_of["ours"][1:] + runs_of["baseline"][1:] + list(bytes_pair.values()):
                same, why = agree(runs_of["ours"][0]["summary"], r["summary"])
                ok, detail = (ok and same), (detail if same else f"runs differ: {why}")
            entry["results_agree"], entry["agreement"] = ok, detail
            if not ok:
                log(f"WARNING: the approaches disagree: {detail}")
            for approach, rs in runs_of.items():
                entry[approach] = summarize_runs(rs, bytes_pair[approach])
            ours, base_runs = runs_of["ours"], runs_of["baseline"]
            entry["ratios"] = {
                "wall": stats([a["seconds"] / b["seconds"] for a, b in zip(ours, base_runs, strict=True)]),
                "server_cpu": stats(
                    [
                        a["server"]["cpu_seconds"] / max(b["server"]["cpu_seconds"], 0.01)
                        for a, b in zip(ours, base_runs, strict=True)
                    ]
                ),
            }
            entry["differences"] = {  # ours - fetch-all, per pair: where the time goes
                "wall_seconds": stats([a["seconds"] - b["seconds"] for a, b in zip(ours, base_runs, strict=True)]),
                "server_cpu_seconds": stats(
                    [
                        a["server"]["cpu_seconds"] - b["server"]["cpu_seconds"]
                        for a, b in zip(ours, base_runs, strict=True)
                    ]
                ),
                "client_cpu_seconds": stats(
                    [a["client_cpu_seconds"] - b["client_cpu_seconds"] for a, b in zip(ours, base_runs, strict=True)]
                ),
            }
            entry["loadavg_end"] = loadavg()
        finally:
            drop(server.uri, database)
        results["sizes"][str(size)] = entry
        checkpoint()


def bench_idle(server: servers.Server, runs: int) -> dict[str, Any]:
    rs = [run_worker("extract", extract_args(server, "cdrbench_idle", approach="idle")) for _ in range(runs)]
    log(f"idle worker peak RSS {statistics.median(r['peak_rss_bytes'] for r in rs) / MIB:.1f} MiB")
    return {
        "peak_rss_bytes": stats([r["peak_rss_bytes"] for r in rs]),
        "rss_stages": rs[0]["rss_stages"],
        "modules": rs[0]["modules"],
        "module_holders": rs[0]["module_holders"],
    }


# --------------------------------------------------------------------------- 3: round trips


def bench_round_trips(server: servers.Server, strategies: list[str], calls: int) -> list[dict[str, Any]]:
    """Commands sent per slice, for each strategy and 1 and 4 slices, on a small dataset."""
    database = f"cdrbench_rt_{uuid.uuid4().hex[:8]}"
    out = []
    try:
        seeded = seed(server.uri, database, calls)
        for strategy in strategies:
            for slices in SLICE_COUNTS:
                r = run_worker(
                    "extract", extract_args(server, database, approach="ours", strategy=strategy, slices=slices)
                )
                counts = command_counts(r["commands"])
                used = r["strategy"][0] if len(r["strategy"]) == 1 else "/".join(r["strategy"])
                query = "aggregate" if used == "pushdown" else "find"
                out.append(
                    {
                        "server": server.name,
                        "requested": strategy,
                        "strategy": used,
                        "slices": slices,
                        "records": r["summary"]["source_records"],
                        "valid_records": r["summary"]["valid_records"],
                        "seeded_live": seeded["live"],
                        "commands": counts,
                        "queries_per_slice": counts.get(query, 0) / slices,
                        "other_queries": sum(
                            v for k, v in counts.items() if k in ("find", "aggregate", "count") and k != query
                        ),
                        "get_mores": counts.get("getMore", 0),
                        "batch_size": r["stream_batch_size"] if used == "stream" else None,
                        "sequence": r["commands"][:40],
                    }
                )
                log(f"round trips {server.name} {strategy}->{used} slices={slices}: {counts}")
    finally:
        drop(server.uri, database)
    return out


# --------------------------------------------------------------------------- 4: dag.test()


def demo_calls_per_day() -> int:
    from cdr_reports_dev.demo.seeding import DEMO_CALLS_PER_DAY

    return DEMO_CALLS_PER_DAY


def task_seconds(conn: Any, dag_id: str, skip_first: bool) -> dict[str, float]:
    """Median seconds per task (a mapped task: the sum of its instances) over the DAG's timed runs."""
    import sqlalchemy as sa

    rows = conn.execute(
        sa.text(
            "SELECT dr.id, ti.task_id, ti.duration FROM task_instance ti JOIN dag_run dr "
            "ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id WHERE ti.dag_id = :d ORDER BY dr.id"
        ),
        {"d": dag_id},
    ).all()
    # seconds per task of each run; a task missing from a run reads as 0.0
    by_run: dict[int, defaultdict[str, float]] = {}
    for run, task, seconds in rows:
        by_run.setdefault(run, defaultdict(float))[task] += seconds or 0.0
    runs = sorted(by_run)[1 if skip_first else 0 :]
    tasks = sorted({task for run in runs for task in by_run[run]})
    return {task: statistics.median(by_run[run][task] for run in runs) for task in tasks}


def bench_dag_test(server: servers.Server, runs: int, calls: int, home: Path, warmup: bool) -> dict[str, Any]:
    from cdr_reports.pipeline.config import load_settings

    slices = load_settings().extract_slices
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dags" / "cdr_report_dags.py", dags / "cdr_report_dags.py")
    database = f"cdrbench_dagtest_{uuid.uuid4().hex[:8]}"
    host = server.uri.split("://", 1)[1].split("/", 1)[0]
    env = airflow_env(
        home,
        dags,
        {
            "AIRFLOW_CONN_CDR_MONGO": f"mongo://{host}/{database}",
            "AIRFLOW_CONN_CDR_REPORTS_DB": json.dumps({"conn_type": "sqlite", "host": str(home / "reports.db")}),
        },
    )
    airflow = Path(sys.executable).with_name("airflow")
    began = time.perf_counter()
    migrate = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=1200)
    if migrate.returncode != 0:
        raise SystemExit(f"airflow db migrate failed:\n{migrate.stdout[-2000:]}\n{migrate.stderr[-2000:]}")
    log(f"dag.test: fresh Airflow home migrated in {time.perf_counter() - began:.0f} s")
    try:
        seeded = seed(server.uri, database, calls)
        r = run_worker(
            "dagtest",
            {
                "dags_folder": str(dags),
                "runs": runs,
                "report_date": DAY.isoformat(),
                "mongo_uri": server.uri,
                "database": database,
                "plain_sink_url": f"sqlite:///{home / 'plain_reports.db'}",
                "warmup": warmup,
                "slices": slices,
            },
            env=env,
            timeout=3600,
        )
    finally:
        drop(server.uri, database)
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{home / 'reports.db'}")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT source_records, operators, extract_strategy FROM cdr_report_run")).all()
    engine.dispose()
    # The shape check: task instances (mapped ones counted one per index) of one run of each DAG.
    meta = sa.create_engine(f"sqlite:///{home / 'airflow.db'}")
    with meta.connect() as conn:
        shape: dict[str, dict[str, int]] = {
            dag_id: dict(
                conn.execute(
                    sa.text(
                        "SELECT task_id, count(*) FROM task_instance WHERE state = 'success' AND run_id = "
                        "(SELECT run_id FROM dag_run WHERE dag_id = :d ORDER BY id DESC LIMIT 1) AND dag_id = :d GROUP BY task_id"
                    ),
                    {"d": dag_id},
                ).all()
            )
            for dag_id in ("cdr_daily_report", "bench_noop")
        }
        durations = {
            dag_id: task_seconds(conn, dag_id, skip_first=warmup) for dag_id in ("cdr_daily_report", "bench_noop")
        }
    meta.dispose()
    log(f"dag.test: report {statistics.median(r['report_s']):.2f} s, no-op {statistics.median(r['noop_s']):.2f} s")
    return {
        "runs": runs,
        "calls": calls,
        "slices": slices,
        "warmup": warmup,
        "seed": seeded,
        "stored_run_rows": [list(row) for row in stored],
        "task_instances": shape,
        "task_seconds": durations,
        "shape": r["shape"],
        "report_s": stats(r["report_s"]),
        "noop_s": stats(r["noop_s"]),
        "pipeline_without_airflow_s": stats(r["plain_s"]),
        "ratio_report_over_noop": stats([a / b for a, b in zip(r["report_s"], r["noop_s"], strict=True)]),
        "excess_s": stats([a - b for a, b in zip(r["report_s"], r["noop_s"], strict=True)]),
        "loadavg_end": loadavg(),
    }


# --------------------------------------------------------------------------- 5: parse time


def bench_parse(runs: int, home: Path, warmup: bool = True, all_files: bool = True) -> dict[str, Any]:
    files = sorted((REPO / "dags").glob("*.py")) if all_files else [REPO / "dags" / "cdr_report_dags.py"]
    empty = home / "empty_dag" / "bench_empty_dag.py"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_text(EMPTY_DAG)
    env = airflow_env(home, REPO / "dags")
    paths = {str(f.relative_to(REPO)): str(f) for f in files}
    paths["(empty one-task DAG)"] = str(empty)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    errors: dict[str, str] = {}

    def sample(name: str) -> dict[str, Any] | None:
        try:
            return run_worker("parse", {"file": paths[name]}, env=env, timeout=600)
        except WorkerError as exc:
            if name in ("dags/cdr_report_dags.py", "(empty one-task DAG)"):
                raise
            errors[name] = str(exc)[-1500:]  # another DAG file of the repo: report it, keep measuring
            return None

    for name in list(paths) if warmup else []:  # warm-up: bytecode caches and the OS file cache
        sample(name)
    for i in range(runs):
        for name in paths:
            if name not in errors and (r := sample(name)) is not None:
                samples[name].append(r)
        log(f"parse run {i + 1}/{runs} done")
    for name in errors:
        samples.pop(name, None)
    empty_parse = statistics.median(s["parse_s"] for s in samples["(empty one-task DAG)"])
    empty_total = statistics.median(s["total_s"] for s in samples["(empty one-task DAG)"])
    out: dict[str, Any] = {"runs": runs, "files": {}, "errors": errors, "loadavg_end": loadavg()}
    for name, rs in samples.items():
        parse = stats([r["parse_s"] for r in rs])
        total = stats([r["total_s"] for r in rs])
        out["files"][name] = {
            "dags": rs[0]["dags"],
            "airflow_sdk_import_s": stats([r["import_s"] for r in rs]),
            "parse_s": parse,
            "total_s": total,
            "parse_ratio_vs_empty": parse["median"] / empty_parse,
            "total_ratio_vs_empty": total["median"] / empty_total,
        }
    return out


# --------------------------------------------------------------------------- 6: load throughput


def bench_load(pg_uri: str, runs: int, home: Path) -> dict[str, Any]:
    import sqlalchemy as sa

    out: dict[str, Any] = {"rows": LOAD_ROWS, "runs": runs}
    pg_url = pg_uri.replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"cdrbench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        targets: dict[str, dict[str, Any]] = {
            "postgresql": {"url": pg_url, "schema": schema},
            "sqlite": {"url": f"sqlite:///{home / 'load_bench.db'}", "schema": None},
        }
        for name, target in targets.items():
            r = run_worker("load", {**target, "rows": LOAD_ROWS, "runs": runs}, timeout=1800)
            if r["stored_rows"] != LOAD_ROWS * (runs + 1):
                raise SystemExit(f"{name}: {r['stored_rows']} rows stored, expected {LOAD_ROWS * (runs + 1)}")
            out[name] = {
                "seconds": stats(r["seconds"]),
                "rows_per_second": stats([LOAD_ROWS / s for s in r["seconds"]]),
                "stored_rows": r["stored_rows"],
            }
            log(f"load {name}: {statistics.median(LOAD_ROWS / s for s in r['seconds']):,.0f} rows/s")
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    out["loadavg_end"] = loadavg()
    return out


# --------------------------------------------------------------------------- machine


def _script_value(name: str) -> str:
    for line in (REPO / "scripts" / "services.sh").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip().strip('"')
    return "unknown"


def machine(ferret: servers.Server, mjs: servers.Server | None, pg_uri: str) -> dict[str, Any]:
    import importlib.metadata as md

    import pymongo
    import sqlalchemy as sa

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    with pymongo.MongoClient[dict[str, Any]](ferret.uri) as client:
        build = client.admin.command("buildInfo")
    engine = sa.create_engine(pg_uri.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        pg_version = conn.execute(sa.text("SHOW server_version")).scalar_one()
    engine.dispose()
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    out = {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gib": round(mem_kib / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "ferretdb": f"{_script_value('FERRETDB_VERSION')} (SQLite backend; reports MongoDB {build.get('version')}); {ferret.detail}",
        "postgresql": pg_version,
        "airflow": md.version("apache-airflow"),
        "pymongo": md.version("pymongo"),
        "sqlalchemy": md.version("sqlalchemy"),
    }
    if mjs is not None:
        with pymongo.MongoClient[dict[str, Any]](mjs.uri) as client:
            mjs_build = client.admin.command("buildInfo")
        out["mongo_java_server"] = (
            f"{_script_value('MJS_VERSION')} (reports MongoDB {mjs_build.get('version')}); {mjs.detail}; {java[0] if java else 'java ?'}"
        )
    return out


# --------------------------------------------------------------------------- main


def parse_sizes(text: str, default_runs: int) -> list[tuple[int, int]]:
    """'200000:5,1000000:3' -> [(200000, 5), (1000000, 3)]; a size without ':runs' gets --runs."""
    out = []
    for part in text.split(","):
        size, _, runs = part.strip().partition(":")
        out.append((int(size), int(runs) if runs else default_runs))
    return out


def code_state() -> dict[str, str]:
    """The git HEAD and a hash of every source the measurements run, to tell whether the working
    tree (shared with other people's edits) changed while the benchmark ran."""
    digest = hashlib.sha1()
    for folder in ("include", "devtools", "dags", "plugins", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    return {"git_head": head or "?", "sources_sha1": digest.hexdigest()[:12]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes, one pair, no warm-ups (checks the suite, not the numbers)"
    )
    p.add_argument("--out", type=Path, default=REPO / "docs", help="folder for benchmarks.json and benchmarks.md")
    p.add_argument("--runs", type=int, help="timed pairs/rounds per measurement (default 5, --quick 1)")
    p.add_argument("--sizes", help="CDRs in the period, with optional pairs: '200000:5,1000000:3' (default)")
    p.add_argument("--roundtrip-calls", type=int, help="CDRs of the round-trip dataset (default 25000, --quick 12000)")
    p.add_argument(
        "--dagtest-calls",
        type=int,
        help="CDRs of the dag.test() day (default: DEMO_CALLS_PER_DAY of cdr_reports_dev.demo)",
    )
    p.add_argument(
        "--dagtest-runs", type=int, help="interleaved dag.test() rounds (default 15, --quick 1): each takes seconds"
    )
    p.add_argument(
        "--shared-servers", action="store_true", help="use the FerretDB and mongo-java-server of `make services`"
    )
    p.add_argument(
        "--skip-mjs", action="store_true", help="leave out mongo-java-server (sections 2 and its round trips)"
    )
    p.add_argument(
        "--rollup-calls-per-day", type=int, help="CDRs per day of the roll-up month (default 10000, --quick 300)"
    )
    p.add_argument("--rollup-runs", type=int, help="interleaved pairs of the roll-up section (default 3, --quick 1)")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(SECTIONS)} (default: all; for development)")
    p.add_argument("--render-only", action="store_true", help="rewrite <out>/benchmarks.md from <out>/benchmarks.json")
    args = p.parse_args(argv)
    args.sections = set(args.only.split(",")) if args.only else set(SECTIONS)
    if unknown := args.sections - set(SECTIONS):
        p.error(f"--only: unknown sections {sorted(unknown)}")
    if args.skip_mjs:
        args.sections.discard("mjs")
    args.runs = args.runs or (1 if args.quick else 5)
    args.size_runs = parse_sizes(args.sizes or ("2000,6000" if args.quick else "200000:5,1000000:3"), args.runs)
    args.roundtrip_calls = args.roundtrip_calls or (12_000 if args.quick else 25_000)
    args.dagtest_runs = args.dagtest_runs or (1 if args.quick else 15)
    args.rollup_calls_per_day = args.rollup_calls_per_day or (300 if args.quick else 10_000)
    args.rollup_runs = args.rollup_runs or (1 if args.quick else 3)
    args.argv = argv if argv is not None else sys.argv[1:]
    return args


def start_servers(
    args: argparse.Namespace, started: list[servers.Server]
) -> tuple[servers.Server, servers.Server | None]:
    """The benchmark's own FerretDB (and mongo-java-server when a section needs it), or the shared ones."""
    if args.shared_servers:
        ferret = servers.shared("ferretdb", service_uri("CDR_TEST_MONGO_URI"), "ferretdb.pid")
    else:
        ferret = servers.start_ferretdb()
        started.append(ferret)
    mjs = None
    if {"mjs", "roundtrips", "rollup"} & args.sections and not args.skip_mjs:
        if args.shared_servers:
            mjs = servers.shared("mongo-java-server", service_uri("CDR_TEST_MJS_URI"), "mongo-java-server.pid")
        else:
            mjs = servers.start_mongo_java_server()
            started.append(mjs)
    log(
        f"servers: {ferret.name} {ferret.uri} pid {ferret.pid}"
        + (f"; {mjs.name} {mjs.uri} pid {mjs.pid}" if mjs else "")
    )
    return ferret, mjs


def measure_servers(
    args: argparse.Namespace,
    ferret: servers.Server,
    mjs: servers.Server | None,
    data: dict[str, Any],
    home: Path,
    checkpoint: Callable[[], None],
) -> None:
    """Sections 1-4: everything that reads CDRs from a MongoDB-wire server."""
    only = args.sections
    ferret_data: dict[str, Any] = {"server": {"pid": ferret.pid, "detail": ferret.detail}}
    data["ferretdb"] = ferret_data
    if "ferretdb" in only:
        log("idle worker")
        ferret_data["idle_worker"] = bench_idle(ferret, args.runs)
    if "roundtrips" in only:
        log("round trips (FerretDB)")
        ferret_data["round_trips"] = bench_round_trips(ferret, ["auto"], args.roundtrip_calls)
        checkpoint()
    if "dagtest" in only:
        log("dag.test()")
        calls = args.dagtest_calls or demo_calls_per_day()
        data["dag_test"] = bench_dag_test(ferret, args.dagtest_runs, calls, home / "dagtest", warmup=not args.quick)
        checkpoint()
    if "heavy_day" in only:
        from heavy_day import bench_heavy_day

        log("heavy day: the daily report of 100,000 operators, before and after (XCom, log, peak RSS)")
        # --quick checks that the scenario works: 2,000 operators, no "before" revision.
        try:
            data["heavy_day"] = bench_heavy_day(
                ferret.uri, **({"operators": 2_000, "before": None} if args.quick else {})
            )
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:  # the page says so; other sections kept
            if args.quick:
                raise  # --quick is the suite's own check (tests/unit/test_bench_quick.py): fail it
            log(f"heavy day failed: {exc}")
            data["heavy_day"] = {"error": str(exc).splitlines()[0] if str(exc) else repr(exc)}
        checkpoint()
    if "ferretdb" in only:
        log("FerretDB: ours (auto) vs fetch-all")
        bench_sizes(ferret, args.size_runs, "auto", 0, checkpoint, ferret_data)
    if mjs is not None:
        mjs_data: dict[str, Any] = {"server": {"pid": mjs.pid, "detail": mjs.detail}}
        data["mjs"] = mjs_data
        if "roundtrips" in only:
            log("round trips (mongo-java-server)")
            mjs_data["round_trips"] = bench_round_trips(mjs, ["auto", "stream"], args.roundtrip_calls)
        if "mjs" in only:
            log("mongo-java-server: pushdown vs fetch-all")
            bench_sizes(mjs, args.size_runs, "pushdown", MJS_BASELINE_BATCH, checkpoint, mjs_data)
    if "rollup" in only:
        from rollup import bench_rollup

        log("roll-up: the monthly report from stored daily reports vs CDR_ROLLUP=off")
        on = {"FerretDB": (ferret, "auto")} | ({"mongo-java-server": (mjs, "pushdown")} if mjs else {})
        data["rollup"] = {}
        bench_rollup(
            on, service_uri("CDR_TEST_PG_URI"), args.rollup_calls_per_day, args.rollup_runs, run_worker, log,
            checkpoint, data["rollup"],
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from report import render_markdown

    args = parse_args(argv)
    if args.render_only:
        rendered = json.loads((args.out / "benchmarks.json").read_text())
        (args.out / "benchmarks.md").write_text(render_markdown(rendered))
        return 0
    pg_uri = service_uri("CDR_TEST_PG_URI")
    args.out.mkdir(parents=True, exist_ok=True)

    # SIGTERM (make's timeout) must still run the finally blocks that stop the private servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.perf_counter()
    started: list[servers.Server] = []
    home = Path(tempfile.mkdtemp(prefix="cdrbench_"))
    tag = hashlib.sha1(str(args.out.resolve()).encode()).hexdigest()[:8]  # concurrent runs with another --out
    checkpoint_file = REPO / ".services" / f"bench-partial-{tag}.json"
    data: dict[str, Any] = {}

    def checkpoint() -> None:
        checkpoint_file.write_text(json.dumps(data, indent=2, default=str))

    try:
        ferret, mjs = start_servers(args, started)
        from cdr_reports.pipeline.extract import STREAM_BATCH_SIZE

        data["meta"] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(["python", "bench/run.py", *args.argv]),
            "quick": args.quick,
            "sections": sorted(args.sections),
            "runs": args.runs,
            "sizes": [{"calls": s, "runs": r} for s, r in args.size_runs],
            "machine": machine(ferret, mjs, pg_uri),
            "shared_servers": args.shared_servers,
            "loadavg_start": loadavg(),
            "targets": {
                "ratio": TARGET_RATIO,
                "client_mib": TARGET_CLIENT_MIB,
                "flat_mib": TARGET_FLAT_MIB,
                "dag_test": TARGET_DAG_TEST,
            },
            "mjs_baseline_batch": MJS_BASELINE_BATCH,
            "stream_batch_size": STREAM_BATCH_SIZE,
            "code_start": code_state(),
        }
        measure_servers(args, ferret, mjs, data, home, checkpoint)
        for server in started:  # free their memory before the Airflow measurements
            server.stop()
        if "parse" in args.sections:
            log("parse time")
            data["parse_time"] = bench_parse(args.runs, home / "parse", warmup=not args.quick, all_files=not args.quick)
            checkpoint()
        if "load" in args.sections:
            log("load throughput")
            data["load_throughput"] = bench_load(pg_uri, args.runs, home)
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)
        if data:
            checkpoint()
    data["meta"]["loadavg_end"] = loadavg()
    data["meta"]["code_end"] = code_state()
    data["meta"]["total_seconds"] = round(time.perf_counter() - began, 1)

    (args.out / "benchmarks.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (args.out / "benchmarks.md").write_text(render_markdown(data))
    checkpoint_file.unlink(missing_ok=True)
    log(
        f"wrote {args.out / 'benchmarks.json'} and {args.out / 'benchmarks.md'} in {data['meta']['total_seconds'] / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
