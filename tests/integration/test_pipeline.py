"""The core pipeline against real MongoDB-wire servers (every strategy where it runs) and real SQL sinks."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pymongo import monitoring

from cdr_reports.pipeline.aggregate import build_report
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.extract import START_INDEX_NAME, ensure_indexes, extract_slice
from cdr_reports.pipeline.load import read_report
from cdr_reports.pipeline.periods import period_containing
from cdr_reports.pipeline.runner import extract_period, run_report
from tests.support.reference import edge_case_documents, expected_report, random_documents

TZ = "Europe/Istanbul"
DAY = period_containing("daily", date(2026, 11, 27), TZ)


def assert_matches_reference(report, expected):
    assert report.source_records == expected["source"]
    assert report.valid_records == expected["valid"]
    assert report.rejected_records == expected["rejected"]
    got = {row.operator_id: row for row in report.rows}
    assert set(got) == set(expected["rows"])
    for key, want in expected["rows"].items():
        row = got[key]
        assert row.total_calls == want["total_calls"], key
        assert row.answered_calls == want["answered_calls"], key
        assert row.total_duration_seconds == want["total_duration_seconds"], key
        assert row.answer_ratio == pytest.approx(want["answer_ratio"]), key
        if want["avg_answered_duration_seconds"] is None:
            assert row.avg_answered_duration_seconds is None, key
        else:
            assert row.avg_answered_duration_seconds == pytest.approx(want["avg_answered_duration_seconds"]), key


def test_edge_cases_match_the_contract(cdr_db):
    docs = edge_case_documents(DAY.start_utc, DAY.end_utc)
    cdr_db.db.CdrRecords.insert_many([dict(d) for d in docs])
    report = build_report(DAY, extract_period(cdr_db.db.CdrRecords, DAY, cdr_db.settings()), dag_run_id="t")
    assert report.extract_strategy == cdr_db.strategy
    expected = expected_report(docs, DAY.start_utc, DAY.end_utc)
    assert_matches_reference(report, expected)
    rows = {r.operator_id: r for r in report.rows}
    # The values the contract spells out, stated literally as well:
    assert rows["1"].total_calls == 2 and rows["1"].answered_calls == 2  # start in, end out
    assert rows["0"].total_calls == 1  # 0 is a valid operator id
    assert rows["2"].total_calls == 6  # int 2, long 2 and "2" are one operator; bad durations rejected
    assert rows["Türk Telekom ☎"].total_duration_seconds == 61
    assert "a\x00b" not in rows and "trailing " not in rows and "inner space" in rows  # storable ids only
    assert report.source_records == report.valid_records + report.rejected_records


@pytest.mark.parametrize("slices", [1, 7])
def test_random_data_matches_reference_for_any_slice_count(cdr_db, slices):
    rng = random.Random(1000 + slices)
    week = period_containing("weekly", date(2026, 11, 18), TZ)
    docs = random_documents(rng, 2000, week.start_utc, week.end_utc)
    cdr_db.db.CdrRecords.insert_many([dict(d) for d in docs])
    settings = cdr_db.settings(extract_slices=slices)
    report = build_report(week, extract_period(cdr_db.db.CdrRecords, week, settings), dag_run_id="t")
    assert_matches_reference(report, expected_report(docs, week.start_utc, week.end_utc))
    assert report.valid_records == sum(row.total_calls for row in report.rows)


def test_empty_period_gives_an_empty_report(mongo_db, sql_engine):
    mongo_db.CdrRecords.insert_one({"Operator": {"Id": 1}, "DateTime": {"Start": DAY.end_utc}, "Duration": 1})
    report = run_report(mongo_db.CdrRecords, sql_engine, DAY, Settings(), dag_run_id="empty")
    assert (report.source_records, report.valid_records, report.rejected_records, report.rows) == (0, 0, 0, ())
    stored = read_report(sql_engine, "daily", DAY.start_date)
    assert stored["rows"] == []
    assert stored["run"]["source_records"] == 0 and stored["run"]["operators"] == 0


def test_custom_global_filter_applies(cdr_db):
    docs = [
        {"Operator": {"Id": 1, "Name": "TEST"}, "DateTime": {"Start": DAY.start_utc}, "Duration": 5},
        {"Operator": {"Id": 1, "Name": "real"}, "DateTime": {"Start": DAY.start_utc}, "Duration": 7, "IsDeleted": True},
        {"Operator": {"Id": 1, "Name": "real"}, "DateTime": {"Start": DAY.start_utc}, "Duration": 9},
    ]
    cdr_db.db.CdrRecords.insert_many([dict(d) for d in docs])
    only_real = {"Operator.Name": {"$ne": "TEST"}}
    report = build_report(DAY, extract_period(cdr_db.db.CdrRecords, DAY, cdr_db.settings(global_filter=only_real)), "t")
    expected = expected_report(docs, DAY.start_utc, DAY.end_utc, keep=lambda d: d["Operator"]["Name"] != "TEST")
    assert_matches_reference(report, expected)
    assert report.rows[0].total_calls == 2 and report.rows[0].total_duration_seconds == 16


class _CommandLog(monitoring.CommandListener):
    def __init__(self):
        self.commands = []

    def started(self, event):
        self.commands.append((event.command_name, event.command))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def _contains(value, needle) -> bool:
    if value == needle:
        return True
    if isinstance(value, dict):
        return (isinstance(needle, str) and needle in value) or any(_contains(v, needle) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_contains(v, needle) for v in value)
    return False


@pytest.mark.parametrize(
    ("uri_fixture", "strategy", "command"),
    [("mongo_uri", "stream", "find"), ("mjs_uri", "stream", "find"), ("mjs_uri", "pushdown", "aggregate")],
)
def test_one_round_trip_per_slice_and_every_query_carries_the_global_filter(request, uri_fixture, strategy, command):
    """Listen to every command the extract sends: one read per slice (plus getMore batches for
    `stream`), and each read carries the filter and the window."""
    import pymongo

    listener = _CommandLog()
    client = pymongo.MongoClient(request.getfixturevalue(uri_fixture), event_listeners=[listener], tz_aware=True)
    try:
        name = f"cdrtest_filter_{random.randrange(10**9)}"
        coll = client[name].CdrRecords
        coll.insert_many(random_documents(random.Random(7), 200, DAY.start_utc, DAY.end_utc))
        listener.commands.clear()
        marker = {"Operator.Name": {"$ne": "marker-filter"}}
        extract_period(coll, DAY, Settings(global_filter=marker, extract_slices=4, extract_strategy=strategy))
        reads = [(n, c) for n, c in listener.commands if n in ("aggregate", "find", "count", "distinct")]
        assert [n for n, _ in reads] == [command] * 4  # one round trip per slice
        assert {n for n, _ in listener.commands} <= {command, "getMore"}
        for command_name, command in reads:
            assert _contains(command, marker), (command_name, command)
            assert _contains(command, "DateTime.Start"), (command_name, command)
        client.drop_database(name)
    finally:
        client.close()


def test_idempotent_reload_and_changed_data(mongo_db, sql_engine):
    coll = mongo_db.CdrRecords
    docs = random_documents(random.Random(3), 1500, DAY.start_utc, DAY.end_utc)
    coll.insert_many([dict(d) for d in docs])
    first = run_report(coll, sql_engine, DAY, Settings(), dag_run_id="run-1")
    stored_1 = read_report(sql_engine, "daily", DAY.start_date)
    run_report(coll, sql_engine, DAY, Settings(), dag_run_id="run-1")
    stored_2 = read_report(sql_engine, "daily", DAY.start_date)
    strip = lambda s: [{k: v for k, v in r.items() if k != "generated_at"} for r in s["rows"]]  # noqa: E731
    assert strip(stored_1) == strip(stored_2)
    assert len(stored_2["rows"]) == len(first.rows)

    # Change the data: one operator disappears, another gets a call; re-run replaces the report.
    coll.delete_many({"Operator.Id": "A-mobile"})
    coll.insert_one(
        {"Operator": {"Id": "late"}, "DateTime": {"Start": DAY.start_utc, "Connect": DAY.start_utc}, "Duration": 42}
    )
    docs_now = list(coll.find({}, {"_id": 0}))
    report = run_report(coll, sql_engine, DAY, Settings(), dag_run_id="run-2")
    stored = read_report(sql_engine, "daily", DAY.start_date)
    ids = [row["operator_id"] for row in stored["rows"]]
    assert "A-mobile" not in ids and "late" in ids
    assert all(row["dag_run_id"] == "run-2" for row in stored["rows"])
    expected = expected_report(docs_now, DAY.start_utc, DAY.end_utc)
    assert_matches_reference(report, expected)
    assert stored["run"]["source_records"] == expected["source"]
    assert stored["run"]["valid_records"] == sum(row["total_calls"] for row in stored["rows"])
    assert stored["run"]["source_records"] == stored["run"]["valid_records"] + stored["run"]["rejected_records"]
    late = next(row for row in stored["rows"] if row["operator_id"] == "late")
    assert (late["total_calls"], late["answered_calls"], late["total_duration_seconds"]) == (1, 1, 42)
    assert late["avg_answered_duration_seconds"] == 42.0 and late["answer_ratio"] == 1.0


def test_other_periods_are_untouched_by_a_reload(mongo_db, sql_engine):
    coll = mongo_db.CdrRecords
    next_day = DAY.next()
    coll.insert_many(
        [
            {"Operator": {"Id": 1}, "DateTime": {"Start": DAY.start_utc}, "Duration": 1},
            {"Operator": {"Id": 1}, "DateTime": {"Start": next_day.start_utc}, "Duration": 2},
        ]
    )
    run_report(coll, sql_engine, DAY, Settings(), "a")
    run_report(coll, sql_engine, next_day, Settings(), "b")
    run_report(coll, sql_engine, DAY, Settings(), "c")
    assert read_report(sql_engine, "daily", next_day.start_date)["rows"][0]["dag_run_id"] == "b"
    assert read_report(sql_engine, "daily", DAY.start_date)["rows"][0]["total_duration_seconds"] == 1


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), count=st.integers(0, 300), slices=st.integers(1, 5))
def test_property_report_equals_reference(cdr_db, seed, count, slices):
    coll = cdr_db.db[f"c{seed}_{count}_{slices}"]
    docs = random_documents(random.Random(seed), count, DAY.start_utc, DAY.end_utc)
    if docs:
        coll.insert_many([dict(d) for d in docs])
    report = build_report(DAY, extract_period(coll, DAY, cdr_db.settings(extract_slices=slices)), "t")
    assert_matches_reference(report, expected_report(docs, DAY.start_utc, DAY.end_utc))
    coll.drop()


def test_ensure_indexes_is_idempotent(mongo_db):
    coll = mongo_db.CdrRecords
    assert ensure_indexes(coll) == START_INDEX_NAME
    assert ensure_indexes(coll) == START_INDEX_NAME
    info = coll.index_information()
    assert info[START_INDEX_NAME]["key"] == [("DateTime.Start", 1)]
    assert len(info) == 2  # _id and ours


def test_windows_use_utc_instants_of_local_midnight(cdr_db):
    # 2026-11-27 in Istanbul is 2026-11-26T21:00Z .. 2026-11-27T21:00Z.
    coll = cdr_db.db.CdrRecords
    coll.insert_many(
        [
            {
                "Operator": {"Id": 1},
                "DateTime": {"Start": datetime(2026, 11, 26, 20, 59, 59, tzinfo=UTC)},
                "Duration": 1,
            },
            {"Operator": {"Id": 1}, "DateTime": {"Start": datetime(2026, 11, 26, 21, 0, tzinfo=UTC)}, "Duration": 2},
            {
                "Operator": {"Id": 1},
                "DateTime": {"Start": datetime(2026, 11, 27, 20, 59, 59, tzinfo=UTC)},
                "Duration": 4,
            },
            {"Operator": {"Id": 1}, "DateTime": {"Start": datetime(2026, 11, 27, 21, 0, tzinfo=UTC)}, "Duration": 8},
        ]
    )
    counts = extract_slice(coll, DAY.start_utc, DAY.end_utc, {"IsDeleted": {"$ne": True}}, 10**6, cdr_db.strategy)
    assert counts.total_calls == {"1": 2} and counts.duration_ms == {"1": 6000}
