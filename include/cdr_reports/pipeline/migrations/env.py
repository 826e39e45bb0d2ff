"""Alembic environment: run with the connection that `migrations.upgrade` passes in, or offline.

Offline (`migrations.offline_sql`): the SQL a dialect would receive, written to a buffer without a
database, so tests can read the T-SQL of SQL Server revisions on a machine without SQL Server.
"""

from typing import Any

from alembic import context

from cdr_reports.pipeline.migrations import VERSION_TABLE
from cdr_reports.pipeline.schema import report_tables

config = context.config
schema = config.attributes.get("schema")
options: dict[str, Any] = {
    "target_metadata": report_tables(schema).metadata,
    "version_table": VERSION_TABLE,
    "version_table_schema": schema,
    "render_as_batch": True,  # SQLite alters tables by copying them
    "transactional_ddl": True,
}
if context.is_offline_mode():
    context.configure(
        dialect_name=config.attributes["dialect_name"],
        as_sql=True,
        output_buffer=config.attributes["output_buffer"],
        literal_binds=True,
        **options,
    )
else:
    context.configure(connection=config.attributes["connection"], **options)
with context.begin_transaction():
    context.run_migrations()
