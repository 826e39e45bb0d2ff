"""The Airflow CLI commands the documentation gives users, run as users run them.

`airflow dags test` re-runs a period (the command printed in every DAG's doc_md);
`airflow tasks test` runs one task. Both parse dags/ in a fresh `airflow` process with the
connections from AIRFLOW_CONN_* variables, against FerretDB and a SQLite report database.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdr_reports.integration.dag_factory import build_report_dag
from cdr_reports.pipeline.config import load_settings
from cdr_reports.pipeline.load import read_report
from cdr_reports.pipeline.periods import period_containing
from tests.support.reference import edge_case_documents, expected_report, random_documents

pytestmark = pytest.mark.e2e

TZ = "Europe/Istanbul"
DAY = period_containing("daily", date(2026, 11, 27), TZ)
VENV_BIN = Path(sys.executable).parent
DAGS_TEST_COMMAND = """airflow dags test cdr_daily_report --conf '{"report_date": "2026-11-27"}'"""
TASKS_TEST_COMMAND = "airflow tasks test cdr_daily_report plan 2026-11-28"


@pytest.fixture
def cli_env(airflow_db, mongo_db, tmp_path):
    """The environment of an `airflow` process: the test Airflow home, connections, fast retries."""
    docs = random_documents(random.Random(1127), 250, DAY.start_utc, DAY.end_utc) + edge_case_documents(
        DAY.start_utc, DAY.end_utc
    )
    mongo_db.CdrRecords.insert_many([dict(d) for d in docs])
    host, port = mongo_db.client.address
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDR_", "AIRFLOW_CONN_", "PYTEST_"))}
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_CONN_CDR_MONGO": f"mongo://{host}:{port}/{mongo_db.name}",
            "AIRFLOW_CONN_CDR_REPORTS_DB": f"sqlite:///{tmp_path / 'reports.db'}",
            "CDR_RETRY_DELAY_SECONDS": "1",
            "CDR_MAX_RETRY_DELAY_SECONDS": "2",
        }
    )
    assert env["AIRFLOW_HOME"] == str(airflow_db)  # conftest's throw-away Airflow home and metadata DB
    return env, docs, tmp_path / "reports.db"


def run_cli(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Through a shell, exactly as typed (the quoting of --conf included).
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=300)
    print(f"$ {command}\n-> exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def test_documented_rerun_command_is_in_the_dag_docs():
    assert DAGS_TEST_COMMAND in build_report_dag("daily", load_settings({})).doc_md


def test_airflow_dags_test_stores_the_report_of_report_date(cli_env):
    env, docs, db_path = cli_env

    result = run_cli(DAGS_TEST_COMMAND, env)

    assert result.returncode == 0
    engine = sa.create_engine(f"sqlite:///{db_path}")
    try:
        stored = read_report(engine, "daily", DAY.start_date)
    finally:
        engine.dispose()
    expected = expected_report(docs, DAY.start_utc, DAY.end_utc)
    assert stored is not None
    run = stored["run"]
    assert (run["period_start"], run["period_end"]) == (date(2026, 11, 27), date(2026, 11, 28))
    assert (run["source_records"], run["valid_records"], run["rejected_records"], run["operators"]) == (
        expected["source"],
        expected["valid"],
        expected["rejected"],
        len(expected["rows"]),
    )
    got = {row["operator_id"]: row for row in stored["rows"]}
    assert set(got) == set(expected["rows"])
    for key, want in expected["rows"].items():
        assert (got[key]["total_calls"], got[key]["answered_calls"], got[key]["total_duration_seconds"]) == (
            want["total_calls"],
            want["answered_calls"],
            want["total_duration_seconds"],
        ), key
        assert got[key]["answer_ratio"] == pytest.approx(want["answer_ratio"]), key
    assert run["dag_run_id"].startswith("manual__")


def test_airflow_tasks_test_plans_the_period_of_the_logical_date(cli_env):
    env, _, db_path = cli_env

    result = run_cli(TASKS_TEST_COMMAND, env)

    assert result.returncode == 0
    output = result.stdout + result.stderr
    # Logical date 2026-11-28 00:00 UTC is 03:00 in Istanbul: the last complete day is the 27th,
    # [2026-11-27 00:00, 2026-11-28 00:00) Istanbul = [26th 21:00, 27th 21:00) UTC.
    assert re.search(
        r"reporting daily 2026-11-27: 2026-11-26 21:00:00\+00:00 \.\. 2026-11-27 21:00:00\+00:00 UTC in 1 slice", output
    ), output[-3000:]
    assert not db_path.exists()  # plan alone touches no report database
