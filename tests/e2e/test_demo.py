"""`make demo` end to end: FerretDB seed -> `airflow dags test` -> printed tables, against the reference.

Also the seed entry point the Docker stack's `mongo-seed` service runs
(`python -m cdr_reports_dev.demo seed`, URI from CDR_SEED_MONGO_URI).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from cdr_reports.pipeline.periods import period_containing
from cdr_reports.pipeline.validity import START_FIELD
from tests.support.reference import expected_report
from tests.support.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.services]

REPO = Path(__file__).resolve().parents[2]
TZ = "Europe/Istanbul"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without Airflow or report settings (the demo sets its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CDR_", "DEMO_", "_AIRFLOW"))}
    env.update(extra)
    return env


def run_module(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cdr_reports_dev.demo", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def parse_tables(text: str) -> dict[tuple[str, date], dict]:
    """The printed tables, parsed independently of report_print: (type, period start) -> values."""
    reports: dict[tuple[str, date], dict] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        words = line.split()
        if line.startswith("== ") and len(words) > 5 and words[2] == "report":
            current = {"rows": {}, "total": None, "run": None, "end": date.fromisoformat(words[5])}
            reports[(words[1], date.fromisoformat(words[3]))] = current
        elif current is None or not words or words[0] == "operator" or set(words[0]) == {"-"}:
            continue
        elif words[0] == "run:":
            current["run"] = dict(item.split("=", 1) for item in words[1:] if "=" in item)
            current = None
        else:
            assert len(words) == 6, f"unexpected table line {line!r}"
            target = words[0]
            values = {
                "calls": int(words[1]),
                "answered": int(words[2]),
                "ratio": words[3],
                "duration": int(words[4]),
                "avg": words[5],
            }
            if target == "TOTAL":
                current["total"] = values
            else:
                current["rows"][target] = values
    return reports


def assert_table_matches_reference(table: dict, expected: dict) -> None:
    assert set(table["rows"]) == set(expected["rows"])
    for operator, want in expected["rows"].items():
        got = table["rows"][operator]
        assert got["calls"] == want["total_calls"], operator
        assert got["answered"] == want["answered_calls"], operator
        assert got["duration"] == want["total_duration_seconds"], operator
        assert got["ratio"] == f"{want['answer_ratio']:.4f}", operator
        if want["avg_answered_duration_seconds"] is None:
            assert got["avg"] == "-", operator
        else:
            # One decimal printed; summation order may differ in the last float bit.
            assert abs(float(got["avg"]) - want["avg_answered_duration_seconds"]) <= 0.05 + 1e-9, operator
    calls = sum(r["total_calls"] for r in expected["rows"].values())
    answered = sum(r["answered_calls"] for r in expected["rows"].values())
    assert table["total"]["calls"] == calls == expected["valid"]
    assert table["total"]["answered"] == answered
    assert table["total"]["duration"] == sum(r["total_duration_seconds"] for r in expected["rows"].values())
    run = table["run"]
    assert (int(run["source"]), int(run["valid"]), int(run["rejected"]), int(run["operators"])) == (
        expected["source"],
        expected["valid"],
        expected["rejected"],
        len(expected["rows"]),
    )


def test_seed_entry_point_of_the_compose_stack(mongo_uri, mongo_client):
    database = f"cdrseed_{uuid.uuid4().hex[:10]}"
    env = clean_env(CDR_SEED_MONGO_URI=mongo_uri)
    args = ("seed", "--database", database, "--days", "2", "--calls-per-day", "150")
    try:
        first = run_module(*args, "--mode", "drop", env=env, timeout=120)
        assert first.returncode == 0, first.stdout + first.stderr
        collection = mongo_client[database]["CdrRecords"]
        assert collection.count_documents({}) == 300
        index = {spec["key"][0][0]: name for name, spec in collection.index_information().items()}
        assert index[START_FIELD] == "ix_cdr_datetime_start"
        assert "index on DateTime.Start: ix_cdr_datetime_start" in first.stdout

        # The compose default: a restarted stack keeps its data.
        again = run_module(*args, "--mode", "if-empty", env=env, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "not seeding" in again.stdout
        assert collection.count_documents({}) == 300

        appended = run_module(*args, "--mode", "append", env=env, timeout=120)
        assert appended.returncode == 0, appended.stdout + appended.stderr
        assert collection.count_documents({}) == 600
        assert len(collection.index_information()) == 2  # _id + DateTime.Start, not a second copy

        missing = run_module(*args, env=clean_env(), timeout=60)
        assert missing.returncode != 0 and "CDR_SEED_MONGO_URI" in missing.stderr
    finally:
        mongo_client.drop_database(database)


@pytest.fixture(scope="module")
def demo(mongo_uri, mongo_client, pg_uri, tmp_path_factory):
    """One demo state (Airflow home, PostgreSQL metadata DB, report DB, FerretDB database) shared by the tests below."""
    import sqlalchemy as sa

    database = f"cdrdemo_{uuid.uuid4().hex[:10]}"
    pg = sa.engine.make_url(pg_uri).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}_meta"'))
    metadata_url = pg.set(database=f"{database}_meta").render_as_string(hide_password=False)
    state = tmp_path_factory.mktemp("demo") / "state"
    # Small and quick: 10 days x 300 calls; the daily DAG only (each `airflow dags test` costs
    # tens of seconds of Airflow start-up whatever the data volume).
    env = clean_env(
        DEMO_STATE_DIR=str(state),
        DEMO_MONGO_URI=mongo_uri,
        DEMO_MONGO_DATABASE=database,
        DEMO_DAYS="10",
        DEMO_CALLS_PER_DAY="300",
        DEMO_REPORTS="daily",
        DEMO_METADATA_DB_URL=metadata_url,
    )
    yield {"env": env, "state": state, "database": database, "metadata_url": metadata_url}
    mongo_client.drop_database(database)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}_meta" WITH (FORCE)'))
    admin.dispose()


def test_demo_prints_the_reference_report_and_reruns_idempotently(demo, mongo_client):
    env, state, database = demo["env"], demo["state"], demo["database"]
    printed_run_ids = []
    for attempt in (1, 2):
        result = run_module("run", env=env, timeout=900)
        assert result.returncode == 0, f"attempt {attempt}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        assert "inserted=3000 " in result.stdout  # dropped and re-seeded, not appended
        tables = parse_tables(result.stdout)
        assert len(tables) == 1, result.stdout
        (report_type, start), table = next(iter(tables.items()))
        assert report_type == "daily"
        period = period_containing("daily", start, TZ)
        assert table["end"] == period.end_date

        docs = list(mongo_client[database]["CdrRecords"].find({}, {"_id": 0}))
        assert len(docs) == 3000
        expected = expected_report(docs, period.start_utc, period.end_utc)
        assert expected["valid"] > 100  # a real day of calls, not an empty table
        assert_table_matches_reference(table, expected)
        printed_run_ids.append(table["run"]["dag_run_id"])

        # The printed table is what the DAG stored, and a re-run replaced it instead of adding rows.
        with sqlite3.connect(state / "demo_reports.db") as conn:
            runs = conn.execute(
                "SELECT dag_run_id, source_records FROM cdr_report_run WHERE report_type = 'daily' AND period_start = ?",
                (start.isoformat(),),
            ).fetchall()
            rows = conn.execute(
                "SELECT COUNT(*) FROM cdr_operator_report WHERE report_type = 'daily' AND period_start = ?",
                (start.isoformat(),),
            ).fetchone()[0]
        assert runs == [(printed_run_ids[-1], expected["source"])]
        assert rows == len(expected["rows"])
    assert printed_run_ids[0] != printed_run_ids[1]
    # The second run found the metadata DB migrated and skipped the migration.
    assert "airflow db migrate" not in result.stdout


def test_demo_rolls_the_weekly_and_monthly_reports_up_from_its_daily_reports(demo, mongo_client):
    """`make demo` stores the daily reports of the last complete week and month before their DAGs
    run, so both are rolled up (no CDR read for any day), print so, and equal a direct count."""
    # 62 days: the last complete month lies wholly inside the seeded CDRs whatever today's date.
    env = dict(demo["env"], DEMO_DAYS="62", DEMO_CALLS_PER_DAY="100", DEMO_REPORTS="daily,weekly,monthly")
    result = run_module("run", env=env, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    tables = parse_tables(result.stdout)
    assert sorted(report_type for report_type, _ in tables) == ["daily", "monthly", "weekly"], result.stdout
    docs = list(mongo_client[demo["database"]]["CdrRecords"].find({}, {"_id": 0}))
    assert len(docs) == 6200
    rolled_up_days = set()
    for (report_type, start), table in tables.items():
        period = period_containing(report_type, start, TZ)
        assert table["end"] == period.end_date
        assert_table_matches_reference(table, expected_report(docs, period.start_utc, period.end_utc))
        if report_type == "daily":
            assert (table["run"]["method"], table["run"]["days_extracted"]) == ("extract", "1")
        else:
            # Every day of the week and of the month came from a stored daily report.
            assert (table["run"]["method"], table["run"]["days_extracted"]) == ("rollup", "0"), report_type
            assert table["total"]["calls"] > 0
            rolled_up_days |= {
                period.start_date + timedelta(days=i) for i in range((period.end_date - period.start_date).days)
            }
    daily = next(start for report_type, start in tables if report_type == "daily")
    with sqlite3.connect(demo["state"] / "demo_reports.db") as conn:
        stored = dict(
            conn.execute("SELECT period_start, dag_run_id FROM cdr_report_run WHERE report_type = 'daily'").fetchall()
        )
        provenance = conn.execute(
            "SELECT report_type, method, days_extracted FROM cdr_report_run WHERE report_type != 'daily' "
            "ORDER BY report_type"
        ).fetchall()
    assert provenance == [("monthly", "rollup", 0), ("weekly", "rollup", 0)]
    # The daily reports the roll-ups read: computed by the pipeline in the demo's process, except the
    # daily DAG's own day (its run id is the DAG run's).
    for day in rolled_up_days - {daily}:
        assert stored[day.isoformat()] == f"demo_pipeline__{day.isoformat()}", day
    assert not stored[daily.isoformat()].startswith("demo_pipeline__")
    first, last = min(rolled_up_days - {daily}), max(rolled_up_days - {daily})
    assert f"stored the daily reports of {first} .. {last} ({len(rolled_up_days - {daily})} days)" in result.stdout


def _processes_using(marker: str) -> list[int]:
    """Pids whose environment mentions `marker` (the test's private Airflow home)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _http(url: str, *, data: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def test_make_airflow_serves_the_demo_metadata_with_fab_login_and_stops_on_ctrl_c(demo):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(demo["env"], DEMO_AIRFLOW_PORT=str(port), CDR_DEMO_ADMIN_PASSWORD="Demo-Admin-5e1f")
    home = str(demo["state"] / "demo_airflow_home")
    process = subprocess.Popen(
        [sys.executable, "-m", "cdr_reports_dev.demo", "airflow"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Read the demo's output as it comes: the user waits for the "Airflow UI:" line, so does the test.
    # (Polling the health endpoint ourselves raced the demo's own poll: Ctrl-C could land before the
    # demo had printed the URL and the credentials line.)
    lines: list[str] = []
    announced = threading.Event()

    def read_output() -> None:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("[demo] Airflow UI: "):
                announced.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 400
        while not announced.wait(2) and time.monotonic() < deadline and process.poll() is None:
            pass
        assert announced.is_set(), "".join(lines)[-4000:]
        status, health = _http(f"{base}/api/v2/monitor/health")
        assert status == 200
        assert {health[c]["status"] for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {"healthy"}

        # FAB login: no anonymous access, a wrong password is refused, the admin gets a token.
        assert _http(f"{base}/api/v2/dags")[0] == 401
        assert _http(f"{base}/auth/token", data={"username": "admin", "password": "wrong"})[0] == 401
        status, token = _http(f"{base}/auth/token", data={"username": "admin", "password": "Demo-Admin-5e1f"})
        assert status == 201, token
        token = token["access_token"]

        status, dags = _http(f"{base}/api/v2/dags?tags=reports", token=token)
        assert status == 200
        assert {"cdr_daily_report", "cdr_weekly_report", "cdr_monthly_report"} <= {d["dag_id"] for d in dags["dags"]}
        # The UI serves the same metadata DB as `make demo`: the same daily runs.
        status, runs = _http(f"{base}/api/v2/dags/cdr_daily_report/dagRuns", token=token)
        assert status == 200
        import sqlalchemy as sa

        metadata = sa.create_engine(demo["metadata_url"])  # PostgreSQL, shared by `run` and `airflow`
        with metadata.connect() as conn:
            stored = set(conn.scalars(sa.text("SELECT run_id FROM dag_run WHERE dag_id = 'cdr_daily_report'")))
        metadata.dispose()
        assert {run["dag_run_id"] for run in runs["dag_runs"]} == stored
        assert len(_processes_using(home)) >= 4  # api-server, scheduler, dag-processor, triggerer (+ workers)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the foreground command
        process.wait(timeout=120)
        reader.join(timeout=30)
    output = "".join(lines)
    assert process.returncode == 0, output[-4000:]
    assert "[demo] stopping Airflow" in output and "[demo] stopped" in output
    assert "(user 'admin', password from CDR_DEMO_ADMIN_PASSWORD)" in output
    assert "Demo-Admin-5e1f" not in output  # a password the user chose is not echoed
    # Every component and its children are gone, and the port is closed (the kernel may take a
    # moment to tear down SIGKILLed processes on a loaded machine).
    deadline = time.monotonic() + 30
    while _processes_using(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_using(home) == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _printed_json(text: str):
    """The JSON list a CLI printed after its log lines."""
    import re

    start = re.search(r"^\[\s*[{\]]", text, re.M)
    assert start, text[-3000:]
    return json.JSONDecoder().raw_decode(text[start.start() :])[0]


def test_make_airflow_cli_reaches_the_demo_and_its_state_is_private(demo):
    """`make airflow-cli ARGS="..."` (`python -m cdr_reports_dev.demo cli ...`) runs the airflow CLI
    with the demo's metadata DB, auth manager and keys; the demo's state is owner-only, also under a
    world-readable parent folder (docs/security.md, "Secrets at rest")."""
    state = demo["state"]
    state.parent.chmod(0o755)
    state.mkdir(exist_ok=True)
    state.chmod(0o755)  # as a careless earlier version or user left it
    env = dict(demo["env"], CDR_DEMO_ADMIN_PASSWORD="Demo-Cli-9c2d")
    roles = run_module("cli", "roles", "list", "--output", "json", env=env, timeout=600)
    assert roles.returncode == 0, roles.stdout[-3000:] + roles.stderr[-3000:]
    names = {row["name"] for row in _printed_json(roles.stdout)}
    assert {"Admin", "ReportViewer", "ReportOperator"} <= names  # the FAB auth manager's tables, migrated
    # The admin as `make airflow` creates it: the password reaches Airflow on stdin only.
    code = (
        "from cdr_reports_dev.demo import airflow_config as c, metadata_db as m, state as s; "
        "p = s.demo_paths(); s.make_private(p); env = c.demo_cli_env(p); "
        "m.ensure_metadata_db(p, env); print(m.ensure_admin(p, env))"
    )
    admin = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert admin.returncode == 0, admin.stdout[-3000:] + admin.stderr[-3000:]
    assert "password from CDR_DEMO_ADMIN_PASSWORD" in admin.stdout and "Demo-Cli-9c2d" not in admin.stdout
    users = run_module("cli", "users", "list", "--output", "json", env=env, timeout=300)
    assert users.returncode == 0, users.stdout[-3000:] + users.stderr[-3000:]
    assert "admin" in {row["username"] for row in _printed_json(users.stdout)}
    config = run_module("cli", "config", "get-value", "core", "auth_manager", env=env, timeout=300)
    assert config.stdout.strip().endswith("cdr_reports.integration.auth_manager.CdrFabAuthManager"), config.stdout
    # A failing CLI command keeps its exit status.
    assert run_module("cli", "dags", "state", "no_such_dag", "2026-01-01", env=env, timeout=300).returncode != 0

    loose = []
    for path in [state, *state.rglob("*")]:
        if path.is_symlink() or path.is_socket():
            continue
        mode = path.stat().st_mode & 0o777
        if mode != (0o700 if path.is_dir() else 0o600) and not (path.is_file() and mode == 0o700):
            loose.append(f"{oct(mode)} {path.relative_to(state)}")
    assert loose == [], loose
    for path in state.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".out", ".json", ".txt", ""):
            assert "Demo-Cli-9c2d" not in path.read_text(errors="replace"), path
    assert "ensure-user --username admin" in (state / "demo_airflow_home" / "logs" / "users.log").read_text()
