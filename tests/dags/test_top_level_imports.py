"""Parsing dags/cdr_report_dags.py stays cheap and side-effect free.

The Dag processor re-parses the file every few seconds: it must not import database drivers,
provider hooks, pandas or the pipeline modules, nor touch a Variable, a Connection, the
network or a database. Checked in a fresh interpreter by the modules it loads and by traps
on every way out, not by timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = REPO_ROOT / "dags" / "cdr_report_dags.py"
MAINTENANCE_DAG_FILE = REPO_ROOT / "dags" / "cdr_maintenance_dag.py"

# The daily DAG's trigger_rebuilds is the standard provider's TriggerDagRunOperator, whose module
# imports airflow.models (and with it these SQLAlchemy ORM extensions) at its top. Accepted: no
# driver, hook or connection comes with them, and the DAG processor has airflow.models loaded anyway.
TRIGGER_OPERATOR_ORM_MODULES = {"sqlalchemy.ext.associationproxy", "sqlalchemy.ext.hybrid", "sqlalchemy.ext.mutable"}

# Prefixes of modules that parsing must not import (on top of what airflow.sdk already did).
FORBIDDEN_PREFIXES = (
    "pymongo",
    "bson",
    "gridfs",
    "pymssql",
    "psycopg",  # psycopg, psycopg2, psycopg_pool, ...
    "pandas",
    "numpy",
    "sqlalchemy",  # incl. sqlalchemy.engine.create and the dialects
    "airflow.providers.mongo.hooks",
    "airflow.providers.microsoft.mssql.hooks",
    "airflow.providers.postgres.hooks",
    "airflow.providers.sqlite.hooks",
    "airflow.providers.common.sql.hooks",
    "cdr_reports.pipeline.extract",
    "cdr_reports.pipeline.load",
    "cdr_reports.pipeline.aggregate",
    "cdr_reports.pipeline.runner",
    "cdr_reports_dev.synthetic",
)

# Runs in the child interpreter: trap network, metadata DB, Variable and Connection access,
# import airflow.sdk, snapshot sys.modules, parse the DAG file, report as JSON.
CHILD = r"""
import json, runpy, socket, sys

customized = sorted(m for m in ("sitecustomize", "usercustomize") if m in sys.modules)
attempts = []

def trap(what):
    def refuse(*args, **kwargs):
        shown = [a for a in args if not isinstance(a, (socket.socket, type))][:2]
        attempts.append(f"{what} {shown!r}")
        raise OSError(f"parsing must not use {what}")
    return refuse

socket.socket.connect = trap("socket.connect")
socket.socket.connect_ex = trap("socket.connect_ex")
socket.create_connection = trap("socket.create_connection")
socket.getaddrinfo = trap("socket.getaddrinfo")

import airflow.sdk  # the Task SDK a DAG file imports first anyway
import sqlalchemy
import sqlalchemy.engine.create
from airflow.sdk.execution_time import context as sdk_context

sdk_context._get_connection = trap("Connection")
sdk_context._async_get_connection = trap("Connection(async)")
sdk_context._get_variable = trap("Variable")
sdk_context._get_variable_keys = trap("Variable.keys")
sqlalchemy.create_engine = trap("create_engine")
sqlalchemy.engine.create.create_engine = trap("create_engine")
sqlalchemy.engine.create_engine = trap("create_engine")
for module_name, cls_name, method in (
    ("airflow.models.variable", "Variable", "get"),
    ("airflow.models.connection", "Connection", "get_connection_from_secrets"),
):
    module = sys.modules.get(module_name)
    if module is not None:
        setattr(getattr(module, cls_name), method, classmethod(trap(f"{cls_name}.{method}")))

attempts_before = list(attempts)
before = set(sys.modules)
namespace = runpy.run_path(sys.argv[1], run_name="cdr_report_dags")
new_modules = sorted(set(sys.modules) - before)
dag_ids = sorted(k for k, v in namespace.items() if type(v).__name__ == "DAG")
parse_attempts = attempts[len(attempts_before):]

# Prove the traps are armed: each of these must be recorded.
canaries = []
for probe in (
    lambda: socket.create_connection(("127.0.0.1", 9)),
    lambda: socket.socket().connect(("127.0.0.1", 9)),
    lambda: airflow.sdk.Variable.get("cdr_canary"),
    lambda: airflow.sdk.Connection.get("cdr_canary"),
    lambda: airflow.sdk.BaseHook.get_connection("cdr_canary"),
    lambda: sqlalchemy.create_engine("sqlite://"),
):
    count = len(attempts)
    try:
        probe()
    except Exception:
        pass
    canaries.append(len(attempts) > count)

print("@@RESULT@@" + json.dumps({
    "customized": customized,
    "before_count": len(before),
    "new_modules": new_modules,
    "dag_ids": dag_ids,
    "attempts_before_parse": attempts_before,
    "parse_attempts": parse_attempts,
    "canaries": canaries,
}))
"""


def _child_env(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # No connection, variable or CDR setting may come from the environment; no sitecustomize
        # or path tweaks via PYTHON* (-I ignores them too).
        if not key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "CDR_", "PYTHON", "AIRFLOW__SECRETS__"))
    }
    # A metadata DB that must never be created: parsing may not open it.
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{tmp_path / 'metadata-must-not-exist.db'}"
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow_home")
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAG_FILE.parent)
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    return env


def _parse_in_fresh_interpreter(tmp_path: Path, dag_file: Path = DAG_FILE) -> dict:
    # -I: isolated mode, no user site, no PYTHON* variables, script dir not on sys.path.
    result = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, str(dag_file)],
        env=_child_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("@@RESULT@@")]
    return json.loads(line.removeprefix("@@RESULT@@"))


def test_parsing_imports_no_driver_hook_or_pipeline_module_and_touches_nothing(tmp_path):
    report = _parse_in_fresh_interpreter(tmp_path)
    assert report["customized"] == []  # nothing patched the interpreter before the traps
    new = report["new_modules"]
    print(f"airflow.sdk loaded {report['before_count']} modules; parsing the DAG file added {len(new)}:")
    print(" ".join(new))

    assert report["dag_ids"] == ["cdr_daily_report", "cdr_monthly_report", "cdr_weekly_report"]
    forbidden = [m for m in new if m.startswith(FORBIDDEN_PREFIXES)]
    assert forbidden == sorted(TRIGGER_OPERATOR_ORM_MODULES)
    # the factory and its light modules were loaded by this parse (so the diff is meaningful)
    assert {
        "cdr_reports.integration.dag_factory",
        "cdr_reports.pipeline.config",
        "cdr_reports.integration.timetable",
    } <= set(new)

    assert report["parse_attempts"] == []  # no network, metadata DB, Variable or Connection
    assert report["attempts_before_parse"] == []
    assert report["canaries"] == [True] * 6  # every trap was armed
    assert not (tmp_path / "metadata-must-not-exist.db").exists()


def test_parsing_the_maintenance_dag_is_as_cheap(tmp_path):
    report = _parse_in_fresh_interpreter(tmp_path, MAINTENANCE_DAG_FILE)
    assert report["dag_ids"] == ["cdr_report_retention"]
    assert [m for m in report["new_modules"] if m.startswith(FORBIDDEN_PREFIXES)] == []
    assert "cdr_reports.integration.maintenance" in report["new_modules"]
    assert report["parse_attempts"] == [] and report["canaries"] == [True] * 6
