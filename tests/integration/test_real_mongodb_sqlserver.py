"""The whole pipeline against real MongoDB and SQL Server (the compose stack, or any servers).

Runs when CDR_TEST_MONGO_URI points at a real MongoDB (not FerretDB) and CDR_TEST_MSSQL_URI at a
SQL Server (SQLAlchemy URL, e.g. mssql+pymssql://sa:...@127.0.0.1:1433/cdr_reports); skipped
otherwise, with the reason printed.
"""

from __future__ import annotations

import os
import random
import uuid
from datetime import date

import pytest

from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.extract import ScopedCollection, ensure_indexes, pushdown_stages
from cdr_reports.pipeline.load import read_report
from cdr_reports.pipeline.periods import period_containing
from cdr_reports.pipeline.runner import run_report
from cdr_reports.pipeline.validity import DocumentRules
from tests.support.reference import edge_case_documents, expected_report, random_documents

pytestmark = pytest.mark.integration

DAY = period_containing("daily", date(2026, 11, 27), "Europe/Istanbul")


@pytest.fixture(scope="module")
def real_mongo():
    uri = os.environ.get("CDR_TEST_MONGO_URI")
    if not uri:
        pytest.skip("!!! SKIPPED: CDR_TEST_MONGO_URI is not set (real MongoDB)")
    import pymongo

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    build = client.admin.command("buildInfo")
    if "ferretdb" in build or "FerretDB" in str(build.get("version", "")) or build.get("ferretdbVersion"):
        pytest.skip("!!! SKIPPED: CDR_TEST_MONGO_URI points at FerretDB, not MongoDB")
    name = f"cdrtest_{uuid.uuid4().hex[:10]}"
    yield client[name]
    client.drop_database(name)
    client.close()


@pytest.fixture(scope="module")
def mssql_engine():
    uri = os.environ.get("CDR_TEST_MSSQL_URI")
    if not uri:
        pytest.skip("!!! SKIPPED: CDR_TEST_MSSQL_URI is not set (real SQL Server)")
    import sqlalchemy as sa

    engine = sa.create_engine(uri)
    schema = f"cdrtest_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield engine, schema
    with engine.begin() as conn:
        for table in ("cdr_operator_report", "cdr_report_run", "cdr_reports_schema_version"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {schema}.{table}"))
        conn.execute(sa.text(f"DROP SCHEMA {schema}"))
    engine.dispose()


def test_pushdown_is_one_aggregation_served_by_the_start_index(real_mongo):
    coll = real_mongo.CdrRecords
    coll.insert_many(random_documents(random.Random(5), 500, DAY.start_utc, DAY.end_utc))
    ensure_indexes(coll)
    scoped = ScopedCollection(coll, {"IsDeleted": {"$ne": True}}, DAY.start_utc, DAY.end_utc)
    pipeline = [{"$match": scoped.match()}, *pushdown_stages(DocumentRules.for_settings(86400))]
    plan = real_mongo.command("aggregate", coll.name, pipeline=pipeline, explain=True)
    assert "IXSCAN" in str(plan) and "DateTime.Start" in str(plan), plan


@pytest.mark.parametrize("strategy", ["pushdown", "stream"])
def test_pipeline_on_mongodb_and_sqlserver(real_mongo, mssql_engine, strategy):
    engine, schema = mssql_engine
    coll = real_mongo[f"CdrRecordsFull_{strategy}"]
    docs = edge_case_documents(DAY.start_utc, DAY.end_utc) + random_documents(
        random.Random(9), 2000, DAY.start_utc, DAY.end_utc
    )
    coll.insert_many([dict(d) for d in docs])
    settings = Settings(sql_schema=schema, extract_slices=3, extract_strategy=strategy)
    for run_id in ("first", "second"):
        report = run_report(coll, engine, DAY, settings, dag_run_id=run_id)
    expected = expected_report(docs, DAY.start_utc, DAY.end_utc)
    assert (report.source_records, report.valid_records, report.rejected_records) == (
        expected["source"],
        expected["valid"],
        expected["rejected"],
    )
    stored = read_report(engine, "daily", DAY.start_date, schema=schema)
    assert {row["operator_id"]: row["total_calls"] for row in stored["rows"]} == {
        key: row["total_calls"] for key, row in expected["rows"].items()
    }
    assert all(row["dag_run_id"] == "second" for row in stored["rows"])
    assert stored["run"]["extract_strategy"] == strategy
    assert stored["run"]["source_records"] == expected["source"]
