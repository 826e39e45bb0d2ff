"""Release 0.1: the two report tables.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

from cdr_reports.pipeline.migrations import migration_schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the 0.1 types: later changes to schema.py must not rewrite history.
UTC_TIMESTAMP = sa.DateTime(timezone=False).with_variant(mssql.DATETIME2(), "mssql")


def upgrade() -> None:
    schema = migration_schema()
    op.create_table(
        "cdr_operator_report",
        sa.Column("report_type", sa.String(16), primary_key=True),
        sa.Column("period_start", sa.DATE(), primary_key=True),
        sa.Column("operator_id", sa.Unicode(255), primary_key=True),
        sa.Column("period_end", sa.DATE(), nullable=False),
        sa.Column("total_calls", sa.BigInteger(), nullable=False),
        sa.Column("answered_calls", sa.BigInteger(), nullable=False),
        sa.Column("total_duration_seconds", sa.BigInteger(), nullable=False),
        sa.Column("answer_ratio", sa.Float(53), nullable=False),
        sa.Column("avg_answered_duration_seconds", sa.Float(53), nullable=True),
        sa.Column("generated_at", UTC_TIMESTAMP, nullable=False, comment="UTC"),
        sa.Column("dag_run_id", sa.Unicode(250), nullable=False),
        schema=schema,
    )
    op.create_table(
        "cdr_report_run",
        sa.Column("report_type", sa.String(16), primary_key=True),
        sa.Column("period_start", sa.DATE(), primary_key=True),
        sa.Column("period_end", sa.DATE(), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("source_records", sa.BigInteger(), nullable=False),
        sa.Column("valid_records", sa.BigInteger(), nullable=False),
        sa.Column("rejected_records", sa.BigInteger(), nullable=False),
        sa.Column("operators", sa.Integer(), nullable=False),
        sa.Column("generated_at", UTC_TIMESTAMP, nullable=False, comment="UTC"),
        sa.Column("dag_run_id", sa.Unicode(250), nullable=False),
        schema=schema,
    )
