"""The second MongoDB-wire server of the harness: mongo-java-server 1.47.0 (memory backend).

scripts/services.sh starts it through tools/mongo-java-server, which makes it report MongoDB 6.0
(wire version 17): by default it reports wire version 8, which pymongo refuses. These tests pin
that the harness serves what the pushdown strategy's tests are written against.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson.int64 import Int64
from bson.timestamp import Timestamp


def test_reports_mongodb_6_0(mjs_client):
    info = mjs_client.admin.command("buildInfo")
    assert info["version"] == "6.0.0"
    assert info["versionArray"][:2] == [6, 0]
    assert "ferretdbVersion" not in info  # strategy detection must not take it for FerretDB
    # `hello` is not implemented by mongo-java-server; the legacy handshake carries the wire version.
    assert mjs_client.admin.command("isMaster")["maxWireVersion"] == 17


def test_round_trips_a_cdr_document(mjs_db):
    start = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)
    cdr = {
        "Operator": {"Id": Int64(2**35), "Name": "Türk Telekom ☎"},
        "Duration": 12.5,
        "DateTime": {"Start": start, "Connect": start + timedelta(seconds=3)},
        "IsDeleted": False,
    }
    inserted = mjs_db.cdr.insert_one(dict(cdr)).inserted_id

    stored = mjs_db.cdr.find_one({"_id": inserted}, {"_id": 0})

    assert stored == cdr
    assert isinstance(stored["Operator"]["Id"], Int64)
    assert (
        mjs_db.cdr.find_one({"DateTime.Start": {"$gte": start, "$lt": start + timedelta(milliseconds=1)}})["_id"]
        == inserted
    )


def test_facet_with_multi_accumulator_group_is_exact(mjs_db):
    """One round trip: window count and per-operator count, duration and answered, as Python computes them."""
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    docs: list[dict[str, Any]] = []
    for i in range(300):
        doc: dict[str, Any] = {
            "Operator": {"Id": i % 4},
            "Duration": i,
            "DateTime": {"Start": t0 + timedelta(minutes=i)},
            "IsDeleted": i % 11 == 0,
        }
        if i % 3:
            doc["DateTime"]["Connect"] = doc["DateTime"]["Start"] + timedelta(seconds=2)
        docs.append(doc)
    mjs_db.cdr.insert_many(docs)
    lo, hi = t0 + timedelta(minutes=50), t0 + timedelta(minutes=250)
    # A date sorts after every number, string, object, array, bool and before Timestamp in BSON order:
    # "Connect is a date" without the $type expression, which mongo-java-server lacks.
    is_date = {
        "$and": [
            {"$gte": ["$DateTime.Connect", datetime(1000, 1, 1, tzinfo=UTC)]},
            {"$lt": ["$DateTime.Connect", Timestamp(0, 1)]},
        ]
    }
    pipeline = [
        {"$match": {"DateTime.Start": {"$gte": lo, "$lt": hi}}},
        {
            "$facet": {
                "source": [{"$count": "n"}],
                "valid": [
                    {"$match": {"IsDeleted": {"$ne": True}}},
                    {
                        "$group": {
                            "_id": "$Operator.Id",
                            "calls": {"$sum": 1},
                            "seconds": {"$sum": "$Duration"},
                            "answered": {"$sum": {"$cond": [is_date, 1, 0]}},
                        }
                    },
                ],
            }
        },
    ]

    (result,) = list(mjs_db.cdr.aggregate(pipeline))

    window = [d for d in docs if lo <= d["DateTime"]["Start"] < hi]
    expected: dict[int, list[int]] = {}
    for d in window:
        if not d["IsDeleted"]:
            row = expected.setdefault(d["Operator"]["Id"], [0, 0, 0])
            row[0] += 1
            row[1] += d["Duration"]
            row[2] += "Connect" in d["DateTime"]
    assert result["source"] == [{"n": len(window)}]
    assert {r["_id"]: [r["calls"], r["seconds"], r["answered"]] for r in result["valid"]} == expected
