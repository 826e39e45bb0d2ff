"""Extract the per-operator counts of one time slice from MongoDB, at the lowest server cost.

Two strategies give the same `SliceCounts` from the same rules (validity.py):

- `pushdown` (MongoDB): ONE aggregation round trip per slice. `$match` on the `DateTime.Start`
  range (served by the index) and the global filter, then `$facet` computes inside the server the
  source count, the rejected count (`$nor` of the validity query, counted independently), and
  per operator the valid calls, summed durations and answered calls. What crosses the wire is one
  document holding O(operators) entries, whatever the number of CDRs.
- `stream` (servers that decode the whole collection for every query, such as FerretDB 1.x, which
  also lacks `$facet` and computes only the first accumulator of a `$group`): ONE projected `find`
  per slice (plus getMore batches) returning only the fields the rules read (~90 bytes/CDR); the
  rules are evaluated and the counts accumulated as the batches arrive, so client memory does not
  grow with the number of CDRs. One query means one full decode on such a server, the least it can do.

`auto` (the default, `CDR_EXTRACT_STRATEGY`) asks the server once (`buildInfo`: FerretDB reports
`ferretdbVersion`) and picks `stream` for FerretDB, `pushdown` otherwise; the choice is logged and
stored in `cdr_report_run.extract_strategy`.

Every query is built by `ScopedCollection`, the one place that builds filters, so the window and
the global filter (the original system's `ApplyGlobalFilter()`) are part of every query.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cdr_reports.pipeline.columns import pack_columns, unpack_columns
from cdr_reports.pipeline.errors import PermanentError, classify_mongo_error
from cdr_reports.pipeline.validity import (
    DURATION_MS_EXPRESSION,
    START_FIELD,
    DocumentRules,
    duration_ms,
    operator_key,
    window_query,
)

log = logging.getLogger(__name__)

START_INDEX_NAME = "ix_cdr_datetime_start"
STRATEGIES = ("pushdown", "stream")
AUTO = "auto"
# Documents per getMore of the stream strategy: ~200 kB of projected CDRs on the wire, ~2 MB once
# decoded into dicts; measured: 10,000 per batch raised a worker's peak RSS by 9 MiB over 2,000.
STREAM_BATCH_SIZE = 2_000
# The per-operator mappings of SliceCounts, packed as columns in its XCom form.
_COUNT_COLUMNS = ("total_calls", "answered_calls", "duration_ms")


class ScopedCollection:
    """A collection seen through the global filter and one time window.

    The only way this package reads CDRs: every query is built by `match()`, which always ANDs
    the window and the global filter with the query at hand.
    """

    def __init__(self, collection: Any, global_filter: Mapping[str, Any], start: datetime, end: datetime):
        self._collection = collection
        self._scope = [window_query(start, end), dict(global_filter)]

    def match(self, *extra: Mapping[str, Any]) -> dict[str, Any]:
        return {"$and": [*self._scope, *(dict(q) for q in extra)]}

    def count(self, *extra: Mapping[str, Any]) -> int:
        """A `$match` + `$count` stage: streams on every server (`count_documents` does not on FerretDB)."""
        result = list(self._collection.aggregate([{"$match": self.match(*extra)}, {"$count": "n"}]))
        return int(result[0]["n"]) if result else 0

    def aggregate(self, *stages: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list(self._collection.aggregate([{"$match": self.match()}, *(dict(s) for s in stages)]))

    def find(self, projection: Mapping[str, Any], batch_size: int) -> Iterable[Mapping[str, Any]]:
        cursor: Iterable[Mapping[str, Any]] = self._collection.find(
            self.match(), projection=dict(projection), batch_size=batch_size
        )  # a pymongo Cursor: iterates the matched documents
        return cursor


@dataclass
class SliceCounts:
    """Per-operator partial counts of one time slice; a plain dict round-trips through XCom.

    Durations are exact integer milliseconds (validity.duration_ms), so slices add up to the same
    totals however a period is cut. A slice may also come from stored daily reports instead of
    MongoDB (rollup.py): `rolled_up_days` then names those local days and `rollup_inputs` the
    version (run, time) of each daily report read.
    """

    start: datetime
    end: datetime
    source_records: int
    rejected_records: int
    total_calls: dict[str, int] = field(default_factory=dict)
    answered_calls: dict[str, int] = field(default_factory=dict)
    duration_ms: dict[str, int] = field(default_factory=dict)
    strategy: str | None = None
    rolled_up_days: tuple[str, ...] = ()  # ISO local days whose counts are stored daily reports
    rollup_inputs: dict[str, str] = field(default_factory=dict)  # ISO day -> "dag_run_id|generated_at"

    def to_dict(self) -> dict[str, Any]:
        """The XCom form: readable scalars, the per-operator counts packed (columns.py).

        One column per mapping, aligned on `operator` (every key of any of the three, so that an
        inconsistent slice reaches build_report's checks unchanged); None where a mapping lacks it.
        """
        totals = self.total_calls
        consistent = all(key in totals for key in self.answered_calls) and all(
            key in totals for key in self.duration_ms
        )
        operators = list(totals if consistent else dict.fromkeys([*totals, *self.answered_calls, *self.duration_ms]))
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "source_records": self.source_records,
            "rejected_records": self.rejected_records,
            "valid_records": self.valid_records,
            "operators": len(self.total_calls),
            "strategy": self.strategy,
            "rolled_up_days": list(self.rolled_up_days),
            "rollup_inputs": dict(self.rollup_inputs),
            "counts": pack_columns(
                {
                    "operator": operators,
                    **{name: map(getattr(self, name).get, operators) for name in _COUNT_COLUMNS},
                }
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SliceCounts:
        if "counts" in data:
            columns = unpack_columns(data["counts"], ("operator", *_COUNT_COLUMNS))
            mappings = {
                name: {str(k): int(v) for k, v in zip(columns["operator"], columns[name], strict=True) if v is not None}
                for name in _COUNT_COLUMNS
            }
        else:  # the dicts of dicts of releases before the packed form (an XCom of a run in flight)
            mappings = {name: {str(k): int(v) for k, v in data[name].items()} for name in _COUNT_COLUMNS}
        return cls(
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            source_records=int(data["source_records"]),
            rejected_records=int(data["rejected_records"]),
            total_calls=mappings["total_calls"],
            answered_calls=mappings["answered_calls"],
            duration_ms=mappings["duration_ms"],
            strategy=data.get("strategy"),
            rolled_up_days=tuple(data.get("rolled_up_days") or ()),
            rollup_inputs=dict(data.get("rollup_inputs") or {}),
        )

    @property
    def valid_records(self) -> int:
        return sum(self.total_calls.values())

    def add(self, other: SliceCounts) -> None:
        """Add the counts of `other`, a slice that starts where this one ends."""
        if other.start != self.end:
            raise ValueError(f"slice {other.start.isoformat()} does not follow {self.end.isoformat()}")
        self.end = other.end
        self.source_records += other.source_records
        self.rejected_records += other.rejected_records
        for mine, theirs in (
            (self.total_calls, other.total_calls),
            (self.answered_calls, other.answered_calls),
            (self.duration_ms, other.duration_ms),
        ):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        strategies = {s for part in (self.strategy, other.strategy) if part for s in part.split("+")}
        self.strategy = "+".join(sorted(strategies)) or None
        self.rolled_up_days = (*self.rolled_up_days, *other.rolled_up_days)
        self.rollup_inputs.update(other.rollup_inputs)


def server_is_ferretdb(collection: Any) -> bool:
    """FerretDB answers `buildInfo` with a `ferretdbVersion` key (its value may be 'unknown')."""
    info = collection.database.client.admin.command("buildInfo")
    return "ferretdbVersion" in info


def choose_strategy(collection: Any, requested: str = AUTO) -> str:
    """The strategy to use: `requested`, or for `auto` the one that suits the server."""
    if requested in STRATEGIES:
        return requested
    if requested != AUTO:
        raise PermanentError(f"CDR_EXTRACT_STRATEGY={requested!r} must be one of auto, {', '.join(STRATEGIES)}")
    try:
        chosen = "stream" if server_is_ferretdb(collection) else "pushdown"
    except Exception as exc:
        raise classify_mongo_error(exc, "asking the server which extract strategy suits it (buildInfo)") from exc
    log.info("extract strategy auto -> %s (%s)", chosen, "FerretDB" if chosen == "stream" else "MongoDB")
    return chosen


def pushdown_stages(rules: DocumentRules) -> list[dict[str, Any]]:
    """The stages after the scoped `$match`: one `$facet`, one output document."""
    valid = rules.validity_query()
    return [
        {
            "$facet": {
                "source": [{"$count": "n"}],
                # Counted by its own query, not derived: source = valid + rejected is then a check.
                "rejected": [{"$match": {"$nor": [valid]}}, {"$count": "n"}],
                "valid": [
                    {"$match": valid},
                    {"$group": {"_id": "$Operator.Id", "calls": {"$sum": 1}, "ms": {"$sum": DURATION_MS_EXPRESSION}}},
                ],
                "answered": [
                    {"$match": {"$and": [valid, rules.answered_query()]}},
                    {"$group": {"_id": "$Operator.Id", "calls": {"$sum": 1}}},
                ],
            }
        }
    ]


def _count_of(branch: list[Mapping[str, Any]]) -> int:
    return int(branch[0]["n"]) if branch else 0


def _extract_pushdown(scoped: ScopedCollection, rules: DocumentRules, counts: SliceCounts) -> None:
    output = scoped.aggregate(*pushdown_stages(rules))
    # MongoDB returns one document (empty branches) even for no input; a server that skips the
    # aggregation of a collection that does not exist returns none (seen on mongo-java-server).
    result = output[0] if output else {"source": [], "rejected": [], "valid": [], "answered": []}
    counts.source_records = _count_of(result["source"])
    counts.rejected_records = _count_of(result["rejected"])
    for group in result["valid"]:
        key = operator_key(group["_id"])
        if key is None:
            counts.rejected_records += int(group["calls"])  # valid document, unusable operator id
            continue
        counts.total_calls[key] = counts.total_calls.get(key, 0) + int(group["calls"])
        # The server sums whole milliseconds held in doubles: exact integers below 2**53.
        counts.duration_ms[key] = counts.duration_ms.get(key, 0) + int(group["ms"])
    for group in result["answered"]:
        key = operator_key(group["_id"])
        if key is not None:
            counts.answered_calls[key] = counts.answered_calls.get(key, 0) + int(group["calls"])


def _extract_stream(scoped: ScopedCollection, rules: DocumentRules, counts: SliceCounts) -> None:
    keys: dict[Any, str | None] = {}  # raw Operator.Id -> report id (operator_key once per distinct id)
    totals, answered, millis = counts.total_calls, counts.answered_calls, counts.duration_ms
    source = rejected = 0
    is_valid, is_answered = rules.is_valid, rules.is_answered
    for document in scoped.find(rules.projection(), batch_size=STREAM_BATCH_SIZE):
        source += 1
        if not is_valid(document):
            rejected += 1
            continue
        raw = document["Operator"]["Id"]
        try:
            key = keys[raw]
        except KeyError:
            key = keys[raw] = operator_key(raw)
        if key is None:
            rejected += 1
            continue
        totals[key] = totals.get(key, 0) + 1
        millis[key] = millis.get(key, 0) + duration_ms(document["Duration"])
        if is_answered(document):
            answered[key] = answered.get(key, 0) + 1
    counts.source_records, counts.rejected_records = source, rejected


def extract_slice(
    collection: Any,
    start: datetime,
    end: datetime,
    global_filter: Mapping[str, Any],
    max_call_duration_seconds: float,
    strategy: str = AUTO,
) -> SliceCounts:
    """Count one [start, end) slice: source, valid, rejected and answered calls per operator."""
    what = f"extracting CDRs {start.isoformat()}..{end.isoformat()}"
    chosen = choose_strategy(collection, strategy)
    scoped = ScopedCollection(collection, global_filter, start, end)
    rules = DocumentRules.for_settings(max_call_duration_seconds)
    counts = SliceCounts(start=start, end=end, source_records=0, rejected_records=0, strategy=chosen)
    began = time.monotonic()
    log.info("extract %s..%s: start (strategy %s)", start.isoformat(), end.isoformat(), chosen)
    try:
        if chosen == "pushdown":
            _extract_pushdown(scoped, rules, counts)
        else:
            _extract_stream(scoped, rules, counts)
    except ValueError:
        raise
    except Exception as exc:
        error = classify_mongo_error(exc, f"{what} (strategy {chosen})")
        if chosen == "pushdown" and isinstance(error, PermanentError):
            raise PermanentError(
                f"{error} -- this server cannot run the pushdown pipeline; set CDR_EXTRACT_STRATEGY=stream or auto"
            ) from exc
        raise error from exc
    log.info(
        "extract %s..%s: done in %.3f s (%s): source=%d valid=%d rejected=%d operators=%d",
        start.isoformat(),
        end.isoformat(),
        time.monotonic() - began,
        chosen,
        counts.source_records,
        counts.valid_records,
        counts.rejected_records,
        len(counts.total_calls),
    )
    return counts


def ensure_indexes(collection: Any) -> str:
    """Create (idempotently) the index every report query is served by; returns its name."""
    try:
        for name, spec in collection.index_information().items():
            if list(spec.get("key", []))[:1] == [(START_FIELD, 1)]:
                return str(name)  # an index led by DateTime.Start serves the range queries already
        return str(collection.create_index([(START_FIELD, 1)], name=START_INDEX_NAME))
    except Exception as exc:
        raise classify_mongo_error(exc, f"creating index {START_INDEX_NAME}") from exc
