"""Archive before purge at scale: N expiring periods archived, verified and deleted in ONE retention run.

    .venv/bin/python bench/archive.py --periods 10000 [--storage file|s3] [--operators 3] [--sink sqlite|postgres]

Seeds N daily reports (each with its run row, `--operators` operator rows and one quality finding)
into a fresh SQLite file (or a fresh schema of `make services`' PostgreSQL), then times
`archive_then_prune` (the retention task's body) through Airflow's ObjectStoragePath to a fresh
local folder or a fresh bucket of `make services`' S3 server (moto), and prints wall time, files
per second and the process's peak memory (ru_maxrss before and after the run; with --tracemalloc
also the peak of Python allocations during the run, which slows it). Not part of `make bench`:
it measures the archive alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".services" / "airflow_home"))


def _required(value: str | None, name: str) -> str:
    if not value:
        raise SystemExit(f"{name} is not set and .services/env has no value for it: run `make services` first")
    return value


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--periods", type=int, default=10_000)
    parser.add_argument("--operators", type=int, default=3)
    parser.add_argument("--storage", choices=("file", "s3"), default="file")
    parser.add_argument("--sink", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--tracemalloc", action="store_true", help="also trace Python allocations (slows the run)")
    args = parser.parse_args()

    import sqlalchemy as sa

    from cdr_reports.integration.archive_storage import archive_root
    from cdr_reports.integration.maintenance import archive_then_prune
    from cdr_reports.pipeline.config import Settings
    from cdr_reports_dev.services import service_uri
    from tests.support.archive import aws_connection_uri, new_bucket, seed, snapshot

    work = Path(tempfile.mkdtemp(prefix="cdr-archive-bench-"))
    env_file = REPO / ".services" / "env"
    schema = None
    if args.sink == "sqlite":
        engine = sa.create_engine(f"sqlite:///{work / 'reports.db'}")
    else:
        uri = _required(service_uri("CDR_TEST_PG_URI", env_file), "CDR_TEST_PG_URI")
        uri = uri.replace("postgresql://", "postgresql+psycopg://", 1)
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(uri)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        engine = sa.create_engine(uri, connect_args={"options": f"-csearch_path={schema}"})
    days = [date(1990, 1, 1) + timedelta(days=i) for i in range(args.periods)]
    began = time.monotonic()
    for i in range(0, len(days), 2000):
        seed(engine, "daily", days[i : i + 2000], operators=args.operators, findings=1)
    seeded = time.monotonic() - began
    if args.storage == "file":
        settings = Settings(archive_url=f"file://{work / 'archive'}")
    else:
        endpoint = _required(service_uri("CDR_TEST_S3_ENDPOINT", env_file), "CDR_TEST_S3_ENDPOINT")
        os.environ["AIRFLOW_CONN_CDR_ARCHIVE_BENCH"] = aws_connection_uri(endpoint)
        settings = Settings(archive_url=f"s3://{new_bucket(endpoint)}/cdr", archive_conn_id="cdr_archive_bench")
    root = archive_root(settings)
    cutoff = days[-1] + timedelta(days=1)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.tracemalloc:
        tracemalloc.start()
    began = time.monotonic()
    summary = archive_then_prune(engine, root, cutoff, batch_size=args.batch_size)
    seconds = time.monotonic() - began
    traced_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    left = snapshot(engine)
    result = {
        "periods": args.periods,
        "operators_per_period": args.operators,
        "storage": args.storage,
        "sink": args.sink,
        "batch_size": args.batch_size,
        "seed_seconds": round(seeded, 1),
        "archive_seconds": round(seconds, 1),
        "files": summary.written,
        "files_per_second": round(summary.written / seconds, 1),
        "deleted_periods": summary.report_periods,
        "rows_left": {k: len(v) for k, v in left.items()},
        "peak_rss_mib_before": round(rss_before / 1024, 1),
        "peak_rss_mib_after": round(rss_after / 1024, 1),
        "tracemalloc_peak_mib": round(traced_peak / 2**20, 1) if traced_peak is not None else None,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    if schema is not None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    return 0 if summary.report_periods == args.periods else 1


if __name__ == "__main__":
    sys.exit(main())
