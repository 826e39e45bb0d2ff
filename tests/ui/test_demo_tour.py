"""The demo tour (issue 11 item 4): what `make demo` ran is readable in `make airflow`'s UI.

`python -m cdr_reports_dev.demo run` (daily report only, a few days of CDRs, its own state
directory, FerretDB database and PostgreSQL metadata database), then an API server with the demo's
environment, as `make airflow` starts it: every task log of the demo's run must come from the
local log file (before the fix: "Could not read served logs ... Connection refused"), and the
report view must show the stored report.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.services import free_port

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_state(tmp_path, mongo_uri, pg_uri):
    """DEMO_* settings of an isolated demo; drops its FerretDB and metadata databases afterwards."""
    import pymongo
    import sqlalchemy as sa

    pg = sa.engine.make_url(pg_uri).set(drivername="postgresql+psycopg")
    metadata_db = f"cdr_ui_demo_{secrets.token_hex(5)}"
    admin = sa.create_engine(pg.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{metadata_db}"'))
    mongo_database = f"cdr_ui_demo_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CDR_"))}
    env.update(
        {
            "DEMO_STATE_DIR": str(tmp_path / "state"),
            "DEMO_MONGO_URI": mongo_uri,
            "DEMO_MONGO_DATABASE": mongo_database,
            "DEMO_METADATA_DB_URL": pg.set(database=metadata_db).render_as_string(hide_password=False),
            "DEMO_DAYS": "4",
            "DEMO_CALLS_PER_DAY": "200",
            "DEMO_REPORTS": "daily",
            "CDR_DEMO_ADMIN_PASSWORD": "demo-" + secrets.token_urlsafe(12),
            "PYTHONUNBUFFERED": "1",
        }
    )
    yield env
    with pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(mongo_database)
    with contextlib.suppress(Exception), admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{metadata_db}" WITH (FORCE)'))
    admin.dispose()


def test_demo_runs_have_readable_logs_and_show_in_the_view(demo_state):
    import httpx

    demo = subprocess.run(
        [sys.executable, "-m", "cdr_reports_dev.demo", "run"],
        env=demo_state, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "airflow dags test cdr_daily_report: success" in demo.stdout

    # `make airflow`'s API server over the same state (environment built by the demo module itself).
    code = (
        "import json; from cdr_reports_dev.demo import airflow_config as c, metadata_db as m, state as s; "
        "paths = s.demo_paths(); env = c.demo_cli_env(paths); print(m.ensure_admin(paths, env)); "
        "print('ENV=' + json.dumps({k: v for k, v in env.items() if k.startswith(('AIRFLOW', 'CDR_'))}))"
    )
    made = subprocess.run(
        [sys.executable, "-c", code], env=demo_state, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    airflow_env = json.loads(made.stdout.split("ENV=", 1)[1])
    assert airflow_env["AIRFLOW__CORE__PARALLELISM"] == str(max(2, os.cpu_count() or 2))

    port = free_port()
    env = {**demo_state, **airflow_env, "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"}
    log_path = Path(demo_state["DEMO_STATE_DIR"]) / "api-server-test.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, server, log_path)
        # The first FAB request of a fresh api-server (app set-up, password hash): not httpx's 5 s default.
        token = httpx.post(
            f"{base}/auth/token",
            json={"username": "admin", "password": demo_state["CDR_DEMO_ADMIN_PASSWORD"]},
            timeout=60,
        )
        assert token.status_code == 201, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}", "Accept": "application/json"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            [run] = client.get("/api/v2/dags/cdr_daily_report/dagRuns").json()["dag_runs"]
            assert run["state"] == "success"
            run_id = quote(run["dag_run_id"], safe="")
            tis = client.get(f"/api/v2/dags/cdr_daily_report/dagRuns/{run_id}/taskInstances").json()["task_instances"]
            assert {"plan", "extract", "aggregate", "load"} <= {ti["task_id"] for ti in tis}
            # Every task that ran has a readable log. Only the mapped trigger_rebuilds may not have run:
            # over no stale week or month it expands to nothing and is skipped without a try (no log).
            assert {ti["task_id"] for ti in tis if ti["try_number"] == 0} <= {"trigger_rebuilds"}
            for ti in (ti for ti in tis if ti["try_number"] > 0):
                index = f"?map_index={ti['map_index']}" if ti["map_index"] >= 0 else ""
                response = client.get(
                    f"/api/v2/dags/cdr_daily_report/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/1{index}"
                )
                assert response.status_code == 200, response.text
                text = json.dumps(response.json()["content"])
                assert "Could not read served logs" not in text, (ti["task_id"], text[:1000])
                assert f"task_id={ti['task_id']}" in text and "attempt=1.log" in text, text[:600]
            load_log = client.get(f"/api/v2/dags/cdr_daily_report/dagRuns/{run_id}/taskInstances/load/logs/1").text
            assert "loading daily report" in load_log
            # The view shows what the demo stored, linked to this very run.
            page = client.get("/cdr-reports/", params={"type": "daily"}, headers={"Accept": "text/html"})
            assert page.status_code == 200, page.text[:500]
            assert f"/dags/cdr_daily_report/runs/{run_id}" in page.text and 'id="report-table"' in page.text
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, 15)
        server.wait(timeout=30)


def _wait_healthy(base: str, server: subprocess.Popen, log_path: Path, timeout: float = 240) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, log_path.read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200:
                return
        time.sleep(1)
    raise AssertionError(f"api-server not healthy in {timeout} s\n{log_path.read_text()[-3000:]}")
