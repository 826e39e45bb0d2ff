"""Bad configuration: one clear message naming the setting, failure at once (no retry), no report changed."""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from cdr_reports.pipeline.config import ConfigError, load_settings
from cdr_reports.pipeline.load import load_report
from tests.support.processes import build_dag, run_output, task_states
from tests.support.reference import random_documents
from tests.support.reports import DAY, expected_state, make_report, stored_state

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
PREVIOUS = make_report("previous", range(0, 5), base=11)


# --------------------------------------------------------------------------- parse time


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CDR_TIMEZONE": "Mars/Olympus"}, "CDR_TIMEZONE: unknown time zone 'Mars/Olympus'"),
        ({"CDR_GLOBAL_FILTER": "{not json"}, "CDR_GLOBAL_FILTER is not valid JSON"),
        ({"CDR_GLOBAL_FILTER": '{"$bogus": 1}'}, "CDR_GLOBAL_FILTER: unknown top-level operator '$bogus'"),
        ({"CDR_REPORT_RETENTION_DAYS": "0"}, "CDR_REPORT_RETENTION_DAYS='0' must be >= 1"),
        ({"CDR_ALERT_EMAILS": "ops@example.org, nobody"}, "CDR_ALERT_EMAILS: 'nobody' is not an email address"),
        ({"CDR_SLACK_CONN_ID": "slack_api"}, "CDR_SLACK_CHANNEL must name the channel"),
        ({"CDR_DAILY_DEADLINE_LOCAL_TIME": "6am"}, "CDR_DAILY_DEADLINE_LOCAL_TIME='6am' is not a local time HH:MM"),
        ({"CDR_DAILY_DEADLINE_LOCAL_TIME": "01:30"}, "must be later than the daily report's due time 02:00"),
    ],
    ids=[
        "timezone",
        "filter-json",
        "filter-operator",
        "retention",
        "emails",
        "slack-channel",
        "deadline-format",
        "deadline-order",
    ],
)
def test_bad_settings_fail_the_dag_files_with_one_message(monkeypatch, env, needle):
    """The DAG files do not load: each import error ends in one ConfigError naming the variable."""
    from airflow.dag_processing.dagbag import DagBag

    for key in list(os.environ):
        if key.startswith("CDR_") and not key.startswith("CDR_TEST_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert needle in str(caught.value)

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not [dag_id for dag_id in bag.dag_ids if dag_id.startswith("cdr_")], "no CDR DAG may load with a bad setting"
    errors = {Path(path).name: text for path, text in bag.import_errors.items()}
    assert {"cdr_report_dags.py", "cdr_maintenance_dag.py"} <= set(errors)
    for name in ("cdr_report_dags.py", "cdr_maintenance_dag.py"):
        last_line = errors[name].strip().splitlines()[-1]
        assert last_line.startswith("cdr_reports.pipeline.config.ConfigError: "), last_line
        assert needle in last_line


# --------------------------------------------------------------------------- run time


@pytest.fixture
def source(mongo_uri, mongo_db):
    """Documents of DAY in the shared FerretDB (FerretDB only checks a filter against documents)."""
    mongo_db.CdrRecords.insert_many(random_documents(random.Random(5), 50, DAY.start_utc, DAY.end_utc))
    host = urlsplit(mongo_uri).netloc
    return f"mongo://{host}/{mongo_db.name}"


@pytest.fixture
def sqlite_sink(tmp_path):
    """A SQLite sink already holding the period's previous report."""
    path = tmp_path / "reports.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    load_report(engine, PREVIOUS)
    yield f"sqlite:///{path}", engine
    engine.dispose()


def _run_and_expect_fail_fast(dag_env, capfd, settings, connections, failing_task, needles, caplog):
    dag_env({**settings, "CDR_RETRIES": "3"}, connections)
    dag = build_dag("daily")
    capfd.readouterr()
    caplog.set_level(logging.INFO)
    run = dag.test(run_conf={"report_date": DAY.start_date.isoformat()})
    out = run_output(capfd, caplog)
    states = task_states(run)
    print(f"\n{states}")
    assert str(run.state) == "failed"
    # Failed on its first try although 3 retries were allowed: AirflowFailException.
    assert states[failing_task] == ("failed", 1), states
    messages = re.findall(r"AirflowFailException: (.*)", out)
    assert messages, out[-3000:]
    message = messages[0]
    print(f"message: {message}")
    for needle in needles:
        assert needle in message, message
    return message


def test_missing_source_connection(dag_env, capfd, caplog, source, sqlite_sink):
    url, engine = sqlite_sink
    _run_and_expect_fail_fast(
        dag_env,
        capfd,
        {"CDR_MONGO_CONN_ID": "cdr_mongo_nowhere"},
        {"cdr_reports_db": url},
        "extract[0]",
        ["cdr_mongo_nowhere", "CDR_MONGO_CONN_ID", "isn't defined"],
        caplog=caplog,
    )
    assert stored_state(engine) == expected_state(PREVIOUS)


def test_missing_sink_connection(dag_env, capfd, caplog, source, sqlite_sink):
    _url, engine = sqlite_sink
    _run_and_expect_fail_fast(
        dag_env,
        capfd,
        {"CDR_SQL_CONN_ID": "cdr_sink_nowhere"},
        {"cdr_mongo": source},
        "load",
        ["cdr_sink_nowhere", "CDR_SQL_CONN_ID", "isn't defined"],
        caplog=caplog,
    )
    assert stored_state(engine) == expected_state(PREVIOUS)


def test_filter_the_server_rejects(dag_env, capfd, caplog, source, sqlite_sink):
    """Valid JSON with a known top-level shape, but an operator MongoDB does not have."""
    url, engine = sqlite_sink
    _run_and_expect_fail_fast(
        dag_env,
        capfd,
        {"CDR_GLOBAL_FILTER": '{"Duration": {"$bogus": 1}}'},
        {"cdr_mongo": source, "cdr_reports_db": url},
        "extract[0]",
        ["CDR_GLOBAL_FILTER=", "$bogus", "unknown operator"],
        caplog=caplog,
    )
    assert stored_state(engine) == expected_state(PREVIOUS)


def _pg_conn(cluster, user, password, database=None):
    return f"postgres://{user}:{password}@127.0.0.1:{cluster.port}/{database or cluster.database}"


@pytest.fixture
def pg_sink(own_pg):
    """The private cluster (scram passwords) holding the previous report in a fresh schema."""
    cluster, schema, engine = own_pg
    load_report(engine, PREVIOUS)
    return cluster, schema, engine


def test_wrong_sink_password(dag_env, capfd, caplog, source, pg_sink):
    cluster, schema, engine = pg_sink
    _run_and_expect_fail_fast(
        dag_env,
        capfd,
        {"CDR_SQL_SCHEMA": schema},
        {"cdr_mongo": source, "cdr_reports_db": _pg_conn(cluster, "owner", "not-the-password")},
        "load",
        ["CDR_SQL_CONN_ID", "refused the login", 'password authentication failed for user "owner"'],
        caplog=caplog,
    )
    assert stored_state(engine) == expected_state(PREVIOUS)


def test_missing_sink_database(dag_env, capfd, caplog, source, pg_sink):
    cluster, schema, engine = pg_sink
    _run_and_expect_fail_fast(
        dag_env,
        capfd,
        {"CDR_SQL_SCHEMA": schema},
        {"cdr_mongo": source, "cdr_reports_db": _pg_conn(cluster, "owner", cluster.owner_password, "no_such_db")},
        "load",
        ["CDR_SQL_CONN_ID", 'database "no_such_db" does not exist'],
        caplog=caplog,
    )
    assert stored_state(engine) == expected_state(PREVIOUS)


@pytest.mark.parametrize("tables_exist", [False, True], ids=["cannot-create-tables", "cannot-write-tables"])
def test_sink_user_without_rights(dag_env, capfd, caplog, source, own_pg, tables_exist):
    """A role with USAGE on the schema but no CREATE on it (and no rights on existing tables)."""
    cluster, schema, engine = own_pg
    if tables_exist:
        load_report(engine, PREVIOUS)
    role = f"reader_{schema[-6:]}"
    cluster.psql(
        f"CREATE ROLE {role} LOGIN PASSWORD 'reader-secret';\n"
        f'GRANT USAGE ON SCHEMA "{schema}" TO {role};\n'
        + (f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {role};\n' if tables_exist else ""),
        database=cluster.database,
    )
    try:
        _run_and_expect_fail_fast(
            dag_env,
            capfd,
            {"CDR_SQL_SCHEMA": schema},
            {"cdr_mongo": source, "cdr_reports_db": _pg_conn(cluster, role, "reader-secret")},
            "load",
            ["CDR_SQL_CONN_ID", "SQLSTATE 42501", "permission denied for"],
            caplog=caplog,
        )
        if tables_exist:
            assert stored_state(engine) == expected_state(PREVIOUS)
        else:
            assert not sa.inspect(engine).has_table("cdr_report_run", schema=schema)
    finally:
        cluster.psql(
            f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {role};\n'
            f'REVOKE ALL ON SCHEMA "{schema}" FROM {role};\nDROP ROLE {role};',
            database=cluster.database,
        )
