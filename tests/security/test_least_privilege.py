"""Least privilege of the report database, for real on PostgreSQL.

The same model as the compose stack's SQL Server (docker/mssql-init.sql): the init step owns
the DDL (`python -m cdr_reports.pipeline.migrations upgrade` as an admin login) and the DAG's
login holds only `REPORT_DB_GRANTS` (SELECT/INSERT/DELETE on the two report tables, SELECT on
the schema version). Here, in a fresh schema of the `make services` PostgreSQL: the admin
(`cdr`, a superuser) runs the migration CLI and creates a foreign table, then a fresh login role
gets exactly those grants. That role loads and replaces reports (through the pipeline and
through `airflow dags test`), while DDL, an UPDATE of a stored report and any write to a foreign
table are refused by the server, classified as permanent errors (no retry) with a clear message.
"""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cdr_reports.integration.security import REPORT_DB_GRANTS
from cdr_reports.pipeline.errors import PermanentError, classify_sql_error
from cdr_reports.pipeline.load import load_report, read_report
from tests.support.reports import DAY, expected_state, make_report, stored_state
from tests.support.services import ping_or_fail, require_service

FOREIGN_TABLE = "other_team_ledger"


def _url(uri: str, **parts):
    import sqlalchemy as sa

    return sa.engine.make_url(uri).set(drivername="postgresql+psycopg", **parts)


@pytest.fixture(scope="module")
def restricted():
    """(admin engine, restricted engine, restricted URL, schema): the grants of REPORT_DB_GRANTS only."""
    import sqlalchemy as sa

    uri = require_service("CDR_TEST_PG_URI", "PostgreSQL server")
    admin_url = _url(uri)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    ping_or_fail(lambda: admin.connect().close(), f"PostgreSQL at {admin_url.render_as_string()}")
    tag = uuid.uuid4().hex[:10]
    schema, role, password = f"cdr_lp_{tag}", f"cdr_reports_app_{tag}", "App/P@ss:" + secrets.token_hex(8)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        # The init step: the schema migrations, as the admin login, through their CLI.
        migrate = subprocess.run(
            [sys.executable, "-m", "cdr_reports.pipeline.migrations", "upgrade",
             "--url", admin_url.render_as_string(hide_password=False), "--schema", schema],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        assert "report schema: (empty) ->" in migrate.stdout
        with admin.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names(schema=schema))
            assert tables == set(REPORT_DB_GRANTS), f"every report table needs its grants: {tables}"
            conn.execute(sa.text(f'CREATE TABLE "{schema}".{FOREIGN_TABLE} (id int PRIMARY KEY, amount bigint)'))
            conn.execute(sa.text(f'INSERT INTO "{schema}".{FOREIGN_TABLE} VALUES (1, 137)'))
            conn.execute(sa.text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"))
            conn.execute(sa.text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
            for table, privileges in REPORT_DB_GRANTS.items():
                conn.execute(sa.text(f'GRANT {", ".join(privileges)} ON "{schema}".{table} TO "{role}"'))
        restricted_url = _url(uri, username=role, password=password)
        engine = sa.create_engine(restricted_url)
        yield admin, engine, restricted_url, schema
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
            if exists:
                conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
                conn.execute(sa.text(f'DROP ROLE "{role}"'))
        admin.dispose()


def _refused(engine, statement: str) -> PermanentError:
    """Run `statement` as the restricted role; return the classified (permanent) error."""
    import sqlalchemy as sa

    with pytest.raises(sa.exc.DBAPIError) as caught:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    classified = classify_sql_error(caught.value, "a statement of another DAG")
    assert isinstance(classified, PermanentError), f"not permanent: {caught.value!r}"
    return classified


def test_the_restricted_login_loads_and_replaces_reports(restricted):
    _, engine, _, schema = restricted
    first = make_report("lp-1", range(4), 10)
    load_report(engine, first, schema=schema)
    assert stored_state(engine, schema=schema) == expected_state(first)
    # A re-run replaces the period (DELETE + INSERT): an operator that vanished is gone.
    second = make_report("lp-2", range(2), 20)
    result = load_report(engine, second, schema=schema)
    assert result.replaced_operator_rows == 4
    assert stored_state(engine, schema=schema) == expected_state(second)


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE {schema}.new_table (id int)",
        "DROP TABLE {schema}.cdr_operator_report",
        "ALTER TABLE {schema}.cdr_report_run ADD COLUMN note text",
        "TRUNCATE {schema}.cdr_operator_report",
        "CREATE INDEX ix_extra ON {schema}.cdr_operator_report (total_calls)",
    ],
)
def test_ddl_is_refused(restricted, statement):
    _, engine, _, schema = restricted
    error = _refused(engine, statement.format(schema=f'"{schema}"'))
    assert "SQLSTATE 42501" in str(error)  # insufficient_privilege
    assert "permission denied" in str(error) or "must be owner" in str(error)


def test_stored_reports_cannot_be_updated_and_foreign_tables_not_touched(restricted):
    admin, engine, _, schema = restricted
    load_report(engine, make_report("lp-3", range(3), 137), schema=schema)
    before = stored_state(engine, schema=schema)
    # The review's attack: UPDATE cdr_operator_report ... 137 -> 999999.
    error = _refused(engine, f'UPDATE "{schema}".cdr_operator_report SET total_calls = 999999')
    assert "permission denied for table cdr_operator_report" in str(error)
    for statement in (
        f'INSERT INTO "{schema}".{FOREIGN_TABLE} VALUES (2, 999999)',
        f'UPDATE "{schema}".{FOREIGN_TABLE} SET amount = 999999',
        f'DELETE FROM "{schema}".{FOREIGN_TABLE}',
        f'SELECT * FROM "{schema}".{FOREIGN_TABLE}',
        f"UPDATE \"{schema}\".cdr_reports_schema_version SET version_num = '0001'",
    ):
        assert "permission denied" in str(_refused(engine, statement)), statement
    assert stored_state(engine, schema=schema) == before
    import sqlalchemy as sa

    with admin.connect() as conn:
        assert conn.execute(sa.text(f'SELECT id, amount FROM "{schema}".{FOREIGN_TABLE}')).all() == [(1, 137)]


def test_a_schema_behind_head_needs_the_init_step(restricted):
    """The DAG's login cannot upgrade the schema: the load fails at once and says what to run."""
    import sqlalchemy as sa

    admin, engine, _, schema = restricted
    load_report(engine, make_report("lp-4", range(2), 40), schema=schema)
    before = stored_state(engine, schema=schema)
    with admin.connect() as conn:
        (version,) = conn.execute(sa.text(f'SELECT version_num FROM "{schema}".cdr_reports_schema_version')).one()
        conn.execute(sa.text(f"UPDATE \"{schema}\".cdr_reports_schema_version SET version_num = '0001'"))
    try:
        with pytest.raises(PermanentError) as caught:
            load_report(engine, make_report("lp-5", range(5), 50), schema=schema)
        assert "upgrading the report tables to schema revision" in str(caught.value)
        assert "SQLSTATE 42501" in str(caught.value) and "must be owner of table" in str(caught.value)
        assert "python -m cdr_reports.pipeline.migrations upgrade" in str(caught.value)  # what to run instead
        assert stored_state(engine, schema=schema) == before  # nothing stored
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'UPDATE "{schema}".cdr_reports_schema_version SET version_num = :v'), {"v": version})


@pytest.mark.e2e
def test_the_dag_runs_with_the_restricted_login(restricted, airflow_db, mongo_db, tmp_path):
    """`airflow dags test` (one process, SQLite metadata) with the restricted role as cdr_reports_db."""
    import sqlalchemy as sa

    from tests.support.reference import expected_report, random_documents

    _, engine, restricted_url, schema = restricted
    docs = random_documents(random.Random(4242), 120, DAY.start_utc, DAY.end_utc)
    mongo_db.CdrRecords.insert_many([dict(d) for d in docs])
    host, port = mongo_db.client.address
    conn_uri = restricted_url.set(drivername="postgresql").render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDR_", "AIRFLOW_CONN_", "PYTEST_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_CONN_CDR_MONGO": f"mongo://{host}:{port}/{mongo_db.name}",
            "AIRFLOW_CONN_CDR_REPORTS_DB": conn_uri,
            "CDR_SQL_SCHEMA": schema,
            "CDR_RETRIES": "0",
        }
    )
    result = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "dags", "test", "cdr_daily_report", "--conf",
         f'{{"report_date": "{DAY.start_date.isoformat()}"}}'],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    stored = read_report(engine, "daily", DAY.start_date, schema=schema)
    expected = expected_report(docs, DAY.start_utc, DAY.end_utc)
    assert stored is not None and stored["run"]["dag_run_id"].startswith("manual__")
    assert (stored["run"]["source_records"], stored["run"]["valid_records"]) == (expected["source"], expected["valid"])
    assert {row["operator_id"] for row in stored["rows"]} == set(expected["rows"])
    with engine.connect() as conn:  # the role really is not the table owner
        owner = conn.execute(
            sa.text("SELECT tableowner FROM pg_tables WHERE schemaname = :s AND tablename = 'cdr_operator_report'"),
            {"s": schema},
        ).scalar()
    assert owner != restricted_url.username
