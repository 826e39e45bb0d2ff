"""Synthetic CDRs for the demo and the Docker stack (`mongo-seed`), and the report index.

The CDRs come from the `cdr-seed` generator (cdr_reports_dev.synthetic); the index is the one the
report's range queries use (cdr_reports.pipeline.extract.ensure_indexes).
"""

from __future__ import annotations

from typing import Any

import pymongo

from cdr_reports.pipeline.extract import ensure_indexes
from cdr_reports_dev.demo.state import log
from cdr_reports_dev.synthetic import main as cdr_seed

# 35 days x 5,000 calls = 175,000 CDRs: the largest volume at which `make demo` (seed, three
# DAG runs through Airflow, printed reports) finished within 3 minutes on the 2-core development
# machine: 2 min 41 s measured with the machine also running a benchmark (load average ~3).
# FerretDB decodes the whole collection for each extract (one projected find per slice).
DEMO_DAYS = 35
DEMO_CALLS_PER_DAY = 5000
SEED_MODES = ("drop", "if-empty", "append")


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
    if mode not in SEED_MODES:
        raise ValueError(f"unknown seed mode {mode!r}")
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        target: Any = client[database][collection]
        if mode == "if-empty" and target.find_one({}, projection={"_id": 1}) is not None:
            log(f"{database}.{collection} already holds CDRs: not seeding (mode if-empty)")
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
    log(f"index on DateTime.Start: {index}")
    return index


def holds_cdrs(uri: str, database: str, collection: str = "CdrRecords") -> bool:
    """Whether the collection already has a CDR (`make airflow` seeds only an empty one)."""
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        return client[database][collection].find_one({}, projection={"_id": 1}) is not None
