"""Extract per-operator counts of one time slice from MongoDB.

All grouping runs inside MongoDB (`$match` + `$group`): what crosses the wire is one small
document per operator, whatever the number of calls. Every query goes through
`ScopedCollection`, the one place that builds filters, so the global filter (the original
system's `ApplyGlobalFilter()`) is part of every query by construction.

The pipelines use one accumulator per `$group`, and only `$match`/`$group`/`$type`/`$not`/
`$nor`/range operators: FerretDB v1.24 computes only the first accumulator of a `$group`
correctly, and MongoDB >= 6 supports all of these.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cdr_reports.pipeline.errors import classify_mongo_error

log = logging.getLogger(__name__)

START_FIELD = "DateTime.Start"
START_INDEX_NAME = "ix_cdr_datetime_start"
MAX_OPERATOR_ID_LENGTH = 255  # the width of cdr_operator_report.operator_id

_NUMBER_TYPES = ["int", "long", "double"]
_OPERATOR_ID_TYPES = ["int", "long", "string"]
_NOT_ARRAY = {"$not": {"$type": "array"}}


def validity_query(max_call_duration_seconds: float) -> dict[str, Any]:
    """Query matching *valid* CDRs: an operator id and a sane, finite, non-negative duration.

    Arrays are excluded explicitly because MongoDB matches `$type`/ranges against array
    elements, and `$group` would then key (or `$sum` ignore) the whole array.
    NaN fails `$gte`, infinities fail `$lte`, so both are rejected.
    """
    return {
        "Operator": dict(_NOT_ARRAY),
        "Operator.Id": {"$type": list(_OPERATOR_ID_TYPES), **_NOT_ARRAY},
        "Duration": {
            "$type": list(_NUMBER_TYPES),
            "$gte": 0,
            "$lte": max_call_duration_seconds,
            **_NOT_ARRAY,
        },
        "DateTime": dict(_NOT_ARRAY),
        START_FIELD: dict(_NOT_ARRAY),
    }


ANSWERED_QUERY: dict[str, Any] = {"DateTime.Connect": {"$type": "date", **_NOT_ARRAY}}


def window_query(start: datetime, end: datetime) -> dict[str, Any]:
    """Calls with start <= DateTime.Start < end (aware UTC instants)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("window bounds must be timezone-aware")
    if not start < end:
        raise ValueError(f"empty window: {start.isoformat()} .. {end.isoformat()}")
    return {START_FIELD: {"$gte": start.astimezone(timezone.utc), "$lt": end.astimezone(timezone.utc)}}


class ScopedCollection:
    """A collection seen through the global filter and one time window.

    The only way this package reads CDRs: every count and pipeline is built by `match()`,
    which always ANDs the window and the global filter with the query at hand.
    """

    def __init__(self, collection: Any, global_filter: Mapping[str, Any], start: datetime, end: datetime):
        self._collection = collection
        self._scope = [window_query(start, end), dict(global_filter)]

    def match(self, *extra: Mapping[str, Any]) -> dict[str, Any]:
        return {"$and": [*self._scope, *(dict(q) for q in extra)]}

    def count(self, *extra: Mapping[str, Any]) -> int:
        return int(self._collection.count_documents(self.match(*extra)))

    def group_sum(self, value: Any, *extra: Mapping[str, Any]) -> list[tuple[Any, Any]]:
        """[(Operator.Id, sum of `value`)] over matching CDRs, grouped by MongoDB."""
        pipeline = [
            {"$match": self.match(*extra)},
            {"$group": {"_id": "$Operator.Id", "value": {"$sum": value}}},
        ]
        return [(doc["_id"], doc["value"]) for doc in self._collection.aggregate(pipeline)]


@dataclass
class SliceCounts:
    """Per-operator partial counts of one time slice; a plain dict round-trips through XCom."""

    start: datetime
    end: datetime
    source_records: int
    rejected_records: int
    total_calls: dict[str, int] = field(default_factory=dict)
    answered_calls: dict[str, int] = field(default_factory=dict)
    duration_seconds: dict[str, float | int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "source_records": self.source_records,
            "rejected_records": self.rejected_records,
            "total_calls": dict(self.total_calls),
            "answered_calls": dict(self.answered_calls),
            "duration_seconds": dict(self.duration_seconds),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SliceCounts:
        return cls(
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            source_records=int(data["source_records"]),
            rejected_records=int(data["rejected_records"]),
            total_calls={str(k): int(v) for k, v in data["total_calls"].items()},
            answered_calls={str(k): int(v) for k, v in data["answered_calls"].items()},
            duration_seconds=dict(data["duration_seconds"]),
        )


def operator_key(raw: Any) -> str | None:
    """The report's operator id for a `$group` key, or None when the key is not a valid id.

    Ints and strings that print alike (5 and "5") are one operator: the report stores the
    string form. Empty and over-long strings cannot be stored, so they are rejected.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, str) and 0 < len(raw) <= MAX_OPERATOR_ID_LENGTH:
        return raw
    return None


def _add(target: dict[str, Any], key: str, value: Any) -> None:
    target[key] = target.get(key, 0) + value


def extract_slice(
    collection: Any,
    start: datetime,
    end: datetime,
    global_filter: Mapping[str, Any],
    max_call_duration_seconds: float,
) -> SliceCounts:
    """Count one [start, end) slice: source, valid, rejected and answered calls per operator."""
    scoped = ScopedCollection(collection, global_filter, start, end)
    valid = validity_query(max_call_duration_seconds)
    began = time.monotonic()
    log.info("extract %s..%s: start", start.isoformat(), end.isoformat())
    try:
        source = scoped.count()
        rejected = scoped.count({"$nor": [valid]})
        totals = scoped.group_sum(1, valid)
        durations = scoped.group_sum("$Duration", valid)
        answered = scoped.group_sum(1, valid, ANSWERED_QUERY)
    except Exception as exc:  # noqa: BLE001 - re-raised, classified
        raise classify_mongo_error(exc, f"extracting CDRs {start.isoformat()}..{end.isoformat()}") from exc

    counts = SliceCounts(start=start, end=end, source_records=source, rejected_records=rejected)
    for raw_id, calls in totals:
        key = operator_key(raw_id)
        if key is None:
            counts.rejected_records += int(calls)  # valid document, unusable operator id
        else:
            _add(counts.total_calls, key, int(calls))
    for raw_id, seconds in durations:
        key = operator_key(raw_id)
        if key is not None:
            if isinstance(seconds, float) and not math.isfinite(seconds):
                raise ValueError(f"operator {key}: summed duration is not finite ({seconds})")
            _add(counts.duration_seconds, key, seconds)
    for raw_id, calls in answered:
        key = operator_key(raw_id)
        if key is not None:
            _add(counts.answered_calls, key, int(calls))

    log.info(
        "extract %s..%s: done in %.3f s: source=%d valid=%d rejected=%d operators=%d",
        start.isoformat(),
        end.isoformat(),
        time.monotonic() - began,
        counts.source_records,
        sum(counts.total_calls.values()),
        counts.rejected_records,
        len(counts.total_calls),
    )
    return counts


def ensure_indexes(collection: Any) -> str:
    """Create (idempotently) the index every report query is served by; returns its name."""
    try:
        for name, spec in collection.index_information().items():
            if list(spec.get("key", []))[:1] == [(START_FIELD, 1)]:
                return name  # an index led by DateTime.Start serves the range queries already
        return collection.create_index([(START_FIELD, 1)], name=START_INDEX_NAME)
    except Exception as exc:  # noqa: BLE001 - re-raised, classified
        raise classify_mongo_error(exc, f"creating index {START_INDEX_NAME}") from exc
