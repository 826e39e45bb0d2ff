"""Malformed CDRs mixed into realistic data: the report completes and counts every bad document.

Rules (tests/support/reference.py states them independently): a document of the period is valid
with an operator id every sink stores unchanged (int/long, or a string of 1..255 UTF-16 code
units without control characters or edge spaces) and a finite duration 0..31 days (int, long or
double); any other document of the period is counted in rejected_records. A document whose
DateTime.Start is not one date (missing, a string, a number, a timestamp, an array) belongs to no
period and is counted in none: the source audit counts it. NaN, +-Infinity and Decimal128 cannot
be stored in FerretDB at all: they are checked against the pure reference only.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from bson import Int64, ObjectId, Timestamp
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pymongo.errors import PyMongoError
from sqlalchemy.dialects import mssql

from cdr_reports.pipeline.aggregate import build_report
from cdr_reports.pipeline.audit import audit_source
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.load import read_report, replace_statements
from cdr_reports.pipeline.periods import period_containing
from cdr_reports.pipeline.runner import extract_period, run_report
from cdr_reports.pipeline.schema import report_tables
from cdr_reports_dev.synthetic import SyntheticConfig, generate_cdrs
from tests.support.reference import _storable_id, expected_report
from tests.support.reports import DAY, assert_stored_equals_reference

START, END = DAY.start_utc, DAY.end_utc
MID = START + timedelta(hours=13, minutes=7)
CONNECT = MID + timedelta(seconds=9)


def _nested(depth: int) -> dict:
    value: dict = {"leaf": [1, "two", None]}
    for level in range(depth):
        value = {f"k{level}": value, "list": [value] if level % 10 == 0 else []}
    return value


def _cdr(**fields):
    doc = {"Operator": {"Id": 42, "Name": "Ege"}, "DateTime": {"Start": MID, "Connect": CONNECT}, "Duration": 61}
    for key, value in fields.items():
        if value is _DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


_DROP = object()

# Documents of the period that must each be rejected.
BAD_IN_PERIOD = {
    "operator missing": _cdr(Operator=_DROP),
    "operator null": _cdr(Operator=None),
    "operator a string": _cdr(Operator="Turkcell"),
    "operator an array": _cdr(Operator=[{"Id": 42}]),
    "operator id missing": _cdr(Operator={"Name": "no id"}),
    "operator id null": _cdr(Operator={"Id": None}),
    "operator id boolean": _cdr(Operator={"Id": True}),
    "operator id double": _cdr(Operator={"Id": 42.0}),
    "operator id array": _cdr(Operator={"Id": [42]}),
    "operator id object": _cdr(Operator={"Id": {"value": 42}}),
    "operator id ObjectId": _cdr(Operator={"Id": ObjectId("5f1d7a3b9c1e4a2b3c4d5e6f")}),
    "operator id empty string": _cdr(Operator={"Id": ""}),
    "operator id 256 chars": _cdr(Operator={"Id": "x" * 256}),
    "operator id 300 unicode chars": _cdr(Operator={"Id": "☎ş" * 150}),
    "operator id deeply nested": _cdr(Operator={"Id": _nested(30)}),
    # Ids a sink cannot store unchanged (PostgreSQL refuses NUL; control characters; SQL Server pads keys).
    "operator id with NUL": _cdr(Operator={"Id": "a\x00b"}),
    "operator id only NUL": _cdr(Operator={"Id": "\x00"}),
    "operator id with a tab": _cdr(Operator={"Id": "tab\tid"}),
    "operator id with a newline": _cdr(Operator={"Id": "line\nbreak"}),
    "operator id with DEL": _cdr(Operator={"Id": "del\x7f"}),
    "operator id with a C1 control": _cdr(Operator={"Id": "c1\x85"}),
    "operator id with a trailing space": _cdr(Operator={"Id": "Ege "}),
    "operator id with a leading space": _cdr(Operator={"Id": " Ege"}),
    "operator id 128 emoji (256 UTF-16 units)": _cdr(Operator={"Id": "\U0001f4de" * 128}),
    "duration missing": _cdr(Duration=_DROP),
    "duration null": _cdr(Duration=None),
    "duration string": _cdr(Duration="61"),
    "duration boolean": _cdr(Duration=True),
    "duration array": _cdr(Duration=[61]),
    "duration object": _cdr(Duration={"seconds": 61}),
    "duration a date": _cdr(Duration=MID),
    "duration negative": _cdr(Duration=-5),
    "duration negative double": _cdr(Duration=-0.5),
    "duration huge int": _cdr(Duration=2**40),
    "duration int64 max": _cdr(Duration=Int64(2**63 - 1)),
    "duration huge double": _cdr(Duration=1e308),
    "duration just over 31 days": _cdr(Duration=31 * 24 * 3600 + 0.001),
    "everything wrong": _cdr(Operator={"Id": [None]}, Duration="∞", DateTime={"Start": MID, "Connect": "soon"}),
}

# Valid after all (edges of the rules): each must be counted as a call.
VALID_EDGES = {
    "operator id 255 unicode chars": _cdr(Operator={"Id": "ü" * 255}),
    "operator id int64": _cdr(Operator={"Id": Int64(2**62)}),
    "operator id with an inner space": _cdr(Operator={"Id": "Türk Telekom"}),
    "operator id 127 emoji (254 UTF-16 units)": _cdr(Operator={"Id": "\U0001f4de" * 127}),
    "duration exactly 31 days": _cdr(Duration=31 * 24 * 3600),
    "duration negative zero": _cdr(Duration=-0.0),
    "connect a string (not answered)": _cdr(DateTime={"Start": MID, "Connect": "2026-11-27T10:00:00Z"}),
    "deep junk beside valid fields": _cdr(Junk=_nested(40)),
    "IsDeleted a string (kept)": _cdr(IsDeleted="true"),
    "IsDeleted 1 (kept)": _cdr(IsDeleted=1),
}

# No date in DateTime.Start: in no period's source (the source audit counts them).
UNPLACEABLE = {
    "datetime missing": _cdr(DateTime=_DROP),
    "datetime a string": _cdr(DateTime="2026-11-27 13:07"),
    "start missing": _cdr(DateTime={"Connect": CONNECT}),
    "start null": _cdr(DateTime={"Start": None}),
    "start an ISO string": _cdr(DateTime={"Start": MID.isoformat()}),
    "start epoch millis": _cdr(DateTime={"Start": int(MID.timestamp() * 1000)}),
    "start epoch seconds": _cdr(DateTime={"Start": int(MID.timestamp())}),
    "start epoch seconds, a double": _cdr(DateTime={"Start": MID.timestamp()}),
    "start epoch seconds, a long": _cdr(DateTime={"Start": Int64(int(MID.timestamp()))}),
    "start a BSON timestamp": _cdr(DateTime={"Start": Timestamp(int(MID.timestamp()), 1)}),
}

# A range query matches an array when one element satisfies $gte and another $lt, and a dotted
# path traverses arrays of sub-documents: the window excludes arrays, so these are in no period
# either (never in two), whatever dates they hold.
ARRAY_START = {
    "start an array of dates": _cdr(DateTime={"Start": [MID]}),
    "start an array straddling the day": _cdr(DateTime={"Start": [MID - timedelta(days=3), MID + timedelta(days=3)]}),
    "start an empty array": _cdr(DateTime={"Start": []}),
    "datetime an array": _cdr(DateTime=[{"Start": MID}]),
    "datetime an array of two": _cdr(DateTime=[{"Start": MID - timedelta(days=2)}, {"Start": MID + timedelta(days=2)}]),
}


def _synthetic(calls: int, seed: int) -> list[dict]:
    config = SyntheticConfig(seed=seed, start=START, end=END, calls=calls, malformed_share=0.02)
    return list(generate_cdrs(config))


def _check_invariants(report) -> None:
    assert report.source_records == report.valid_records + report.rejected_records
    assert report.valid_records == sum(row.total_calls for row in report.rows)
    for row in report.rows:
        assert 0 <= row.answered_calls <= row.total_calls
        assert row.total_duration_seconds >= 0
        assert len(row.operator_id) <= 255


def test_reference_rules_for_each_corpus_document():
    """The corpus says what it claims (checked against the independent reference)."""
    for name, doc in BAD_IN_PERIOD.items():
        assert expected_report([doc], START, END)["rejected"] == 1, name
    for name, doc in VALID_EDGES.items():
        assert expected_report([doc], START, END)["valid"] == 1, name
    for name, doc in {**UNPLACEABLE, **ARRAY_START}.items():
        assert expected_report([doc], START, END)["source"] == 0, name


def test_malformed_corpus_in_realistic_data(mongo_db, sqlite_engine):
    synthetic = _synthetic(800, seed=21)
    corpus = [*BAD_IN_PERIOD.values(), *VALID_EDGES.values(), *UNPLACEABLE.values(), *ARRAY_START.values()]
    docs = synthetic + [dict(doc) for doc in corpus]
    random.Random(4).shuffle(docs)
    mongo_db.CdrRecords.insert_many([dict(doc) for doc in docs])

    report = run_report(mongo_db.CdrRecords, sqlite_engine, DAY, Settings(extract_slices=3), dag_run_id="corpus")

    _check_invariants(report)
    baseline = expected_report(synthetic, START, END)
    expected = expected_report(docs, START, END)
    assert (report.source_records, report.valid_records, report.rejected_records) == (
        expected["source"],
        expected["valid"],
        expected["rejected"],
    )
    # Every bad document of the period is in rejected_records, every valid edge is a call, and
    # neither unplaceable documents nor array starts are in the period at all.
    assert report.rejected_records - baseline["rejected"] == len(BAD_IN_PERIOD)
    assert report.valid_records - baseline["valid"] == len(VALID_EDGES)
    assert report.source_records - baseline["source"] == len(BAD_IN_PERIOD) + len(VALID_EDGES)
    print(
        f"\nsource={report.source_records} valid={report.valid_records} rejected={report.rejected_records} "
        f"(synthetic alone rejected {baseline['rejected']}; corpus: {len(BAD_IN_PERIOD)} bad, "
        f"{len(ARRAY_START)} array starts, {len(VALID_EDGES)} valid edges, {len(UNPLACEABLE)} unplaceable)"
    )

    assert_stored_equals_reference(sqlite_engine, expected)
    stored = read_report(sqlite_engine, "daily", DAY.start_date)
    assert "ü" * 255 in {row["operator_id"] for row in stored["rows"]}


UNSTORABLE_IDS = {
    name: doc for name, doc in BAD_IN_PERIOD.items() if name.startswith("operator id with") or "emoji" in name
}


def _unplaceable(doc: dict) -> bool:
    """Independent statement: the document passes the default global filter and has no single date to place."""
    times = doc.get("DateTime")
    return doc.get("IsDeleted") is not True and not (
        isinstance(times, dict) and isinstance(times.get("Start"), datetime)
    )


def test_unstorable_ids_never_block_a_load(cdr_db, sql_engine):
    """A NUL id (PostgreSQL refuses NUL in text) and the other ids a sink would refuse or alter are
    rejected and counted, with both extract strategies; the day's report is stored on PostgreSQL and
    SQLite, and its statements compile for SQL Server with only storable ids, all bound."""
    assert len(UNSTORABLE_IDS) >= 8
    if sql_engine.dialect.name == "postgresql":  # the hazard is real: the sink refuses NUL outright
        with pytest.raises(sa.exc.DataError), sql_engine.connect() as conn:
            conn.execute(sa.text("SELECT CAST(:value AS text)"), {"value": "a\x00b"})
    good = [_cdr(Operator={"Id": op}, Duration=10 + i) for i, op in enumerate(["Ege", 7, "7", "Türk Telekom", "x"] * 4)]
    docs = good + [dict(doc) for doc in UNSTORABLE_IDS.values()]
    cdr_db.db.CdrRecords.insert_many([dict(doc) for doc in docs])

    report = run_report(cdr_db.db.CdrRecords, sql_engine, DAY, cdr_db.settings(), dag_run_id="unstorable")

    expected = expected_report(docs, START, END)
    assert (
        (report.rejected_records, report.valid_records)
        == (len(UNSTORABLE_IDS), len(good))
        == (
            expected["rejected"],
            expected["valid"],
        )
    )
    assert report.extract_strategy == cdr_db.strategy
    assert_stored_equals_reference(sql_engine, expected)
    statements = replace_statements(report_tables(), report)
    for statement, _ in statements:
        text = str(statement.compile(dialect=mssql.dialect()))
        assert "Ege" not in text and "\x00" not in text  # values are bound, never in the SQL text
    ids = [row["operator_id"] for row in statements[2][1]]
    assert sorted(ids) == ["7", "Ege", "Türk Telekom", "x"]
    assert all(_storable_id(key) for key in ids)


def test_array_starts_are_counted_in_no_period(cdr_db):
    """The issue's case: a start [D-3 days, D+3 days] was counted in days 25, 27 and 29, and once
    per slice with 24 slices. Now no day and no slice counts it; the source audit does, once."""
    straddling = list(ARRAY_START.values())
    plain = [_cdr(Operator={"Id": "plain"}, DateTime={"Start": MID + timedelta(days=shift)}) for shift in range(-2, 3)]
    cdr_db.db.CdrRecords.insert_many([dict(doc) for doc in straddling + plain])
    for day in range(25, 30):
        period = period_containing("daily", DAY.start_date.replace(day=day), DAY.tz_name)
        report = build_report(period, extract_period(cdr_db.db.CdrRecords, period, cdr_db.settings()), dag_run_id="a")
        # Each day holds exactly its one plain call.
        assert (report.source_records, report.valid_records, report.rejected_records) == (1, 1, 0), period.label()
    sliced = build_report(
        DAY, extract_period(cdr_db.db.CdrRecords, DAY, cdr_db.settings(extract_slices=24)), dag_run_id="b"
    )
    assert (sliced.source_records, sliced.rejected_records) == (1, 0)
    assert audit_source(cdr_db.db.CdrRecords, Settings().global_filter).unplaceable_records == len(straddling)


def test_source_audit_counts_every_unplaceable_document(cdr_db):
    synthetic = _synthetic(300, seed=33)
    corpus = [*BAD_IN_PERIOD.values(), *VALID_EDGES.values(), *UNPLACEABLE.values(), *ARRAY_START.values()]
    deleted = [dict(doc, IsDeleted=True) for doc in UNPLACEABLE.values()]  # outside the global filter
    docs = synthetic + [dict(doc) for doc in corpus] + deleted
    cdr_db.db.CdrRecords.insert_many([dict(doc) for doc in docs])

    audit = audit_source(cdr_db.db.CdrRecords, Settings().global_filter)

    expected = sum(1 for doc in docs if _unplaceable(doc))
    assert expected >= len(UNPLACEABLE) + len(ARRAY_START)
    assert audit.unplaceable_records == expected
    assert len(audit.sample_ids) == 5 and len(set(audit.sample_ids)) == 5
    print(f"\n{cdr_db.server}: {audit.unplaceable_records} unplaceable of {len(docs)}; samples {audit.samples_json()}")


@pytest.mark.parametrize(
    "duration",
    [float("nan"), float("inf"), float("-inf")],
    ids=["nan", "inf", "-inf"],
)
def test_non_finite_durations_rejected_by_the_reference_and_refused_by_ferretdb(mongo_db, duration):
    doc = _cdr(Duration=duration)
    ref = expected_report([doc], START, END)
    assert (ref["source"], ref["rejected"], ref["valid"]) == (1, 1, 0)
    # FerretDB cannot store them at all (MongoDB could; the pipeline's $gte/$lte reject them there).
    with pytest.raises(PyMongoError):
        mongo_db.CdrRecords.insert_one(doc)
    assert mongo_db.CdrRecords.count_documents({}) == 0


def test_decimal128_duration_rejected_by_the_reference_and_refused_by_ferretdb(mongo_db):
    from bson import Decimal128

    doc = _cdr(Duration=Decimal128("61.5"))
    assert expected_report([doc], START, END)["rejected"] == 1
    with pytest.raises(PyMongoError):  # FerretDB v1 closes the connection on Decimal128
        mongo_db.CdrRecords.insert_one(doc)
    assert mongo_db.CdrRecords.count_documents({}) == 0


# --------------------------------------------------------------------------- property


_MS = timedelta(milliseconds=1)
_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300)
_starts = st.one_of(
    st.sampled_from([START, END - _MS, END, START - _MS]),  # the window's edges
    st.integers(min_value=-2 * 86_400_000, max_value=3 * 86_400_000).map(lambda ms: START + ms * _MS),
)
_operator_ids = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 7, "7", "A-mobile", "ünï☎"]),
    _text,
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.lists(st.integers(0, 9), max_size=2),
    st.fixed_dictionaries({"v": st.integers(0, 9)}),
)
_durations = st.one_of(
    st.integers(min_value=0, max_value=4000),
    st.floats(min_value=0, max_value=4000, allow_nan=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    _text.map(lambda t: t[:8]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 60), max_size=2),
    st.just(_DROP),
)


@st.composite
def cdr_documents(draw):
    doc: dict = {}
    start = draw(_starts)
    placement = draw(st.sampled_from(["date"] * 6 + ["missing", "string", "null"]))
    times: dict = {"Start": start if placement == "date" else (start.isoformat() if placement == "string" else None)}
    if placement == "missing":
        times.pop("Start")
    connect = draw(st.sampled_from(["date", "null", "missing", "string"]))
    if connect == "date":
        times["Connect"] = start + timedelta(seconds=draw(st.integers(0, 30)))
    elif connect == "null":
        times["Connect"] = None
    elif connect == "string":
        times["Connect"] = "yes"
    doc["DateTime"] = times
    operator = draw(st.sampled_from(["ok"] * 5 + ["missing", "null", "no-id", "array"]))
    if operator == "ok":
        doc["Operator"] = {"Id": draw(_operator_ids)}
    elif operator == "null":
        doc["Operator"] = None
    elif operator == "no-id":
        doc["Operator"] = {"Name": "x"}
    elif operator == "array":
        doc["Operator"] = [{"Id": 1}]
    duration = draw(_durations)
    if duration is not _DROP:
        big = isinstance(duration, int) and not isinstance(duration, bool) and abs(duration) >= 2**31
        doc["Duration"] = Int64(duration) if big else duration
    deleted = draw(st.sampled_from([_DROP, True, False, "true"]))
    if deleted is not _DROP:
        doc["IsDeleted"] = deleted
    return doc


@pytest.fixture(scope="module")
def property_collection(mongo_client):
    name = f"cdrtest_prop_{uuid.uuid4().hex[:10]}"
    yield mongo_client[name].CdrRecords
    mongo_client.drop_database(name)


@hsettings(
    max_examples=15,  # FerretDB is slow: every example is one insert and five full scans
    deadline=None,
    derandomize=True,  # the same examples on every run (CI)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(docs=st.lists(cdr_documents(), min_size=1, max_size=25))
def test_generated_documents_match_the_reference(property_collection, docs):
    """source = valid + rejected, and every number equals the reference, for generated mixes."""
    property_collection.delete_many({})
    property_collection.insert_many([dict(doc) for doc in docs])
    report = build_report(DAY, extract_period(property_collection, DAY, Settings()), dag_run_id="property")
    expected = expected_report(docs, START, END)
    _check_invariants(report)
    assert (report.source_records, report.valid_records, report.rejected_records) == (
        expected["source"],
        expected["valid"],
        expected["rejected"],
    )
    rows = {row.operator_id: row for row in report.rows}
    assert set(rows) == set(expected["rows"])
    for key, want in expected["rows"].items():
        row = rows[key]
        assert (row.total_calls, row.answered_calls, row.total_duration_seconds) == (
            want["total_calls"],
            want["answered_calls"],
            want["total_duration_seconds"],
        )
        assert math.isclose(row.answer_ratio, want["answer_ratio"])
