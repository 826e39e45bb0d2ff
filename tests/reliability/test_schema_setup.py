"""Crash-safe schema setup: a setup killed after any DDL statement is finished by the next load.

The first load of a fresh report database runs every revision (docs/reliability.md, "Schema
setup"). A child process runs that load and stops for good right after its N-th DDL statement;
the test `kill -9`s it there, for every N, then loads in this process and checks that the tables
are exactly the declared schema at head and the report is exact. Separately, databases that
releases before the one-transaction setup could leave half set up (a table committed without its
revision, a column of an unfinished upgrade) are healed by the next load, and a leftover holding
data fails at once (never an endless transient retry) naming the repair command, which fixes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import date

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cdr_reports.pipeline import migrations
from cdr_reports.pipeline.errors import PermanentError
from cdr_reports.pipeline.load import load_report
from cdr_reports.pipeline.periods import period_containing
from cdr_reports.pipeline.schema import OPERATOR_TABLE, RUN_TABLE, build_metadata
from tests.support.reports import TZ, expected_state, make_report, row_counts, stored_state

REPORT = make_report("after-crash", range(0, 6), base=70)
DDL = ("CREATE", "ALTER", "DROP")

# The first load in a child process that stops forever right after its N-th DDL statement.
_KILLED_SETUP = textwrap.dedent(
    """
    import json, sys, time
    import sqlalchemy as sa
    from cdr_reports.pipeline.aggregate import Report
    from cdr_reports.pipeline.load import load_report

    url, connect_args, report = sys.argv[1], json.loads(sys.argv[2]), Report.from_dict(json.loads(sys.argv[3]))
    pause_after, seen = int(sys.argv[4]), []
    engine = sa.create_engine(url, connect_args=connect_args)

    @sa.event.listens_for(engine, "after_cursor_execute")
    def pause(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("CREATE", "ALTER", "DROP")):
            seen.append(statement.split("(")[0].strip())
            if len(seen) == pause_after:
                print("PAUSED " + seen[-1], flush=True)
                time.sleep(300)

    load_report(engine, report)
    print("COMMITTED", flush=True)
    """
)


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_sink(request, tmp_path):
    """A factory of fresh, empty sinks of one kind: (url, connect_args, engine)."""
    made: list[sa.engine.Engine] = []
    counter = iter(range(1000))
    base_url, schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else (None, None)
    schemas: list[str] = []

    def make():
        if base_url is None:
            url, connect_args = f"sqlite:///{tmp_path / f'reports-{next(counter)}.db'}", {}
        else:
            admin = sa.create_engine(base_url)
            schemas.append(f"{schema}_{next(counter)}")
            with admin.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schemas[-1]}"'))
            admin.dispose()
            url, connect_args = base_url, {"options": f"-csearch_path={schemas[-1]}"}
        engine = sa.create_engine(url, connect_args=connect_args)
        made.append(engine)
        return engine.url.render_as_string(hide_password=False), connect_args, engine

    make.kind = request.param
    yield make
    for engine in made:
        engine.dispose()
    if base_url is not None:
        admin = sa.create_engine(base_url)
        with admin.begin() as conn:
            for name in schemas:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


def _ddl_statements(engine: sa.engine.Engine) -> list[str]:
    """The DDL statements of a fresh setup (run on `engine`, which must be empty)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(DDL):
            seen.append(statement.split("(")[0].strip())

    sa.event.listen(engine, "after_cursor_execute", record)
    try:
        migrations.ensure_schema(engine)
    finally:
        sa.event.remove(engine, "after_cursor_execute", record)
    return seen


def schema_differences(engine: sa.engine.Engine) -> list:
    """Differences between the stored tables and the declared schema (the version table aside)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, build_metadata())
    return [d for d in diffs if not (d[0] == "remove_table" and d[1].name == migrations.VERSION_TABLE)]


def test_a_setup_killed_after_every_ddl_statement_is_finished_by_the_next_load(fresh_sink):
    _url, _args, probe = fresh_sink()
    statements = _ddl_statements(probe)
    print(f"\n{fresh_sink.kind}: a fresh setup runs {len(statements)} DDL statements: {statements}")
    assert len(statements) >= 6  # the version table and five report tables at least
    for number in range(1, len(statements) + 1):
        url, connect_args, engine = fresh_sink()
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_SETUP, url, json.dumps(connect_args), json.dumps(REPORT.to_dict()),
             str(number)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            line = child.stdout.readline().strip()
            assert line.startswith("PAUSED"), child.stderr.read()[-3000:]
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(10) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        # Nothing of the killed setup is visible: it was one transaction.
        with engine.connect() as conn:
            assert migrations.current_revision(conn) is None, line
            assert sa.inspect(conn).get_table_names() == [], (line, sa.inspect(conn).get_table_names())
        load_report(engine, REPORT)  # the next load sets up the tables and stores the report
        with engine.connect() as conn:
            assert migrations.current_revision(conn) == migrations.head_revision()
        assert schema_differences(engine) == [], line
        assert stored_state(engine) == expected_state(REPORT), line
        assert row_counts(engine) == {OPERATOR_TABLE: len(REPORT.rows), RUN_TABLE: 1}


# --------------------------------------------------------------------------- half-done setups of earlier releases


def _sqlite(tmp_path, name="reports.db") -> sa.engine.Engine:
    return sa.create_engine(f"sqlite:///{tmp_path / name}")


def _first_table_only(engine: sa.engine.Engine) -> None:
    """What the issue saw: release 0.5's first load killed right after its first CREATE TABLE (SQLite
    committed that DDL at once): an empty version table and an empty `cdr_operator_report`."""
    migrations.upgrade(engine, target=migrations.FIRST_REVISION)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {migrations.VERSION_TABLE}"))
        conn.execute(sa.text(f"DROP TABLE {RUN_TABLE}"))


def test_the_bricked_sqlite_database_of_the_issue_is_healed_by_the_next_load(tmp_path, caplog):
    engine = _sqlite(tmp_path)
    _first_table_only(engine)
    with engine.connect() as conn:
        found = migrations.diagnose(conn)
    assert (found.revision, found.leftovers, found.holding_data) == (None, ((OPERATOR_TABLE, None),), ())
    load_report(engine, REPORT)
    assert stored_state(engine) == expected_state(REPORT)
    assert schema_differences(engine) == []
    assert "dropping it, the upgrade creates it again" in caplog.text


def test_an_interrupted_upgrade_leaves_a_column_that_the_next_load_drops_and_adds_again(tmp_path):
    """Upgrading 0004 -> 0005 on SQLite before this release: ALTER TABLE ADD COLUMN committed, the rest not."""
    engine = _sqlite(tmp_path)
    migrations.upgrade(engine, target="0004")
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {OPERATOR_TABLE} ADD COLUMN total_duration_ms BIGINT"))
    with engine.connect() as conn:
        found = migrations.diagnose(conn)
    assert (found.revision, found.leftovers) == ("0004", ((OPERATOR_TABLE, "total_duration_ms"),))
    load_report(engine, REPORT)
    assert stored_state(engine) == expected_state(REPORT)
    assert schema_differences(engine) == []


def test_a_leftover_holding_data_fails_permanently_naming_the_repair_command(tmp_path, capsys):
    engine = _sqlite(tmp_path)
    _first_table_only(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO {OPERATOR_TABLE} VALUES ('daily', '2026-11-27', 'op-x', '2026-11-28', 1, 1, 1, 1.0, 1.0,"
                " '2026-11-28 00:00:00', 'by-hand')"
            )
        )
    for _try in range(2):  # the same on every try: no endless transient retry
        with pytest.raises(PermanentError) as caught:
            load_report(engine, REPORT)
        assert "already exists" in str(caught.value)
        assert "python -m cdr_reports.pipeline.migrations repair --url" in str(caught.value)
    url = str(engine.url)
    assert migrations.main(["check", "--url", url]) == 0
    assert "left behind by an interrupted setup: table cdr_operator_report; holding data: 1" in capsys.readouterr().out
    assert migrations.main(["repair", "--url", url]) == 0
    assert f"(empty) -> {migrations.head_revision()}" in capsys.readouterr().out
    load_report(engine, REPORT)
    assert stored_state(engine) == expected_state(REPORT)
    assert schema_differences(engine) == []


def test_release_01_tables_are_still_adopted_not_dropped(tmp_path):
    """Both tables of release 0.1 without a version table: stamped 0001 and upgraded, data kept."""
    engine = _sqlite(tmp_path)
    older = make_report("release-0.1", range(2), 9, period=period_containing("daily", date(2026, 10, 2), TZ))
    load_report(engine, older)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {migrations.VERSION_TABLE}"))
    with engine.connect() as conn:
        found = migrations.diagnose(conn)
    assert found.stamp == migrations.FIRST_REVISION
    load_report(engine, REPORT)
    assert stored_state(engine, period=older_period(older)) == expected_state(older)
    assert stored_state(engine) == expected_state(REPORT)


def older_period(report):
    return period_containing(report.report_type, report.period_start, TZ)


def test_a_schema_newer_than_the_release_fails_permanently(tmp_path):
    engine = _sqlite(tmp_path)
    migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(PermanentError, match="9999"):
        load_report(engine, REPORT)
