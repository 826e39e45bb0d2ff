"""Report archive fixtures: rows in every declared column, database snapshots, the S3 test server.

Rows are generated from schema.py (every column, whatever its type), so a column added there is
filled, archived and compared by the archive tests without a change here.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cdr_reports.pipeline.archive import _kind
from cdr_reports.pipeline.migrations import ensure_schema
from cdr_reports.pipeline.schema import (
    OPERATOR_TABLE,
    QUALITY_CHECK_TABLE,
    RUN_TABLE,
    SOURCE_AUDIT_TABLE,
    TABLES,
    build_metadata,
)
from tests.support.services import ping_or_fail, require_service

# Values that a careless archive would alter: floats without a short decimal form, text outside
# Latin-1, sub-second timestamps, NULLs.
_FLOATS = (0.1 + 0.2, 1 / 3, 2.5e-7, 123456.789)
_TEXTS = ("İstanbul-Ğ", "op 😀", 'a,b;"c"', "plain")


def _value(column, i: int, overrides: dict[str, Any]) -> Any:
    if column.name in overrides:
        return overrides[column.name]
    if column.nullable and i % 3 == 2:
        return None
    kind = _kind(column)
    if kind == "int":
        # BIGINT beyond 32 bits; INTEGER within them.
        return 10_000_000_000 + 7 * i if isinstance(column.type, sa.BigInteger) else 1_000 + 7 * i
    if kind == "float":
        return _FLOATS[i % len(_FLOATS)] * (i + 1)
    if kind == "timestamp":
        return datetime(2025, 1, 1, 3, 4, 5, 123457) + timedelta(seconds=i)
    if kind == "date":
        return date(2025, 1, 1) + timedelta(days=i)
    if kind == "str":
        length = getattr(column.type, "length", None) or 64
        return f"{_TEXTS[i % len(_TEXTS)]}-{column.name}-{i}"[:length]
    raise AssertionError(f"no test value for {column.name} ({kind})")


def seed(
    engine: sa.Engine,
    report_type: str,
    starts: list[date],
    operators: int = 3,
    findings: int = 1,
    schema: str | None = None,
) -> None:
    """A report (run row + `operators` operator rows) and `findings` quality rows per period start."""
    ensure_schema(engine, schema)
    meta = build_metadata(schema)
    prefix = f"{schema}." if schema else ""
    tables = {name: meta.tables[prefix + name] for name in (OPERATOR_TABLE, RUN_TABLE, QUALITY_CHECK_TABLE)}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}
    for n, start in enumerate(starts):
        key = {"report_type": report_type, "period_start": start, "period_end": start + timedelta(days=1)}
        rows[RUN_TABLE].append(
            {
                c.name: _value(c, n, {**key, "operators": operators})
                for c in TABLES[RUN_TABLE]
                if c.name in tables[RUN_TABLE].c
            }
        )
        for i in range(operators):
            rows[OPERATOR_TABLE].append(
                {
                    c.name: _value(c, n + i, {**key, "operator_id": f"{_TEXTS[i % 4]}#{i}"})
                    for c in TABLES[OPERATOR_TABLE]
                }
            )
        for i in range(findings):
            rows[QUALITY_CHECK_TABLE].append(
                {
                    c.name: _value(c, n + i, {**key, "operator_id": f"op{i}", "verdict": "drop"})
                    for c in TABLES[QUALITY_CHECK_TABLE]
                }
            )
    with engine.begin() as conn:
        for name, table in tables.items():
            if rows[name]:
                conn.execute(sa.insert(table), [{k: v for k, v in r.items() if k in table.c} for r in rows[name]])


def seed_audits(engine: sa.Engine, days: list[date], per_day: int = 2, schema: str | None = None) -> None:
    ensure_schema(engine, schema)
    table = build_metadata(schema).tables[(f"{schema}." if schema else "") + SOURCE_AUDIT_TABLE]
    rows = [
        {
            c.name: _value(
                c,
                i,
                {
                    "dag_run_id": f"audit-{day}-{i}",
                    "audited_at": datetime.combine(day, datetime.min.time()) + timedelta(hours=3 + i, microseconds=7),
                },
            )
            for c in TABLES[SOURCE_AUDIT_TABLE]
        }
        for day in days
        for i in range(per_day)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(table), rows)


def snapshot(engine: sa.Engine, schema: str | None = None, before: date | None = None) -> dict[str, list[dict]]:
    """Every row of the archived tables (optionally only periods / audits before a date), in key order."""
    meta = build_metadata(schema)
    prefix = f"{schema}." if schema else ""
    out = {}
    with engine.connect() as conn:
        for name in (RUN_TABLE, OPERATOR_TABLE, QUALITY_CHECK_TABLE, SOURCE_AUDIT_TABLE):
            table = meta.tables[prefix + name]
            query = sa.select(table).order_by(*table.primary_key.columns)
            if before is not None:
                column = table.c.period_start if "period_start" in table.c else table.c.audited_at
                bound = before if "period_start" in table.c else datetime.combine(before, datetime.min.time())
                query = query.where(column < bound)
            out[name] = [dict(r) for r in conn.execute(query).mappings()]
    return out


def s3_endpoint() -> str:
    """The S3 server of `make services` (moto), answering (skip locally, fail in CI)."""
    endpoint = require_service("CDR_TEST_S3_ENDPOINT", "S3-compatible server (moto)")

    def ping() -> None:
        import urllib.request

        urllib.request.urlopen(endpoint, timeout=3).read()

    ping_or_fail(ping, f"S3 server at {endpoint}")
    return endpoint


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"cdr-archive-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    client.create_bucket(Bucket=name)
    return name


def aws_connection_uri(endpoint: str) -> str:
    """An Airflow connection (conn type aws) to the test server, as AIRFLOW_CONN_* JSON."""
    import json

    return json.dumps(
        {
            "conn_type": "aws",
            "login": "test",
            "password": "test",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    )
