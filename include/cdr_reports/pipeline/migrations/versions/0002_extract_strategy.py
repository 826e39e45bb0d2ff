"""Release 0.2: record which extract strategy produced each report.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from cdr_reports.pipeline.migrations import migration_schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = migration_schema()
    with op.batch_alter_table("cdr_report_run", schema=schema) as batch:
        batch.add_column(sa.Column("extract_strategy", sa.String(16), nullable=True))
