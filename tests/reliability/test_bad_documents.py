"""Malformed CDRs mixed into realistic data: the report completes and counts every bad document.

Rules (tests/reference.py states them independently): a document of the period is valid with an
operator id (int/long, or a 1..255-character string) and a finite duration 0..31 days (int,
long or double); any other document of the period is counted in rejected_records. A document
without a date in DateTime.Start belongs to no period (it cannot be placed) and is counted
nowhere. NaN, +-Infinity and Decimal128 cannot be stored in FerretDB at all: they are checked
against the pure reference only.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import timedelta

import pytest
from bson import Int64, ObjectId
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pymongo.errors import PyMongoError

from cdr_reports.pipeline.aggregate import build_report
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.load import read_report
from cdr_reports.pipeline.runner import extract_period, run_report
from cdr_reports_dev.synthetic import SyntheticConfig, generate_cdrs
from tests.support.reference import expected_report
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
    "operator id with NUL": _cdr(Operator={"Id": "a\x00b"}),
    "duration exactly 31 days": _cdr(Duration=31 * 24 * 3600),
    "duration negative zero": _cdr(Duration=-0.0),
    "connect a string (not answered)": _cdr(DateTime={"Start": MID, "Connect": "2026-11-27T10:00:00Z"}),
    "deep junk beside valid fields": _cdr(Junk=_nested(40)),
    "IsDeleted a string (kept)": _cdr(IsDeleted="true"),
    "IsDeleted 1 (kept)": _cdr(IsDeleted=1),
}

# No date in DateTime.Start: in no period's source.
UNPLACEABLE = {
    "datetime missing": _cdr(DateTime=_DROP),
    "datetime a string": _cdr(DateTime="2026-11-27 13:07"),
    "start missing": _cdr(DateTime={"Connect": CONNECT}),
    "start null": _cdr(DateTime={"Start": None}),
    "start an ISO string": _cdr(DateTime={"Start": MID.isoformat()}),
    "start epoch millis": _cdr(DateTime={"Start": int(MID.timestamp() * 1000)}),
}

# MongoDB matches range queries against array elements: a Start array holding a date of the
# period puts the document in the period, where it is rejected. The pure reference ignores such
# documents (it only places plain dates), so they are counted on top of it.
ARRAY_START = {
    "start an array of dates": _cdr(DateTime={"Start": [MID]}),
    "datetime an array": _cdr(DateTime=[{"Start": MID}]),
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
    extra = len(ARRAY_START)
    assert report.source_records == expected["source"] + extra
    assert report.rejected_records == expected["rejected"] + extra
    assert report.valid_records == expected["valid"]
    # Every bad document of the period is in rejected_records, every valid edge is a call.
    assert report.rejected_records - baseline["rejected"] == len(BAD_IN_PERIOD) + len(ARRAY_START)
    assert report.valid_records - baseline["valid"] == len(VALID_EDGES)
    print(f"\nsource={report.source_records} valid={report.valid_records} rejected={report.rejected_records} "
          f"(synthetic alone rejected {baseline['rejected']}; corpus: {len(BAD_IN_PERIOD)} bad, "
          f"{len(ARRAY_START)} array starts, {len(VALID_EDGES)} valid edges, {len(UNPLACEABLE)} unplaceable)")

    # Stored exactly as computed; the array-start documents only change the run row's counts.
    expected_rows_only = {**expected, "source": expected["source"] + extra, "rejected": expected["rejected"] + extra}
    assert_stored_equals_reference(sqlite_engine, expected_rows_only)
    stored = read_report(sqlite_engine, "daily", DAY.start_date)
    assert "ü" * 255 in {row["operator_id"] for row in stored["rows"]}


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
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
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
        expected["source"], expected["valid"], expected["rejected"],
    )
    rows = {row.operator_id: row for row in report.rows}
    assert set(rows) == set(expected["rows"])
    for key, want in expected["rows"].items():
        row = rows[key]
        assert (row.total_calls, row.answered_calls, row.total_duration_seconds) == (
            want["total_calls"], want["answered_calls"], want["total_duration_seconds"],
        )
        assert math.isclose(row.answer_ratio, want["answer_ratio"])
