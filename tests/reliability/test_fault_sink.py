"""The SQL sink failing during a load: the previous report stays intact, the retry is exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import sqlalchemy as sa

from cdr_reports.pipeline.errors import PermanentError
from cdr_reports.pipeline.load import load_report
from tests.support.reports import expected_state, make_report, row_counts, stored_state

PREVIOUS = make_report("previous", range(0, 8), base=40)
NEW = make_report("new", range(4, 15), base=300)


def test_postgres_stopped_during_the_load(own_pg):
    """`pg_ctl stop -m immediate` right when the load inserts (its deletes already executed)."""
    cluster, _schema, engine = own_pg
    load_report(engine, PREVIOUS)
    before = stored_state(engine)
    assert before == expected_state(PREVIOUS)

    stopped: list[float] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def stop_server(conn, cursor, statement, parameters, context, executemany):
        if not stopped and statement.startswith("INSERT INTO cdr_operator_report"):
            stopped.append(time.monotonic())
            cluster.stop("immediate")  # kills every backend, like a crash

    began = time.monotonic()
    with pytest.raises(sa.exc.DBAPIError) as caught:
        load_report(engine, NEW)
    sa.event.remove(engine, "before_cursor_execute", stop_server)
    print(
        f"\nload failed {time.monotonic() - began:.2f} s after it started: {type(caught.value).__name__}: "
        f"{str(caught.value.orig).splitlines()[0]}"
    )
    assert stopped, "the hook never fired"
    # Transient (so Airflow retries), not a PermanentError (which would fail the task at once).
    assert not isinstance(caught.value, PermanentError)
    assert isinstance(caught.value, sa.exc.OperationalError)

    cluster.start()
    assert stored_state(engine) == before  # the deletes were rolled back with the server's crash recovery
    load_report(engine, NEW)  # the retry
    assert stored_state(engine) == expected_state(NEW)
    assert row_counts(engine) == {"cdr_operator_report": len(NEW.rows), "cdr_report_run": 1}


def test_postgres_down_before_the_load_is_transient(own_pg):
    cluster, _schema, engine = own_pg
    load_report(engine, PREVIOUS)
    cluster.stop("fast")
    try:
        with pytest.raises(sa.exc.OperationalError) as caught:
            load_report(engine, NEW)
        assert not isinstance(caught.value, PermanentError)
    finally:
        cluster.start()
    assert stored_state(engine) == expected_state(PREVIOUS)


# The load in a child process that stops forever inside its transaction, right after a statement.
_KILLED_LOADER = textwrap.dedent(
    """
    import json, sys, time
    import sqlalchemy as sa
    from cdr_reports.pipeline.aggregate import Report
    from cdr_reports.pipeline.load import load_report

    url, connect_args, report = sys.argv[1], json.loads(sys.argv[2]), Report.from_dict(json.loads(sys.argv[3]))
    pause_after = sys.argv[4]
    engine = sa.create_engine(url, connect_args=connect_args)

    @sa.event.listens_for(engine, "after_cursor_execute")
    def pause(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith(pause_after):
            print("PAUSED", flush=True)
            time.sleep(300)

    load_report(engine, report)
    print("COMMITTED", flush=True)
    """
)


@pytest.fixture(params=["sqlite", "postgres"])
def sink(request, tmp_path):
    """(url, connect_args, engine) of a real sink the child process can open too."""
    if request.param == "sqlite":
        url, connect_args = f"sqlite:///{tmp_path / 'reports.db'}", {}
        engine = sa.create_engine(url)
        yield url, connect_args, engine
        engine.dispose()
        return
    base_url, _schema = request.getfixturevalue("pg_schema")
    connect_args = {"options": f"-csearch_path={_schema}"}
    engine = sa.create_engine(base_url, connect_args=connect_args)
    yield engine.url.render_as_string(hide_password=False), connect_args, engine
    engine.dispose()


@pytest.mark.parametrize(
    "pause_after",
    ["DELETE FROM cdr_operator_report", "INSERT INTO cdr_operator_report"],
    ids=["after-deletes", "after-inserts"],
)
def test_load_process_killed_mid_transaction(sink, pause_after):
    """kill -9 of the loading process with its transaction open (SQLite: a hot journal remains)."""
    url, connect_args, engine = sink
    load_report(engine, PREVIOUS)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_LOADER, url, json.dumps(connect_args), json.dumps(NEW.to_dict()), pause_after],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline().strip()
        assert line == "PAUSED", child.stderr.read()[-2000:]
        # Inside the child's open transaction the report is already replaced; nobody else sees that.
        assert stored_state(engine) == expected_state(PREVIOUS)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert stored_state(engine) == expected_state(PREVIOUS)  # intact after the crash
    load_report(engine, NEW)  # the next load (the retry) waits for the dead transaction's locks to go
    assert stored_state(engine) == expected_state(NEW)
    assert row_counts(engine) == {"cdr_operator_report": len(NEW.rows), "cdr_report_run": 1}
