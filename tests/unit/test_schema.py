"""The report schema is declared once; everything that repeats it is checked against it here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import mssql, postgresql, sqlite
from sqlalchemy.schema import CreateTable

from cdr_reports.pipeline import schema
from cdr_reports.pipeline.aggregate import OperatorRow
from cdr_reports.pipeline.schema import report_tables
from cdr_reports_dev import report_print

REPO = Path(__file__).resolve().parents[2]


def test_operator_row_fields_are_the_schema_metric_columns():
    assert tuple(f.name for f in dataclasses.fields(OperatorRow)) == schema.METRIC_COLUMNS + schema.EXACT_COLUMNS
    operator_columns = [c.name for c in schema.OPERATOR_COLUMNS]
    assert set(schema.METRIC_COLUMNS) <= set(operator_columns)


def test_printed_table_has_one_header_per_metric_column():
    assert set(report_print.HEADERS) == set(schema.METRIC_COLUMNS)


def test_readme_tables_are_generated_from_the_schema():
    readme = (REPO / "README.md").read_text()
    for table in schema.TABLES:
        block = re.search(rf"<!-- schema:{table} [^>]*-->\n(.*?)\n<!-- /schema -->", readme, re.S)
        assert block, f"README has no generated block for {table}"
        assert block.group(1) == schema.markdown_table(table), (
            "README table out of date: run `python -m cdr_reports.pipeline.schema markdown`"
        )


def test_tables_follow_the_declaration_in_every_dialect():
    tables = report_tables("reports")
    assert tables.operator.fullname == "reports.cdr_operator_report"
    for table, columns in ((tables.operator, schema.OPERATOR_COLUMNS), (tables.run, schema.RUN_COLUMNS)):
        assert [c.name for c in table.columns] == [c.name for c in columns]
        assert [c.name for c in table.primary_key] == [c.name for c in columns if c.key]
        assert [c.name for c in table.columns if c.nullable] == [c.name for c in columns if c.nullable]
    ddl = {
        name: str(CreateTable(tables.operator).compile(dialect=dialect))
        for name, dialect in (
            ("mssql", mssql.dialect()),
            ("postgresql", postgresql.dialect()),
            ("sqlite", sqlite.dialect()),
        )
    }
    assert "operator_id NVARCHAR(255) NOT NULL" in ddl["mssql"]
    assert "generated_at DATETIME2 NOT NULL" in ddl["mssql"]
    assert "period_start DATE NOT NULL" in ddl["mssql"]
    assert "answer_ratio FLOAT(53) NOT NULL" in ddl["postgresql"]
    assert "PRIMARY KEY (report_type, period_start, operator_id)" in ddl["sqlite"]


def test_markdown_cli_prints_both_tables(capsys):
    assert schema.main(["markdown"]) == 0
    out = capsys.readouterr().out
    assert "`cdr_operator_report`" in out and "`cdr_report_run`" in out
    assert "| `extract_strategy` (nullable) | `VARCHAR(16)` |" in out
    assert schema.main([]) == 2


def test_column_lookup():
    assert schema.column("cdr_report_run", "operators").type.__class__ is sa.Integer


def test_report_tables_builds_the_metadata_once_per_schema():
    tables = report_tables("reports")
    assert report_tables("reports") is tables  # the same objects on every call: built once
    assert report_tables(None) is report_tables() is report_tables("") is not tables
    assert set(tables.metadata.tables) == {f"reports.{name}" for name in schema.TABLES}
    named = (tables.operator, tables.run, tables.quality, tables.audit, tables.delivery)
    assert [t.name for t in named] == [
        schema.OPERATOR_TABLE,
        schema.RUN_TABLE,
        schema.QUALITY_CHECK_TABLE,
        schema.SOURCE_AUDIT_TABLE,
        schema.DELIVERY_TABLE,
    ]
    assert {t.schema for t in named} == {"reports"} and report_tables().run.schema is None
    assert all(t.metadata is tables.metadata for t in named)


def test_existing_lists_the_report_tables_a_database_holds(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'reports.db'}")
    tables = report_tables()
    try:
        assert tables.existing(engine) == frozenset()
        tables.run.create(engine)
        tables.delivery.create(engine)
        with engine.connect() as conn:
            assert tables.existing(conn) == {schema.RUN_TABLE, schema.DELIVERY_TABLE}
    finally:
        engine.dispose()


def test_delivery_table_is_the_schema_one():
    from cdr_reports.integration import report_delivery

    assert report_delivery.delivery_table("s").name == schema.DELIVERY_TABLE
    assert report_delivery.delivery_table("s").c.recipients.type.length == report_delivery.MAX_RECIPIENTS_TEXT
