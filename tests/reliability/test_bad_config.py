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


REPORT_FILE, AUDIT_FILE, RETENTION_FILE = "cdr_report_dags.py", "cdr_source_audit_dag.py", "cdr_maintenance_dag.py"
RESTORE_FILE = "cdr_report_restore_dag.py"
ALL_FILES = {REPORT_FILE, AUDIT_FILE, RETENTION_FILE, RESTORE_FILE}
DAGS_OF = {
    REPORT_FILE: {"cdr_daily_report", "cdr_weekly_report", "cdr_monthly_report"},
    AUDIT_FILE: {"cdr_source_audit"},
    RETENTION_FILE: {"cdr_report_retention"},
    RESTORE_FILE: {"cdr_report_restore"},
}


def _clean_cdr_env(monkeypatch, env):
    for key in list(os.environ):
        if key.startswith("CDR_") and not key.startswith("CDR_TEST_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def _dag_bag(monkeypatch, env):
    from airflow.dag_processing.dagbag import DagBag

    _clean_cdr_env(monkeypatch, env)
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    return bag, {Path(path).name: text for path, text in bag.import_errors.items()}


@pytest.mark.parametrize(
    ("env", "needle", "failing_files"),
    [
        ({"CDR_TIMEZONE": "Mars/Olympus"}, "CDR_TIMEZONE: unknown time zone 'Mars/Olympus'", ALL_FILES),
        ({"CDR_REPORT_RETENTION_DAYS": "0"}, "CDR_REPORT_RETENTION_DAYS='0' must be >= 1", {RETENTION_FILE}),
        (
            {"CDR_ALERT_EMAILS": "ops@example.org, nobody"},
            "CDR_ALERT_EMAILS: 'nobody' is not an email address",
            ALL_FILES,
        ),
        ({"CDR_SLACK_CONN_ID": "slack_api"}, "CDR_SLACK_CHANNEL must name the channel", ALL_FILES),
        (
            {"CDR_DAILY_DEADLINE_LOCAL_TIME": "6am"},
            "CDR_DAILY_DEADLINE_LOCAL_TIME='6am' is not a local time HH:MM",
            {REPORT_FILE},
        ),
        (
            {"CDR_DAILY_DEADLINE_LOCAL_TIME": "01:30"},
            "must be later than the daily report's due time 02:00",
            {REPORT_FILE},
        ),
        (
            {"CDR_EARLIEST_REPORT_DATE": "2026-13-01"},
            "CDR_EARLIEST_REPORT_DATE='2026-13-01' is not a date",
            {REPORT_FILE, AUDIT_FILE},
        ),
    ],
    ids=["timezone", "retention", "emails", "slack-channel", "deadline-format", "deadline-order", "earliest-date"],
)
def test_a_bad_setting_that_shapes_a_dag_fails_only_the_files_that_use_it(monkeypatch, env, needle, failing_files):
    """The files whose DAGs read the setting do not load, each with one ConfigError naming it; the others load."""
    _clean_cdr_env(monkeypatch, env)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert needle in str(caught.value)

    bag, errors = _dag_bag(monkeypatch, env)
    assert set(errors) == failing_files, errors
    for name in failing_files:
        last_line = errors[name].strip().splitlines()[-1]
        assert last_line.startswith("cdr_reports.pipeline.config.ConfigError: "), last_line
        assert needle in last_line
    loaded = {dag_id for dag_id in bag.dag_ids if dag_id.startswith("cdr_")}
    assert loaded == set().union(*(DAGS_OF[name] for name in ALL_FILES - failing_files))


# A malformed Extended JSON date (the case), typos, and server-side JavaScript.
BAD_FILTERS = {
    "bad-date": ('{"DateTime.Start": {"$gte": {"$date": "yesterday"}}}', "CDR_GLOBAL_FILTER is not valid JSON"),
    "not-json": ("{not json", "CDR_GLOBAL_FILTER is not valid JSON"),
    "unknown-operator": ('{"$bogus": 1}', "CDR_GLOBAL_FILTER: unknown top-level operator '$bogus'"),
    "where": ('{"$where": "this.Duration > 60"}', "CDR_GLOBAL_FILTER: $where runs JavaScript on the MongoDB server"),
    "where-nested": (
        '{"$or": [{"IsDeleted": false}, {"$where": "sleep(100000)"}]}',
        "CDR_GLOBAL_FILTER: $where runs JavaScript",
    ),
    "function": (
        '{"$expr": {"$function": {"body": "function() { return true }", "args": [], "lang": "js"}}}',
        "CDR_GLOBAL_FILTER: $function runs JavaScript on the MongoDB server",
    ),
    "accumulator": (
        '{"$expr": {"$gt": [{"$accumulator": {"init": "function() {}", "lang": "js"}}, 0]}}',
        "CDR_GLOBAL_FILTER: $accumulator runs JavaScript on the MongoDB server",
    ),
    "code": ('{"Operator.Id": {"$code": "function() {}"}}', "CDR_GLOBAL_FILTER: JavaScript code"),
}


@pytest.mark.parametrize(("raw", "needle"), BAD_FILTERS.values(), ids=BAD_FILTERS.keys())
def test_a_bad_filter_is_refused_but_every_dag_file_loads(monkeypatch, raw, needle):
    """Only tasks read CDR_GLOBAL_FILTER: the DAGs load (retention untouched), and carry the refusal to their runs."""
    _clean_cdr_env(monkeypatch, {"CDR_GLOBAL_FILTER": raw})
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert needle in str(caught.value)

    bag, errors = _dag_bag(monkeypatch, {"CDR_GLOBAL_FILTER": raw})
    assert errors == {}
    assert set().union(*DAGS_OF.values()) <= set(bag.dag_ids)
    for dag_id in ("cdr_daily_report", "cdr_source_audit"):
        hooks = {repr(_pre_execute(task)) for task in bag.dags[dag_id].tasks}
        assert hooks == {"RefuseInvalidSettings(['CDR_GLOBAL_FILTER'])"}, (dag_id, hooks)
    assert {_pre_execute(task) for task in bag.dags["cdr_report_retention"].tasks} == {None}


def _pre_execute(task):
    """The pre_execute hook of a task (a mapped task holds it in its partial arguments until unmapped)."""
    partial = getattr(task, "partial_kwargs", None)
    return partial.get("pre_execute") if partial is not None else task._pre_execute_hook


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


def _dag_from_file(dag_id: str):
    """The DAG exactly as its DAG file builds it from the current environment."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


@pytest.mark.parametrize("filter_case", ["bad-date", "where"])
def test_a_bad_filter_fails_the_report_and_audit_runs_at_once_and_retention_still_runs(
    dag_env, capfd, caplog, sqlite_sink, filter_case
):
    raw, needle = BAD_FILTERS[filter_case]
    url, engine = sqlite_sink
    dag_env({"CDR_GLOBAL_FILTER": raw, "CDR_RETRIES": "3", "CDR_REPORT_RETENTION_DAYS": "30"}, {"cdr_reports_db": url})
    caplog.set_level(logging.INFO)
    for dag_id, first_task in (("cdr_daily_report", "plan"), ("cdr_source_audit", "audit")):
        capfd.readouterr()
        conf = {"report_date": DAY.start_date.isoformat()} if dag_id == "cdr_daily_report" else None
        run = _dag_from_file(dag_id).test(run_conf=conf)
        states = task_states(run)
        out = run_output(capfd, caplog)
        print(f"\n{dag_id}: {states}")
        assert str(run.state) == "failed"
        # Failed on its first try although 3 retries were allowed, naming the setting.
        assert states[first_task] == ("failed", 1), states
        messages = re.findall(r"AirflowFailException: (refused setting.*)", out)
        assert messages, out[-3000:]
        assert "CDR_GLOBAL_FILTER" in messages[0] and needle in messages[0], messages[0]
    run = _dag_from_file("cdr_report_retention").test()
    assert str(run.state) == "success", task_states(run)
    assert stored_state(engine) == expected_state(PREVIOUS)  # within the retention period, and no report changed
