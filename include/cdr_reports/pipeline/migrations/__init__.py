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

Crash safety (docs/reliability.md). An upgrade is ONE transaction holding every DDL statement and
the version row, on every dialect: PostgreSQL and SQL Server have transactional DDL; SQLite has
too, but its Python driver never sends BEGIN before DDL (each CREATE TABLE committed at once), so
on SQLite the upgrade opens `BEGIN IMMEDIATE` itself. A process killed after any DDL statement
therefore leaves the database as it was before the upgrade. Concurrent upgraders queue on a lock
(SQLite: the write lock of BEGIN IMMEDIATE; PostgreSQL: a transaction advisory lock; SQL Server:
`sp_getapplock`) and re-read the revision once they hold it, so the second finds the work done.
Databases left half set up by releases before this one (a table committed without its revision)
are healed before upgrading: objects that a later revision creates, found empty (tables) or all
NULL (columns), are dropped and created again by the upgrade. A leftover holding data is never
dropped by a load: the upgrade then fails permanently, naming `python -m
cdr_reports.pipeline.migrations repair --url <URL>`, which drops it (after a person looked).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from cdr_reports.pipeline.errors import PermanentError, classify_sql_error

log = logging.getLogger(__name__)

VERSION_TABLE = "cdr_reports_schema_version"
SCRIPT_LOCATION = str(Path(__file__).resolve().parent)
FIRST_REVISION = "0001"
REPAIR_COMMAND = "python -m cdr_reports.pipeline.migrations repair --url <SQLAlchemy URL> [--schema S]"
# Alembic's environment and revision modules are loaded and run per call: two threads of one
# process migrating at once can wait on each other (a DB lock held by one, a Python lock by the
# other). One migration per process at a time; across processes the database lock of
# `_setup_transaction` serializes them.
_MIGRATING = threading.Lock()
# Errors of a DDL statement meeting an object that already exists (SQLite, PostgreSQL, SQL Server).
_EXISTS_MESSAGES = ("already exists", "there is already an object named", "duplicate column")


def migration_schema() -> str | None:
    """The schema of the report tables, for the revision scripts (passed in by `upgrade`)."""
    config = op.get_context().config
    return config.attributes.get("schema") if config is not None else None


def _config(connection: sa.Connection | None, schema: str | None) -> Any:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


def revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(_config(None, None))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config(None, None)).get_current_head()
    assert head is not None
    return head


def current_revision(connection: sa.Connection, schema: str | None = None) -> str | None:
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "version_table_schema": schema}
    )
    return context.get_current_revision()


# --------------------------------------------------------------------------- crash-safe setup

# (table, None) is a table, (table, column) one of its columns.
SchemaObject = tuple[str, str | None]


@functools.lru_cache(maxsize=1)
def revision_objects() -> dict[str | None, frozenset[SchemaObject]]:
    """The report tables and columns that exist after each revision (None: before the first).

    Derived by running the revisions themselves, one by one, on an in-memory SQLite database, so
    it can never disagree with them.
    """
    engine = sa.create_engine("sqlite://")
    objects: dict[str | None, frozenset[SchemaObject]] = {None: frozenset()}
    try:
        with engine.connect() as connection:
            for revision in revisions():
                _alembic_upgrade(connection, None, revision)
                connection.commit()
                objects[revision] = _present(connection, None, names=None)
    finally:
        engine.dispose()
    return objects


def _present(connection: sa.Connection, schema: str | None, names: set[str] | None) -> frozenset[SchemaObject]:
    """The tables of `names` (None: all but the version table) present, and their columns."""
    inspector = sa.inspect(connection)
    found: set[SchemaObject] = set()
    for table in inspector.get_table_names(schema=schema):
        if table == VERSION_TABLE or (names is not None and table not in names):
            continue
        found.add((table, None))
        found.update((table, col["name"]) for col in inspector.get_columns(table, schema=schema))
    return frozenset(found)


@dataclass(frozen=True)
class Diagnosis:
    """What a database holds compared with the revision it records."""

    revision: str | None  # the recorded revision (None: no version row)
    stamp: str | None  # a revision to record first (release 0.1 tables without a version table)
    leftovers: tuple[SchemaObject, ...]  # objects a later revision creates, present already
    holding_data: tuple[SchemaObject, ...]  # those of the leftovers that hold rows / non-NULL values

    def describe(self) -> str:
        def name(obj: SchemaObject) -> str:
            return f"table {obj[0]}" if obj[1] is None else f"column {obj[0]}.{obj[1]}"

        return ", ".join(name(obj) for obj in self.leftovers) or "nothing"


def diagnose(connection: sa.Connection, schema: str | None = None) -> Diagnosis:
    """Compare the report tables with the recorded revision: what a half-done setup left behind."""
    objects = revision_objects()
    order = list(objects)  # None, then every revision oldest first
    names = {table for objs in objects.values() for table, _ in objs}
    actual = _present(connection, schema, names)
    revision = current_revision(connection, schema)
    if revision not in objects:
        return Diagnosis(revision, None, (), ())  # not a revision of this release: the upgrade says so
    stamp = None
    if revision is None and objects[FIRST_REVISION] <= actual:
        stamp = revision = FIRST_REVISION  # release 0.1 (or an unversioned first setup that created both tables)
    base = objects[revision]
    later = set().union(*(objects[rev] for rev in order[order.index(revision) + 1 :])) - base
    leftover_tables = {table for table, col in actual - base if col is None and (table, None) in later}
    leftovers = sorted(
        (obj for obj in actual - base if obj in later and (obj[1] is None or obj[0] not in leftover_tables)),
        key=lambda obj: (obj[0], obj[1] or ""),
    )
    holding = tuple(obj for obj in leftovers if _holds_data(connection, schema, obj))
    return Diagnosis(revision, stamp, tuple(leftovers), holding)


def _holds_data(connection: sa.Connection, schema: str | None, obj: SchemaObject) -> bool:
    table = sa.table(obj[0], *([sa.column(obj[1])] if obj[1] else []), schema=schema)
    query = sa.select(sa.literal(1)).select_from(table)
    if obj[1] is not None:
        query = query.where(table.c[obj[1]].is_not(None))
    return connection.execute(query.limit(1)).first() is not None


def _drop(connection: sa.Connection, schema: str | None, obj: SchemaObject) -> None:
    preparer = connection.dialect.identifier_preparer
    table = preparer.quote(obj[0]) if schema is None else f"{preparer.quote_schema(schema)}.{preparer.quote(obj[0])}"
    if obj[1] is None:
        connection.exec_driver_sql(f"DROP TABLE {table}")
    else:
        connection.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {preparer.quote(obj[1])}")


def heal(connection: sa.Connection, schema: str | None = None, *, drop_data: bool = False) -> Diagnosis:
    """Undo what an interrupted setup left behind (inside the caller's transaction); returns the diagnosis.

    Leftovers that hold data are dropped only with `drop_data` (the repair command); otherwise
    they stay and the upgrade meeting them fails permanently, naming the repair command.
    """
    found = diagnose(connection, schema)
    if found.stamp is not None:
        log.info("report tables of release 0.1 found without a version table: stamping %s", found.stamp)
        command.stamp(_config(connection, schema), found.stamp)
    for obj in found.leftovers:
        if obj in found.holding_data and not drop_data:
            continue
        log.warning(
            "report schema at revision %s, but %s of a later revision exists%s (an upgrade was interrupted "
            "before it committed): dropping it, the upgrade creates it again",
            found.revision or "(empty)",
            f"table {obj[0]}" if obj[1] is None else f"column {obj[0]}.{obj[1]}",
            " and holds data" if obj in found.holding_data else " empty",
        )
        _drop(connection, schema, obj)
    return found


@contextlib.contextmanager
def _setup_transaction(engine: sa.engine.Engine, schema: str | None) -> Iterator[sa.Connection]:
    """One transaction for the whole setup, holding the setup lock of this schema."""
    if engine.dialect.name == "sqlite":
        # The driver would commit each DDL statement at once: drive the transaction ourselves.
        # IMMEDIATE takes the write lock now, so a concurrent setup waits here, not half-way.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.exec_driver_sql("ROLLBACK")
                raise
            connection.exec_driver_sql("COMMIT")
        return
    with engine.begin() as connection:
        key = f"cdr_reports schema setup {schema or ''}"
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(key.encode())})
        elif engine.dialect.name == "mssql":
            connection.execute(sa.text(MSSQL_SETUP_LOCK), {"resource": key[:255]})
        yield connection


# Held until the transaction ends; waits up to 10 minutes for a concurrent setup.
MSSQL_SETUP_LOCK = (
    "DECLARE @result INT; "
    "EXEC @result = sp_getapplock @Resource = :resource, @LockMode = 'Exclusive', "
    "@LockOwner = 'Transaction', @LockTimeout = 600000; "
    "IF @result < 0 THROW 51000, 'could not take the report schema setup lock (sp_getapplock)', 1;"
)


def offline_sql(dialect_name: str, revisions_range: str, schema: str | None = None) -> str:
    """The SQL of `revisions_range` (e.g. "0005:0006") as `dialect_name` would receive it, without a database."""
    buffer = io.StringIO()
    config = _config(None, schema)
    config.attributes.update({"dialect_name": dialect_name, "output_buffer": buffer})
    command.upgrade(config, revisions_range, sql=True)
    return buffer.getvalue()


def _alembic_upgrade(connection: sa.Connection, schema: str | None, target: str) -> None:
    command.upgrade(_config(connection, schema), target)


def upgrade(
    engine: sa.engine.Engine, schema: str | None = None, target: str = "head", *, drop_data: bool = False
) -> tuple[str | None, str]:
    """Upgrade the report tables to `target` in one transaction; returns (revision before, revision after)."""
    revision_objects()  # computed (once) before the lock: it runs migrations itself
    with _MIGRATING, _setup_transaction(engine, schema) as connection:
        before = current_revision(connection, schema)
        try:
            heal(connection, schema, drop_data=drop_data)
            _alembic_upgrade(connection, schema, target)
        except Exception as exc:
            if any(text in str(exc).lower() for text in _EXISTS_MESSAGES):
                raise PermanentError(
                    f"upgrading the report tables from schema revision {before or '(empty)'}: "
                    f"{str(getattr(exc, 'orig', exc)).splitlines()[0]}. An earlier setup was interrupted and left "
                    f"this object holding data; check it, then run {REPAIR_COMMAND} (drops what the unfinished "
                    "revision left behind and upgrades)"
                ) from exc
            raise
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
    except PermanentError:
        raise
    except CommandError as exc:  # e.g. a revision newer than this release: no retry can help
        raise PermanentError(f"upgrading the report tables to schema revision {head}: {exc}") from exc
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
    helps = {
        "upgrade": "create or upgrade the report tables to the release's schema",
        "current": "print the recorded schema revision",
        "check": "print what an interrupted setup left behind (nothing changed)",
        "repair": "drop what an interrupted setup left behind, even holding data, then upgrade",
    }
    for name, text in helps.items():
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--url", required=True, help="SQLAlchemy URL of the report database")
        cmd.add_argument("--schema", default=None, help="schema of the report tables (CDR_SQL_SCHEMA)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = sa.create_engine(args.url)
    try:
        if args.command in ("upgrade", "repair"):
            before, after = upgrade(engine, args.schema, drop_data=args.command == "repair")
            print(f"report schema: {before or '(empty)'} -> {after} (head {head_revision()})")
        elif args.command == "check":
            with engine.connect() as connection:
                found = diagnose(connection, args.schema)
            print(
                f"report schema: {found.revision or '(empty)'} (head {head_revision()}); left behind by an "
                f"interrupted setup: {found.describe()}"
                + (f"; holding data: {len(found.holding_data)}" if found.holding_data else "")
            )
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
