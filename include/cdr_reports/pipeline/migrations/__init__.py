"""Schema migrations of the report tables (Alembic, version table `cdr_reports_schema_version`).

Why Alembic: it is already in every Airflow environment (Airflow migrates its own metadata DB
with it), it records the applied revision in the database, and it speaks every dialect we
support (SQL Server, PostgreSQL, SQLite via batch mode).

- `ensure_schema(engine)` runs before every load: a no-op when the database is at head; otherwise
  it upgrades, so a release that adds a column upgrades an existing deployment by itself.
- A deployment whose DAG login may not run DDL (least privilege) upgrades once per release with
  `python -m cdr_reports.pipeline.migrations upgrade --url <SQLAlchemy URL> [--schema S]`
  (the compose stack's init step does); loads then find the schema at head and need no DDL.
- Tables created by release 0.1 (no version table yet) are recognised and stamped `0001` first.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdr_reports.pipeline.errors import PermanentError, classify_sql_error
from cdr_reports.pipeline.schema import RUN_TABLE

log = logging.getLogger(__name__)

VERSION_TABLE = "cdr_reports_schema_version"
SCRIPT_LOCATION = str(Path(__file__).resolve().parent)
FIRST_REVISION = "0001"
# Alembic's environment and revision modules are loaded and run per call: two threads of one
# process migrating at once can wait on each other (a DB lock held by one, a Python lock by the
# other). One migration per process at a time; across processes the database's own locks and the
# load's replay-once-on-conflict decide.
_MIGRATING = threading.Lock()


def migration_schema() -> str | None:
    """The schema of the report tables, for the revision scripts (passed in by `upgrade`)."""
    from alembic import op

    config = op.get_context().config
    return config.attributes.get("schema") if config is not None else None


def _config(connection: sa.Connection, schema: str | None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = _config(None, None)  # type: ignore[arg-type]
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(connection: sa.Connection, schema: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "version_table_schema": schema}
    )
    return context.get_current_revision()


def upgrade(engine: sa.engine.Engine, schema: str | None = None, target: str = "head") -> tuple[str | None, str]:
    """Upgrade the report tables to `target`; returns (revision before, revision after)."""
    from alembic import command

    with _MIGRATING, engine.begin() as connection:
        before = current_revision(connection, schema)
        if before is None and sa.inspect(connection).has_table(RUN_TABLE, schema=schema):
            log.info("report tables of release 0.1 found without a version table: stamping %s", FIRST_REVISION)
            command.stamp(_config(connection, schema), FIRST_REVISION)
        command.upgrade(_config(connection, schema), target)
        after = current_revision(connection, schema)
    assert after is not None
    if before != after:
        log.info("report schema upgraded %s -> %s", before or "(empty)", after)
    return before, after


def ensure_schema(engine: sa.engine.Engine, schema: str | None = None) -> str:
    """Make sure the report tables are at head before a load (no DDL when they already are)."""
    head = head_revision()
    try:
        with engine.connect() as connection:
            if current_revision(connection, schema) == head:
                return head
    except Exception as exc:
        raise classify_sql_error(exc, "reading the report schema version") from exc
    try:
        return upgrade(engine, schema)[1]
    except Exception as exc:
        error = classify_sql_error(exc, f"upgrading the report tables to schema revision {head}")
        if isinstance(error, PermanentError):
            # Typically a login without DDL rights (least privilege): say what to run instead.
            raise PermanentError(
                f"{error}; upgrade them once with a login allowed to run DDL: "
                "python -m cdr_reports.pipeline.migrations upgrade --url <SQLAlchemy URL>"
            ) from exc
        raise error from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdr_reports.pipeline.migrations", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("upgrade", "current"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--url", required=True, help="SQLAlchemy URL of the report database")
        cmd.add_argument("--schema", default=None, help="schema of the report tables (CDR_SQL_SCHEMA)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = sa.create_engine(args.url)
    try:
        if args.command == "upgrade":
            before, after = upgrade(engine, args.schema)
            print(f"report schema: {before or '(empty)'} -> {after} (head {head_revision()})")
        else:
            with engine.connect() as connection:
                print(
                    f"report schema: {current_revision(connection, args.schema) or '(empty)'} (head {head_revision()})"
                )
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
