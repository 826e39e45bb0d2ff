"""The volume rule (pure function of stored history), findings, alert texts and the audit's query."""

from __future__ import annotations

import json
from datetime import date

import pytest

from cdr_reports.integration.quality_tasks import late_data_message, volume_message
from cdr_reports.pipeline.audit import SourceAudit, audit_match
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.quality.rules import (
    FINDINGS_LISTED,
    LATE_DATA,
    WHOLE_PERIOD,
    Finding,
    finding_lines,
    volume_findings,
)
from cdr_reports.pipeline.validity import operator_key, unplaceable_query

DAY = date(2026, 11, 27)


def judge(current, history, threshold=0.5, min_expected=20):
    found = volume_findings("daily", DAY, current, history, threshold=threshold, min_expected=min_expected)
    return {(f.operator_id, f.verdict, f.expected, f.actual) for f in found}


def test_no_history_judges_nothing():
    assert judge({"A": 1, "B": 500}, []) == set()


def test_drop_vanished_and_new_against_the_median():
    history = [{"A": 100, "B": 40}, {"A": 90, "B": 44}, {"A": 110, "B": 38}]
    assert judge({"A": 49, "B": 40, "N": 3}, history) == {("A", "drop", 100.0, 49), ("N", "new", None, 3)}
    assert judge({"A": 50}, history) == {("B", "vanished", 40.0, 0)}  # exactly half of the median: not a drop
    assert judge({"A": 100, "B": 40}, history) == set()


def test_an_absent_operator_had_zero_calls_in_that_report():
    # Present in 2 of 5 previous reports: median 0, so its absence today is not a vanish...
    sporadic = [{"S": 50}, {"S": 50}, {}, {}, {}]
    assert judge({}, sporadic) == set()
    # ...but present in 3 of 5 it is (median 50).
    assert judge({}, [{"S": 50}, {"S": 50}, {"S": 50}, {}, {}]) == {("S", "vanished", 50.0, 0)}


def test_one_abnormal_report_in_the_history_does_not_move_the_median():
    history = [{"A": 100}] * 5 + [{"A": 1}, {"A": 5000}]  # an outage day and a spike
    assert judge({"A": 49}, history) == {("A", "drop", 100.0, 49)}
    assert judge({"A": 60}, history) == set()


def test_small_operators_are_not_judged_but_new_ones_always_are():
    history = [{"tiny": 4, "big": 30}] * 7
    assert judge({}, history, min_expected=20) == {("big", "vanished", 30.0, 0)}
    assert judge({}, history, min_expected=0) == {("big", "vanished", 30.0, 0), ("tiny", "vanished", 4.0, 0)}
    assert judge({"fresh": 1, "big": 30, "tiny": 4}, history) == {("fresh", "new", None, 1)}


@pytest.mark.parametrize(("threshold", "flagged"), [(0.25, False), (0.5, True), (1.0, True)])
def test_threshold(threshold, flagged):
    assert bool(judge({"A": 40}, [{"A": 100}] * 3, threshold=threshold)) is flagged


def test_findings_are_sorted_worded_and_round_trip():
    found = volume_findings(
        "weekly", DAY, {"B": 1, "A": 1}, [{"A": 100, "B": 100, "C": 100}], threshold=0.5, min_expected=20
    )
    assert [f.operator_id for f in found] == ["A", "B", "C"]
    assert found[0].detail == "1 call = 1% of the median 100 of the previous 1 weekly report (threshold 50%)"
    assert (
        found[2].line()
        == "VANISHED weekly 2026-11-27 operator 'C': no calls; median of the previous 1 weekly report: 100"
    )
    assert [Finding.from_dict(json.loads(json.dumps(f.to_dict()))) for f in found] == found


def test_whole_period_findings_use_an_id_no_operator_can_have():
    assert operator_key(WHOLE_PERIOD) is None
    finding = Finding("daily", DAY, WHOLE_PERIOD, LATE_DATA, 10.0, 12, "source CDRs 10 when reported, 12 now (+2)")
    assert finding.line() == "LATE_DATA daily 2026-11-27 whole period: source CDRs 10 when reported, 12 now (+2)"


def test_alert_texts_list_every_finding():
    found = volume_findings("daily", DAY, {"A": 1, "N": 5}, [{"A": 100, "B": 100}], threshold=0.5, min_expected=20)
    message = volume_message("cdr_daily_report", "run-1", "daily", DAY, found, Settings())
    assert message.subject == "[cdr-reports] VOLUME cdr_daily_report (daily 2026-11-27): 1 drop, 1 vanished, 1 new"
    assert [line[2:] for line in message.text.splitlines() if line.startswith("- ")] == [f.line() for f in found]
    late = [Finding("daily", date(2026, 11, 26), WHOLE_PERIOD, LATE_DATA, 10.0, 12, "x")]
    message = late_data_message("cdr_daily_report", "run-1", late, Settings(late_data_action="alert"))
    assert message.subject == (
        "[cdr-reports] LATE DATA cdr_daily_report: source count changed for 2026-11-26 (NOT re-reported (alert only))"
    )


def test_audit_query_is_unplaceable_and_the_global_filter():
    query = audit_match({"Tenant": "x"})
    assert query == {"$and": [unplaceable_query(), {"Tenant": "x"}]}


def test_audit_samples_fit_their_column_with_whole_ids_only():
    long_ids = tuple(json.dumps("x" * 600) for _ in range(5))
    text = SourceAudit(5, long_ids).samples_json()
    assert len(text) <= 2000 and json.loads(text) == ["x" * 600] * 3
    assert SourceAudit(0, ()).samples_json() == "[]"


def test_the_xcom_of_a_day_of_100000_new_operators_is_bounded():
    """check_volume's return value: counts and a sample, never one entry per operator (issue 22.5)."""
    from cdr_reports.integration.quality_tasks import findings_xcom

    current = {f"OP-{i:06d}": 3 for i in range(100_000)}
    found = volume_findings("daily", DAY, current, [{"OLD": 100}], threshold=0.5, min_expected=20)
    xcom = findings_xcom(found)
    assert xcom["findings_total"] == len(found) == 100_001
    assert xcom["findings_by_verdict"] == {"new": 100_000, "vanished": 1}
    assert [f["operator_id"] for f in xcom["findings"]] == [f.operator_id for f in found[:FINDINGS_LISTED]]
    assert len(json.dumps(xcom)) < 10_000


def test_the_alert_of_a_day_of_100000_new_operators_counts_them_and_lists_a_few():
    current = {f"OP-{i:06d}": 3 for i in range(100_000)}
    found = volume_findings("daily", DAY, current, [{"OLD": 100}], threshold=0.5, min_expected=20)
    message = volume_message("cdr_daily_report", "run-1", "daily", DAY, found, Settings())
    assert message.subject == "[cdr-reports] VOLUME cdr_daily_report (daily 2026-11-27): 1 vanished, 100,000 new"
    listed = [line[2:] for line in message.text.splitlines() if line.startswith("- ")]
    assert listed[:-1] == [f.line() for f in found[:FINDINGS_LISTED]]
    assert listed[-1] == "... and 99,981 more: all 100,001 are in cdr_quality_check"
    assert "Findings (100,001, stored in cdr_quality_check):" in message.text
    assert len(message.text) < 5_000
    # Up to the limit, every finding is listed and nothing is said about more.
    assert finding_lines(found[:FINDINGS_LISTED]) == [f.line() for f in found[:FINDINGS_LISTED]]
