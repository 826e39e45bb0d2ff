"""One-shot (compose service `reports-schema`): create or upgrade the report tables as the admin login.

The init step owns the DDL of the report database (docs/security.md): it creates the database if
missing (SQL Server), then runs the schema migrations to head (`cdr_reports.pipeline.migrations`,
the same code as `python -m cdr_reports.pipeline.migrations upgrade`). The DAG's own login only
holds SELECT/INSERT/DELETE on the tables (granted afterwards by docker/mssql-init.sql) and finds
the schema at head, so a load never needs DDL.

Environment: CDR_INIT_SQL_ALCHEMY_CONN (SQLAlchemy URL of the report database, admin login; read
from the environment so that the password is on no command line), CDR_SQL_SCHEMA (optional).
tests/unit/test_compose.py runs this script against PostgreSQL.
"""

from __future__ import annotations

import os
import re
import sys


def main() -> int:
    import sqlalchemy as sa

    from cdr_reports.pipeline.migrations import head_revision, upgrade

    raw = os.environ.get("CDR_INIT_SQL_ALCHEMY_CONN", "").strip()
    if not raw:
        print("[reports-schema] set CDR_INIT_SQL_ALCHEMY_CONN (the report database, admin login)", file=sys.stderr)
        return 2
    url = sa.engine.make_url(raw)
    schema = os.environ.get("CDR_SQL_SCHEMA", "").strip() or None
    for what, name in (("database", url.database), ("CDR_SQL_SCHEMA", schema)):
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            print(f"[reports-schema] {what} {name!r}: only letters, digits and _ allowed", file=sys.stderr)
            return 2
    if url.get_backend_name() == "mssql":
        # CREATE DATABASE cannot run inside a transaction, nor in the database it creates.
        master = sa.create_engine(url.set(database="master"), isolation_level="AUTOCOMMIT")
        try:
            with master.connect() as conn:
                conn.exec_driver_sql(f"IF DB_ID(N'{url.database}') IS NULL CREATE DATABASE [{url.database}]")
        finally:
            master.dispose()
    engine = sa.create_engine(url)
    try:
        if schema and url.get_backend_name() == "mssql":
            with engine.begin() as conn:
                conn.exec_driver_sql(f"IF SCHEMA_ID(N'{schema}') IS NULL EXEC('CREATE SCHEMA [{schema}]')")
        before, after = upgrade(engine, schema)
    finally:
        engine.dispose()
    print(f"[reports-schema] report tables: {before or '(empty)'} -> {after} (head {head_revision()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
