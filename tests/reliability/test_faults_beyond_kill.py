"""Faults beyond a kill, on real servers: a hung source, a hung sink, a full disk, a skewed sink clock.

- Hung source: the test's own FerretDB is SIGSTOPped in the middle of the extract's stream. The
  query's socket timeout (CDR_MONGO_QUERY_TIMEOUT_SECONDS) fails the try; the retry, once the
  server is resumed, produces the exact report. The run is never stuck until a task or DAG timeout.
- Hung sink: the test's own PostgreSQL cluster (every process of it) is SIGSTOPped when the load
  inserts. The kernel keeps the TCP connection alive, so only the statement watchdog
  (connections.SQL_STATEMENT_WATCHDOG_SECONDS) ends the try; the retry stores the exact report.
- Full disk: the SQLite sink on a small tmpfs, filled up: a clear error, the previous report
  intact, and the load succeeds once space returns.
- Clock skew: nothing the sink computes or stores comes from its clock: every statement of a run
  is recorded and none reads it, no column has a server default, and the stored report is the
  same whatever the sink session's time zone.
Each test prints what the fault cost in time (docs/reliability.md, "Faults beyond a kill").
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdr_reports.integration import connections
from cdr_reports.pipeline import extract as extract_module
from cdr_reports.pipeline.errors import PermanentError
from cdr_reports.pipeline.load import load_report
from tests.support.processes import build_dag, task_states
from tests.support.reference import edge_case_documents, expected_report, random_documents
from tests.support.reports import DAY, assert_stored_equals_reference, expected_state, make_report, stored_state
from tests.support.services import skip_or_fail

DATABASE = "cdr_faults"


def _docs(count: int = 300) -> list[dict]:
    return random_documents(random.Random(23), count, DAY.start_utc, DAY.end_utc) + edge_case_documents(
        DAY.start_utc, DAY.end_utc
    )


def _resume_later(pids: list[int], seconds: float, resumed: list[float]) -> threading.Thread:
    def resume():
        time.sleep(seconds)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        resumed.append(time.monotonic())

    thread = threading.Thread(target=resume, daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- hung source


def test_a_hung_source_fails_the_try_at_the_query_timeout_and_the_retry_is_exact(
    ferret, ferret_client, dag_env, tmp_path, monkeypatch
):
    docs = _docs()
    ferret_client[DATABASE].CdrRecords.insert_many([dict(d) for d in docs])
    sink = tmp_path / "reports.db"
    query_timeout = 3
    dag_env(
        {"CDR_RETRIES": "4", "CDR_MONGO_QUERY_TIMEOUT_SECONDS": str(query_timeout)},
        {"cdr_mongo": ferret.conn_uri(DATABASE), "cdr_reports_db": f"sqlite:///{sink}"},
    )
    tries: list[float] = []
    stopped: list[float] = []
    resumed: list[float] = []
    threads: list[threading.Thread] = []
    original_extract, original_find = extract_module.extract_slice, extract_module.ScopedCollection.find

    def extract_slice(*args, **kwargs):
        tries.append(time.monotonic())
        return original_extract(*args, **kwargs)

    def find(self, projection, batch_size):
        for seen, document in enumerate(original_find(self, projection, batch_size)):
            if seen == 60 and len(tries) == 1 and not stopped:
                ferret.process.send_signal(signal.SIGSTOP)  # our own FerretDB, by its pid
                stopped.append(time.monotonic())
                threads.append(_resume_later([ferret.process.pid], 2 * query_timeout + 2, resumed))
            yield document

    monkeypatch.setattr(extract_module, "extract_slice", extract_slice)
    monkeypatch.setattr(extract_module, "STREAM_BATCH_SIZE", 50)
    monkeypatch.setattr(extract_module.ScopedCollection, "find", find)
    try:
        began = time.monotonic()
        run = build_dag("daily").test(run_conf={"report_date": DAY.start_date.isoformat()})
        took = time.monotonic() - began
    finally:
        for thread in threads:
            thread.join(30)
        if ferret.running:
            ferret.process.send_signal(signal.SIGCONT)
    states = task_states(run)
    print(
        f"\nhung source: run {run.state} in {took:.1f} s; stopped {stopped[0] - tries[0]:.1f} s into try 1, "
        f"resumed {resumed[0] - stopped[0]:.1f} s later; extract tries started at "
        f"{[round(t - tries[0], 1) for t in tries]} s; {states}"
    )
    assert str(run.state) == "success", states
    state, attempts = states["extract[0]"]
    assert state == "success" and attempts >= 2 and len(tries) == attempts
    # Try 1 ended by the query timeout (plus the retry delay), not by the task's 60-minute timeout.
    assert tries[1] - stopped[0] < 60
    engine = sa.create_engine(f"sqlite:///{sink}")
    assert_stored_equals_reference(engine, expected_report(docs, DAY.start_utc, DAY.end_utc))
    engine.dispose()


# --------------------------------------------------------------------------- hung sink


def _cluster_pids(cluster) -> list[int]:
    """The postmaster of our own cluster (its pid file) and every process it started."""
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().splitlines()[0])
    pids = [postmaster]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (proc / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == postmaster:
                    pids.append(int(proc.name))
    return pids


def test_a_hung_sink_fails_the_try_at_the_statement_watchdog_and_the_retry_is_exact(
    own_pg, mongo_uri, mongo_db, dag_env, monkeypatch
):
    from urllib.parse import urlsplit

    cluster, schema, engine = own_pg
    previous = make_report("previous", range(0, 5), base=17)
    load_report(engine, previous)
    docs = _docs()
    mongo_db.CdrRecords.insert_many([dict(d) for d in docs])
    watchdog = 2.0
    monkeypatch.setattr(connections, "SQL_STATEMENT_WATCHDOG_SECONDS", watchdog)
    dag_env(
        {"CDR_RETRIES": "4", "CDR_SQL_SCHEMA": schema},
        {
            "cdr_mongo": f"mongo://{urlsplit(mongo_uri).netloc}/{mongo_db.name}",
            "cdr_reports_db": f"postgres://owner:{cluster.owner_password}@127.0.0.1:{cluster.port}/{cluster.database}",
        },
    )
    stopped: list[float] = []
    resumed: list[float] = []
    threads: list[threading.Thread] = []
    frozen: list[int] = []

    def freeze(conn, cursor, statement, parameters, context, executemany):
        if not stopped and statement.startswith(f"INSERT INTO {schema}.cdr_operator_report"):
            frozen.extend(_cluster_pids(cluster))
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            stopped.append(time.monotonic())
            threads.append(_resume_later(frozen, 3 * watchdog, resumed))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", freeze)
    try:
        began = time.monotonic()
        run = build_dag("daily").test(run_conf={"report_date": DAY.start_date.isoformat()})
        took = time.monotonic() - began
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", freeze)
        for thread in threads:
            thread.join(30)
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    states = task_states(run)
    print(
        f"\nhung sink: run {run.state} in {took:.1f} s; {len(frozen)} PostgreSQL processes stopped at the insert, "
        f"resumed {resumed[0] - stopped[0]:.1f} s later (watchdog {watchdog} s); {states}"
    )
    assert stopped, "the load never reached its insert"
    assert str(run.state) == "success", states
    state, attempts = states["load"]
    assert state == "success" and attempts >= 2, states
    assert_stored_equals_reference(engine, expected_report(docs, DAY.start_utc, DAY.end_utc))


def test_the_watchdog_breaks_a_hung_statement_as_a_transient_error(own_pg):
    """The mechanism alone, timed: a statement on a stopped server fails after the watchdog, transient."""
    from cdr_reports.pipeline.errors import classify_sql_error

    cluster, _schema, engine = own_pg
    connections.watch_statements(engine, 1.5)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    frozen = _cluster_pids(cluster)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        with pytest.raises(sa.exc.DBAPIError) as caught, engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        took = time.monotonic() - began
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    print(f"\nwatchdog: hung statement failed after {took:.2f} s: {str(caught.value.orig).splitlines()[0]}")
    assert 1.5 <= took < 30
    assert classify_sql_error(caught.value, "loading") is caught.value  # transient: retried
    with engine.connect() as conn:  # the pool recovers: the broken connection was invalidated
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


# --------------------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs of our own, unmounted afterwards (needs root, as CI runs)."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777", f"cdr-small-{uuid.uuid4().hex[:6]}", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs for the full-disk test (root needed): {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)  # even with a file still open


def _fill(folder: Path) -> Path:
    """Write a file until the filesystem is full."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    return filler


def test_a_full_disk_under_the_sqlite_sink(small_disk):
    engine = sa.create_engine(f"sqlite:///{small_disk / 'reports.db'}", poolclass=sa.pool.NullPool)
    previous = make_report("previous", range(0, 10), base=5)
    load_report(engine, previous)
    big = make_report("big", range(0, 3000), base=90)  # ~300 KiB of rows and journal: more than is left
    filler = _fill(small_disk)
    began = time.monotonic()
    with pytest.raises(sa.exc.OperationalError) as caught:
        load_report(engine, big)
    failed_after = time.monotonic() - began
    message = str(caught.value.orig)
    print(f"\nfull disk: the load failed after {failed_after:.2f} s: {message}")
    assert "database or disk is full" in message
    assert not isinstance(caught.value, PermanentError)  # transient: retried, and heals once space returns
    assert stored_state(engine) == expected_state(previous)  # intact
    filler.unlink()  # space returns
    load_report(engine, big)
    assert stored_state(engine) == expected_state(big)
    engine.dispose()


# --------------------------------------------------------------------------- clock skew

# Functions that read a SQL server's clock, in every dialect we support.
_SERVER_CLOCK = re.compile(
    r"\b(now\s*\(|current_timestamp|current_date|current_time|localtimestamp|localtime|getdate|getutcdate|"
    r"sysdatetime|sysutcdatetime|sysdatetimeoffset|clock_timestamp|statement_timestamp|transaction_timestamp|"
    r"datetime\s*\(\s*'now'|date\s*\(\s*'now')",
    re.IGNORECASE,
)


def test_the_sink_clock_is_never_read(own_pg, mongo_uri, mongo_db, dag_env):
    """A whole daily run (load, volume and late-data checks) on a sink whose session is 14 h ahead:
    no statement reads the server's clock, no column defaults to it, and the report is the reference."""
    from urllib.parse import urlsplit

    cluster, schema, engine = own_pg
    docs = _docs(200)
    mongo_db.CdrRecords.insert_many([dict(d) for d in docs])
    dag_env(
        {"CDR_SQL_SCHEMA": schema},
        {
            "cdr_mongo": f"mongo://{urlsplit(mongo_uri).netloc}/{mongo_db.name}",
            "cdr_reports_db": f"postgres://owner:{cluster.owner_password}@127.0.0.1:{cluster.port}/{cluster.database}",
        },
    )
    # The sink's sessions believe they are in UTC+14 (Kiritimati): the server's "today" is not the scheduler's.
    cluster.psql("ALTER ROLE owner SET timezone = 'Pacific/Kiritimati';")
    try:
        _run_and_check_no_clock(engine, schema, docs)
    finally:
        cluster.psql("ALTER ROLE owner RESET timezone;")


def _run_and_check_no_clock(engine, schema, docs):
    from cdr_reports.pipeline.config import load_settings

    sink = connections.sql_engine(load_settings())
    with sink.connect() as conn:  # what the tasks' sessions see
        assert conn.execute(sa.text("SHOW timezone")).scalar() == "Pacific/Kiritimati"
    sink.dispose()
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        run = build_dag("daily").test(run_conf={"report_date": DAY.start_date.isoformat()})
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    assert str(run.state) == "success", task_states(run)
    ours = [s for s in statements if "cdr_" in s and "dag_run" not in s and "task_instance" not in s]
    print(f"\n{len(ours)} statements on the report tables; none reads the server clock")
    assert len(ours) >= 5
    assert [s for s in ours if _SERVER_CLOCK.search(s)] == []
    inspector = sa.inspect(engine)
    for table in inspector.get_table_names(schema=schema):
        for column in inspector.get_columns(table, schema=schema):
            assert column.get("default") is None, (table, column)
    assert_stored_equals_reference(engine, expected_report(docs, DAY.start_utc, DAY.end_utc))
