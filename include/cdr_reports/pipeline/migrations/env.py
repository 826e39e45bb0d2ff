"""Alembic environment: always run with the connection that `migrations.upgrade` passes in."""

from alembic import context

from cdr_reports.pipeline.migrations import VERSION_TABLE
from cdr_reports.pipeline.schema import build_metadata

config = context.config
schema = config.attributes.get("schema")
context.configure(
    connection=config.attributes["connection"],
    target_metadata=build_metadata(schema),
    version_table=VERSION_TABLE,
    version_table_schema=schema,
    render_as_batch=True,  # SQLite alters tables by copying them
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
