from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cdr_reports.pipeline.aggregate import Report, build_report
from cdr_reports.pipeline.errors import InvariantError
from cdr_reports.pipeline.extract import SliceCounts
from cdr_reports.pipeline.periods import period_containing
from cdr_reports.pipeline.validity import duration_ms, operator_key, rounded_seconds

DAY = period_containing("daily", date(2026, 11, 27), "Europe/Istanbul")
AT = datetime(2026, 11, 28, 1, 2, 3, tzinfo=UTC)


def _slice(start, end, source, rejected, totals, answered, durations):
    return SliceCounts(start, end, source, rejected, dict(totals), dict(answered), dict(durations))


def test_slices_merge_and_ratios():
    (a_start, a_end), (b_start, b_end) = DAY.slices(2)
    report = build_report(
        DAY,
        [
            _slice(b_start, b_end, 5, 1, {"7": 3, "x": 1}, {"7": 1}, {"7": 10_400, "x": 0}),
            _slice(a_start, a_end, 4, 0, {"7": 4}, {"7": 3}, {"7": 20_000}),
        ],
        dag_run_id="r",
        generated_at=AT,
    )
    assert (report.source_records, report.valid_records, report.rejected_records) == (9, 8, 1)
    seven, x = report.rows
    assert (seven.operator_id, seven.total_calls, seven.answered_calls) == ("7", 7, 4)
    assert seven.total_duration_seconds == 30  # 30.4 rounds to 30
    assert seven.answer_ratio == pytest.approx(4 / 7)
    assert seven.avg_answered_duration_seconds == pytest.approx(30.4 / 4)
    assert (x.total_calls, x.answered_calls, x.answer_ratio, x.avg_answered_duration_seconds) == (1, 0, 0.0, None)
    assert report.period_start == date(2026, 11, 27) and report.period_end == date(2026, 11, 28)
    assert Report.from_dict(report.to_dict()) == report


def test_slice_counts_survive_xcom_json():
    import json

    ((start, end),) = DAY.slices(1)
    counts = _slice(start, end, 3, 1, {"a": 2}, {"a": 1}, {"a": 2_500})
    assert SliceCounts.from_dict(json.loads(json.dumps(counts.to_dict()))) == counts


@pytest.mark.parametrize(
    ("slices", "message"),
    [
        ([], "no extracted slice"),
        ("gap", "gap or overlap"),
        ("short", "slices cover"),
        ("unbalanced", "source 5 != valid 3 + rejected 1"),
        ("answered", "has 4 answered of 3 calls"),
        ("orphan", "answers or durations but no calls"),
    ],
)
def test_invariants_fail_loudly(slices, message):
    (a_start, a_end), (_b_start, b_end), (c_start, c_end) = DAY.slices(3)
    whole = (DAY.start_utc, DAY.end_utc)
    cases = {
        "gap": [_slice(a_start, a_end, 0, 0, {}, {}, {}), _slice(c_start, c_end, 0, 0, {}, {}, {})],
        "short": [_slice(a_start, b_end, 0, 0, {}, {}, {})],
        "unbalanced": [_slice(*whole, 5, 1, {"a": 3}, {}, {"a": 1})],
        "answered": [_slice(*whole, 3, 0, {"a": 3}, {"a": 4}, {"a": 1})],
        "orphan": [_slice(*whole, 3, 0, {"a": 3}, {"b": 1}, {"a": 1})],
    }
    with pytest.raises(InvariantError, match=message.replace("+", r"\+")):
        build_report(DAY, cases.get(slices, slices) if isinstance(slices, str) else slices, "r")


def test_rounded_seconds_half_up_from_exact_milliseconds():
    assert [rounded_seconds(v) for v in (500, 1_500, 2_499, 2**62, 7_000)] == [1, 2, 2, (2**62 + 500) // 1000, 7]


def test_duration_ms_is_exact_for_millisecond_durations_and_independent_of_split():
    assert [duration_ms(v) for v in (0.5, 12.345, 0.001, 7, 2**31, 0.0004999, 0.0005)] == [
        500,
        12_345,
        1,
        7_000,
        2**31 * 1000,
        0,
        1,
    ]
    # Float sums move with the order and grouping of the additions; millisecond sums cannot.
    values = [0.1, 0.2, 0.3, 1.0005, 2.4995] * 7
    assert sum(duration_ms(v) for v in values) == sum(duration_ms(v) for v in reversed(values))


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (0, "0"),
        (5, "5"),
        ("5", "5"),
        ("Türk", "Türk"),
        ("", None),
        ("x" * 256, None),
        (True, None),
        (None, None),
        ([1], None),
        (1.0, None),
        ({"a": 1}, None),
    ],
)
def test_operator_keys(raw, key):
    assert operator_key(raw) == key
