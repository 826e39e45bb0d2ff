"""An independent, pure-Python statement of the report contract, to check the real pipeline.

It classifies raw CDR documents one by one (no MongoDB semantics borrowed from the code under
test) and computes what the report must contain.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bson.int64 import Int64

MAX_DURATION = 31 * 24 * 3600


def not_deleted(doc: dict) -> bool:
    return doc.get("IsDeleted") is not True


def _operator_id(doc: dict) -> str | None:
    operator = doc.get("Operator")
    if not isinstance(operator, dict) or "Id" not in operator:
        return None
    raw = operator["Id"]
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, str) and _storable_id(raw):
        return raw
    return None


def _storable_id(text: str) -> bool:
    """What NVARCHAR(255), PostgreSQL text and SQLite all store unchanged and compare exactly."""
    utf16_units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
    if not 1 <= utf16_units <= 255:
        return False
    if text[0] == " " or text[-1] == " ":
        return False  # SQL Server ignores trailing spaces in key comparisons
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in text)


def _duration(doc: dict, max_duration: float) -> float | int | None:
    value = doc.get("Duration")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value < 0 or value > max_duration:
        return None
    return value


def expected_report(
    docs: Iterable[dict],
    start: datetime,
    end: datetime,
    keep: Callable[[dict], bool] = not_deleted,
    max_duration: float = MAX_DURATION,
) -> dict[str, Any]:
    source = rejected = 0
    ops: dict[str, dict[str, Any]] = {}
    for doc in docs:
        when = (doc.get("DateTime") or {}).get("Start") if isinstance(doc.get("DateTime"), dict) else None
        if not isinstance(when, datetime):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if not (start <= when < end) or not keep(doc):
            continue
        source += 1
        key, duration = _operator_id(doc), _duration(doc, max_duration)
        if key is None or duration is None:
            rejected += 1
            continue
        entry = ops.setdefault(key, {"total": 0, "answered": 0, "ms": 0})
        entry["total"] += 1
        # Durations count in whole milliseconds, halves up (the report contract).
        entry["ms"] += int(duration) * 1000 if isinstance(duration, int) else math.floor(duration * 1000.0 + 0.5)
        if isinstance(doc["DateTime"].get("Connect"), datetime):
            entry["answered"] += 1
    rows = {}
    for key, entry in ops.items():
        rows[key] = {
            "total_calls": entry["total"],
            "answered_calls": entry["answered"],
            "total_duration_seconds": (entry["ms"] + 500) // 1000,
            "answer_ratio": entry["answered"] / entry["total"],
            "avg_answered_duration_seconds": entry["ms"] / 1000 / entry["answered"] if entry["answered"] else None,
        }
    return {"source": source, "valid": source - rejected, "rejected": rejected, "rows": rows}


def edge_case_documents(start: datetime, end: datetime) -> list[dict]:
    """Hand-picked documents around one window [start, end): every rule of the contract."""
    mid = start + (end - start) / 2
    connect = mid + timedelta(seconds=5)
    ms = timedelta(milliseconds=1)
    docs = [
        {"Operator": {"Id": 1}, "DateTime": {"Start": start, "Connect": start}, "Duration": 10},  # at start: in
        {"Operator": {"Id": 1}, "DateTime": {"Start": end}, "Duration": 10},  # at end: out
        {"Operator": {"Id": 1}, "DateTime": {"Start": end - ms, "Connect": end}, "Duration": 7},  # last ms: in
        {"Operator": {"Id": 1}, "DateTime": {"Start": start - ms}, "Duration": 3},  # before: out
        {"Operator": {"Id": 2}, "DateTime": {"Start": mid, "Connect": None}, "Duration": 0},  # Connect null
        {"Operator": {"Id": 2}, "DateTime": {"Start": mid}, "Duration": 4},  # Connect missing
        {"Operator": {"Id": 2}, "DateTime": {"Start": mid, "Connect": connect}, "Duration": 2**40},  # long, too long
        {"Operator": {"Id": Int64(2)}, "DateTime": {"Start": mid, "Connect": connect}, "Duration": Int64(300)},  # longs
        {"Operator": {"Id": 2}, "DateTime": {"Start": mid, "Connect": connect}, "Duration": 12.5},  # double
        {"Operator": {"Id": 2}, "DateTime": {"Start": mid, "Connect": connect}, "Duration": "12"},  # string: rejected
        {"Operator": {"Id": 2}, "DateTime": {"Start": mid, "Connect": connect}, "Duration": -1},  # negative
        {"Operator": {"Id": 2}, "DateTime": {"Start": mid, "Connect": connect}},  # missing duration
        {"Operator": {"Id": 2}, "DateTime": {"Start": mid, "Connect": connect}, "Duration": 9, "IsDeleted": True},
        {"Operator": {"Id": 2}, "DateTime": {"Start": mid, "Connect": connect}, "Duration": 9, "IsDeleted": False},
        {"Operator": {"Id": "2"}, "DateTime": {"Start": mid, "Connect": connect}, "Duration": 1},  # "2" is 2
        {"Operator": {"Id": 0}, "DateTime": {"Start": mid, "Connect": connect}, "Duration": 5},  # 0 is valid
        {"Operator": {"Id": None}, "DateTime": {"Start": mid}, "Duration": 5},  # null id
        {"Operator": {"Name": "no id"}, "DateTime": {"Start": mid}, "Duration": 5},  # missing id
        {"DateTime": {"Start": mid}, "Duration": 5},  # no operator
        {"Operator": {"Id": "Türk Telekom ☎"}, "DateTime": {"Start": mid, "Connect": connect}, "Duration": 61},
        {"Operator": {"Id": "x" * 256}, "DateTime": {"Start": mid}, "Duration": 1},  # too long to store
        {"Operator": {"Id": ""}, "DateTime": {"Start": mid}, "Duration": 1},  # empty id
        {"Operator": {"Id": True}, "DateTime": {"Start": mid}, "Duration": 1},  # bool id
        {"Operator": {"Id": 3.0}, "DateTime": {"Start": mid}, "Duration": 1},  # double id
        {"Operator": {"Id": [4]}, "DateTime": {"Start": mid}, "Duration": 1},  # array id
        {"Operator": [{"Id": 4}], "DateTime": {"Start": mid}, "Duration": 1},  # array operator
        {"Operator": {"Id": 4}, "DateTime": {"Start": mid}, "Duration": [1]},  # array duration
        {"Operator": {"Id": 4}, "DateTime": {"Start": mid}, "Duration": {"s": 1}},  # object duration
        {"Operator": {"Id": 4}, "DateTime": {"Start": mid.isoformat()}, "Duration": 1},  # string date: out
        {"Operator": {"Id": 4}, "DateTime": {"Start": mid, "Connect": "yes"}, "Duration": 1},  # not answered
        {"Operator": {"Id": 4}, "DateTime": {"Start": mid, "Connect": [connect]}, "Duration": 1},  # array: not answered
        # Ids every sink must store unchanged (NUL: PostgreSQL refuses it; control characters; SQL Server pads).
        {"Operator": {"Id": "a\x00b"}, "DateTime": {"Start": mid}, "Duration": 1},  # NUL: rejected
        {"Operator": {"Id": "tab\tid"}, "DateTime": {"Start": mid}, "Duration": 1},  # control character
        {"Operator": {"Id": "bell\x85"}, "DateTime": {"Start": mid}, "Duration": 1},  # C1 control character
        {"Operator": {"Id": "trailing "}, "DateTime": {"Start": mid}, "Duration": 1},  # SQL Server pads keys
        {"Operator": {"Id": " leading"}, "DateTime": {"Start": mid}, "Duration": 1},
        {"Operator": {"Id": "inner space"}, "DateTime": {"Start": mid, "Connect": connect}, "Duration": 2},  # valid
        {"Operator": {"Id": "\U0001f4de" * 127}, "DateTime": {"Start": mid}, "Duration": 1},  # 254 UTF-16 units: valid
        {"Operator": {"Id": "\U0001f4de" * 128}, "DateTime": {"Start": mid}, "Duration": 1},  # 256 units: rejected
        {"Operator": {"Id": "y" * 255}, "DateTime": {"Start": mid}, "Duration": 1},  # 255: valid
        # Starts no window may count (the source audit's business), however they straddle it.
        {"Operator": {"Id": 5}, "DateTime": {"Start": [start - (end - start), end + (end - start)]}, "Duration": 1},
        {"Operator": {"Id": 5}, "DateTime": {"Start": [mid]}, "Duration": 1},  # one-element array: no window
        {"Operator": {"Id": 5}, "DateTime": [{"Start": mid}], "Duration": 1},  # array of DateTime: no window
        {"Operator": {"Id": 5}, "DateTime": {"Start": int(mid.timestamp())}, "Duration": 1},  # epoch number
        {"Operator": {"Id": 5}, "Duration": 1},  # no DateTime at all
    ]
    return docs


def random_documents(rng: random.Random, count: int, start: datetime, end: datetime) -> list[dict]:
    """Seeded random CDRs spread over a margin around [start, end), with a share of junk."""
    span = (end - start).total_seconds()
    operators: list[Any] = [0, 1, 2, 7, "7", "A-mobile", "ünïcode", None, 2**35, "nul\x00id", "pad "]
    docs = []
    for _ in range(count):
        at = start + timedelta(seconds=rng.uniform(-0.2 * span, 1.2 * span))
        at = at.replace(microsecond=(at.microsecond // 1000) * 1000)  # BSON dates hold milliseconds
        doc: dict[str, Any] = {"DateTime": {"Start": at}}
        if rng.random() < 0.01:  # a start that straddles the window: never counted in one
            doc["DateTime"]["Start"] = [at - timedelta(seconds=span), at + timedelta(seconds=span)]
        roll = rng.random()
        if roll < 0.03:
            pass  # no Operator
        elif roll < 0.06:
            doc["Operator"] = {"Name": "x"}
        else:
            doc["Operator"] = {"Id": rng.choice(operators), "Name": "op"}
        answered = rng.random() < 0.7
        if answered:
            doc["DateTime"]["Connect"] = at + timedelta(seconds=rng.randint(1, 20))
        elif rng.random() < 0.5:
            doc["DateTime"]["Connect"] = None
        kind = rng.random()
        if kind < 0.6:
            doc["Duration"] = rng.randint(0, 3600) if answered else 0
        elif kind < 0.85:
            doc["Duration"] = round(rng.uniform(0, 600), 3)
        elif kind < 0.9:
            doc["Duration"] = -rng.randint(1, 10)
        elif kind < 0.93:
            doc["Duration"] = str(rng.randint(1, 10))
        elif kind < 0.96:
            pass  # missing
        else:
            doc["Duration"] = rng.randint(2**31, 2**33)  # a long
        deleted = rng.random()
        if deleted < 0.05:
            doc["IsDeleted"] = True
        elif deleted < 0.5:
            doc["IsDeleted"] = False
        docs.append(doc)
    return docs
