#!/usr/bin/env python
"""Wall time of one daily report (CDR_EXTRACT_SLICES=4) on CeleryExecutor with 1 vs 2 workers.

Starts the stack of the Celery tests (tests/celery/stack.py: redis-server, PostgreSQL metadata DB,
scheduler, DAG processor, API server, Celery workers w1/w2 with config/celery.env), seeds one day
of synthetic CDRs (cdr_reports_dev.synthetic) into a fresh FerretDB database, then triggers the
daily report through the scheduler once per configuration and round, configurations interleaved
(1 worker, 2 workers, 1 worker, ...) after one untimed warm-up report. For 1 worker, w2 is
stopped (warm shutdown) between runs.

Measured per run: the DAG run's own duration (dag_run.end_date - start_date, from the metadata
DB), the extract phase (first extract start to last extract end), each slice's query time (its
log line) and the worker that ran it. Every run's stored report is checked against the seeded
counts. Servers: those of `make services` (.services/env).

    python bench/celery_workers.py --calls 100000 --rounds 2 --out docs/celery-workers.json
    python bench/celery_workers.py --calls 100000 --rounds 2 --concurrency 1   # 1 slot per worker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cdr_reports_dev.services import service_uri  # noqa: E402
from tests.celery.stack import SLICES, TZ, WORKERS, CeleryStack, open_stack, redis_server_binary, worker_of  # noqa: E402

DAY = date(2026, 11, 27)


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _git(*args: str) -> str:
    import subprocess

    result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return result.stdout.strip()


def one_run(stack: CeleryStack, engine: Any, expected_valid: int) -> dict[str, Any]:
    from cdr_reports.pipeline.load import read_report
    from cdr_reports.pipeline.periods import period_containing

    began = time.monotonic()
    run_id = stack.trigger(DAY)
    state = stack.wait_run(run_id, timeout=3600)
    wall = time.monotonic() - began
    if state != "success":
        raise RuntimeError(f"run {run_id} ended {state}\n{stack.log_tails()}")
    run = stack.dag_run(run_id)
    assert run is not None
    extract = stack.task_instances(run_id, "extract")
    stored = read_report(engine, "daily", period_containing("daily", DAY, TZ).start_date, schema=stack.sink_schema)
    if stored is None or stored["run"]["dag_run_id"] != run_id or stored["run"]["valid_records"] != expected_valid:
        raise RuntimeError(f"stored report of {run_id} does not match the seed: {stored and stored['run']}")
    return {
        "run_id": run_id,
        "run_seconds": round((run["end_date"] - run["start_date"]).total_seconds(), 1),
        "trigger_to_success_seconds": round(wall, 1),
        "extract_phase_seconds": round(
            (max(ti["end_date"] for ti in extract) - min(ti["start_date"] for ti in extract)).total_seconds(), 1
        ),
        # Query time of each slice's successful try (a try failed by a query timeout is retried).
        "slice_query_seconds": {
            ti["map_index"]: stack.slice_seconds(run_id, ti["try_number"]).get(ti["map_index"]) for ti in extract
        },
        "extract_tries": {ti["map_index"]: ti["try_number"] for ti in extract},
        "slices_per_worker": {
            name: sorted(ti["map_index"] for ti in extract if worker_of(ti["hostname"]) == name) for name in WORKERS
        },
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000, help="synthetic CDRs in the reported day")
    parser.add_argument("--rounds", type=int, default=2, help="runs per configuration, interleaved")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="slots per worker (default: config/celery.env's value)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed reports before the timed rounds")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    # `kill` (SIGTERM) ends the run through the stack's clean-up: processes, databases, temp dir.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import sqlalchemy as sa

    from cdr_reports.pipeline.periods import period_containing
    from cdr_reports_dev.synthetic import SyntheticConfig, seed_collection

    env_file = REPO / ".services" / "env"
    mongo_uri, pg_uri = service_uri("CDR_TEST_MONGO_URI", env_file), service_uri("CDR_TEST_PG_URI", env_file)
    redis_bin = redis_server_binary()
    if not (mongo_uri and pg_uri and redis_bin):
        parser.error("needs `make services` (FerretDB, PostgreSQL) and redis-server (scripts/install-test-packages.sh)")
    period = period_containing("daily", DAY, TZ)
    seeded: dict[str, Any] = {}

    def seed(collection: Any) -> None:
        config = SyntheticConfig(seed=7, start=period.start_utc, end=period.end_utc, calls=args.calls)
        stats = seed_collection(collection, config)
        seeded.update(inserted=stats.inserted, valid=stats.inserted - stats.malformed - stats.deleted)
        log(f"seeded {stats.inserted} CDRs in {stats.seconds:.1f} s")

    results: dict[str, Any] = {
        "command": "python bench/celery_workers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_head": _git("rev-parse", "HEAD"),
        "git_dirty_files": len(_git("status", "--porcelain", "--untracked-files=no").splitlines()),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(), "load_average_start": os.getloadavg()},
        "calls": args.calls,
        "slices": SLICES,
        "runs": {"1 worker": [], "2 workers": []},
    }
    with open_stack(mongo_uri, pg_uri, redis_bin, seed, WORKERS) as stack:
        results["concurrency"] = args.concurrency or int(stack.env["AIRFLOW__CELERY__WORKER_CONCURRENCY"])
        results["parallelism"] = int(stack.env["AIRFLOW__CORE__PARALLELISM"])
        results["stack_start_seconds"] = stack.timings
        engine = sa.create_engine(stack.sink_url)
        try:
            if args.concurrency:  # restart both workers with the requested slots
                for name in WORKERS:
                    stack.stop_worker(name)
            # FerretDB's first scans after the insert are far slower than later ones (cold SQLite
            # pages): one untimed report first, as bench/run.py warms the cache before timing.
            for _ in range(args.warmup):
                stack.ensure_workers(WORKERS, concurrency=args.concurrency)
                log(f"warm-up: {json.dumps(one_run(stack, engine, seeded['valid']))}")
            for round_number in range(args.rounds):
                for label, names in (("1 worker", WORKERS[:1]), ("2 workers", WORKERS)):
                    for name in set(WORKERS) - set(names):
                        if stack.worker_alive(name):
                            stack.stop_worker(name)
                    stack.ensure_workers(names, concurrency=args.concurrency)
                    log(f"round {round_number + 1}/{args.rounds}: {label}")
                    result = one_run(stack, engine, seeded["valid"])
                    log(f"  {json.dumps(result)}")
                    results["runs"][label].append(result)
        finally:
            engine.dispose()
    results["seeded"] = seeded
    results["load_average_end"] = os.getloadavg()
    for label, runs in results["runs"].items():
        values = [run["run_seconds"] for run in runs]
        results.setdefault("median_run_seconds", {})[label] = statistics.median(values) if values else None
    print(json.dumps(results, indent=2, default=str))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
