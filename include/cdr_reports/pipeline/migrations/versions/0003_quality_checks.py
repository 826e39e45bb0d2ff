"""Release 0.3: data-quality findings (volume drops, vanished/new operators, late data) and the source audit.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

from cdr_reports.pipeline.migrations import migration_schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies of the 0.3 types: later changes to schema.py must not rewrite history.
UTC_TIMESTAMP = sa.DateTime(timezone=False).with_variant(mssql.DATETIME2(), "mssql")


def upgrade() -> None:
    schema = migration_schema()
    op.create_table(
        "cdr_quality_check",
        sa.Column("report_type", sa.String(16), primary_key=True),
        sa.Column("period_start", sa.DATE(), primary_key=True),
        sa.Column("operator_id", sa.Unicode(255), primary_key=True),
        sa.Column("verdict", sa.String(16), primary_key=True),
        sa.Column("expected", sa.Float(53), nullable=True),
        sa.Column("actual", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.Unicode(400), nullable=False),
        sa.Column("dag_run_id", sa.Unicode(250), nullable=False),
        sa.Column("checked_at", UTC_TIMESTAMP, nullable=False, comment="UTC"),
        schema=schema,
    )
    op.create_table(
        "cdr_source_audit",
        sa.Column("dag_run_id", sa.Unicode(250), primary_key=True),
        sa.Column("audited_at", UTC_TIMESTAMP, nullable=False, comment="UTC"),
        sa.Column("unplaceable_records", sa.BigInteger(), nullable=False),
        sa.Column("previous_records", sa.BigInteger(), nullable=True),
        sa.Column("sample_ids", sa.Unicode(2000), nullable=False),
        schema=schema,
    )
