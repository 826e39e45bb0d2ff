"""The demo's command line, and the seed step of the Docker stack.

    python -m cdr_reports_dev.demo seed ...   index + synthetic CDRs (compose service `mongo-seed`)
    python -m cdr_reports_dev.demo run        `make demo`: seed FerretDB, run the three DAGs, print the reports
    python -m cdr_reports_dev.demo airflow    `make airflow`: the Airflow components in the foreground
    python -m cdr_reports_dev.demo cli ...    `make airflow-cli`: the airflow CLI against the demo's Airflow
    python -m cdr_reports_dev.demo print ...  print stored reports (latest period of each type)

`run` and `airflow` need no Docker: they use the FerretDB and the PostgreSQL started by `make
services` (the Airflow metadata DB is a PostgreSQL database, one per state directory, shared by
`run` and `airflow`; the Airflow home is .services/demo_airflow_home), a SQLite report DB
.services/demo_reports.db, and the connections passed as AIRFLOW_CONN_* variables. Knobs
(environment): DEMO_DAYS, DEMO_CALLS_PER_DAY, DEMO_SEED, DEMO_REPORTS, DEMO_MONGO_URI,
DEMO_MONGO_DATABASE, DEMO_STATE_DIR, DEMO_AIRFLOW_PORT, DEMO_METADATA_DB_URL, DEMO_DAG_TIMEOUT_SECONDS,
DEMO_AIRFLOW_START_TIMEOUT, CDR_DEMO_ADMIN_USER, CDR_DEMO_ADMIN_PASSWORD.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import replace
from datetime import UTC, datetime

import sqlalchemy as sa

from cdr_reports.integration.connections import sql_engine
from cdr_reports.pipeline import report_types
from cdr_reports.pipeline.config import load_settings
from cdr_reports_dev.demo import processes, reports
from cdr_reports_dev.demo.airflow_config import airflow_env, demo_cli_env, demo_secrets
from cdr_reports_dev.demo.metadata_db import ensure_admin, ensure_metadata_db
from cdr_reports_dev.demo.seeding import DEMO_CALLS_PER_DAY, DEMO_DAYS, SEED_MODES, holds_cdrs, seed
from cdr_reports_dev.demo.state import demo_mongo_uri, demo_paths, int_env, log, make_private, mongo_database
from cdr_reports_dev.report_print import format_reports


def _seed_demo(uri: str, database: str) -> None:
    seed(
        uri,
        database,
        days=int_env("DEMO_DAYS", DEMO_DAYS),
        calls_per_day=int_env("DEMO_CALLS_PER_DAY", DEMO_CALLS_PER_DAY, low=0),
        seed_value=int_env("DEMO_SEED", 42, low=0),
        mode="drop",
    )


def cmd_run(args: argparse.Namespace) -> int:
    """Seed, store the dailies the roll-ups read, run the DAGs (daily, weekly, monthly), print the reports."""
    paths = demo_paths()
    make_private(paths)
    uri, database = demo_mongo_uri(paths.repo), mongo_database()
    days, per_day = int_env("DEMO_DAYS", DEMO_DAYS), int_env("DEMO_CALLS_PER_DAY", DEMO_CALLS_PER_DAY, low=0)
    log(f"seeding {days} days x {per_day} calls into {database} at {uri}")
    _seed_demo(uri, database)
    env = airflow_env(paths, uri, database)
    ensure_metadata_db(paths, env)
    types = reports.requested_report_types()
    run_after = datetime.now(UTC).replace(microsecond=0)
    periods = reports.report_periods(types, run_after, env)
    reports.store_daily_reports(paths, uri, database, reports.days_to_store(periods, env), env)
    log("running the DAGs for the last complete periods: " + ", ".join(f"{t} {d}" for t, d in periods.items()))
    timeout = int_env("DEMO_DAG_TIMEOUT_SECONDS", 900)
    with processes.execution_api({**env, **demo_secrets(paths)}, paths.logs) as run_env:
        # One logical date: each DAG reports its last complete period; the daily one first, so
        # that its day is stored before a week or month containing it is rolled up.
        for report_type in types:
            processes.dags_test(
                run_env, report_types.of(report_type).dag_id, run_after.isoformat(), paths.logs, timeout
            )
    print()
    reports.print_reports(paths, periods)
    print()
    log(f"reports stored in {paths.reports_db}; `make airflow` shows these runs in the Airflow UI")
    return 0


def cmd_airflow(args: argparse.Namespace) -> int:
    """api-server, scheduler, dag-processor and triggerer in the foreground until Ctrl-C."""
    paths = demo_paths()
    make_private(paths)
    uri, database = demo_mongo_uri(paths.repo), mongo_database()
    if not holds_cdrs(uri, database):
        _seed_demo(uri, database)
    port = int_env("DEMO_AIRFLOW_PORT", 8080)
    base_url = f"http://127.0.0.1:{port}"
    env = airflow_env(paths, uri, database)
    env.update(demo_secrets(paths))
    env.update(
        {
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        }
    )
    ensure_metadata_db(paths, env)
    credentials = ensure_admin(paths, env)
    components = {
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(port)],
        # Everything runs on this host: the API server reads task logs from the local folder, so
        # no log-serving ports (they would listen on every interface).
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }

    def announce() -> None:
        log(f"Airflow UI: {base_url}  ({credentials})")
        log("the report DAGs start paused; unpause them in the UI to let the scheduler run them. Ctrl-C stops.")
        log(f"the stored reports: {base_url}/plugin/cdr-reports (CDR Reports in the navigation)")
        # Airflow 3.3 has no server-side default (webserver.default_ui_timezone was removed): the UI
        # shows the browser's zone until the user picks one, kept per browser.
        log("times in the UI: your browser's time zone; pick Europe/Istanbul with the clock icon (bottom left)")

    return processes.supervise(
        components,
        env,
        paths.logs,
        health_url=f"{base_url}/api/v2/monitor/health",
        start_timeout=int_env("DEMO_AIRFLOW_START_TIMEOUT", 300),
        on_healthy=announce,
    )


def cmd_cli(args: argparse.Namespace) -> int:
    """`make airflow-cli ARGS="users list"`: the airflow CLI against the demo's Airflow.

    `AIRFLOW_HOME=.services/demo_airflow_home airflow ...` alone fails: the demo configures Airflow
    through the environment (PostgreSQL metadata DB, the FAB auth manager, shared keys), not through
    that folder's airflow.cfg, which Airflow writes with its defaults (SQLite, simple auth manager).
    """
    paths = demo_paths()
    make_private(paths)
    env = demo_cli_env(paths)
    ensure_metadata_db(paths, env)
    binary = shutil.which(processes.airflow_bin())
    if binary is None:
        raise SystemExit("no airflow executable next to this Python nor on PATH: run `make install`")
    command = [binary, *args.airflow_args]
    sys.stdout.flush()
    os.execve(command[0], command, env)  # the CLI's own exit status, stdin and terminal


def cmd_print(args: argparse.Namespace) -> int:
    if args.conn_id:
        engine = sql_engine(replace(load_settings(), sql_conn_id=args.conn_id))
    else:
        engine = sa.create_engine(args.sql_url or f"sqlite:///{demo_paths().reports_db}")
    try:
        print(format_reports(engine, schema=args.schema or None))
    finally:
        engine.dispose()
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    uri = args.uri or os.environ.get("CDR_SEED_MONGO_URI")
    if not uri:
        raise SystemExit("give --uri or set CDR_SEED_MONGO_URI")
    seed(uri, args.database, args.collection, args.days, args.calls_per_day, args.seed, args.mode)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cdr_reports_dev.demo", description=(__doc__ or "").split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("seed", help="ensure the DateTime.Start index and seed synthetic CDRs")
    p.add_argument("--uri", help="MongoDB URI (default: $CDR_SEED_MONGO_URI)")
    p.add_argument("--database", default=os.environ.get("CDR_SEED_DATABASE") or "cdr")
    p.add_argument("--collection", default=os.environ.get("CDR_SEED_COLLECTION") or "CdrRecords")
    p.add_argument("--days", type=int, default=int(os.environ.get("CDR_SEED_DAYS") or DEMO_DAYS))
    p.add_argument(
        "--calls-per-day", type=int, default=int(os.environ.get("CDR_SEED_CALLS_PER_DAY") or DEMO_CALLS_PER_DAY)
    )
    p.add_argument("--seed", type=int, default=int(os.environ.get("CDR_SEED_SEED") or 42))
    p.add_argument("--mode", choices=SEED_MODES, default="if-empty")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("run", help="make demo: seed, run the three DAGs, print the reports")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("airflow", help="make airflow: api-server, scheduler, dag-processor, triggerer (Ctrl-C stops)")
    p.set_defaults(func=cmd_airflow)

    p = sub.add_parser("cli", help="make airflow-cli: run the airflow CLI against the demo's Airflow")
    p.add_argument("airflow_args", nargs=argparse.REMAINDER, help="e.g. users list, dags list-runs cdr_daily_report")
    p.set_defaults(func=cmd_cli)

    p = sub.add_parser("print", help="print the latest stored report of each type")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--sql-url", help="SQLAlchemy URL (default: the demo's SQLite report DB)")
    source.add_argument("--conn-id", help="an Airflow connection id, e.g. cdr_reports_db")
    p.add_argument("--schema", help="schema of the report tables")
    p.set_defaults(func=cmd_print)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.func(args) or 0)
