"""Merge the slices of one period into a report, derive the ratios, check the invariants."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from cdr_reports.pipeline.errors import InvariantError
from cdr_reports.pipeline.extract import SliceCounts
from cdr_reports.pipeline.periods import ReportPeriod

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorRow:
    operator_id: str
    total_calls: int
    answered_calls: int
    total_duration_seconds: int
    answer_ratio: float
    avg_answered_duration_seconds: float | None


@dataclass(frozen=True)
class Report:
    report_type: str
    period_start: date
    period_end: date
    time_zone: str
    source_records: int
    valid_records: int
    rejected_records: int
    rows: tuple[OperatorRow, ...]
    generated_at: datetime  # aware UTC
    dag_run_id: str
    extract_strategy: str | None = None  # how the slices were extracted (pushdown / stream)

    @property
    def operators(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_type": self.report_type,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "time_zone": self.time_zone,
            "source_records": self.source_records,
            "valid_records": self.valid_records,
            "rejected_records": self.rejected_records,
            "rows": [row.__dict__.copy() for row in self.rows],
            "generated_at": self.generated_at.isoformat(),
            "dag_run_id": self.dag_run_id,
            "extract_strategy": self.extract_strategy,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            report_type=data["report_type"],
            period_start=date.fromisoformat(data["period_start"]),
            period_end=date.fromisoformat(data["period_end"]),
            time_zone=data["time_zone"],
            source_records=int(data["source_records"]),
            valid_records=int(data["valid_records"]),
            rejected_records=int(data["rejected_records"]),
            rows=tuple(OperatorRow(**row) for row in data["rows"]),
            generated_at=datetime.fromisoformat(data["generated_at"]),
            dag_run_id=data["dag_run_id"],
            extract_strategy=data.get("extract_strategy"),
        )


def round_seconds(value: float | int) -> int:
    """Whole seconds, halves away from zero (durations are never negative)."""
    if isinstance(value, int):
        return value
    return math.floor(value + 0.5)


def _check_slices_tile(period: ReportPeriod, slices: Sequence[SliceCounts]) -> None:
    ordered = sorted(slices, key=lambda s: s.start)
    if not ordered:
        raise InvariantError(f"{period.label()}: no extracted slice to aggregate")
    if ordered[0].start != period.start_utc or ordered[-1].end != period.end_utc:
        raise InvariantError(
            f"{period.label()}: slices cover {ordered[0].start.isoformat()}..{ordered[-1].end.isoformat()}, "
            f"the period is {period.start_utc.isoformat()}..{period.end_utc.isoformat()}"
        )
    for before, after in itertools.pairwise(ordered):
        if before.end != after.start:
            raise InvariantError(
                f"{period.label()}: slices leave a gap or overlap at {before.end.isoformat()} / {after.start.isoformat()}"
            )


def build_report(
    period: ReportPeriod,
    slices: Iterable[SliceCounts],
    dag_run_id: str,
    generated_at: datetime | None = None,
) -> Report:
    """One report from the partial counts of all slices of `period`.

    Raises InvariantError when the numbers do not reconcile: slices must tile the period;
    source = valid + rejected in every slice; answered <= total for every operator.
    """
    parts = list(slices)
    _check_slices_tile(period, parts)
    totals: dict[str, int] = {}
    answered: dict[str, int] = {}
    durations: dict[str, float | int] = {}
    source = rejected = 0
    for part in parts:
        part_valid = sum(part.total_calls.values())
        if part.source_records != part_valid + part.rejected_records:
            raise InvariantError(
                f"{period.label()} slice {part.start.isoformat()}: source {part.source_records} != "
                f"valid {part_valid} + rejected {part.rejected_records} (did data change during extraction?)"
            )
        source += part.source_records
        rejected += part.rejected_records
        for mapping, target in (
            (part.total_calls, totals),
            (part.answered_calls, answered),
            (part.duration_seconds, durations),
        ):
            merged: dict[str, Any] = target  # ints for calls, int or float for seconds
            for key, value in mapping.items():
                merged[key] = merged.get(key, 0) + value

    unknown = (set(answered) | set(durations)) - set(totals)
    if unknown:
        raise InvariantError(
            f"{period.label()}: operators with answers or durations but no calls: {sorted(unknown)[:5]}"
        )

    rows = []
    for operator_id in sorted(totals):
        total = totals[operator_id]
        answered_calls = answered.get(operator_id, 0)
        if answered_calls > total:
            raise InvariantError(
                f"{period.label()}: operator {operator_id!r} has {answered_calls} answered of {total} calls"
            )
        seconds = durations.get(operator_id, 0)
        rows.append(
            OperatorRow(
                operator_id=operator_id,
                total_calls=total,
                answered_calls=answered_calls,
                total_duration_seconds=round_seconds(seconds),
                answer_ratio=answered_calls / total,
                avg_answered_duration_seconds=(seconds / answered_calls) if answered_calls else None,
            )
        )
    valid = sum(totals.values())
    report = Report(
        report_type=period.report_type,
        period_start=period.start_date,
        period_end=period.end_date,
        time_zone=period.tz_name,
        source_records=source,
        valid_records=valid,
        rejected_records=rejected,
        rows=tuple(rows),
        generated_at=(generated_at or datetime.now(UTC)).astimezone(UTC),
        dag_run_id=dag_run_id,
        extract_strategy="+".join(sorted({p.strategy for p in parts if p.strategy})) or None,
    )
    log.info(
        "aggregate %s: %d operators, source=%d valid=%d rejected=%d",
        period.label(),
        report.operators,
        source,
        valid,
        rejected,
    )
    return report
