"""Seeding synthetic CDRs into a real MongoDB-wire server (FerretDB)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cdr_reports_dev.synthetic import SyntheticConfig, generate_cdrs, main, seed_collection

START = datetime(2026, 3, 2, tzinfo=UTC)
CONFIG = SyntheticConfig(seed=2026, start=START, end=START + timedelta(days=7), calls=20_000)


def is_malformed(doc: dict) -> bool:
    operator = doc.get("Operator")
    op_id = operator.get("Id") if isinstance(operator, dict) else None
    if isinstance(op_id, bool) or not isinstance(op_id, (int, str)):
        return True
    duration = doc.get("Duration")
    return isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0


def strip_id(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "_id"}


def test_seed_20k_documents_round_trip(mongo_db, capsys):
    collection = mongo_db["CdrRecords"]
    stats = seed_collection(collection, CONFIG, batch_size=10_000)
    with capsys.disabled():
        print(
            f"\n[synthetic] seeded {stats.inserted} docs into FerretDB in {stats.seconds:.2f}s "
            f"= {stats.docs_per_second:,.0f} docs/s (batch_size=10000)"
        )

    assert stats.inserted == CONFIG.calls
    assert collection.count_documents({}) == stats.inserted
    assert collection.count_documents({"IsDeleted": True}) == stats.deleted

    stored = [strip_id(d) for d in collection.find({})]
    assert sum(1 for d in stored if is_malformed(d)) == stats.malformed
    live = [d for d in stored if not is_malformed(d) and d.get("IsDeleted") is not True]
    assert len(live) == stats.inserted - stats.malformed - stats.deleted
    assert sum(1 for d in live if isinstance(d["DateTime"].get("Connect"), datetime)) == stats.answered

    # Everything survives BSON exactly: ms dates, int/long/double durations, null vs missing Connect.
    by_call = {d["CallId"]: d for d in stored}
    generated = list(generate_cdrs(CONFIG))
    assert len(by_call) == len(generated)
    assert all(by_call[d["CallId"]] == d for d in generated)


def test_seeding_appends_without_drop(mongo_db):
    collection = mongo_db["CdrRecords"]
    small = replace(CONFIG, calls=500)
    first = seed_collection(collection, small, batch_size=200)
    second = seed_collection(collection, replace(small, seed=small.seed + 1), batch_size=200)
    assert first.inserted == second.inserted == 500
    assert collection.count_documents({}) == 1_000


@pytest.mark.parametrize("database_in_uri", [True, False])
def test_cli_seeds_and_prints_a_summary(mongo_client, mongo_uri, capsys, database_in_uri):
    name = f"cdrtest_cli_{uuid.uuid4().hex[:10]}"
    if database_in_uri:
        args = ["--uri", mongo_uri.rstrip("/") + "/" + name]
    else:
        args = ["--uri", mongo_uri, "--database", name]
    try:
        # Pre-existing junk proves --drop empties the collection first.
        mongo_client[name]["CdrRecords"].insert_one({"junk": True})
        code = main([*args, "--days", "2", "--calls-per-day", "1500", "--operators", "5", "--seed", "9", "--drop"])
        out = capsys.readouterr().out
        with capsys.disabled():
            print(f"\n[synthetic] {out.strip()}")

        assert code == 0
        assert "inserted=3000" in out and "docs/s" in out and f"{name}.CdrRecords" in out
        collection = mongo_client[name]["CdrRecords"]
        assert collection.count_documents({}) == 3_000
        assert collection.count_documents({"junk": True}) == 0
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        newest = collection.find_one({}, sort=[("DateTime.Start", -1)])["DateTime"]["Start"]
        oldest = collection.find_one({}, sort=[("DateTime.Start", 1)])["DateTime"]["Start"]
        # The period ends at the current UTC hour (allow the hour to have turned meanwhile).
        assert end - timedelta(days=2, hours=1) <= oldest <= newest < end + timedelta(hours=1)
        assert len({d["Operator"]["Id"] for d in collection.find({"Operator.Id": {"$ne": None}})}) == 5
    finally:
        mongo_client.drop_database(name)
