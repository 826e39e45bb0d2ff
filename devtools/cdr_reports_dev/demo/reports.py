"""What `make demo` reports: the periods, the daily reports its roll-ups read, the printed tables.

The weekly and monthly reports are rolled up from the stored daily reports of their days
(CDR_ROLLUP=auto, cdr_reports.pipeline.rollup). The demo runs one daily DAG run (the last
complete day), so before the weekly and monthly DAGs run it stores the daily reports of their
other days with the pipeline's own functions (what each daily DAG run computes, with the settings
of the DAGs' environment: the same rules fingerprint), from one read of their CDRs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pymongo
import sqlalchemy as sa

from cdr_reports.pipeline.aggregate import build_report
from cdr_reports.pipeline.config import load_settings
from cdr_reports.pipeline.extract import STREAM_BATCH_SIZE, ScopedCollection, extract_slice
from cdr_reports.pipeline.load import load_report
from cdr_reports.pipeline.periods import last_complete_period, period_containing
from cdr_reports.pipeline.report_types import REPORT_TYPES
from cdr_reports.pipeline.rollup import period_days, rules_fingerprint
from cdr_reports.pipeline.validity import START_FIELD, DocumentRules
from cdr_reports_dev.demo.state import DemoPaths, log
from cdr_reports_dev.report_print import format_reports

ROLLED_UP_TYPES = ("weekly", "monthly")
# The dag_run_id of the daily reports the demo stores in-process (no DAG run behind them).
PIPELINE_RUN_ID = "demo_pipeline__{day}"


def requested_report_types() -> list[str]:
    """DEMO_REPORTS: comma-separated subset of daily,weekly,monthly (default: all three)."""
    raw = os.environ.get("DEMO_REPORTS", "").strip()
    if not raw:
        return list(REPORT_TYPES)
    wanted = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = sorted(set(wanted) - set(REPORT_TYPES))
    if unknown or not wanted:
        raise SystemExit(f"DEMO_REPORTS={raw!r}: expected a comma-separated subset of {','.join(REPORT_TYPES)}")
    return [report_type for report_type in REPORT_TYPES if report_type in wanted]


def report_periods(report_types: list[str], run_after: datetime, env: Mapping[str, str]) -> dict[str, date]:
    """The last complete period of each type at `run_after` (what a DAG run at that time reports)."""
    settings = load_settings(env)
    return {
        report_type: last_complete_period(report_type, run_after, settings.time_zone, settings.week_start).start_date
        for report_type in report_types
    }


def days_to_store(periods: Mapping[str, date], env: Mapping[str, str]) -> list[date]:
    """The days whose daily reports the weekly and monthly roll-ups read, minus the daily DAG's own day."""
    settings = load_settings(env)
    days: set[date] = set()
    for report_type in ROLLED_UP_TYPES:
        if report_type in periods:
            period = period_containing(report_type, periods[report_type], settings.time_zone, settings.week_start)
            days.update(period_days(period))
    days.discard(periods.get("daily"))  # stored by the daily DAG run itself
    return sorted(days)


class _PreReadDay:
    """The CDRs of one local day, from the one query `store_daily_reports` sent, as `extract_slice` reads them.

    That query was the window of all the days with the global filter and the stream strategy's
    projection (extract.ScopedCollection), so splitting its documents by their local day yields
    exactly what one such query per day would have returned.
    """

    def __init__(self, documents: list[Mapping[str, Any]]) -> None:
        self.documents = documents

    def find(self, *args: Any, **kwargs: Any) -> Iterator[Mapping[str, Any]]:
        return iter(self.documents)


def store_daily_reports(
    paths: DemoPaths, mongo_uri: str, state_database: str, days: list[date], env: Mapping[str, str]
) -> None:
    """The daily reports of `days`, counted from the CDRs with the pipeline's rules and stored.

    One read of the CDRs of all the days, not one per day: FerretDB decodes the whole collection
    for every query (30 daily queries took ~30 s each on the loaded 2-core machine). Each day is
    then counted by `extract.extract_slice` (stream strategy, the one the DAG picks on FerretDB),
    built and stored by the same functions as a daily DAG run (`build_report`, `load_report`),
    with the rules fingerprint of the DAGs' settings, so that the weekly and monthly roll-ups
    qualify them.
    """
    if not days:
        return
    settings = load_settings(env)
    tz = ZoneInfo(settings.time_zone)
    began = time.monotonic()
    periods = {day: period_containing("daily", day, settings.time_zone, settings.week_start) for day in days}
    first, end = periods[days[0]].start_utc, periods[days[-1]].end_utc
    rules = DocumentRules.for_settings(settings.max_call_duration_seconds)
    buckets: dict[date, list[Mapping[str, Any]]] = {day: [] for day in days}
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000) as client:
        collection: Any = client[settings.mongo_database or state_database][settings.collection]
        scoped = ScopedCollection(collection, settings.global_filter, first, end)
        for document in scoped.find({**rules.projection(), START_FIELD: 1}, batch_size=STREAM_BATCH_SIZE):
            start = document["DateTime"]["Start"]  # naive UTC, as pymongo returns BSON dates
            day = start.replace(tzinfo=UTC).astimezone(tz).date()
            if day in buckets:  # `days` may have gaps (the daily DAG's own day is not among them)
                buckets[day].append(document)
    fingerprint = rules_fingerprint(settings)
    engine = sa.create_engine(f"sqlite:///{paths.reports_db}")
    try:
        with _quiet("cdr_reports", "alembic"):  # ~7 INFO lines per day would bury the demo's own output
            _count_and_store(engine, periods, buckets, settings, fingerprint)
    finally:
        engine.dispose()
    log(
        f"stored the daily reports of {days[0]} .. {days[-1]} ({len(days)} days) with the pipeline in "
        f"{time.monotonic() - began:.1f} s: the weekly and monthly DAGs roll them up"
    )


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """These loggers at WARNING for the block (their INFO lines are the DAG runs' logs, not the demo's)."""
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _count_and_store(
    engine: sa.engine.Engine,
    periods: Mapping[date, Any],
    buckets: Mapping[date, list[Mapping[str, Any]]],
    settings: Any,
    fingerprint: str,
) -> None:
    """Each day counted by `extract.extract_slice` from its pre-read documents, built and loaded."""
    for day, period in periods.items():
        counts = extract_slice(
            _PreReadDay(buckets[day]), period.start_utc, period.end_utc, settings.global_filter,
            settings.max_call_duration_seconds, "stream",
        )  # fmt: skip
        run_id = PIPELINE_RUN_ID.format(day=day.isoformat())
        load_report(engine, build_report(period, [counts], dag_run_id=run_id, rules_fingerprint=fingerprint))


def print_reports(paths: DemoPaths, periods: Mapping[str, date]) -> str:
    """The stored reports of `periods` as text tables (method and days extracted on each `run:` line)."""
    engine = sa.create_engine(f"sqlite:///{paths.reports_db}")
    try:
        text = format_reports(engine, periods)
    finally:
        engine.dispose()
    print(text, flush=True)
    return text
