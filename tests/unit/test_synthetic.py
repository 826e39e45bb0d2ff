"""The synthetic CDR generator, without a server: determinism, shares, shapes, load curve."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import TypeGuard
from zoneinfo import ZoneInfo

import pytest
from bson.int64 import Int64

from cdr_reports_dev.synthetic import SyntheticConfig, generate_cdrs, seed_collection
from tests.support.reference import expected_report

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
END = START + timedelta(days=14)
CALLS = 50_000
CONFIG = SyntheticConfig(seed=1234, start=START, end=END, calls=CALLS)
IST = ZoneInfo("Europe/Istanbul")


class RecordingCollection:
    """Stands in for a pymongo collection: keeps what insert_many was given."""

    def __init__(self) -> None:
        self.docs: list[dict] = []
        self.calls: list[tuple[int, bool]] = []

    def insert_many(self, docs, ordered=True):
        docs = list(docs)
        self.calls.append((len(docs), ordered))
        self.docs.extend(docs)
        return SimpleNamespace(inserted_ids=list(range(len(docs))))


def is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_valid(doc: dict) -> bool:
    """The CDR contract, stated independently of the generator."""
    operator = doc.get("Operator")
    if not isinstance(operator, dict):
        return False
    op_id = operator.get("Id")
    if isinstance(op_id, bool) or not isinstance(op_id, (int, str)) or op_id == "":
        return False
    times = doc.get("DateTime")
    if not isinstance(times, dict) or not isinstance(times.get("Start"), datetime):
        return False
    if times.get("Connect") is not None and not isinstance(times["Connect"], datetime):
        return False
    duration = doc.get("Duration")
    if not is_number(duration) or not math.isfinite(duration) or duration < 0:
        return False
    return doc.get("IsDeleted", False) in (True, False)


def is_answered(doc: dict) -> bool:
    return isinstance(doc["DateTime"].get("Connect"), datetime)


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return list(generate_cdrs(CONFIG))


@pytest.fixture(scope="module")
def seeded():
    collection = RecordingCollection()
    stats = seed_collection(collection, CONFIG, batch_size=7_000)
    return collection, stats


def test_same_seed_gives_identical_documents():
    config = replace(CONFIG, calls=3_000)
    assert list(generate_cdrs(config)) == list(generate_cdrs(config))


def test_different_seed_gives_different_documents():
    first = list(generate_cdrs(replace(CONFIG, calls=3_000)))
    second = list(generate_cdrs(replace(CONFIG, calls=3_000, seed=CONFIG.seed + 1)))
    assert len(first) == len(second) == 3_000
    assert first != second
    assert [d.get("CallId") for d in first] != [d.get("CallId") for d in second]


def test_generator_and_seeding_produce_the_same_documents(docs, seeded):
    collection, _ = seeded
    assert collection.docs == docs


def test_seed_stats_are_exact_counts(docs, seeded):
    _collection, stats = seeded
    malformed = [d for d in docs if not is_valid(d)]
    well_formed = [d for d in docs if is_valid(d)]
    deleted = [d for d in docs if d.get("IsDeleted") is True]
    live = [d for d in well_formed if d.get("IsDeleted") is not True]
    assert stats.inserted == len(docs) == CALLS
    assert stats.malformed == len(malformed)
    assert stats.deleted == len(deleted)
    assert stats.answered == sum(1 for d in live if is_answered(d))
    # Malformed and deleted are disjoint, so live calls = inserted - malformed - deleted.
    assert not any(d.get("IsDeleted") is True for d in malformed)
    assert len(live) == stats.inserted - stats.malformed - stats.deleted
    assert stats.seconds > 0


def test_seed_collection_batches_unordered(seeded):
    collection, _ = seeded
    sizes = [size for size, _ in collection.calls]
    assert all(ordered is False for _, ordered in collection.calls)
    assert sizes[:-1] == [7_000] * (len(sizes) - 1) and 0 < sizes[-1] <= 7_000
    assert sum(sizes) == CALLS


def test_stats_agree_with_the_reference_report_contract(docs, seeded):
    _, stats = seeded
    expected = expected_report(docs, START, END)
    assert expected["source"] == stats.inserted - stats.deleted
    assert expected["rejected"] == stats.malformed
    assert expected["valid"] == stats.inserted - stats.malformed - stats.deleted
    assert sum(row["answered_calls"] for row in expected["rows"].values()) == stats.answered


def test_shares_are_close_to_the_configured_rates(seeded):
    _, stats = seeded
    live = stats.inserted - stats.malformed - stats.deleted
    # Tolerances are ~4-5 binomial standard deviations at 50k calls.
    assert stats.malformed / CALLS == pytest.approx(CONFIG.malformed_share, abs=0.0025)
    assert stats.deleted / CALLS == pytest.approx(CONFIG.deleted_share, abs=0.003)
    assert stats.answered / live == pytest.approx(CONFIG.answer_rate, abs=0.01)


def test_all_starts_inside_the_window_and_count_exact_for_ragged_bounds():
    start = datetime(2026, 3, 2, 7, 17, 23, 500_123, tzinfo=UTC)
    end = datetime(2026, 3, 4, 22, 0, 0, 1_000, tzinfo=UTC)
    docs = list(generate_cdrs(replace(CONFIG, start=start, end=end, calls=20_001, malformed_share=0)))
    starts = [d["DateTime"]["Start"] for d in docs]
    assert len(docs) == 20_001
    assert all(start <= s < end for s in starts)
    assert starts == sorted(starts)
    assert all(s.tzinfo is not None and s.utcoffset() == timedelta(0) for s in starts)
    # BSON dates hold milliseconds: generated values must survive a round trip unchanged.
    assert all(s.microsecond % 1000 == 0 for s in starts)


def test_all_starts_inside_the_window_for_the_big_sample(docs):
    assert all(START <= d["DateTime"]["Start"] < END for d in docs)


def test_night_hours_are_much_lighter_than_late_morning(docs):
    by_local_hour = Counter(d["DateTime"]["Start"].astimezone(IST).hour for d in docs)
    night = sum(by_local_hour[h] for h in (2, 3, 4)) / 3
    peak = sum(by_local_hour[h] for h in (10, 11)) / 2
    evening = sum(by_local_hour[h] for h in (19, 20)) / 2
    assert night < 0.25 * peak
    assert night < 0.25 * evening
    assert peak > by_local_hour[7] and evening > by_local_hour[23]


def test_load_curve_follows_the_configured_time_zone():
    config = replace(CONFIG, calls=20_000, time_zone="America/New_York")
    docs = list(generate_cdrs(config))
    local = Counter(d["DateTime"]["Start"].astimezone(ZoneInfo("America/New_York")).hour for d in docs)
    assert sum(local[h] for h in (2, 3, 4)) < 0.25 * sum(local[h] for h in (10, 11, 12))


def test_connect_follows_start_by_a_ring_time(docs):
    rings = [
        d["DateTime"]["Connect"] - d["DateTime"]["Start"]
        for d in docs
        if isinstance(d.get("DateTime", {}).get("Connect"), datetime)
    ]
    assert rings
    assert all(timedelta(0) <= r <= timedelta(minutes=1) for r in rings)
    assert timedelta(seconds=3) < statistics.median(rings) < timedelta(seconds=15)


def test_valid_documents_follow_the_contract(docs):
    valid = [d for d in docs if is_valid(d)]
    for doc in valid:
        duration = doc["Duration"]
        if is_answered(doc):
            assert 0 < duration <= 4 * 3600
        else:
            assert duration == 0
            assert doc["DateTime"].get("Connect", None) is None
        assert "IsDeleted" not in doc or isinstance(doc["IsDeleted"], bool)
        assert isinstance(doc["CallingNumber"], str) and isinstance(doc["CalledNumber"], str)
    unanswered = [d for d in valid if not is_answered(d)]
    assert any("Connect" not in d["DateTime"] for d in unanswered)
    assert any("Connect" in d["DateTime"] and d["DateTime"]["Connect"] is None for d in unanswered)
    assert any(d.get("IsDeleted") is False for d in valid) and any("IsDeleted" not in d for d in valid)


def test_durations_are_mostly_int_with_some_doubles_and_longs(docs):
    answered = [d["Duration"] for d in docs if is_valid(d) and is_answered(d)]
    kinds = Counter("long" if isinstance(x, Int64) else type(x).__name__ for x in answered)
    assert kinds["int"] > 0.7 * len(answered)
    assert kinds["float"] > 0.03 * len(answered)
    assert kinds["long"] > 0.01 * len(answered)
    assert 60 <= statistics.median(answered) <= 130
    assert max(answered) <= 4 * 3600


def test_operators_mix_int_and_string_ids_with_skewed_traffic(docs):
    ids = Counter(d["Operator"]["Id"] for d in docs if is_valid(d))
    assert len(ids) == CONFIG.operators
    assert any(isinstance(i, int) for i in ids) and any(isinstance(i, str) for i in ids)
    sizes = sorted(ids.values())
    assert sizes[-1] > 5 * sizes[0]
    # Names are per operator, never contradicting each other.
    names = {}
    for d in docs:
        operator = d.get("Operator")
        if isinstance(operator, dict) and operator.get("Id") is not None:
            names.setdefault(operator["Id"], set()).add(operator.get("Name"))
    assert all(len(v) == 1 for v in names.values())


def test_operator_ids_are_deterministic_per_seed():
    def ids(seed):
        return {d["Operator"]["Id"] for d in generate_cdrs(replace(CONFIG, seed=seed, calls=5_000, malformed_share=0))}

    assert ids(7) == ids(7)
    assert ids(7) != ids(8)
    assert len(ids(9) - {None}) == CONFIG.operators


def test_every_malformed_shape_occurs():
    docs = list(generate_cdrs(replace(CONFIG, calls=4_000, malformed_share=0.5, deleted_share=0.0)))
    shapes = Counter()
    for d in docs:
        if "Operator" not in d:
            shapes["no operator"] += 1
        elif "Id" not in d["Operator"]:
            shapes["no id"] += 1
        elif d["Operator"]["Id"] is None:
            shapes["null id"] += 1
        elif "Duration" not in d:
            shapes["no duration"] += 1
        elif isinstance(d["Duration"], str):
            shapes["string duration"] += 1
        elif isinstance(d["Duration"], list):
            shapes["array duration"] += 1
        elif d["Duration"] < 0:
            shapes["negative duration"] += 1
    assert len(shapes) == 7, shapes
    assert sum(shapes.values()) == sum(1 for d in docs if not is_valid(d))


def test_zero_calls_and_empty_shares():
    assert list(generate_cdrs(replace(CONFIG, calls=0))) == []
    docs = list(generate_cdrs(replace(CONFIG, calls=2_000, malformed_share=0, deleted_share=0)))
    assert all(is_valid(d) and d.get("IsDeleted") is not True for d in docs)


@pytest.mark.parametrize(
    "change",
    [
        {"start": datetime(2026, 3, 2)},  # naive
        {"end": START - timedelta(hours=1)},
        {"end": START},  # calls into an empty window
        {"calls": -1},
        {"operators": 0},
        {"answer_rate": 1.5},
        {"malformed_share": 0.6, "deleted_share": 0.6},
    ],
)
def test_invalid_configs_are_rejected(change):
    with pytest.raises(ValueError):
        next(generate_cdrs(replace(CONFIG, **change)))


def test_import_stays_light_and_module_runs_as_a_script():
    code = "import sys, cdr_reports_dev.synthetic; print(sorted(m for m in ('pymongo', 'bson') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    helped = subprocess.run(
        [sys.executable, "-m", "cdr_reports_dev.synthetic", "--help"], capture_output=True, text=True, check=True
    )
    assert "--calls-per-day" in helped.stdout and "--drop" in helped.stdout
