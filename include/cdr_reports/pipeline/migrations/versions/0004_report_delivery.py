"""Release 0.4: the e-mail delivery log (one row per period: content hash last sent).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

from cdr_reports.pipeline.migrations import migration_schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC_TIMESTAMP = sa.DateTime(timezone=False).with_variant(mssql.DATETIME2(), "mssql")


def upgrade() -> None:
    schema = migration_schema()
    # Release 0.4 pre-releases created this table on first use: keep such a table as it is.
    if sa.inspect(op.get_bind()).has_table("cdr_report_delivery", schema=schema):
        return
    op.create_table(
        "cdr_report_delivery",
        sa.Column("report_type", sa.String(16), primary_key=True),
        sa.Column("period_start", sa.DATE(), primary_key=True),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("sent_at", UTC_TIMESTAMP, nullable=False, comment="UTC"),
        sa.Column("dag_run_id", sa.Unicode(250), nullable=False),
        sa.Column("recipients", sa.Unicode(2000), nullable=False),
        sa.Column("copies", sa.Integer(), nullable=False),
        schema=schema,
    )
