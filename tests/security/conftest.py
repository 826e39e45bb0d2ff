"""A real Airflow 3 stack with the FAB auth manager, for the dashboard security tests.

One session fixture starts, on free loopback ports, in a fresh AIRFLOW_HOME (temp dir) with a
fresh PostgreSQL metadata database on the `make services` server (several processes write to it
at once, and PostgreSQL never reuses user ids): `airflow db migrate`, then the init step (`python -m cdr_reports.integration.security ensure-roles` and an
Admin from `airflow users create`), then `airflow dag-processor`, `airflow scheduler`
(LocalExecutor) and `airflow api-server`; a ReportViewer and a ReportOperator user come from the
FAB users API. The DAGs folder holds the product's
dags/cdr_report_dags.py (symlink), a foreign `other_team_dag` and a `secret_probe` DAG that
prints a connection password (full of URL-special characters) in several encodings. Secrets (JWT,
API secret key, Fernet key) are random per session; the hardening settings are the deployment's
(`cdr_reports.integration.security.AIRFLOW_HARDENING_ENV`).
Process logs are dumped (and copied to test-artifacts/security/logs/) when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.airflow_stack import (
    AIRFLOW,
    REPO_ROOT,
    artifacts_folder,
    fresh_database,
    new_secrets,
    stack_dirs,
    supervised,
)
from tests.support.fab_stack import (
    OTHER_DAG_ID,
    OTHER_DAG_SOURCE,
    REPORT_DAG_IDS,
    FabStack,
    fab_stack_env,
)
from tests.support.services import free_port, require_service

ARTIFACTS = REPO_ROOT / "test-artifacts" / "security"
PROBE_DAG_ID = "secret_probe"
PROBE_CONN_ID = "cdr_probe_secret"
# The report date the Admin's log-producing run and the operator's API trigger use.
REPORT_DATE = "2026-11-27"
EARLIEST_REPORT_DATE = "2025-06-01"
# A per-report role from configuration (docs/security.md): it may read the weekly report only.
WEEKLY_ROLE = "WeeklyReaders"
REPORT_ACCESS = {WEEKLY_ROLE: {"weekly": "read"}}
# The weekly period of the report stored for the weekly-only role.
WEEKLY_REPORT_DATE = "2026-11-16"
# A daily report whose operator ids try to break the display (tests/ui/test_display.py, test_browser.py).
DISPLAY_REPORT_DATE = "2026-11-20"
LONG_ID = "L" * 250 + "-tail"  # 255 characters, the longest valid id
RTL_ID = "abc\u202egnp.exe"  # renders as "abcexe.png" unless shown visibly
ZERO_WIDTH_ID = "op\u200b-001"  # looks like "op-001"

PROBE_DAG_SOURCE = f'''
import logging
import urllib.parse

import pendulum
import sqlalchemy as sa
from airflow.sdk import DAG, BaseHook, task

log = logging.getLogger(__name__)

with DAG("{PROBE_DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), is_paused_upon_creation=False):

    @task
    def leak():
        conn = BaseHook.get_connection("{PROBE_CONN_ID}")
        # Deliberately careless task code: both must come out masked in the task log.
        print("probe password=" + conn.password)
        log.info("probe uri %s", conn.get_uri())
        # The same password as SQLAlchemy and form encoding write it into URLs.
        url = sa.engine.URL.create("postgresql", conn.login, conn.password, conn.host, conn.port, conn.schema)
        log.info("probe sqlalchemy url %s", url.render_as_string(hide_password=False))
        print("probe form password=" + urllib.parse.quote_plus(conn.password))
        return len(conn.password)

    leak()
'''


@dataclass(kw_only=True)
class AirflowStack(FabStack):
    """The FAB stack of tests/support/fab_stack.py plus what the security tests planted in it."""

    probe_password: str
    # dag_id -> run_id of the runs the fixture triggered as Admin.
    started_runs: dict[str, str] = field(default_factory=dict)


def _airflow_env(home: Path, dags: Path, port: int, stack_secrets: dict[str, str], metadata_url: str) -> dict[str, str]:
    env = fab_stack_env(home, dags, port, stack_secrets, metadata_url)
    env.update(
        {
            # Only the runs the tests trigger: a scheduled run appearing mid-test (the unpaused daily
            # DAG's, or one at 02:00 Istanbul) would change the run lists the tests compare.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # Retries on, so that a test can tell a permanent failure (no retry) from a transient one.
            "CDR_RETRIES": "2",
            # Earlier than the default (2026-01-01), so that a backfill can exceed the run cap
            # (366) without reaching back before this date.
            "CDR_EARLIEST_REPORT_DATE": EARLIEST_REPORT_DATE,
            # The report view (and the report runs' load, never reached here: no cdr_mongo) read
            # a SQLite report database holding one stored report.
            "AIRFLOW_CONN_CDR_REPORTS_DB": f"sqlite:///{home / 'reports.db'}",
            # Read by ensure-roles (creates the role) and the DAG processor (access_control).
            "CDR_REPORT_ACCESS": json.dumps(REPORT_ACCESS),
        }
    )
    return env


@pytest.fixture(scope="package")
def airflow_stack(request) -> Iterator[AirflowStack]:
    pg_uri = require_service("CDR_TEST_PG_URI", "PostgreSQL server (the stack's metadata database)")
    with (
        fresh_database(pg_uri, f"cdr_security_meta_{secrets.token_hex(5)}") as metadata,
        stack_dirs("cdr-security-") as (_, home, dags, log_dir),
    ):
        (dags / "cdr_report_dags.py").symlink_to(REPO_ROOT / "dags" / "cdr_report_dags.py")
        (dags / "other_team_dag.py").write_text(OTHER_DAG_SOURCE)
        (dags / "secret_probe_dag.py").write_text(PROBE_DAG_SOURCE)
        port = free_port()
        stack_secrets = new_secrets()
        stack = AirflowStack(
            base_url=f"http://127.0.0.1:{port}",
            home=home,
            env=_airflow_env(home, dags, port, stack_secrets, metadata.url),
            secrets=stack_secrets,
            passwords={
                name: f"pw-{name}-" + secrets.token_urlsafe(12) for name in ("admin", "viewer", "operator", "weekly")
            },
            # Every character that needs escaping in a URL: / @ : # ! % (and '%zz', no valid escape).
            probe_password="pr0be/P@ss:w0rd#OT!%zz%41-" + secrets.token_hex(8),
            metadata_url=metadata.url,
            log_dir=log_dir,
        )
        with supervised(stack, request.session, ARTIFACTS / "logs"):
            yield from _start(stack, port)


def _start(stack: AirflowStack, port: int) -> Iterator[AirflowStack]:
    """The init step, the processes, the users and the runs the tests read; yields the ready stack."""
    _store_report(stack.home / "reports.db")
    stack.run_cli(AIRFLOW, "db", "migrate", timeout=300)
    stack.mark("db migrated")
    # The init step, as docker/airflow-init.sh: the report roles (they must exist before the
    # DAG processor syncs the DAGs' access_control) and the first Admin through the FAB CLI.
    # Both only write FAB rows, and FAB tolerates concurrent creators: run them side by side.
    init = {
        "ensure-roles": stack.popen_cli(sys.executable, "-m", "cdr_reports.integration.security", "ensure-roles"),
        # The password on stdin, never on a command line (docs/security.md, "Secrets at rest").
        "ensure-user": _popen_with_stdin(
            stack,
            stack.passwords["admin"] + "\n",
            sys.executable,
            "-m",
            "cdr_reports.integration.security",
            "ensure-user",
            "--username",
            "admin",
            "--role",
            "Admin",
            "--email",
            "admin@example.test",
        ),
    }
    outputs = {name: proc.communicate(timeout=300)[0] for name, proc in init.items()}
    for name, proc in init.items():
        assert proc.returncode == 0, f"{name} -> {proc.returncode}\n{outputs[name][-3000:]}"
    assert "ReportViewer: (role created)" in outputs["ensure-roles"], outputs["ensure-roles"]
    assert "user 'admin' (Admin): created" in outputs["ensure-user"], outputs["ensure-user"][-3000:]
    stack.mark("roles and admin created")
    stack.start("dag-processor", AIRFLOW, "dag-processor")
    # --skip-serve-logs: no log server on all interfaces; the API server reads the log files.
    stack.start("scheduler", AIRFLOW, "scheduler", "--skip-serve-logs")
    stack.start("api-server", AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port))
    stack.wait_healthy(timeout=180)
    stack.mark("api-server healthy")
    # The other users through the FAB users API, as that Admin (the same `add_user` as the
    # CLI, without two more Airflow CLI start-ups).
    stack.create_users({"viewer": "ReportViewer", "operator": "ReportOperator", "weekly": WEEKLY_ROLE})
    stack.mark("users created")
    stack.wait_dags({*REPORT_DAG_IDS, OTHER_DAG_ID, PROBE_DAG_ID}, timeout=180)
    stack.mark("DAGs registered")

    # Work for the scheduler, started now so that it runs while the first tests do:
    # a connection with a known password and the probe run that prints it...
    created = stack.request(
        "admin", "POST", "/api/v2/connections",
        json={"connection_id": PROBE_CONN_ID, "conn_type": "postgres", "host": "127.0.0.1", "port": 5432,
              "login": "probe", "password": stack.probe_password, "schema": "probe"},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    probe = stack.request("admin", "POST", f"/api/v2/dags/{PROBE_DAG_ID}/dagRuns", json={"logical_date": None})
    assert probe.status_code == 200, probe.text
    # ...and a daily report run (fails fast at `extract`: no cdr_mongo connection here)
    # whose `plan` task log the ReportViewer reads. Paused DAGs never get scheduled.
    report = stack.trigger_report("admin", "cdr_daily_report", REPORT_DATE)
    assert report.status_code == 200, report.text
    unpaused = stack.request("admin", "PATCH", "/api/v2/dags/cdr_daily_report", json={"is_paused": False})
    assert unpaused.status_code == 200, unpaused.text
    stack.started_runs = {PROBE_DAG_ID: probe.json()["dag_run_id"], "cdr_daily_report": report.json()["dag_run_id"]}
    stack.mark("runs triggered")
    print(f"\nAirflow stack ready: {stack.timings}")
    yield stack


def _popen_with_stdin(stack: AirflowStack, text: str, *args: str) -> subprocess.Popen:
    """A command of the stack fed `text` on stdin; its output is collected with `communicate()`."""
    read, write = os.pipe()
    os.write(write, text.encode())  # a line: far below the pipe's buffer
    os.close(write)
    try:
        return subprocess.Popen(
            list(args), env=stack.env, cwd=stack.home, text=True, stdin=read,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
    finally:
        os.close(read)


def _store_report(path: Path) -> None:
    """Stored reports for the report view: REPORT_DATE, a weekly one and DISPLAY_REPORT_DATE's hostile ids."""
    from datetime import date

    import sqlalchemy as sa

    from cdr_reports.pipeline.load import load_report
    from cdr_reports.pipeline.periods import period_containing
    from tests.support.reports import TZ, make_report

    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        load_report(engine, make_report("security-stack", range(3), 100))
        week = period_containing("weekly", date.fromisoformat(WEEKLY_REPORT_DATE), TZ)
        load_report(engine, make_report("security-weekly", range(2), 700, period=week))
        from dataclasses import replace

        from cdr_reports.pipeline.aggregate import OperatorRow

        day = period_containing("daily", date.fromisoformat(DISPLAY_REPORT_DATE), TZ)
        hostile = make_report("security-display", range(2), 300, period=day)
        extra = tuple(OperatorRow(op, 9, 3, 90, 1 / 3, 30.0) for op in (LONG_ID, RTL_ID, ZERO_WIDTH_ID))
        hostile = replace(
            hostile,
            rows=tuple(sorted(hostile.rows + extra, key=lambda r: r.operator_id)),
            valid_records=hostile.valid_records + 27,
            source_records=hostile.source_records + 27,
        )
        load_report(engine, hostile)
    finally:
        engine.dispose()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets fixtures see whether their test failed (the browser fixture screenshots failures).
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    return artifacts_folder(ARTIFACTS)
