"""What makes a CDR countable, stated once.

A CDR of a period is *valid* when every rule of `field_rules()` holds and its operator id passes
`operator_key`; otherwise it is *rejected* and counted. *Answered* = valid and `ANSWERED_RULE`
holds. *Placed in a window* = `window_query` matches (a single BSON date in [start, end)).

From this one statement the module generates both forms the extract strategies need:
- a MongoDB query (`validity_query`, `ANSWERED_RULE.query()`), which the `pushdown` strategy
  evaluates inside the server;
- a Python predicate (`DocumentRules.is_valid` / `is_answered`), which the `stream` strategy
  evaluates on projected documents as they arrive (`projection()` names the fields it reads).
tests/unit/test_validity.py checks the two forms agree on hand-made and random documents, and
the property tests run both strategies against tests/support/reference.py, an independent
implementation.

Rules on the operator id that a query cannot express (string length in UTF-16 code units,
characters a sink cannot store) are applied to `$group` keys and streamed values alike by
`operator_key`, so both strategies share that code too.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The version of the rules below. Stored reports carry it (in their rules fingerprint, rollup.py):
# change it whenever a change here alters what is counted, so that no daily report computed under
# the old rules is rolled up into a report computed under the new ones.
RULES_VERSION = "2026.12-ms"

START_FIELD = "DateTime.Start"
# The longest storable operator id, in UTF-16 code units: the width of NVARCHAR(255) on SQL Server.
# schema.py sizes cdr_operator_report.operator_id from it. (This module stays free of SQLAlchemy:
# the extract imports it, and a stream worker's memory should be pymongo's and the counts only.)
MAX_OPERATOR_ID_LENGTH = 255
CONNECT_FIELD = "DateTime.Connect"

# BSON type names of the MongoDB query language, and the Python types pymongo decodes them to.
_INT32_RANGE = (-(2**31), 2**31 - 1)


def _bson_type_matches(value: Any, type_name: str) -> bool:
    if type_name == "int":
        # pymongo decodes int32 as int and int64 as bson.int64.Int64 (an int subclass).
        return type(value) is int and _INT32_RANGE[0] <= value <= _INT32_RANGE[1]
    if type_name == "long":
        # bson.int64.Int64 without importing bson here: an int subclass that is not bool.
        if type(value) is int:
            return not _INT32_RANGE[0] <= value <= _INT32_RANGE[1]
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "double":
        return type(value) is float
    if type_name == "string":
        return type(value) is str
    if type_name == "date":
        return isinstance(value, datetime)
    raise ValueError(f"no Python mapping for BSON type {type_name!r}")


_MISSING = object()


@dataclass(frozen=True)
class FieldRule:
    """One condition on one (dotted) field, expressible both as a query and in Python.

    `types`: the value must be one of these BSON types (a missing field fails);
    `not_array`: the value must not be an array (a missing field passes, as in MongoDB);
    `minimum`/`maximum`: inclusive numeric bounds (NaN fails both, as it does in MongoDB).
    """

    path: str
    types: tuple[str, ...] = ()
    not_array: bool = True
    minimum: float | None = None
    maximum: float | None = None

    def query(self) -> dict[str, Any]:
        condition: dict[str, Any] = {}
        if self.types:
            condition["$type"] = list(self.types)
        if self.minimum is not None:
            condition["$gte"] = self.minimum
        if self.maximum is not None:
            condition["$lte"] = self.maximum
        if self.not_array:
            condition["$not"] = {"$type": "array"}
        return {self.path: condition}

    def holds(self, document: Mapping[str, Any]) -> bool:
        """The rule on a (projected) document decoded by pymongo.

        Paths are resolved through embedded documents only: every proper prefix of a dotted path
        carries its own not-array rule (checked by `DocumentRules`), so a document where MongoDB
        would traverse an array fails the rule set in both forms.
        """
        value: Any = document
        for part in self.path.split("."):
            if isinstance(value, Mapping):
                value = value.get(part, _MISSING)
            else:
                value = _MISSING
                break
        if value is _MISSING:
            return not self.types
        if self.not_array and isinstance(value, list):
            return False
        if self.types and not any(_bson_type_matches(value, name) for name in self.types):
            return False
        if self.minimum is not None and not value >= self.minimum:
            return False
        return self.maximum is None or value <= self.maximum


def field_rules(max_call_duration_seconds: float) -> tuple[FieldRule, ...]:
    """The validity rules: an operator id of a usable type, a sane, finite, non-negative duration."""
    return (
        FieldRule("Operator"),
        FieldRule("Operator.Id", types=("int", "long", "string")),
        FieldRule("Duration", types=("int", "long", "double"), minimum=0, maximum=max_call_duration_seconds),
        FieldRule("DateTime"),
    )


ANSWERED_RULE = FieldRule(CONNECT_FIELD, types=("date",))


@dataclass(frozen=True)
class DocumentRules:
    """The rule set for one maximum duration, in both forms."""

    rules: tuple[FieldRule, ...]
    answered: FieldRule = ANSWERED_RULE

    def __post_init__(self) -> None:
        guarded = {rule.path for rule in (*self.rules, self.answered) if rule.not_array}
        for rule in (*self.rules, self.answered):
            parts = rule.path.split(".")
            for depth in range(1, len(parts)):
                prefix = ".".join(parts[:depth])
                if prefix not in guarded:
                    raise ValueError(f"rule on {rule.path!r} needs a not-array rule on {prefix!r}")

    @classmethod
    def for_settings(cls, max_call_duration_seconds: float) -> DocumentRules:
        return cls(field_rules(max_call_duration_seconds))

    def validity_query(self) -> dict[str, Any]:
        query: dict[str, Any] = {}
        for rule in self.rules:
            query.update(rule.query())
        return query

    def answered_query(self) -> dict[str, Any]:
        return self.answered.query()

    def projection(self) -> dict[str, int]:
        """The leaf fields the Python form reads (what the `stream` strategy asks the server for)."""
        leaves = {rule.path for rule in (*self.rules, self.answered)}
        # A prefix rule ("Operator") is covered by projecting its leaf ("Operator.Id"): an array
        # or scalar in the prefix still shows as such in the projected document.
        paths = sorted(p for p in leaves if not any(other.startswith(p + ".") for other in leaves))
        return {"_id": 0, **dict.fromkeys(paths, 1)}

    def is_valid(self, document: Mapping[str, Any]) -> bool:
        return all(rule.holds(document) for rule in self.rules)

    def is_answered(self, document: Mapping[str, Any]) -> bool:
        return self.answered.holds(document)


def validity_query(max_call_duration_seconds: float) -> dict[str, Any]:
    """Query matching *valid* CDRs (before the operator-id rules of `operator_key`)."""
    return DocumentRules.for_settings(max_call_duration_seconds).validity_query()


def window_query(start: datetime, end: datetime) -> dict[str, Any]:
    """CDRs placed in [start, end): `DateTime.Start` is one BSON date with start <= it < end.

    A range matches an array when one element satisfies `$gte` and another `$lt`, and a dotted
    path traverses arrays of sub-documents: without the not-array conditions a document whose
    `DateTime` or `DateTime.Start` is an array would be counted in several periods. Such
    documents are in no window; the source audit counts them. MongoDB serves the range from the
    `DateTime.Start` index; the not-array conditions are filters on the fetched documents.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("window bounds must be timezone-aware")
    if not start < end:
        raise ValueError(f"empty window: {start.isoformat()} .. {end.isoformat()}")
    return {
        "DateTime": {"$not": {"$type": "array"}},
        START_FIELD: {
            "$gte": start.astimezone(UTC),
            "$lt": end.astimezone(UTC),
            "$not": {"$type": "array"},
        },
    }


def unplaceable_query() -> dict[str, Any]:
    """CDRs no window can ever hold: `DateTime.Start` missing, not a date, or an array (audit)."""
    return {
        "$or": [
            {"DateTime": {"$type": "array"}},
            {START_FIELD: {"$not": {"$type": "date"}}},
            {START_FIELD: {"$type": "array"}},
        ]
    }


def _storable_character(char: str) -> bool:
    """Characters every sink stores unchanged: no control characters (PostgreSQL refuses NUL;
    SQL Server and drivers alter or truncate at control characters) and no unpaired surrogates."""
    return unicodedata.category(char) not in ("Cc", "Cs")


def operator_key(raw: Any) -> str | None:
    """The report's operator id for a raw `Operator.Id`, or None when it cannot be one.

    Ints and strings that print alike (5 and "5") are one operator: the report stores the string
    form. A string id is valid when it has 1 to 255 UTF-16 code units (what NVARCHAR(255) holds),
    no control character, and no leading or trailing space (SQL Server ignores trailing spaces
    when comparing keys, so "A" and "A " would collide in the primary key).
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return str(raw)
    if not isinstance(raw, str) or not raw:
        return None
    if len(raw.encode("utf-16-le")) // 2 > MAX_OPERATOR_ID_LENGTH:
        return None
    if raw != raw.strip(" ") or not all(_storable_character(c) for c in raw):
        return None
    return raw


# --------------------------------------------------------------------------- exact durations
# Switches record durations to the millisecond at the finest. Sums are kept in whole milliseconds
# (integers), so a total never depends on how a period was split into slices or days: summing
# floats in another order can move a total that lands on a half second. Each valid CDR's duration
# counts as floor(Duration * 1000 + 0.5) ms, computed in IEEE doubles: the same operations give
# the same integer in Python (`duration_ms`) and in the server (`DURATION_MS_EXPRESSION`), and
# for a duration given to the millisecond it is that duration exactly. Valid durations are at
# most CDR_MAX_CALL_DURATION_SECONDS, so every value and every sum stays an exact integer in a
# double (< 2**53 ms, about 285,000 years of calls per operator).
MS_PER_SECOND = 1000

DURATION_MS_EXPRESSION: dict[str, Any] = {"$floor": {"$add": [{"$multiply": ["$Duration", float(MS_PER_SECOND)]}, 0.5]}}


def duration_ms(seconds: float | int) -> int:
    """The whole milliseconds a valid CDR's `Duration` counts for (see DURATION_MS_EXPRESSION)."""
    if isinstance(seconds, int):
        return seconds * MS_PER_SECOND
    return math.floor(float(seconds) * float(MS_PER_SECOND) + 0.5)


def rounded_seconds(total_ms: int) -> int:
    """A millisecond total in whole seconds, halves up (durations are never negative)."""
    return (total_ms + MS_PER_SECOND // 2) // MS_PER_SECOND


def average_seconds(total_ms: int, calls: int) -> float | None:
    """Seconds per call, unrounded; None for no calls."""
    return total_ms / MS_PER_SECOND / calls if calls else None
