"""Source audit: CDRs that no report period can ever hold, counted so they are never invisible.

A report counts what its window places (validity.window_query: `DateTime.Start` one BSON date in
[start, end)). A CDR whose `DateTime.Start` is missing, null, a string, a number, a timestamp or
an array (or whose `DateTime` is an array) is in no window, so no report's `source_records`
counts it. The audit counts them across the whole collection, after the global filter
(validity.unplaceable_query() AND CDR_GLOBAL_FILTER), keeps up to 5 sample `_id`s so someone can
look at them, and stores one row per audit in `cdr_source_audit`; the audit DAG alerts when the
count grew since the previous audit.

Cost on MongoDB: no index serves this query. Its `$or` has a branch on `DateTime` (an array test),
which no index covers, and MongoDB uses indexes for an `$or` only when every branch has one, so
the count is one collection scan; the `DateTime.Start` index cannot help anyway ("missing" and
"not a date" are negations, and a partial index cannot be declared for them: a
partialFilterExpression allows neither `$not` nor `$exists: false`). That is why it runs in its
own daily DAG, off the report's path, as one `$match` + `$count` (never `count_documents`,
which FerretDB cannot stream) plus, only when something was found, one `$match` + `$limit`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cdr_reports.pipeline.errors import classify_mongo_error, classify_sql_error
from cdr_reports.pipeline.migrations import ensure_schema
from cdr_reports.pipeline.schema import SOURCE_AUDIT_TABLE, column, report_tables
from cdr_reports.pipeline.validity import unplaceable_query

log = logging.getLogger(__name__)

SAMPLE_SIZE = 5
_MAX_ID_CHARS = 300  # one sample _id in Extended JSON, cut beyond this (ids can be long strings or documents)
_SAMPLE_COLUMN_CHARS = column(SOURCE_AUDIT_TABLE, "sample_ids").type.length


def audit_match(global_filter: Mapping[str, Any]) -> dict[str, Any]:
    """The audit's query: unplaceable AND the global filter (the filter is part of every query)."""
    return {"$and": [unplaceable_query(), dict(global_filter)]}


@dataclass(frozen=True)
class SourceAudit:
    unplaceable_records: int
    sample_ids: tuple[str, ...]  # each `_id` in MongoDB Extended JSON (relaxed)

    def samples_json(self) -> str:
        """The sample ids as one JSON array that fits the column (whole ids only)."""
        kept: list[Any] = []
        for text in self.sample_ids:
            candidate = [*kept, json.loads(text)]
            if len(json.dumps(candidate, ensure_ascii=False)) > _SAMPLE_COLUMN_CHARS:
                break
            kept = candidate
        return json.dumps(kept, ensure_ascii=False)


def _id_text(value: Any) -> str:
    from bson import json_util

    text = json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS)
    if len(text) > _MAX_ID_CHARS:
        text = json.dumps(text[: _MAX_ID_CHARS - 20] + "...")  # a JSON string saying it was cut
    return text


def audit_source(collection: Any, global_filter: Mapping[str, Any], sample_size: int = SAMPLE_SIZE) -> SourceAudit:
    """Count the collection's unplaceable CDRs (after the global filter) and sample their `_id`s."""
    match = {"$match": audit_match(global_filter)}
    try:
        counted = list(collection.aggregate([match, {"$count": "n"}]))
        count = int(counted[0]["n"]) if counted else 0
        samples: list[Any] = []
        if count and sample_size:
            samples = [
                doc["_id"] for doc in collection.aggregate([match, {"$limit": sample_size}, {"$project": {"_id": 1}}])
            ]
    except Exception as exc:
        raise classify_mongo_error(exc, "counting the CDRs no period can hold (source audit)") from exc
    audit = SourceAudit(count, tuple(_id_text(value) for value in samples))
    log.info("source audit: %d CDR(s) no period can hold; samples %s", count, audit.samples_json())
    return audit


@dataclass(frozen=True)
class AuditRecord:
    """What was stored, and how it compares with the audit before it."""

    dag_run_id: str
    audited_at: datetime
    unplaceable_records: int
    previous_records: int | None
    sample_ids: str

    @property
    def grew(self) -> bool:
        """More than the previous audit found (the first audit: more than none)."""
        return self.unplaceable_records > (self.previous_records or 0)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "audited_at": self.audited_at.isoformat(), "grew": self.grew}


def record_audit(
    engine: Any, audit: SourceAudit, dag_run_id: str, audited_at: datetime | None = None, schema: str | None = None
) -> AuditRecord:
    """Store the audit (replacing an earlier row of the same run: retries are idempotent)."""
    import sqlalchemy as sa

    table = report_tables(schema).audit
    when = (audited_at or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    samples = audit.samples_json()
    try:
        ensure_schema(engine, schema)
        with engine.begin() as conn:
            previous = conn.execute(
                sa.select(table.c.unplaceable_records)
                .where(table.c.dag_run_id != dag_run_id, table.c.audited_at <= when)
                .order_by(table.c.audited_at.desc())
                .limit(1)
            ).scalar()
            conn.execute(sa.delete(table).where(table.c.dag_run_id == dag_run_id))
            conn.execute(
                sa.insert(table),
                {
                    "dag_run_id": dag_run_id,
                    "audited_at": when,
                    "unplaceable_records": audit.unplaceable_records,
                    "previous_records": previous,
                    "sample_ids": samples,
                },
            )
    except Exception as exc:
        raise classify_sql_error(exc, "storing the source audit") from exc
    return AuditRecord(
        dag_run_id,
        when.replace(tzinfo=UTC),
        audit.unplaceable_records,
        None if previous is None else int(previous),
        samples,
    )


def read_audits(engine: Any, schema: str | None = None) -> list[dict[str, Any]]:
    """Every stored audit, oldest first."""
    import sqlalchemy as sa

    table = report_tables(schema).audit
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.select(table).order_by(table.c.audited_at)).mappings()]
