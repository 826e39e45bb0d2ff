"""Ids that differ only in case, accents or Unicode composition are distinct operators on every sink.

MongoDB (here FerretDB), PostgreSQL and SQLite compare them exactly, so these tests store them
end to end and read back six operators. SQL Server cannot run here: its side is the offline T-SQL
of migration 0006 (binary collation on every text key column, primary keys rebuilt), read through
Alembic's mssql dialect, plus the schema-setup lock as the mssql dialect compiles it.
"""

from __future__ import annotations

import re
import unicodedata

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

from cdr_reports.pipeline import migrations
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.load import read_report
from cdr_reports.pipeline.runner import run_report
from tests.support.findings import calls
from tests.support.reports import DAY

COMPOSED = "\u00c9TAT"  # É as one code point
DECOMPOSED = "E\u0301TAT"  # E + combining acute accent
IDS = {"ABC": 3, "abc": 4, COMPOSED: 5, DECOMPOSED: 6, "stra\u00dfe": 7, "strasse": 8}


def test_the_test_ids_really_collide_under_case_and_accent_insensitive_rules():
    assert unicodedata.normalize("NFC", DECOMPOSED) == COMPOSED and DECOMPOSED != COMPOSED
    assert "ABC".casefold() == "abc".casefold() and "stra\u00dfe".casefold() == "strasse".casefold()


def test_every_sink_keeps_them_apart(mongo_db, sql_engine):
    """FerretDB groups them apart, the load stores six rows, each id byte for byte as in the source."""
    docs = [doc for operator, count in IDS.items() for doc in calls(DAY, operator, count)]
    mongo_db.CdrRecords.insert_many(docs)
    report = run_report(mongo_db.CdrRecords, sql_engine, DAY, Settings(), dag_run_id="ids")
    assert {row.operator_id: row.total_calls for row in report.rows} == IDS
    stored = read_report(sql_engine, "daily", DAY.start_date)
    assert {row["operator_id"]: row["total_calls"] for row in stored["rows"]} == IDS
    assert stored["run"]["operators"] == len(IDS) == 6


# --------------------------------------------------------------------------- SQL Server, offline


@pytest.mark.parametrize("schema", [None, "reports"])
def test_migration_0006_gives_sql_server_keys_a_binary_collation(schema):
    sql = migrations.offline_sql("mssql", "0005:0006", schema)
    prefix = f"[{schema}]." if schema else ""
    expected = {
        "cdr_operator_report": (["report_type", "period_start", "operator_id"], ["report_type", "operator_id"]),
        "cdr_report_run": (["report_type", "period_start"], ["report_type"]),
        "cdr_quality_check": (
            ["report_type", "period_start", "operator_id", "verdict"],
            ["report_type", "operator_id", "verdict"],
        ),
        "cdr_source_audit": (["dag_run_id"], ["dag_run_id"]),
        "cdr_report_delivery": (["report_type", "period_start"], ["report_type"]),
    }
    types = {"report_type": "VARCHAR(16)", "operator_id": "NVARCHAR(255)", "verdict": "VARCHAR(16)",
             "dag_run_id": "NVARCHAR(250)"}  # fmt: skip
    batches = [batch.strip() for batch in sql.split("\nGO\n") if batch.strip()]
    for table, (key, text_columns) in expected.items():
        name = f"{prefix}[{table}]"
        drop = next(i for i, b in enumerate(batches) if f"OBJECT_ID(N'{name}')" in b)
        assert "sys.key_constraints WHERE type = 'PK'" in batches[drop]
        assert f"EXEC(N'ALTER TABLE {name} DROP CONSTRAINT ' + QUOTENAME(@pk))" in batches[drop]
        alters = batches[drop + 1 : drop + 1 + len(text_columns)]
        assert alters == [
            f"ALTER TABLE {name} ALTER COLUMN [{column}] {types[column]} COLLATE Latin1_General_100_BIN2 NOT NULL;"
            for column in text_columns
        ]
        columns = ", ".join(f"[{column}]" for column in key)
        assert batches[drop + 1 + len(text_columns)] == (
            f"ALTER TABLE {name} ADD CONSTRAINT [pk_{table}] PRIMARY KEY ({columns});"
        )
    # One transaction: the revision row changes with the keys, or nothing does.
    assert batches[0].startswith("BEGIN TRANSACTION") and batches[-1] == "COMMIT;"
    assert re.search(r"UPDATE \S*cdr_reports_schema_version SET version_num='0006'", sql)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_migration_0006_changes_nothing_where_keys_compare_exactly(dialect):
    sql = migrations.offline_sql(dialect, "0005:0006")
    assert "COLLATE" not in sql and "ALTER TABLE" not in sql
    assert "version_num='0006'" in sql


def test_the_setup_lock_compiles_for_sql_server():
    statement = sa.text(migrations.MSSQL_SETUP_LOCK).bindparams(resource="cdr_reports schema setup reports")
    compiled = str(statement.compile(dialect=mssql.dialect(), compile_kwargs={"literal_binds": True}))
    assert "EXEC @result = sp_getapplock @Resource = 'cdr_reports schema setup reports', @LockMode = 'Exclusive'" in (
        compiled
    )
    assert "@LockOwner = 'Transaction'" in compiled and "IF @result < 0 THROW 51000" in compiled
