"""The session's CeleryExecutor stack (tests/celery/stack.py) with two workers, w1 and w2.

Source data: two days of seeded random CDRs (tests/support/reference.py) plus the edge cases, in
a fresh FerretDB database (CDR_TEST_MONGO_URI). redis-server comes from Debian's package
(scripts/install-test-packages.sh installs it when missing and we are root); under CI=true a missing
server fails the tests, locally they skip loudly. Process and task logs are copied to
test-artifacts/celery/logs/ when the session has failures.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from tests.celery.stack import REPO_ROOT, TZ, WORKERS, CeleryStack, open_stack, redis_server_binary
from tests.support.processes import PgCluster, pg_bindir
from tests.support.reference import edge_case_documents, random_documents
from tests.support.services import skip_or_fail

ARTIFACTS = REPO_ROOT / "test-artifacts" / "celery"
# The two reported days: one per test, so each test's stored report is its own.
SPREAD_DAY = date(2026, 11, 27)
KILL_DAY = date(2026, 11, 20)
# FerretDB (SQLite backend) scans the whole collection for every query: ~1-2 s per query for
# the ~30k documents below on this 2-core machine, so a slice (5 queries) runs long enough for
# the kill test to catch it mid-query, and the module stays within a few minutes.
DOCS_PER_DAY = int(os.environ.get("CDR_CELERY_TEST_DOCS_PER_DAY", "15000"))


@pytest.fixture(scope="package")
def seeded_docs() -> list[dict]:
    from cdr_reports.pipeline.periods import period_containing

    docs: list[dict] = []
    for seed, day in enumerate((SPREAD_DAY, KILL_DAY)):
        period = period_containing("daily", day, TZ)
        # Spread over a margin around the day: the other day's and out-of-window calls too.
        docs += random_documents(random.Random(1000 + seed), DOCS_PER_DAY, period.start_utc, period.end_utc)
        docs += edge_case_documents(period.start_utc, period.end_utc)
    return docs


@pytest.fixture(scope="package")
def metadata_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster holding the stack's metadata DB, so a test may crash it (never the shared one)."""
    import shutil
    import tempfile
    from pathlib import Path

    bindir = pg_bindir()
    if bindir is None:
        skip_or_fail("PostgreSQL server binaries (pg_ctl, initdb) are not installed")
    root = Path(tempfile.mkdtemp(prefix="cdr-celery-metadata-pg-"))
    cluster = PgCluster(bindir=bindir, root=root)
    try:
        cluster.initdb()
        cluster.start()
        cluster.psql(f"CREATE ROLE owner LOGIN CREATEDB PASSWORD '{cluster.owner_password}';")
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")
def celery_stack(
    request, mongo_uri: str, pg_uri: str, seeded_docs: list[dict], metadata_cluster: PgCluster
) -> Iterator[CeleryStack]:
    redis_bin = redis_server_binary()
    if redis_bin is None:
        skip_or_fail("redis-server is not installed (run scripts/install-test-packages.sh as root)")

    def seed(collection: Any) -> None:
        collection.insert_many([dict(doc) for doc in seeded_docs])  # copies: insert_many adds _id

    def on_exit(stack: CeleryStack, failed: bool) -> None:
        if failed or request.session.testsfailed:
            print(f"\n===== Celery stack process logs (failure) =====\n{stack.log_tails()}")
            stack.keep_logs(ARTIFACTS / "logs")

    metadata_server = f"postgresql://owner:{metadata_cluster.owner_password}@127.0.0.1:{metadata_cluster.port}/postgres"
    with open_stack(mongo_uri, pg_uri, redis_bin, seed, WORKERS, on_exit, metadata_pg_uri=metadata_server) as stack:
        print(f"\nCelery stack ready on {socket.getfqdn()} (seconds since start): {stack.timings}")
        yield stack


@pytest.fixture(scope="package")
def sink_engine(celery_stack: CeleryStack):
    import sqlalchemy as sa

    engine = sa.create_engine(celery_stack.sink_url)
    yield engine
    engine.dispose()
