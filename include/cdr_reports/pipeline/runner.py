"""The whole report for one period, without Airflow: plan, count every window, aggregate, load.

The DAG tasks call the same functions one step per task; this module is what the tests, the
demo, the benchmarks, the late-data re-report and the roll-up rebuilds call directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from cdr_reports.pipeline import extract, rollup
from cdr_reports.pipeline.aggregate import Report, build_report, inputs_digest
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.extract import SliceCounts
from cdr_reports.pipeline.periods import ReportPeriod, local_midnight_utc, period_containing
from cdr_reports.pipeline.plan import period_from_dict
from cdr_reports.pipeline.report_types import ROLLED_UP_TYPES

log = logging.getLogger(__name__)

# A roll-up whose daily inputs changed before it was stored is built again this often.
BUILD_ATTEMPTS = 3


def extract_window(collection: Any, start: datetime, end: datetime, settings: Settings) -> SliceCounts:
    """One slice, with the filter, rules and strategy of the settings (what each extract task does)."""
    return extract.extract_slice(
        collection, start, end, settings.global_filter, settings.max_call_duration_seconds, settings.extract_strategy
    )


def extract_period(collection: Any, period: ReportPeriod, settings: Settings) -> list[SliceCounts]:
    """Every CDR slice of `period` read from MongoDB (the direct extract, whatever CDR_ROLLUP says)."""
    slices = period.slices(settings.slices_for(period.report_type))
    return [extract_window(collection, start, end, settings) for start, end in slices]


def rolls_up(report_type: str, settings: Settings) -> bool:
    """Whether reports of this type are built from the stored daily reports (CDR_ROLLUP)."""
    return report_type in ROLLED_UP_TYPES and settings.rollup == "auto"


def plan_report_windows(
    engine: Any, period: ReportPeriod, settings: Settings, fingerprint: str
) -> list[dict[str, Any]]:
    """The windows of a run: rolled-up and extracted runs of days, or the direct extract's slices."""
    rolling_up = rolls_up(period.report_type, settings)
    qualifying = rollup.qualifying_days(engine, period, fingerprint, settings.sql_schema) if rolling_up else {}
    windows = rollup.plan_windows(period, qualifying, settings.slices_for(period.report_type))
    rolled = sum(len(w["days"]) for w in windows if w["method"] == rollup.ROLLUP)
    log.info(
        "plan %s: %d of %d day(s) rolled up from stored daily reports, %d window(s)%s",
        period.label(), rolled, len(rollup.period_days(period)), len(windows),
        "" if rolling_up else " (CDR_ROLLUP=off or a daily report)",
    )  # fmt: skip
    return [{**window, "rules_fingerprint": fingerprint} for window in windows]


def count_window(get_collection: Any, engine: Any, window: dict[str, Any], settings: Settings) -> SliceCounts:
    """The counts of one window: from MongoDB, or (method `rollup`) from the stored daily reports.

    A day that stopped qualifying since the plan (its daily report replaced under other rules,
    or deleted) is extracted from MongoDB instead, so the window is always counted whole.
    `get_collection` is called only when CDRs must be read.
    """
    start, end = datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])
    if window.get("method") != rollup.ROLLUP:
        return extract_window(get_collection(), start, end, settings)
    tz = period_from_dict(window["period"]).tz_name
    parts: list[SliceCounts] = []
    todo = [(rollup.ROLLUP, [date.fromisoformat(day) for day in window["days"]])]
    while todo:
        method, days = todo.pop(0)
        if method == rollup.EXTRACT:
            first, end = local_midnight_utc(days[0], tz), local_midnight_utc(days[-1] + timedelta(days=1), tz)
            parts.append(extract_window(get_collection(), first, end, settings))
            continue
        counts, bad = rollup.read_days(engine, days, tz, window["rules_fingerprint"], settings.sql_schema)
        if counts is not None:
            parts.append(counts)
            continue
        log.warning("roll-up: %s no longer qualify; extracting from MongoDB", ", ".join(map(str, sorted(bad))))
        # Every turn rolls up fewer days than the last, so this ends.
        todo = rollup.split_days(days, set(days) - bad) + todo
    parts.sort(key=lambda part: part.start)
    merged = parts[0]
    for part in parts[1:]:
        merged.add(part)
    return merged


def run_report(
    collection: Any, engine: Any, period: ReportPeriod, settings: Settings, dag_run_id: str, also: Any = None
) -> Report:
    """Plan, count, aggregate and load one period in this process (roll-ups included); `also`: load_report's."""
    fingerprint = rollup.rules_fingerprint(settings)
    # load imports SQLAlchemy: deferred (TID253), because the extract tasks import this module too
    # and a worker that only counts CDRs stays small (docs/benchmarks.md, client peak RSS).
    from cdr_reports.pipeline.load import load_report

    for attempt in range(1, BUILD_ATTEMPTS + 1):
        windows = plan_report_windows(engine, period, settings, fingerprint)
        parts = [count_window(lambda: collection, engine, window, settings) for window in windows]
        report = build_report(period, parts, dag_run_id=dag_run_id, rules_fingerprint=fingerprint)
        try:
            load_report(engine, report, schema=settings.sql_schema, also=also)
            return report
        except rollup.StaleRollupError as exc:
            if attempt == BUILD_ATTEMPTS:
                raise
            log.warning("%s (attempt %d of %d)", exc, attempt, BUILD_ATTEMPTS)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class StaleRollup:
    """A stored week or month that its daily reports no longer match, why, and what it would roll up now."""

    period: ReportPeriod
    reason: str
    inputs_sha256: str | None  # digest of the qualifying daily reports now (None: none qualifies)


def stale_rollups(engine: Any, days: list[date], settings: Settings) -> list[StaleRollup]:
    """The stored weekly and monthly reports containing `days` that their daily reports no longer match.

    A rolled-up week or month records which daily reports it read (`rollup_inputs_sha256`): it is
    stale when the qualifying daily reports of its days differ from those (a day re-reported after
    late data, re-run, backfilled, stored for the first time, or replaced under other rules). A week
    or month read from the CDRs (`rollup_inputs_sha256` NULL) is stale when a qualifying daily report
    of its days was stored after it. Durable: the state is in the report tables, so a check that
    died is simply made again by the next check of any of its days.
    """
    import sqlalchemy as sa

    from cdr_reports.pipeline.schema import report_tables  # SQLAlchemy: deferred, see run_report

    if settings.rollup == "off":
        return []
    fingerprint = rollup.rules_fingerprint(settings)
    run = report_tables(settings.sql_schema).run
    stale: list[StaleRollup] = []
    periods = {
        period_containing(rt, day, settings.time_zone, settings.week_start) for day in days for rt in ROLLED_UP_TYPES
    }
    for period in sorted(periods, key=lambda p: (p.report_type, p.start_date)):
        with engine.connect() as conn:
            stored = conn.execute(
                sa.select(run.c.generated_at, run.c.rollup_inputs_sha256).where(
                    run.c.report_type == period.report_type, run.c.period_start == period.start_date
                )
            ).first()
        if stored is None:
            continue  # not stored yet: its own run will roll up what is stored then
        current = rollup.qualifying_days(engine, period, fingerprint, settings.sql_schema)
        digest = inputs_digest(current) if current else None
        stored_at = stored.generated_at.isoformat()
        newer = sorted(day for day, version in current.items() if version.split("|")[-1] > stored_at)
        if stored.rollup_inputs_sha256 is None:
            if not newer:
                continue  # read from the CDRs, and no daily report changed since
        elif digest == stored.rollup_inputs_sha256:
            continue
        reason = (
            f"daily report(s) of {', '.join(newer)} stored after it ({stored_at} UTC)"
            if newer
            else "the daily reports it rolled up changed (replaced under other rules, or removed)"
        )
        stale.append(StaleRollup(period, reason, digest))
    return stale
