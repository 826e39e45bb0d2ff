"""A real Airflow stack serving the "CDR Reports" view, with stored reports built from synthetic CDRs.

One package-scoped fixture (`report_stack`), torn down when tests/ui is done:

1. synthetic CDRs (the demo's generator, fixed seed) from the first day of the previous month to
   yesterday (Istanbul) in a fresh database of the shared FerretDB, plus, yesterday, calls of
   operators whose ids need escaping (`<script>`, `"onerror=`) or neutralising in CSV (`=`, `+`,
   `-`, `@`). Relative to today because unpausing the daily DAG makes the scheduler report
   the last complete day at once: that day must hold data too;
2. the reports of those periods computed by the pipeline (real extraction from FerretDB) into a
   SQLite report database: the last 21 daily, every complete weekly and the previous monthly one;
3. `airflow db migrate`, the report roles, an Admin, then dag-processor, scheduler
   (LocalExecutor, parallelism 2) and api-server on a free loopback port, with the plugin of
   this repository; users `viewer` (ReportViewer), `operator` (ReportOperator) and `outsider`
   (a role with `DAG Runs` read but no report DAG);
4. a run of `cdr_daily_report` for yesterday triggered through the REST API (next to the
   scheduled run the unpause creates): it replaces that day's report (so the view's latest
   report links to a real run) and, through its Asset, makes the scheduler run
   docs/examples/cdr_report_consumer_dag.py.

The stack's helpers come from tests/support/airflow_stack.py (processes, logs, metadata database)
and tests/support/fab_stack.py (REST API as the test users, the FAB environment).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
from tests.support.fab_stack import OTHER_DAG_ID, OTHER_DAG_SOURCE, REPORT_DAG_IDS, FabStack, fab_stack_env
from tests.support.services import free_port

ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
TZ = "Europe/Istanbul"
DAILY_REPORTS = 21
CALLS_PER_DAY = 120
CONSUMER_DAG_ID = "cdr_daily_report_consumer"
CONSUMER_DAG_FILE = REPO_ROOT / "docs" / "examples" / "cdr_report_consumer_dag.py"
OUTSIDER_ROLE = "OtherTeam"

# Operator ids that must come out escaped in HTML and neutralised in CSV. (A leading tab or CR
# cannot reach a report: ids with control characters are invalid, see pipeline/validity.py.)
XSS_SCRIPT = '<script>alert("cdr")</script>'
XSS_ATTR = '"onerror=alert(1) x="'
FORMULA_IDS = ('=HYPERLINK("http://evil.example","x")', "+41 22", "-5", "@SUM(A1)")
SPECIAL_IDS = (XSS_SCRIPT, XSS_ATTR, *FORMULA_IDS)


@dataclass
class ReportStack:
    """The Airflow stack (tests/support/fab_stack.py) plus what the view's tests need to know."""

    stack: FabStack
    reports_db: Path
    mongo_database: str
    last_day: date  # yesterday, local: the latest daily report
    daily_run_id: str = ""
    expected: dict[str, list[date]] = field(default_factory=dict)  # report_type -> seeded period starts

    def __getattr__(self, name: str) -> Any:  # base_url, request, token, passwords, ...
        return getattr(self.stack, name)

    def engine(self):
        import sqlalchemy as sa

        return sa.create_engine(f"sqlite:///{self.reports_db}")


def _special_documents(day: date) -> list[dict[str, Any]]:
    """Three calls per special operator on `day` (two answered), local noon."""
    zone = ZoneInfo(TZ)
    start = datetime.combine(day, time(12, 0), zone).astimezone(ZoneInfo("UTC"))
    docs = []
    for n, operator_id in enumerate(SPECIAL_IDS):
        for k in range(3):
            at = start + timedelta(minutes=n * 5 + k)
            doc: dict[str, Any] = {
                "Operator": {"Id": operator_id},
                "DateTime": {"Start": at},
                "Duration": 30 + 10 * k + n,
            }
            if k < 2:
                doc["DateTime"]["Connect"] = at + timedelta(seconds=5)
            docs.append(doc)
    return docs


def seed_window(last_day: date) -> tuple[date, date]:
    """First and last seeded local day: from the first day of the previous month to `last_day`."""
    return (last_day.replace(day=1) - timedelta(days=1)).replace(day=1), last_day


def _seed_reports(mongo_uri: str, database: str, reports_db: Path, last_day: date) -> dict[str, list[date]]:
    """Synthetic CDRs into FerretDB, and the reports of the seeded periods into SQLite.

    The stored reports are computed by the independent reference implementation over the very
    documents inserted (the pipeline needs ~1.7 s per period on FerretDB; the reference, ms) and
    stored by the pipeline's load. The DAG run of the fixture then recomputes the last day through
    Airflow and FerretDB; a test checks that both agree.
    """
    import copy

    import pymongo
    import sqlalchemy as sa

    from cdr_reports.pipeline.aggregate import OperatorRow, Report
    from cdr_reports.pipeline.extract import ensure_indexes
    from cdr_reports.pipeline.load import load_report
    from cdr_reports.pipeline.periods import period_containing
    from cdr_reports_dev.synthetic import SyntheticConfig, generate_cdrs
    from tests.support.reference import expected_report

    zone = ZoneInfo(TZ)
    first_day, last_day = seed_window(last_day)
    start = datetime.combine(first_day, time(), zone)
    end = datetime.combine(last_day + timedelta(days=1), time(), zone)
    days = (last_day - first_day).days + 1
    docs = [
        *generate_cdrs(SyntheticConfig(seed=42, start=start, end=end, calls=days * CALLS_PER_DAY)),
        *_special_documents(last_day),
    ]
    periods: dict[str, list[date]] = {"daily": [], "weekly": [], "monthly": [first_day]}
    for offset in range(DAILY_REPORTS):
        periods["daily"].append(last_day - timedelta(days=offset))
    week = period_containing("weekly", last_day + timedelta(days=1), TZ).previous()
    while week.start_date >= first_day:
        periods["weekly"].append(week.start_date)
        week = week.previous()
    generated_at = datetime.now(ZoneInfo("UTC")).replace(microsecond=0)
    client = pymongo.MongoClient[dict[str, Any]](mongo_uri, serverSelectionTimeoutMS=10_000, tz_aware=True)
    engine = sa.create_engine(f"sqlite:///{reports_db}")
    try:
        collection = client[database]["CdrRecords"]
        collection.insert_many([copy.deepcopy(doc) for doc in docs], ordered=False)
        ensure_indexes(collection)
        for report_type, starts in periods.items():
            for day in starts:
                period = period_containing(report_type, day, TZ)
                ref = expected_report(docs, period.start_utc, period.end_utc)
                rows = tuple(OperatorRow(operator_id=key, **values) for key, values in sorted(ref["rows"].items()))
                report = Report(
                    report_type=report_type, period_start=period.start_date, period_end=period.end_date, time_zone=TZ,
                    source_records=ref["source"], valid_records=ref["valid"], rejected_records=ref["rejected"],
                    rows=rows, generated_at=generated_at, dag_run_id=f"seed__{report_type}_{day.isoformat()}",
                )  # fmt: skip
                load_report(engine, report)
        return {report_type: sorted(starts) for report_type, starts in periods.items()}
    finally:
        engine.dispose()
        client.close()


def _mongo_connection(uri: str, database: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    return json.dumps({"conn_type": "mongo", "host": parts.hostname, "port": parts.port or 27017, "schema": database})


# Longer than the stack's start plus the tests that read the fixture's daily run (~5 min here).
DUE_TIME_MARGIN = timedelta(minutes=12)


def _wait_out_the_daily_due_time() -> None:
    """Start the stack after 02:00 Istanbul, not just before it.

    The unpaused daily DAG gets a scheduled run for yesterday at 02:00 (the default due hour):
    created while the tests run, it would replace the report of the fixture's own run of that
    day, which the tests read. After 02:00 that scheduled run exists first and runs first.
    """
    import time as clock

    from cdr_reports.pipeline.config import Settings

    now = datetime.now(ZoneInfo(TZ))
    due = datetime.combine(now.date(), time(Settings().due.daily_hour), tzinfo=now.tzinfo)
    if due - DUE_TIME_MARGIN <= now < due:
        wait = (due - now).total_seconds() + 60
        print(f"\nwaiting {wait:.0f} s for the daily report's due time ({due:%H:%M} {TZ}) to pass")
        clock.sleep(wait)


@pytest.fixture(scope="package")
def report_stack(request, mongo_uri, pg_uri) -> Iterator[ReportStack]:
    # The metadata database on the `make services` PostgreSQL, as tests/security does (several
    # Airflow processes write at once).
    database = f"cdr_ui_{uuid.uuid4().hex[:10]}"
    with (
        fresh_database(pg_uri, f"cdr_ui_meta_{secrets.token_hex(5)}") as metadata,
        stack_dirs("cdr-ui-") as (tmp, home, dags, log_dir),
        _mongo_database(mongo_uri, database),
    ):
        (dags / "cdr_report_dags.py").symlink_to(REPO_ROOT / "dags" / "cdr_report_dags.py")
        (dags / "cdr_report_consumer_dag.py").symlink_to(CONSUMER_DAG_FILE)
        (dags / "other_team_dag.py").write_text(OTHER_DAG_SOURCE)
        reports_db = tmp / "reports.db"
        _wait_out_the_daily_due_time()
        last_day = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=1)

        port = free_port()
        stack_secrets = new_secrets()
        env = fab_stack_env(home, dags, port, stack_secrets, metadata.url)
        env.update(
            {
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW_CONN_CDR_MONGO": _mongo_connection(mongo_uri, database),
                "AIRFLOW_CONN_CDR_REPORTS_DB": json.dumps({"conn_type": "sqlite", "host": str(reports_db)}),
                "CDR_TIMEZONE": TZ,
                "CDR_MONGO_TIMEOUT_MS": "60000",
            }
        )
        stack = FabStack(
            base_url=f"http://127.0.0.1:{port}",
            home=home,
            env=env,
            secrets=stack_secrets,
            passwords={n: f"pw-{n}-" + secrets.token_urlsafe(12) for n in ("admin", "viewer", "operator", "outsider")},
            log_dir=log_dir,
        )
        result = ReportStack(stack=stack, reports_db=reports_db, mongo_database=database, last_day=last_day)
        with supervised(stack, request.session, ARTIFACTS / "logs"):
            _start(result, port, mongo_uri)
            yield result


def _start(result: ReportStack, port: int, mongo_uri: str) -> None:
    """Seeds the reports, starts Airflow, creates the users and triggers the fixture's daily run."""
    stack = result.stack
    migrate = stack.popen_cli(AIRFLOW, "db", "migrate")
    # The reports are computed while Airflow migrates its metadata database.
    result.expected = _seed_reports(mongo_uri, result.mongo_database, result.reports_db, result.last_day)
    stack.mark("reports seeded")
    output = migrate.communicate(timeout=300)[0]
    assert migrate.returncode == 0, output[-3000:]
    stack.mark("db migrated")
    stack.run_cli(sys.executable, "-m", "cdr_reports.integration.security", "ensure-roles")
    # The password on stdin, not on the command line (docs/security.md, "Secrets at rest").
    admin = subprocess.run(
        [sys.executable, "-m", "cdr_reports.integration.security", "ensure-user", "--username", "admin",
         "--role", "Admin", "--email", "admin@example.test"],
        input=stack.passwords["admin"] + "\n", env=stack.env, cwd=stack.home, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert admin.returncode == 0 and ": created" in admin.stdout, admin.stdout[-3000:] + admin.stderr[-3000:]
    stack.start("dag-processor", AIRFLOW, "dag-processor")
    stack.start("scheduler", AIRFLOW, "scheduler", "--skip-serve-logs")
    stack.start("api-server", AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port))
    stack.wait_healthy(timeout=240)
    stack.mark("api-server healthy")
    role = stack.request(
        "admin", "POST", "/auth/fab/v1/roles",
        json={"name": OUTSIDER_ROLE, "actions": [
            {"action": {"name": "can_read"}, "resource": {"name": "DAG Runs"}},
            {"action": {"name": "can_read"}, "resource": {"name": "Website"}},
        ]},
    )  # fmt: skip
    assert role.status_code == 200, role.text
    stack.create_users({"viewer": "ReportViewer", "operator": "ReportOperator", "outsider": OUTSIDER_ROLE})
    stack.wait_dags({*REPORT_DAG_IDS, CONSUMER_DAG_ID, OTHER_DAG_ID}, timeout=240)
    stack.mark("DAGs registered")
    # The consumer first (an asset event only queues runs of DAGs that exist and are unpaused).
    for dag_id in (CONSUMER_DAG_ID, "cdr_daily_report"):
        unpaused = stack.request("admin", "PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        assert unpaused.status_code == 200, unpaused.text
    run = stack.trigger_report("admin", "cdr_daily_report", result.last_day.isoformat())
    assert run.status_code == 200, run.text
    result.daily_run_id = run.json()["dag_run_id"]
    stack.mark("daily run triggered")
    print(f"\nreport stack ready: {stack.timings}")


@contextlib.contextmanager
def _mongo_database(uri: str, database: str) -> Iterator[None]:
    """The fixture's source database in the shared FerretDB: dropped on exit (after the processes stop)."""
    import pymongo

    try:
        yield
    finally:
        with pymongo.MongoClient[dict[str, Any]](uri, serverSelectionTimeoutMS=5000) as client:
            client.drop_database(database)


@pytest.fixture(scope="package")
def finished_daily_run(report_stack) -> dict[str, Any]:
    """The fixture's cdr_daily_report run, once finished (it must succeed)."""
    run = report_stack.stack.wait_run_finished("cdr_daily_report", report_stack.daily_run_id, timeout=420)
    assert run["state"] == "success", run
    return run


@pytest.fixture(scope="package")
def ui_artifacts() -> Path:
    return artifacts_folder(ARTIFACTS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
