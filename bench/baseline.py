"""The original approach, as the benchmark's baseline: load every record, group in the client.

This mirrors what the .NET Hangfire job did (``collection.Find(filter).ToList()`` followed by
``GroupBy(r => r.Operator.Id)``): fetch the full documents of the period, with the global
filter, hold them all in memory, then count per operator in a dictionary. It applies the same
validity rules as the product so both approaches can be checked to agree on the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

DEFAULT_GLOBAL_FILTER: dict[str, Any] = {"IsDeleted": {"$ne": True}}
DEFAULT_MAX_CALL_DURATION_SECONDS = 31 * 24 * 3600


def _operator_key(operator: Any) -> str | None:
    if not isinstance(operator, Mapping):
        return None
    raw = operator.get("Id")
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, str) and 0 < len(raw) <= 255:
        return raw
    return None


def _duration(value: Any, limit: float) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if 0 <= value <= limit else None


def original_approach(
    collection: Any,
    start: datetime,
    end: datetime,
    global_filter: Mapping[str, Any] = DEFAULT_GLOBAL_FILTER,
    max_call_duration_seconds: float = DEFAULT_MAX_CALL_DURATION_SECONDS,
) -> dict[str, Any]:
    """Per-operator totals of [start, end), computed in Python from every full document."""
    query = {"$and": [{"DateTime.Start": {"$gte": start, "$lt": end}}, dict(global_filter)]}
    records = list(collection.find(query))  # ToList(): the whole period in memory, like the .NET job

    groups: dict[str, list[Any]] = {}  # operator -> [calls, answered, seconds]
    rejected = 0
    for record in records:
        key = _operator_key(record.get("Operator"))
        seconds = _duration(record.get("Duration"), max_call_duration_seconds)
        times = record.get("DateTime")
        if key is None or seconds is None or not isinstance(times, Mapping):
            rejected += 1
            continue
        group = groups.setdefault(key, [0, 0, 0])
        group[0] += 1
        if isinstance(times.get("Connect"), datetime):
            group[1] += 1
        group[2] += seconds

    rows = {
        key: {
            "total_calls": calls,
            "answered_calls": answered,
            "total_duration_seconds": int(math.floor(seconds + 0.5)),
            "answer_ratio": answered / calls,
            "avg_answered_duration_seconds": seconds / answered if answered else None,
        }
        for key, (calls, answered, seconds) in sorted(groups.items())
    }
    return {
        "source_records": len(records),
        "valid_records": sum(row["total_calls"] for row in rows.values()),
        "rejected_records": rejected,
        "rows": rows,
    }
