"""Release 0.5: weekly and monthly reports rolled up from the stored daily reports.

Exact duration sums (integer milliseconds) on every operator row, and on every run row how the
report was computed (`method`, `days_extracted`), under which rules (`rules_fingerprint`) and
from which stored daily reports (`rollup_inputs_sha256`). All nullable: reports stored before
this release keep NULL there, and a NULL fingerprint or duration never qualifies for a roll-up.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from cdr_reports.pipeline.migrations import migration_schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = migration_schema()
    with op.batch_alter_table("cdr_operator_report", schema=schema) as batch:
        batch.add_column(sa.Column("total_duration_ms", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("cdr_report_run", schema=schema) as batch:
        batch.add_column(sa.Column("method", sa.String(8), nullable=True))
        batch.add_column(sa.Column("days_extracted", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rules_fingerprint", sa.String(64), nullable=True))
        batch.add_column(sa.Column("rollup_inputs_sha256", sa.String(64), nullable=True))
