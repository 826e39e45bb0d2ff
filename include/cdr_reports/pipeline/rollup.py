"""Weekly and monthly reports from the stored daily reports: server work per day, not per CDR.

A weekly or monthly period is a run of whole local days, and every CDR of it lies in exactly one
of them. Each day's daily report stores exact per-operator counts (calls, answered calls, whole
milliseconds of duration) and the day's source/rejected counts, so the sum over the days IS the
period's report, provided every day was counted under the same rules. Hence:

- A day *qualifies* when its daily report is stored with the `rules_fingerprint` of the settings
  the period is built under (time zone, global filter, validity rules, source collection) and
  with exact durations (release 0.5 on; older reports have NULL there and never qualify).
- `plan_windows` turns a period into windows: runs of qualifying days (`method: rollup`, read
  from the report database by `read_days`) and runs of the others (`method: extract`, read from
  MongoDB as always). With no qualifying day it is the direct extract's plan, slices included.
- A daily report can be replaced while a roll-up reads it (a late-data re-report, a re-run).
  `read_days` reads a consistent version of each day or reports the day as not qualifying; the
  load checks, under a lock on those daily rows, that the versions it rolled up are still the
  stored ones (`check_inputs`), and refuses a stale roll-up with `StaleRollupError`.

Pure pipeline code: SQLAlchemy Core against the tables of schema.py, no Airflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from cdr_reports.pipeline.extract import SliceCounts
from cdr_reports.pipeline.periods import ReportPeriod, local_midnight_utc
from cdr_reports.pipeline.plan import period_to_dict
from cdr_reports.pipeline.plan import plan_windows as direct_windows
from cdr_reports.pipeline.report_types import ROLLUP_SOURCE
from cdr_reports.pipeline.validity import RULES_VERSION

log = logging.getLogger(__name__)

ROLLUP, EXTRACT = "rollup", "extract"
# A day whose stored rows change under a read is read again this often before it is extracted.
READ_ATTEMPTS = 3
# The reports a roll-up reads (report_types.py says which types are built from them).
SOURCE_TYPE = ROLLUP_SOURCE


class StaleRollupError(RuntimeError):
    """A daily report that a roll-up read was replaced before the roll-up was stored (retry: it re-reads)."""


def rules_fingerprint(settings: Any) -> str:
    """SHA-256 of every setting that changes what a day counts.

    The global filter is serialised as canonical Extended JSON in its own key order, so that an
    int and a double, or two differently ordered filters, never share a fingerprint (at worst two
    equivalent filters do not, and their days are extracted instead of rolled up).
    """
    from bson import json_util

    payload = {
        "rules_version": RULES_VERSION,
        "time_zone": settings.time_zone,
        "global_filter": json_util.dumps(settings.global_filter, json_options=json_util.CANONICAL_JSON_OPTIONS),
        "max_call_duration_seconds": repr(float(settings.max_call_duration_seconds)),
        "source": [settings.mongo_conn_id, settings.mongo_database, settings.collection],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def version_of(dag_run_id: str, generated_at: datetime) -> str:
    """The version of a stored daily report: the run that wrote it and when it was computed."""
    return f"{dag_run_id}|{generated_at.isoformat()}"


def period_days(period: ReportPeriod) -> list[date]:
    return [period.start_date + timedelta(days=i) for i in range((period.end_date - period.start_date).days)]


# --------------------------------------------------------------------------- which days qualify


def _tables(schema: str | None) -> tuple[Any, Any]:
    from cdr_reports.pipeline.schema import report_tables  # imports SQLAlchemy: deferred as TID253 asks

    tables = report_tables(schema)
    return tables.run, tables.operator


def _daily_versions(conn: Any, run: Any, first: date, last: date, fingerprint: str, *, lock: bool) -> dict[str, str]:
    """ISO day -> version of the qualifying daily reports of [first, last]; `lock` share-locks them."""
    import sqlalchemy as sa

    query = sa.select(run.c.period_start, run.c.dag_run_id, run.c.generated_at).where(
        run.c.report_type == SOURCE_TYPE,
        run.c.period_start >= first,
        run.c.period_start <= last,
        run.c.rules_fingerprint == fingerprint,
        run.c.method.is_not(None),
    )
    if lock:
        # PostgreSQL FOR SHARE, SQL Server HOLDLOCK: a daily load (which deletes its run row first)
        # waits until this transaction ends. SQLite has no row locks: its writers are serialised.
        query = query.with_for_update(read=True)
    return {start.isoformat(): version_of(run_id, at) for start, run_id, at in conn.execute(query)}


def qualifying_days(engine: Any, period: ReportPeriod, fingerprint: str, schema: str | None = None) -> dict[str, str]:
    """ISO day -> version of each day of `period` whose stored daily report can be rolled up."""
    import sqlalchemy as sa

    run, _ = _tables(schema)
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(run.name, schema=schema):
            return {}  # a new report database: nothing stored yet
        columns = {c["name"] for c in sa.inspect(conn).get_columns(run.name, schema=schema)}
        if "rules_fingerprint" not in columns:
            return {}  # tables of a release before 0.5, not migrated yet: nothing qualifies
        days = period_days(period)
        return _daily_versions(conn, run, days[0], days[-1], fingerprint, lock=False)


def plan_windows(
    period: ReportPeriod, qualifying: Mapping[str, str] | Sequence[str], slices: int
) -> list[dict[str, Any]]:
    """The windows of `period`: runs of rolled-up and of extracted days; the direct plan if none qualifies."""
    if not qualifying:
        return [{**window, "method": EXTRACT} for window in direct_windows(period, slices)]
    windows: list[dict[str, Any]] = []
    for method, days in split_days(period_days(period), {date.fromisoformat(d) for d in qualifying}):
        windows.append(
            {
                "period": period_to_dict(period),
                "start": local_midnight_utc(days[0], period.tz_name).isoformat(),
                "end": local_midnight_utc(days[-1] + timedelta(days=1), period.tz_name).isoformat(),
                "method": method,
                "days": [day.isoformat() for day in days],
            }
        )
    return windows


def split_days(days: Sequence[date], rolled: set[date]) -> list[tuple[str, list[date]]]:
    """Maximal runs of consecutive days that are all rolled up, or all extracted (one query per run)."""
    runs: list[tuple[str, list[date]]] = []
    for day in days:
        method = ROLLUP if day in rolled else EXTRACT
        if runs and runs[-1][0] == method:
            runs[-1][1].append(day)
        else:
            runs.append((method, [day]))
    return runs


# --------------------------------------------------------------------------- reading stored days


def read_days(
    engine: Any, days: Sequence[date], tz_name: str, fingerprint: str, schema: str | None = None
) -> tuple[SliceCounts | None, set[date]]:
    """The summed counts of consecutive `days` from their stored daily reports.

    Returns (counts, set()) when every day qualifies and was read consistently, else
    (None, the days that do not qualify now). Reads without locks: the versions are read
    before and after the sums, and each day's rows are checked against its run row, so a daily
    load that commits in between is seen (and the read repeated, READ_ATTEMPTS times).
    """
    for attempt in range(1, READ_ATTEMPTS + 1):
        counts, bad = _read_once(engine, list(days), tz_name, fingerprint, schema)
        if counts is not None or bad:
            return counts, bad
        log.info("roll-up read of %s..%s raced a daily load (attempt %d): reading again", days[0], days[-1], attempt)
    return None, set(days)


def _read_once(
    engine: Any, days: list[date], tz_name: str, fingerprint: str, schema: str | None
) -> tuple[SliceCounts | None, set[date]]:
    """One read: (counts, set()), (None, days that do not qualify), or (None, set()) after a race."""
    import sqlalchemy as sa

    run, operator = _tables(schema)
    first, last = days[0], days[-1]
    in_days = sa.and_(
        operator.c.report_type == SOURCE_TYPE, operator.c.period_start >= first, operator.c.period_start <= last
    )
    with engine.connect() as conn:
        before = _daily_versions(conn, run, first, last, fingerprint, lock=False)
        bad = {day for day in days if day.isoformat() not in before}
        if bad:
            return None, bad
        runs = {
            start.isoformat(): (int(valid), int(operators), int(source), int(rejected))
            for start, valid, operators, source, rejected in conn.execute(
                sa.select(
                    run.c.period_start,
                    run.c.valid_records,
                    run.c.operators,
                    run.c.source_records,
                    run.c.rejected_records,
                ).where(run.c.report_type == SOURCE_TYPE, run.c.period_start >= first, run.c.period_start <= last)
            )
        }
        per_day = conn.execute(
            sa.select(
                operator.c.period_start,
                operator.c.dag_run_id,
                operator.c.generated_at,
                sa.func.count(),
                sa.func.sum(operator.c.total_calls),
                sa.func.count(operator.c.total_duration_ms),
            )
            .where(in_days)
            .group_by(operator.c.period_start, operator.c.dag_run_id, operator.c.generated_at)
        ).all()
        sums = conn.execute(
            sa.select(
                operator.c.operator_id,
                sa.func.sum(operator.c.total_calls),
                sa.func.sum(operator.c.answered_calls),
                sa.func.sum(operator.c.total_duration_ms),
            )
            .where(in_days)
            .group_by(operator.c.operator_id)
        ).all()
        after = _daily_versions(conn, run, first, last, fingerprint, lock=False)
    if after != before:
        return None, set()
    rows_of: dict[str, tuple[str, int, int, int]] = {}
    for start, run_id, at, rows, calls, exact in per_day:
        day = start.isoformat()
        if day in rows_of or version_of(run_id, at) != before.get(day):
            return None, set()  # rows of another version than the run row: a load is under way
        rows_of[day] = (day, int(rows), int(calls or 0), int(exact))
    for day in before:
        _, rows, calls, exact = rows_of.get(day, (day, 0, 0, 0))
        valid, operators, _, _ = runs[day]
        if (rows, calls) != (operators, valid):
            return None, set()
        if exact != rows:
            return None, {date.fromisoformat(day)}  # durations not exact (cannot happen after 0.5)
    counts = SliceCounts(
        start=local_midnight_utc(first, tz_name),
        end=local_midnight_utc(last + timedelta(days=1), tz_name),
        source_records=sum(runs[d][2] for d in before),
        rejected_records=sum(runs[d][3] for d in before),
        strategy=ROLLUP,
        rolled_up_days=tuple(sorted(before)),
        rollup_inputs=dict(before),
    )
    for operator_id, calls, answered, total_ms in sums:
        counts.total_calls[operator_id] = int(calls)
        counts.answered_calls[operator_id] = int(answered)
        counts.duration_ms[operator_id] = int(total_ms)
    counts.answered_calls = {k: v for k, v in counts.answered_calls.items() if v}
    return counts, set()


# --------------------------------------------------------------------------- the load's check


def check_inputs(conn: Any, report: Any, tz_name: str, schema: str | None = None) -> None:
    """Inside the load's transaction: the daily reports `report` rolled up are still the stored ones.

    Share-locks those daily run rows until the transaction ends, so no daily load can replace one
    between this check and the commit; a daily load that committed since the roll-up read them
    makes this raise StaleRollupError (the caller builds the report again from what is stored now).
    """
    inputs = dict(report.rollup_inputs or {})
    if not inputs:
        return
    run, _ = _tables(schema)
    days = sorted(date.fromisoformat(d) for d in inputs)
    now = _daily_versions(conn, run, days[0], days[-1], str(report.rules_fingerprint), lock=True)
    changed = sorted(day for day, version in inputs.items() if now.get(day) != version)
    if changed:
        raise StaleRollupError(
            f"the daily report(s) of {', '.join(changed)} changed after the {report.report_type} roll-up of "
            f"{report.period_start.isoformat()} read them; it is built again from the stored reports"
        )
