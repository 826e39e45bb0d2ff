"""The data-quality findings and the volume rule: pure functions of counts, no I/O."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

DROP, VANISHED, NEW, LATE_DATA = "drop", "vanished", "new", "late_data"
# A weekly or monthly report stored by a rebuild run (the daily DAG's trigger_rebuilds): why, by which run.
REBUILT = "rebuilt"
VOLUME_VERDICTS = (DROP, VANISHED, NEW)
# operator_id of a finding about the whole period: never a valid id (validity.operator_key).
WHOLE_PERIOD = ""

# The start of a late_data finding's detail while its re-report has not committed yet (see
# checks.check_late_data); a prefix, so that cutting the detail to its column never loses it.
REREPORT_PENDING = "[re-report started, not yet done] "
REREPORT_FINISHED = "; re-reported (the try that started it died after its commit; finished by a retry)"


@dataclass(frozen=True)
class Finding:
    """One row of `cdr_quality_check` (without who/when, which the caller adds)."""

    report_type: str
    period_start: date
    operator_id: str
    verdict: str
    expected: float | None
    actual: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "period_start": self.period_start.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(**{**data, "period_start": date.fromisoformat(str(data["period_start"]))})

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Finding:
        """A stored `cdr_quality_check` row (store.read_findings), without who/when."""
        return cls(
            row["report_type"], row["period_start"], row["operator_id"], row["verdict"], row["expected"],
            int(row["actual"]), row["detail"],
        )  # fmt: skip

    def line(self) -> str:
        """The finding in one line of an alert."""
        who = f"operator {self.operator_id!r}" if self.operator_id != WHOLE_PERIOD else "whole period"
        return f"{self.verdict.upper()} {self.report_type} {self.period_start.isoformat()} {who}: {self.detail}"


# A day can hold a finding per operator (a day of 100,000 new operators: 100,000 findings). Alerts,
# task logs and XCom list the first FINDINGS_LISTED and count the others; all are stored in
# cdr_quality_check, where the report view and the report e-mail read them.
FINDINGS_LISTED = 20


def finding_lines(findings: Sequence[Finding]) -> list[str]:
    """One line per finding (Finding.line), the first FINDINGS_LISTED, then how many more are stored."""
    lines = [finding.line() for finding in findings[:FINDINGS_LISTED]]
    if len(findings) > FINDINGS_LISTED:
        lines.append(
            f"... and {len(findings) - FINDINGS_LISTED:,} more: all {len(findings):,} are in cdr_quality_check"
        )
    return lines


@dataclass(frozen=True)
class Recount:
    """One past period re-counted: what was stored and what the source holds now."""

    period_start: date
    stored_source_records: int | None  # None: no stored report to compare with
    source_records_now: int | None
    stored_by: str | None = None


def _calls(count: int) -> str:
    return f"{count} call{'s' if count != 1 else ''}"


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def volume_findings(
    report_type: str,
    period_start: date,
    current: Mapping[str, int],
    history: Sequence[Mapping[str, int]],
    *,
    threshold: float,
    min_expected: int,
) -> list[Finding]:
    """Drops, vanished and new operators of one report against its previous reports.

    `current` and each item of `history` map operator ids to `total_calls` (a stored report has a
    row only for operators with calls, so an absent operator had none). `history` holds the
    previous reports of the same type, however many exist up to K; empty means nothing to judge.
    """
    if not history:
        return []
    reports = len(history)
    of_previous = f"the previous {reports} {report_type} report{'s' if reports != 1 else ''}"
    findings: list[Finding] = []
    operators = set(current).union(*history)
    for operator in sorted(operators):
        past = [int(report.get(operator, 0)) for report in history]
        actual = int(current.get(operator, 0))
        if not any(past):
            if actual > 0:
                findings.append(
                    Finding(
                        report_type,
                        period_start,
                        operator,
                        NEW,
                        None,
                        actual,
                        f"{_calls(actual)}; none in {of_previous}",
                    )
                )
            continue
        expected = float(statistics.median(past))
        if expected <= 0 or expected < min_expected:
            continue  # too small to judge: a few calls more or less is noise, not an outage
        if actual == 0:
            findings.append(
                Finding(
                    report_type,
                    period_start,
                    operator,
                    VANISHED,
                    expected,
                    0,
                    f"no calls; median of {of_previous}: {_number(expected)}",
                )
            )
        elif actual < threshold * expected:
            findings.append(
                Finding(
                    report_type,
                    period_start,
                    operator,
                    DROP,
                    expected,
                    actual,
                    f"{_calls(actual)} = {actual / expected:.0%} of the median {_number(expected)} of {of_previous} "
                    f"(threshold {threshold:.0%})",
                )
            )
    return findings
