"""What the e2e tests share: the run environment, seeded sources, the SQL sinks, one DAG run and its task states."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cdr_reports.integration.dag_factory import build_report_dag
from cdr_reports.pipeline.config import load_settings


@pytest.fixture
def run_env(airflow_db, monkeypatch):
    """Only the settings each test sets; fast retries (read when the DAG is built). Not autouse: the
    demo, CLI and README tests of this folder keep their own environment."""
    import os

    for key in list(os.environ):
        if key.startswith(("CDR_", "AIRFLOW_CONN_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CDR_RETRY_DELAY_SECONDS", "1")
    monkeypatch.setenv("CDR_MAX_RETRY_DELAY_SECONDS", "2")
    return monkeypatch


@pytest.fixture
def sources(mongo_db, run_env):
    """Seed `mongo_db.CdrRecords` and point connection cdr_mongo at it."""
    host_port = mongo_db.client.address
    run_env.setenv("AIRFLOW_CONN_CDR_MONGO", f"mongo://{host_port[0]}:{host_port[1]}/{mongo_db.name}")

    def seed(docs: list[dict]) -> list[dict]:
        mongo_db.CdrRecords.insert_many([dict(d) for d in docs])  # copies: insert_many adds _id
        return docs

    return seed


@pytest.fixture
def sqlite_sink(tmp_path, run_env, sqlite_engine):
    path = tmp_path / "reports.db"
    assert str(sqlite_engine.url).endswith(str(path))  # the fixture's engine reads the same file
    run_env.setenv("AIRFLOW_CONN_CDR_REPORTS_DB", f"sqlite:///{path}")
    return sqlite_engine, None


@pytest.fixture
def postgres_sink(pg_uri, pg_schema, pg_engine, run_env):
    # A fresh schema per test, reached through CDR_SQL_SCHEMA (the connection names the database).
    _, schema = pg_schema
    run_env.setenv("AIRFLOW_CONN_CDR_REPORTS_DB", pg_uri)
    run_env.setenv("CDR_SQL_SCHEMA", schema)
    return pg_engine, schema


def run_dag(report_type: str, report_date: date, conf: dict[str, Any] | None = None):
    """Build the DAG from the current environment, as the DAG file does, and run it once (`conf` added)."""
    dag = build_report_dag(report_type, load_settings())
    dag_run = dag.test(run_conf={"report_date": report_date.isoformat(), **(conf or {})})
    return dag, dag_run


def task_instances(dag_run) -> dict[tuple[str, int], Any]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
        ).all()
        return {(ti.task_id, ti.map_index): (ti.state, ti.try_number) for ti in tis}
