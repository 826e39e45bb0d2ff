"""Secrets stay out of task logs, CLI output, UI config and the servers' own logs."""

from __future__ import annotations

import subprocess
from urllib.parse import quote as quote_url
from urllib.parse import quote_plus

import pytest

from cdr_reports.integration.security import url_encoded_forms
from tests.support.airflow_stack import AIRFLOW
from tests.support.fab_stack import quote, task_log_text

from .conftest import PROBE_DAG_ID

pytestmark = pytest.mark.e2e


def test_connection_password_is_masked_in_the_task_log(airflow_stack):
    """Also its URL-encoded forms (`[logging] secret_mask_adapter` = security.url_encoded_forms):
    Airflow 3.3 masks only the exact text by default, and a URI carries the password encoded."""
    run_id = airflow_stack.started_runs[PROBE_DAG_ID]
    run = airflow_stack.wait_run_finished(PROBE_DAG_ID, run_id)
    assert run["state"] == "success"
    password = airflow_stack.probe_password
    assert set("/@:#!%") <= set(password)
    forms = [password, *url_encoded_forms(password)]
    # Connection.get_uri() (quote, safe=""), SQLAlchemy (safe=" +") and form encoding (quote_plus).
    assert {quote_url(password, safe=""), quote_url(password, safe=" +"), quote_plus(password)} <= set(forms)
    expected_lines = (
        "probe password=***",
        "probe uri postgres://probe:***@127.0.0.1:5432/probe",
        "probe sqlalchemy url postgresql://probe:***@127.0.0.1:5432/probe",
        "probe form password=***",
    )

    # The log file the task process wrote...
    files = list((airflow_stack.home / "logs" / f"dag_id={PROBE_DAG_ID}").rglob("*.log"))
    assert files, "the probe task wrote no log file"
    raw = "\n".join(path.read_text() for path in files)
    for line in expected_lines:
        assert line in raw, line
    assert [form for form in forms if form in raw] == []
    # ...and what the API serves from it.
    status, served = task_log_text(airflow_stack, "admin", PROBE_DAG_ID, run_id, "leak")
    assert status == 200
    for line in expected_lines:
        assert line in served, line
    assert [form for form in forms if form in served] == []

    # The task really had the password: it returned its length as XCom.
    xcom = airflow_stack.request(
        "admin",
        "GET",
        f"/api/v2/dags/{PROBE_DAG_ID}/dagRuns/{quote(run_id)}/taskInstances/leak/xcomEntries/return_value",
    )
    assert xcom.status_code == 200, xcom.text
    assert int(xcom.json()["value"]) == len(password)


def _config_list(stack, *flags):
    return subprocess.Popen(
        [AIRFLOW, "config", "list", *flags], env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def test_airflow_config_list_hides_secret_values(airflow_stack):
    values = list(airflow_stack.secrets.values())
    # Three CLI start-ups at once; they only read.
    default, hidden, shown = (
        _config_list(airflow_stack),
        _config_list(airflow_stack, "--show-values", "--hide-sensitive"),
        _config_list(airflow_stack, "--show-values"),
    )
    outputs = {}
    for name, proc in (("default", default), ("hidden", hidden), ("shown", shown)):
        outputs[name], _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, name

    # Default: option names only.
    assert "jwt_secret" in outputs["default"]
    assert not [v for v in values if v in outputs["default"]]
    # --hide-sensitive: the sensitive options are listed as hidden, the rest with values.
    for option in ("fernet_key", "secret_key", "jwt_secret", "sql_alchemy_conn"):
        assert f"{option} = < hidden >" in outputs["hidden"], option
    assert "auth_manager = cdr_reports.integration.auth_manager.CdrFabAuthManager" in outputs["hidden"]
    assert not [v for v in values if v in outputs["hidden"]]
    # The hazard docs/security.md warns about: --show-values alone prints every secret in clear.
    assert all(v in outputs["shown"] for v in values)


def test_ui_config_and_rest_config_expose_no_secrets(airflow_stack):
    ui_config = airflow_stack.request("viewer", "GET", "/ui/config")
    assert ui_config.status_code == 200
    assert not [v for v in airflow_stack.secrets.values() if v in ui_config.text]
    # [api] expose_config stays False: not even an Admin reads the configuration over HTTP.
    rest_config = airflow_stack.request("admin", "GET", "/api/v2/config")
    assert rest_config.status_code == 403
    assert "not to expose the configuration" in rest_config.json()["detail"]


def test_server_logs_contain_no_deployment_secrets(airflow_stack):
    secrets = [*airflow_stack.secrets.values(), *airflow_stack.passwords.values()]
    logs = {path.name: path.read_text(errors="replace") for path in airflow_stack.log_dir.glob("*.log")}
    assert set(logs) == {"api-server.log", "dag-processor.log", "scheduler.log"}
    assert all(len(text) > 0 for text in logs.values())
    leaks = {name: [s[:6] + "..." for s in secrets if s in text] for name, text in logs.items()}
    assert leaks == {name: [] for name in logs}
    # Task output never reaches the API server's or the DAG processor's logs.
    assert airflow_stack.probe_password not in logs["api-server.log"]
    assert airflow_stack.probe_password not in logs["dag-processor.log"]


def test_local_executor_echoes_task_output_unmasked_to_scheduler_stdout(airflow_stack):
    """A hazard of Airflow 3.3.2 that docs/security.md describes, pinned so a fix gets noticed.

    LocalExecutor supervises tasks with subprocess_logs_to_stdout=True: every task log line is
    also written to the scheduler's own stdout (`docker logs` in compose), and that copy does not
    go through the secrets masker that the task log file gets.
    """
    run = airflow_stack.wait_run_finished(PROBE_DAG_ID, airflow_stack.started_runs[PROBE_DAG_ID])
    assert run["state"] == "success"
    scheduler_log = (airflow_stack.log_dir / "scheduler.log").read_text(errors="replace")
    assert f"probe password={airflow_stack.probe_password}" in scheduler_log
