"""Release 0.6: binary collation on the text key columns on SQL Server (ids that differ only in case or accents stay distinct).

Operator ids are compared exactly by MongoDB, PostgreSQL (deterministic collation) and SQLite
(BINARY): `ABC` and `abc`, `É` composed (U+00C9) and decomposed (E + U+0301), `ß` and `ss` are
different operators there. SQL Server's default collations (`SQL_Latin1_General_CP1_CI_AS`, ...)
compare them equal, so a day holding two of them failed the load with a primary-key violation,
every day. This revision gives every text column of a primary key the binary collation
`Latin1_General_100_BIN2` (code-point order), rebuilding each primary key: SQL Server cannot
change the collation of a column an index or constraint uses. Other dialects: nothing to do.

Ids are not normalised (docs/reliability.md, "Operator ids"): composed and decomposed forms are two
operators, as in the source, so each stored row can be traced back to `Operator.Id` exactly.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from cdr_reports.pipeline.migrations import migration_schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BINARY_COLLATION = "Latin1_General_100_BIN2"

# table -> (every primary-key column in order, {text key column: its SQL Server type}), frozen as of 0.6.
KEYS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "cdr_operator_report": (
        ("report_type", "period_start", "operator_id"),
        {"report_type": "VARCHAR(16)", "operator_id": "NVARCHAR(255)"},
    ),
    "cdr_report_run": (("report_type", "period_start"), {"report_type": "VARCHAR(16)"}),
    "cdr_quality_check": (
        ("report_type", "period_start", "operator_id", "verdict"),
        {"report_type": "VARCHAR(16)", "operator_id": "NVARCHAR(255)", "verdict": "VARCHAR(16)"},
    ),
    "cdr_source_audit": (("dag_run_id",), {"dag_run_id": "NVARCHAR(250)"}),
    "cdr_report_delivery": (("report_type", "period_start"), {"report_type": "VARCHAR(16)"}),
}


def mssql_statements(schema: str | None) -> list[str]:
    """The T-SQL of this revision (a function of the schema only, so it is the same online and offline)."""
    statements = []
    for table, (key, text_columns) in KEYS.items():
        name = f"[{schema}].[{table}]" if schema else f"[{table}]"
        literal = name.replace("'", "''")
        # The primary key's name was chosen by SQL Server (PK__cdr_oper__...): look it up.
        statements.append(
            "DECLARE @pk sysname = (SELECT name FROM sys.key_constraints "
            f"WHERE type = 'PK' AND parent_object_id = OBJECT_ID(N'{literal}')); "
            f"IF @pk IS NOT NULL EXEC(N'ALTER TABLE {literal} DROP CONSTRAINT ' + QUOTENAME(@pk))"
        )
        for column, sql_type in text_columns.items():
            statements.append(
                f"ALTER TABLE {name} ALTER COLUMN [{column}] {sql_type} COLLATE {BINARY_COLLATION} NOT NULL"
            )
        columns = ", ".join(f"[{column}]" for column in key)
        statements.append(f"ALTER TABLE {name} ADD CONSTRAINT [pk_{table}] PRIMARY KEY ({columns})")
    return statements


def upgrade() -> None:
    if op.get_context().dialect.name != "mssql":
        return  # PostgreSQL and SQLite compare keys exactly already
    for statement in mssql_statements(migration_schema()):
        op.execute(statement)
