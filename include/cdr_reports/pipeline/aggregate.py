"""Merge the slices of one period into a report, derive the ratios, check the invariants."""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from operator import attrgetter
from typing import Any

from cdr_reports.pipeline.columns import pack_columns, unpack_columns
from cdr_reports.pipeline.errors import InvariantError
from cdr_reports.pipeline.extract import SliceCounts
from cdr_reports.pipeline.periods import ReportPeriod
from cdr_reports.pipeline.validity import average_seconds, rounded_seconds

METHODS = ("extract", "rollup", "mixed")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)  # slots: a 100,000-operator report holds 100,000 of them
class OperatorRow:
    operator_id: str
    total_calls: int
    answered_calls: int
    total_duration_seconds: int
    answer_ratio: float
    avg_answered_duration_seconds: float | None
    total_duration_ms: int | None = None  # exact sum; None only for reports stored before release 0.5

    @classmethod
    def from_counts(cls, operator_id: str, total: int, answered: int, total_ms: int) -> OperatorRow:
        """The one derivation of an operator's figures from its exact counts (extract and roll-up alike)."""
        return cls(
            operator_id=operator_id,
            total_calls=total,
            answered_calls=answered,
            total_duration_seconds=rounded_seconds(total_ms),
            answer_ratio=answered / total,
            avg_answered_duration_seconds=average_seconds(total_ms, answered),
            total_duration_ms=total_ms,
        )


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
    method: str | None = None  # extract | rollup | mixed (None: built outside build_report, e.g. tests)
    days_extracted: int | None = None  # local days whose CDRs were read from MongoDB
    rules_fingerprint: str | None = None  # rollup.rules_fingerprint of the settings it was computed under
    rollup_inputs: Mapping[str, str] | None = None  # ISO day -> version of each daily report rolled up

    @property
    def operators(self) -> int:
        return len(self.rows)

    @property
    def rollup_inputs_sha256(self) -> str | None:
        return inputs_digest(self.rollup_inputs) if self.rollup_inputs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_type": self.report_type,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "time_zone": self.time_zone,
            "source_records": self.source_records,
            "valid_records": self.valid_records,
            "rejected_records": self.rejected_records,
            "operators": len(self.rows),
            # Packed (columns.py): a report of 100,000 operators is one string in XCom, not a tree.
            "rows": pack_columns({name: map(attrgetter(name), self.rows) for name in _ROW_COLUMNS}),
            "generated_at": self.generated_at.isoformat(),
            "dag_run_id": self.dag_run_id,
            "extract_strategy": self.extract_strategy,
            "method": self.method,
            "days_extracted": self.days_extracted,
            "rules_fingerprint": self.rules_fingerprint,
            "rollup_inputs": dict(self.rollup_inputs) if self.rollup_inputs else None,
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
            rows=_rows_from_xcom(data["rows"]),
            generated_at=datetime.fromisoformat(data["generated_at"]),
            dag_run_id=data["dag_run_id"],
            extract_strategy=data.get("extract_strategy"),
            method=data.get("method"),
            days_extracted=data.get("days_extracted"),
            rules_fingerprint=data.get("rules_fingerprint"),
            rollup_inputs=data.get("rollup_inputs") or None,
        )


_ROW_COLUMNS = tuple(OperatorRow.__dataclass_fields__)


def _rows_from_xcom(rows: Any) -> tuple[OperatorRow, ...]:
    """The rows of `Report.to_dict`: packed columns, or a list of dicts (releases before, tests)."""
    if isinstance(rows, Mapping):
        columns = unpack_columns(rows, _ROW_COLUMNS)
        return tuple(itertools.starmap(OperatorRow, zip(*(columns[name] for name in _ROW_COLUMNS), strict=True)))
    return tuple(OperatorRow(**row) for row in rows)


def inputs_digest(inputs: Mapping[str, str]) -> str:
    """SHA-256 of the daily reports a roll-up read: sorted `day|dag_run_id|generated_at` lines."""
    text = "\n".join(f"{day}|{version}" for day, version in sorted(inputs.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    rules_fingerprint: str | None = None,
) -> Report:
    """One report from the partial counts of all slices of `period` (extracted or rolled up).

    Raises InvariantError when the numbers do not reconcile: slices must tile the period;
    source = valid + rejected in every slice; answered <= total for every operator; every
    rolled-up day lies in the period, once.
    """
    parts: list[SliceCounts] = []
    totals: dict[str, int] = {}
    answered: dict[str, int] = {}
    durations: dict[str, int] = {}
    source = rejected = 0
    for part in slices:
        part_valid = sum(part.total_calls.values())
        if part.source_records != part_valid + part.rejected_records:
            raise InvariantError(
                f"{period.label()} slice {part.start.isoformat()}: source {part.source_records} != "
                f"valid {part_valid} + rejected {part.rejected_records} (did data change during extraction?)"
            )
        source += part.source_records
        rejected += part.rejected_records
        _add_counts(part, totals, answered, durations)
        # Kept for the checks below without its per-operator counts, which are freed before the
        # next slice is decoded: fed lazily (tasks.aggregate), one slice's counts in memory at a time.
        parts.append(replace(part, total_calls={}, answered_calls={}, duration_ms={}))
        del part
    _check_slices_tile(period, parts)

    unknown = [key for key in itertools.chain(answered, durations) if key not in totals]
    if unknown:
        raise InvariantError(
            f"{period.label()}: operators with answers or durations but no calls: {sorted(set(unknown))[:5]}"
        )

    rows = []
    for operator_id in sorted(totals):
        total = totals[operator_id]
        answered_calls = answered.get(operator_id, 0)
        if answered_calls > total:
            raise InvariantError(
                f"{period.label()}: operator {operator_id!r} has {answered_calls} answered of {total} calls"
            )
        rows.append(OperatorRow.from_counts(operator_id, total, answered_calls, durations.get(operator_id, 0)))
    valid = sum(totals.values())
    rolled = _rolled_up_days(period, parts)
    inputs = {day: version for part in parts for day, version in part.rollup_inputs.items()}
    days_extracted = (period.end_date - period.start_date).days - len(rolled)
    method = "extract" if not rolled else ("rollup" if days_extracted == 0 else "mixed")
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
        extract_strategy="+".join(
            sorted({s for p in parts if p.strategy for s in p.strategy.split("+") if s != "rollup"})
        )
        or None,
        method=method,
        days_extracted=days_extracted,
        rules_fingerprint=rules_fingerprint,
        rollup_inputs=inputs or None,
    )
    log.info(
        "aggregate %s: %d operators, source=%d valid=%d rejected=%d, method %s (%d day(s) extracted)",
        period.label(),
        report.operators,
        source,
        valid,
        rejected,
        method,
        days_extracted,
    )
    return report


def _add_counts(part: SliceCounts, totals: dict[str, int], answered: dict[str, int], durations: dict[str, int]) -> None:
    for mapping, target in (
        (part.total_calls, totals),
        (part.answered_calls, answered),
        (part.duration_ms, durations),
    ):
        for key, value in mapping.items():
            target[key] = target.get(key, 0) + value


def _rolled_up_days(period: ReportPeriod, parts: Sequence[SliceCounts]) -> set[str]:
    days = [day for part in parts for day in part.rolled_up_days]
    if len(days) != len(set(days)):
        raise InvariantError(f"{period.label()}: a day was rolled up twice: {sorted(days)}")
    outside = [d for d in days if not period.start_date <= date.fromisoformat(d) < period.end_date]
    if outside:
        raise InvariantError(f"{period.label()}: rolled-up days outside the period: {outside}")
    missing = [d for part in parts for d in part.rolled_up_days if d not in part.rollup_inputs]
    if missing:
        raise InvariantError(f"{period.label()}: rolled-up days without the version read: {missing}")
    return set(days)
