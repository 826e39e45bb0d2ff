"""The report tables and load statements as SQL Server (and the other dialects) receive them."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy.dialects import mssql, postgresql, sqlite
from sqlalchemy.schema import CreateTable

from cdr_reports.pipeline.aggregate import OperatorRow, Report
from cdr_reports.pipeline.load import replace_statements
from cdr_reports.pipeline.schema import report_tables

REPORT = Report(
    report_type="daily",
    period_start=date(2026, 11, 27),
    period_end=date(2026, 11, 28),
    time_zone="Europe/Istanbul",
    source_records=3,
    valid_records=2,
    rejected_records=1,
    rows=(OperatorRow("7", 2, 1, 30, 0.5, 30.0),),
    generated_at=datetime(2026, 11, 28, 0, 0, tzinfo=UTC),
    dag_run_id="scheduled__2026-11-27T21:00:00+00:00",
)


def _ddl(dialect, schema=None):
    tables = report_tables(schema)
    return {t.name: str(CreateTable(t).compile(dialect=dialect)) for t in (tables.operator, tables.run)}


def test_mssql_ddl_types_and_keys():
    ddl = _ddl(mssql.dialect())
    op = ddl["cdr_operator_report"]
    assert "CREATE TABLE cdr_operator_report" in op
    assert "operator_id NVARCHAR(255) NOT NULL" in op  # unicode ids
    assert "period_start DATE NOT NULL" in op and "period_end DATE NOT NULL" in op
    assert "total_duration_seconds BIGINT NOT NULL" in op
    assert "answer_ratio FLOAT(53) NOT NULL" in op
    assert "avg_answered_duration_seconds FLOAT(53) NULL" in op
    assert "generated_at DATETIME2 NOT NULL" in op
    assert "PRIMARY KEY (report_type, period_start, operator_id)" in op
    run = ddl["cdr_report_run"]
    assert "PRIMARY KEY (report_type, period_start)" in run
    for column in ("source_records BIGINT", "valid_records BIGINT", "rejected_records BIGINT", "time_zone VARCHAR(64)"):
        assert column in run


def test_mssql_ddl_honours_a_schema():
    ddl = _ddl(mssql.dialect(), schema="reports")
    assert "CREATE TABLE reports.cdr_operator_report" in ddl["cdr_operator_report"]


@pytest.mark.parametrize(
    "dialect", [mssql.dialect(), postgresql.dialect(), sqlite.dialect()], ids=["mssql", "postgresql", "sqlite"]
)
def test_load_is_delete_then_insert_with_bound_parameters(dialect):
    statements = replace_statements(report_tables(), REPORT)
    sql = [str(stmt.compile(dialect=dialect)) for stmt, _ in statements]
    assert sql[0].startswith("DELETE FROM cdr_report_run WHERE")
    assert sql[1].startswith("DELETE FROM cdr_operator_report WHERE")
    assert sql[2].startswith("INSERT INTO cdr_operator_report")
    assert sql[3].startswith("INSERT INTO cdr_report_run")
    for text in sql:
        # No value is ever formatted into the SQL text.
        assert "2026-11-27" not in text and "daily" not in text and "Europe/Istanbul" not in text
    deletes = statements[0][0].compile(dialect=dialect).params
    assert deletes == {"report_type_1": "daily", "period_start_1": date(2026, 11, 27)}


def test_mssql_insert_parameters_are_the_report_values():
    statements = replace_statements(report_tables(), REPORT)
    insert_rows = statements[2][1]
    assert insert_rows == [
        {
            "report_type": "daily",
            "period_start": date(2026, 11, 27),
            "operator_id": "7",
            "period_end": date(2026, 11, 28),
            "total_calls": 2,
            "answered_calls": 1,
            "total_duration_seconds": 30,
            "answer_ratio": 0.5,
            "avg_answered_duration_seconds": 30.0,
            "total_duration_ms": None,
            "generated_at": datetime(2026, 11, 28, 0, 0),  # naive UTC
            "dag_run_id": "scheduled__2026-11-27T21:00:00+00:00",
        }
    ]
    compiled = str(statements[2][0].compile(dialect=mssql.dialect()))
    assert compiled.count("%(") == 0 or "pyformat" in mssql.dialect().paramstyle  # placeholders only
    assert statements[3][1]["rejected_records"] == 1 and statements[3][1]["operators"] == 1


def test_empty_report_inserts_only_the_run_row():
    empty = Report(**{**REPORT.__dict__, "rows": (), "source_records": 0, "valid_records": 0, "rejected_records": 0})
    statements = replace_statements(report_tables(), empty)
    assert [str(s.compile(dialect=mssql.dialect())).split(" ")[0] for s, _ in statements] == [
        "DELETE",
        "DELETE",
        "INSERT",
    ]
