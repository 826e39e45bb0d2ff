"""Packed per-operator columns (pipeline/columns.py): exact round trips, checked decoding, compact size."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import zlib
from datetime import UTC, date, datetime

import pytest

from cdr_reports.pipeline.aggregate import OperatorRow, Report, build_report
from cdr_reports.pipeline.columns import ENCODING, ColumnsError, pack_columns, unpack_columns
from cdr_reports.pipeline.errors import InvariantError
from cdr_reports.pipeline.extract import SliceCounts
from cdr_reports.pipeline.periods import period_containing

DAY = period_containing("daily", date(2026, 11, 27), "Europe/Istanbul")
AT = datetime(2026, 11, 28, 1, 2, 3, tzinfo=UTC)
# Ids a real day holds: long, non-ASCII, RTL, zero-width, NUL, a lone surrogate, look-alikes.
ODD_IDS = ["ü" * 255, "\u05d0\u05d1", "a\u200bb", "nul\x00id", "\ud800", "pad ", "7", "07", "ABC", "abc"]


def _xcom(value):
    """What a value looks like after XCom: JSON text and back."""
    return json.loads(json.dumps(value))


def test_columns_round_trip_every_json_value_exactly():
    columns = {
        "id": ODD_IDS,
        "n": list(range(len(ODD_IDS))),
        "x": [0.1, 1 / 3, None, 2**53, -0.0, 1e-300, 5.5, 0, 1, 2],
    }
    packed = _xcom(pack_columns(columns))
    assert packed["encoding"] == ENCODING and packed["rows"] == len(ODD_IDS)
    got = unpack_columns(packed, ("id", "n", "x"))
    assert got == columns
    assert [repr(v) for v in got["x"]] == [repr(v) for v in columns["x"]]  # floats bit for bit


def test_empty_columns_round_trip():
    assert unpack_columns(_xcom(pack_columns({"id": [], "n": []})), ("id", "n")) == {"id": [], "n": []}


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda p: {**p, "encoding": "gzip/v0"}, "expected 'zlib+base64/json-columns-v1'"),
        (lambda p: {**p, "data": p["data"][:-8]}, "cannot be decoded"),
        (lambda p: {**p, "data": "not base64!"}, "cannot be decoded"),
        (lambda p: {**p, "rows": p["rows"] + 1}, "does not hold 4 values"),
        (
            lambda p: {**p, "data": base64.b64encode(zlib.compress(b'{"id": [1, 2, 3]}')).decode()},
            "'n' is missing",
        ),
    ],
)
def test_damaged_columns_are_refused_with_the_reason(mangle, message):
    packed = pack_columns({"id": ["a", "b", "c"], "n": [1, 2, 3]})
    with pytest.raises(ColumnsError, match=re.escape(message)):
        unpack_columns(mangle(packed), ("id", "n"))


def test_ragged_columns_are_not_packed():
    with pytest.raises(ColumnsError, match="different lengths"):
        pack_columns({"id": ["a", "b"], "n": [1]})


def test_slice_counts_keep_absent_entries_absent():
    """An inconsistent slice (answers without calls) must reach build_report's check unchanged."""
    ((start, end),) = DAY.slices(1)
    counts = SliceCounts(start, end, 3, 1, {"a": 2}, {"a": 1, "ghost": 1}, {"a": 2_500})
    back = SliceCounts.from_dict(_xcom(counts.to_dict()))
    assert back == counts
    with pytest.raises(InvariantError, match="answers or durations but no calls"):
        build_report(DAY, [back], dag_run_id="r", generated_at=AT)


def test_slice_counts_xcom_form_is_readable_and_packed():
    ((start, end),) = DAY.slices(1)
    counts = SliceCounts(start, end, 5, 2, {"a": 2, "b": 1}, {"a": 1}, {"a": 2_500, "b": 0}, strategy="stream")
    data = _xcom(counts.to_dict())
    assert {k: data[k] for k in ("source_records", "valid_records", "rejected_records", "operators")} == {
        "source_records": 5,
        "valid_records": 3,
        "rejected_records": 2,
        "operators": 2,
    }
    assert set(data["counts"]) == {"encoding", "rows", "data"} and data["counts"]["encoding"] == ENCODING
    assert unpack_columns(data["counts"], ("operator", "total_calls", "answered_calls", "duration_ms")) == {
        "operator": ["a", "b"],
        "total_calls": [2, 1],
        "answered_calls": [1, None],
        "duration_ms": [2_500, 0],
    }


def test_slice_counts_of_an_earlier_release_still_read():
    """XCom written before the packed form (a run in flight during an upgrade) still aggregates."""
    ((start, end),) = DAY.slices(1)
    old = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "source_records": 4,
        "rejected_records": 1,
        "total_calls": {"a": 3},
        "answered_calls": {"a": 2},
        "duration_ms": {"a": 9_000},
        "strategy": "stream",
        "rolled_up_days": [],
        "rollup_inputs": {},
    }
    assert SliceCounts.from_dict(old) == SliceCounts(start, end, 4, 1, {"a": 3}, {"a": 2}, {"a": 9_000}, "stream")


def _report(operators: int) -> Report:
    ((start, end),) = DAY.slices(1)
    ids = [f"OP-{i:06d}" for i in range(operators)]
    counts = SliceCounts(
        start,
        end,
        3 * operators,
        0,
        dict.fromkeys(ids, 3),
        {k: i % 4 for i, k in enumerate(ids)},
        {k: 1_000 * i + 7 for i, k in enumerate(ids)},
    )
    return build_report(DAY, [counts], dag_run_id="r", generated_at=AT)


def test_report_round_trips_through_xcom_json():
    report = _report(50)
    assert Report.from_dict(_xcom(report.to_dict())) == report
    assert _xcom(report.to_dict())["operators"] == 50


def test_report_rows_of_an_earlier_release_still_read():
    report = _report(3)
    old = {**report.to_dict(), "rows": [dataclasses.asdict(row) for row in report.rows]}
    assert Report.from_dict(_xcom(old)) == report
    legacy = OperatorRow("x", 1, 0, 0, 0.0, None)  # total_duration_ms None: stored before release 0.5
    assert Report.from_dict(_xcom({**old, "rows": [dataclasses.asdict(legacy)]})).rows == (legacy,)


def test_xcom_size_per_operator_is_a_few_bytes():
    """The packed form costs a few bytes per operator, where one JSON object each cost ~190."""
    report = _report(20_000)
    size = len(json.dumps(report.to_dict()))
    unpacked = len(json.dumps([dataclasses.asdict(row) for row in report.rows]))
    assert size / report.operators < 16, size
    assert unpacked / report.operators > 150  # what the dict-per-row form would have cost
