"""The original approach, the benchmark's baseline: fetch every record of the period, group in the client.

This mirrors what the .NET Hangfire job did (``collection.Find(filter).ToList()`` followed by
``GroupBy(r => r.Operator.Id)``): one `find` of the full documents of the period with the global
filter, all held in memory, then counted per operator in a dictionary.

To compare data access and nothing else, each document is judged by the product's own rules
(`cdr_reports.pipeline.validity`: the same Python predicates the `stream` strategy runs), so the
two approaches do the same per-document work in Python and must produce the same report. The
independent check of those rules is tests/support/reference.py (tests/unit/test_bench_quick.py
runs this baseline against it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

DEFAULT_GLOBAL_FILTER: dict[str, Any] = {"IsDeleted": {"$ne": True}}
DEFAULT_MAX_CALL_DURATION_SECONDS = 31 * 24 * 3600


def original_approach(
    collection: Any,
    start: datetime,
    end: datetime,
    global_filter: Mapping[str, Any] = DEFAULT_GLOBAL_FILTER,
    max_call_duration_seconds: float = DEFAULT_MAX_CALL_DURATION_SECONDS,
    batch_size: int = 0,
) -> dict[str, Any]:
    """Per-operator totals of [start, end), computed in Python from every full document.

    `batch_size` 0 leaves batching to the driver and the server, as the original did; a server
    that answers a default getMore with every remaining document (mongo-java-server) needs a cap,
    or its reply outgrows the 48 MB message limit.
    """
    from cdr_reports.pipeline.validity import DocumentRules, operator_key, window_query

    rules = DocumentRules.for_settings(max_call_duration_seconds)
    # The window as the product states it (a single BSON date in [start, end)) so both count the
    # same documents; the original's plain range differs only for array-valued DateTime.Start.
    query = {"$and": [window_query(start, end), dict(global_filter)]}
    records = list(
        collection.find(query, batch_size=batch_size)
    )  # ToList(): the whole period in memory, like the .NET job

    groups: dict[str, list[Any]] = {}  # operator -> [calls, answered, seconds]
    rejected = 0
    for record in records:
        key = operator_key(record["Operator"]["Id"]) if rules.is_valid(record) else None
        if key is None:
            rejected += 1
            continue
        group = groups.setdefault(key, [0, 0, 0])
        group[0] += 1
        if rules.is_answered(record):
            group[1] += 1
        group[2] += record["Duration"]

    rows = {
        key: {
            "total_calls": calls,
            "answered_calls": answered,
            "total_duration_seconds": math.floor(seconds + 0.5),
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
