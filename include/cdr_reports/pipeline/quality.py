"""Data-quality checks of stored reports: volume drops, vanished and new operators, late data.

The costly failures of telecom reporting are quiet: a mediation feed stops for one operator and
its calls fall to a fraction, or CDRs arrive after their day was reported and the stored report
is silently short. Two checks make them loud:

- **Volume** (`volume_findings`, a pure function of stored history): after each load, every
  operator's `total_calls` is compared with the median of its previous `CDR_VOLUME_CHECK_HISTORY`
  reports of the same type (an operator absent from a report had 0 calls in it). Below
  `CDR_VOLUME_DROP_THRESHOLD` × median is a `drop`; no calls at all is `vanished`; calls from an
  operator absent from every previous report is `new`. Operators expecting fewer than
  `CDR_VOLUME_MIN_EXPECTED_CALLS` calls are not judged (their counts are mostly noise), and with
  no previous report there is nothing to compare with.
- **Late data** (`check_late_data`): the previous `CDR_LATE_DATA_LOOKBACK_DAYS` days are
  re-counted with one `$match` + `$count` each (the report's own window and global filter, via
  `extract.ScopedCollection.count`); a count that differs from the stored `source_records` is a
  `late_data` finding, and with `CDR_LATE_DATA_ACTION=rereport` that day's report is run again
  (the same idempotent load).

Only findings are stored, in `cdr_quality_check` (schema.py). Running a check again for a period
replaces that check's rows of the period, so re-runs never duplicate findings.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.schema import QUALITY_CHECK_TABLE, column

log = logging.getLogger(__name__)

DROP, VANISHED, NEW, LATE_DATA = "drop", "vanished", "new", "late_data"
VOLUME_VERDICTS = (DROP, VANISHED, NEW)
# operator_id of a finding about the whole period: never a valid id (validity.operator_key).
WHOLE_PERIOD = ""
_DETAIL_CHARS = column(QUALITY_CHECK_TABLE, "detail").type.length


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

    def line(self) -> str:
        """The finding in one line of an alert."""
        who = f"operator {self.operator_id!r}" if self.operator_id != WHOLE_PERIOD else "whole period"
        return f"{self.verdict.upper()} {self.report_type} {self.period_start.isoformat()} {who}: {self.detail}"


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


# --------------------------------------------------------------------------- storage


def _tables(schema: str | None) -> tuple[Any, Any, Any]:
    from cdr_reports.pipeline.load import report_tables
    from cdr_reports.pipeline.schema import build_metadata

    tables = report_tables(schema)
    prefix = f"{schema}." if schema else ""
    return tables.run, tables.operator, build_metadata(schema).tables[prefix + QUALITY_CHECK_TABLE]


def operator_calls(
    engine: Any, report_type: str, period_starts: Iterable[date], schema: str | None = None
) -> dict[date, dict[str, int]]:
    """{period_start: {operator_id: total_calls}} of the stored reports of those periods."""
    import sqlalchemy as sa

    _, operator, _ = _tables(schema)
    starts = list(period_starts)
    result: dict[date, dict[str, int]] = {start: {} for start in starts}
    if not starts:
        return result
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(operator.c.period_start, operator.c.operator_id, operator.c.total_calls).where(
                operator.c.report_type == report_type, operator.c.period_start.in_(starts)
            )
        )
        for period_start, operator_id, total_calls in rows:
            result[period_start][operator_id] = int(total_calls)
    return result


def previous_periods(engine: Any, report_type: str, before: date, limit: int, schema: str | None = None) -> list[date]:
    """The `limit` most recent stored periods of `report_type` starting before `before`, newest first."""
    import sqlalchemy as sa

    run, _, _ = _tables(schema)
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(run.c.period_start)
                .where(run.c.report_type == report_type, run.c.period_start < before)
                .order_by(run.c.period_start.desc())
                .limit(limit)
            ).scalars()
        )


def stored_run(engine: Any, report_type: str, period_start: date, schema: str | None = None) -> dict[str, Any] | None:
    import sqlalchemy as sa

    run, _, _ = _tables(schema)
    with engine.connect() as conn:
        row = (
            conn.execute(sa.select(run).where(run.c.report_type == report_type, run.c.period_start == period_start))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


def replace_findings(
    engine: Any,
    report_type: str,
    period_start: date,
    verdicts: Sequence[str],
    findings: Sequence[Finding],
    dag_run_id: str,
    checked_at: datetime,
    schema: str | None = None,
) -> None:
    """In one transaction: delete the period's rows of `verdicts`, insert `findings` (idempotent)."""
    import sqlalchemy as sa

    from cdr_reports.pipeline.errors import classify_sql_error
    from cdr_reports.pipeline.migrations import ensure_schema

    _, _, checks = _tables(schema)
    stamp = checked_at.astimezone(UTC).replace(tzinfo=None)
    rows = []
    for finding in findings:
        if (finding.report_type, finding.period_start) != (
            report_type,
            period_start,
        ) or finding.verdict not in verdicts:
            raise ValueError(f"finding {finding} is not one of the {report_type} {period_start} {verdicts} findings")
        rows.append(
            {
                **finding.__dict__,
                "detail": finding.detail[:_DETAIL_CHARS],
                "dag_run_id": dag_run_id,
                "checked_at": stamp,
            }
        )
    what = f"storing the {'/'.join(verdicts)} checks of the {report_type} report {period_start.isoformat()}"
    try:
        ensure_schema(engine, schema)
        with engine.begin() as conn:
            conn.execute(
                sa.delete(checks).where(
                    checks.c.report_type == report_type,
                    checks.c.period_start == period_start,
                    checks.c.verdict.in_(list(verdicts)),
                )
            )
            if rows:
                conn.execute(sa.insert(checks), rows)
    except Exception as exc:
        raise classify_sql_error(exc, what) from exc


def read_findings(
    engine: Any,
    report_type: str | None = None,
    period_start: date | None = None,
    schema: str | None = None,
    *,
    verdicts: Sequence[str] | None = None,
    dag_run_id: str | None = None,
) -> list[dict[str, Any]]:
    """Stored findings (all, or those matching every filter given), oldest period first."""
    import sqlalchemy as sa

    _, _, checks = _tables(schema)
    query = sa.select(checks)
    if report_type is not None:
        query = query.where(checks.c.report_type == report_type)
    if period_start is not None:
        query = query.where(checks.c.period_start == period_start)
    if verdicts is not None:
        query = query.where(checks.c.verdict.in_(list(verdicts)))
    if dag_run_id is not None:
        query = query.where(checks.c.dag_run_id == dag_run_id)
    query = query.order_by(checks.c.report_type, checks.c.period_start, checks.c.verdict, checks.c.operator_id)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


# --------------------------------------------------------------------------- the two checks


def check_volume(
    engine: Any,
    report_type: str,
    period_start: date,
    settings: Settings,
    dag_run_id: str,
    checked_at: datetime | None = None,
) -> list[Finding]:
    """Judge the stored report of (report_type, period_start) against its previous reports; store the findings."""
    from cdr_reports.pipeline.errors import PermanentError, classify_sql_error

    what = f"reading the {report_type} reports before {period_start.isoformat()}"
    try:
        if stored_run(engine, report_type, period_start, settings.sql_schema) is None:
            raise PermanentError(f"no stored {report_type} report of {period_start.isoformat()} to check")
        previous = previous_periods(
            engine, report_type, period_start, settings.volume_check_history, settings.sql_schema
        )
        calls = operator_calls(engine, report_type, [period_start, *previous], settings.sql_schema)
    except PermanentError:
        raise
    except Exception as exc:
        raise classify_sql_error(exc, what) from exc
    findings = volume_findings(
        report_type,
        period_start,
        calls[period_start],
        [calls[start] for start in previous],
        threshold=settings.volume_drop_threshold,
        min_expected=settings.volume_min_expected_calls,
    )
    replace_findings(
        engine, report_type, period_start, VOLUME_VERDICTS, findings, dag_run_id,
        checked_at or datetime.now(UTC), settings.sql_schema,
    )  # fmt: skip
    log.info(
        "volume check of the %s report %s against %d previous report(s): %d finding(s)%s",
        report_type, period_start, len(previous), len(findings),
        "".join(f"\n  {finding.line()}" for finding in findings),
    )  # fmt: skip
    return findings


# The start of a late_data finding's detail while its re-report has not committed yet (see check_late_data);
# a prefix, so that cutting the detail to its column never loses it.
REREPORT_PENDING = "[re-report started, not yet done] "
REREPORT_FINISHED = "; re-reported (the try that started it died after its commit; finished by a retry)"


def pending_rereport(engine: Any, report_type: str, period_start: date, schema: str | None = None) -> Finding | None:
    """The late_data finding of a period whose re-report was started and not marked done, if any."""
    for row in read_findings(engine, report_type, period_start, schema, verdicts=(LATE_DATA,)):
        if str(row["detail"]).startswith(REREPORT_PENDING):
            return Finding(
                row["report_type"], row["period_start"], row["operator_id"], row["verdict"], row["expected"],
                int(row["actual"]), row["detail"],
            )  # fmt: skip
    return None


@dataclass(frozen=True)
class Recount:
    """One past period re-counted: what was stored and what the source holds now."""

    period_start: date
    stored_source_records: int | None  # None: no stored report to compare with
    source_records_now: int | None
    stored_by: str | None = None


def check_late_data(
    collection: Any,
    engine: Any,
    period: Any,
    settings: Settings,
    dag_run_id: str,
    checked_at: datetime | None = None,
) -> tuple[list[Finding], list[Recount]]:
    """Re-count the `CDR_LATE_DATA_LOOKBACK_DAYS` periods before `period`; act on changed counts.

    One `$match` + `$count` per period (the window and the global filter, exactly what
    `source_records` counted). A changed count is stored as a `late_data` finding; with
    `CDR_LATE_DATA_ACTION=rereport` the period's report is run again first (same idempotent
    load, written by `dag_run_id`). Periods never reported, or before `CDR_EARLIEST_REPORT_DATE`,
    are skipped.
    """
    from cdr_reports.pipeline.errors import classify_mongo_error
    from cdr_reports.pipeline.extract import ScopedCollection

    when = checked_at or datetime.now(UTC)
    findings: list[Finding] = []
    recounts: list[Recount] = []
    past = period
    for _ in range(settings.late_data_lookback_days):
        past = past.previous()
        if past.start_date < settings.earliest_report_date:
            continue
        stored = stored_run(engine, past.report_type, past.start_date, settings.sql_schema)
        if stored is None:
            log.info("late data: no stored %s report of %s, nothing to compare", past.report_type, past.start_date)
            recounts.append(Recount(past.start_date, None, None))
            continue
        scoped = ScopedCollection(collection, settings.global_filter, past.start_utc, past.end_utc)
        try:
            now = scoped.count()
        except Exception as exc:
            raise classify_mongo_error(exc, f"re-counting the CDRs of {past.label()}") from exc
        before = int(stored["source_records"])
        recounts.append(Recount(past.start_date, before, now, stored["dag_run_id"]))
        pending = pending_rereport(engine, past.report_type, past.start_date, settings.sql_schema)
        if now == before:
            if pending is not None:
                # An earlier try recorded the finding and re-reported, then died before marking it done.
                finding = replace(pending, detail=pending.detail.removeprefix(REREPORT_PENDING) + REREPORT_FINISHED)
                replace_findings(
                    engine, past.report_type, past.start_date, (LATE_DATA,), [finding], dag_run_id, when,
                    settings.sql_schema,
                )  # fmt: skip
                log.warning("late data: %s", finding.line())
                findings.append(finding)
                continue
            log.info("late data: %s still has %d source CDRs (stored by %s)", past.label(), now, stored["dag_run_id"])
            continue
        change = f"{now - before:+d}"
        detail = f"source CDRs {before} when reported (run {stored['dag_run_id']}), {now} now ({change})"
        if settings.late_data_action == "rereport":
            from cdr_reports.pipeline.runner import run_report

            # Durable before the re-report commits: a kill between the two leaves the finding
            # (pending), and the retry, finding the day equal, marks it done and alerts it.
            replace_findings(
                engine, past.report_type, past.start_date, (LATE_DATA,),
                [Finding(past.report_type, past.start_date, WHOLE_PERIOD, LATE_DATA, float(before), now,
                         REREPORT_PENDING + detail)],
                dag_run_id, when, settings.sql_schema,
            )  # fmt: skip
            report = run_report(collection, engine, past, settings, dag_run_id=dag_run_id)
            detail += (
                f"; re-reported: source {report.source_records}, valid {stored['valid_records']} -> "
                f"{report.valid_records}, rejected {stored['rejected_records']} -> {report.rejected_records}, "
                f"operators {stored['operators']} -> {report.operators}"
            )
        else:
            detail += "; not re-reported (CDR_LATE_DATA_ACTION=alert): re-run the period to include them"
        finding = Finding(past.report_type, past.start_date, WHOLE_PERIOD, LATE_DATA, float(before), now, detail)
        replace_findings(
            engine, past.report_type, past.start_date, (LATE_DATA,), [finding], dag_run_id, when, settings.sql_schema
        )
        log.warning("late data: %s", finding.line())
        findings.append(finding)
    return findings, recounts
