"""Airflow timetable whose runs are local calendar periods (days, weeks, months).

Each run's data interval is exactly one :class:`cdr_reports.pipeline.periods.ReportPeriod`
(``[start_utc, end_utc)`` of a local day/week/month, converted with the tz database), and
the run becomes due ``due_after`` of local wall-clock time after the period ends: with
``due_after=2h`` the daily report for 2026-11-27 is due at 2026-11-28 02:00 Istanbul time
(2026-11-27T23:00Z).

Scheduling follows Airflow's built-in data-interval timetables:

* ``restriction.earliest`` (the Dag's ``start_date``) and ``restriction.latest``
  (``end_date``) bound the period START, i.e. the run's logical date, both inclusive: the
  first run is the first period starting at or after ``earliest``, and no run is created
  for a period starting after ``latest``.
* ``catchup=False``: the next run is never earlier than the latest period that is already
  due; missed periods are skipped.
* ``airflow backfill create`` (``SerializedDAG.iter_dagrun_infos_between``) asks repeatedly
  with ``catchup=True`` and ``earliest/latest`` = the requested range, so it gets one run per
  period whose start lies in ``[from_date, to_date]``. The CLI reads naive dates in
  ``[core] default_timezone`` (UTC unless configured): ``--from-date 2026-11-01`` is
  2026-11-01 03:00 Istanbul, after the start of that local day, so the day is not included;
  pass ``2026-11-01T00:00:00+03:00`` to include it.

Bounds (docs/security.md, "Report periods and backfills"). With ``earliest`` (the DAGs pass
``CDR_EARLIEST_REPORT_DATE``) the timetable itself keeps every run it computes inside the periods
a report may be made for, whatever date form or client asked:

* no period starting before ``earliest``: ``restriction.earliest`` is raised to it, so a backfill
  "from 1970" (or from the unix timestamp ``0``) enumerates from ``earliest`` on;
* a backfill enumeration (``catchup=True`` with a ``latest`` bound, the only way Airflow's
  ``iter_dagrun_infos_between`` asks) stops at the first period that has not ended: a ``to_date``
  of 9999-12-31 costs one period past "now", not millions (Airflow drops unfinished periods
  afterwards anyway). The scheduler never passes ``latest`` for these DAGs (no ``end_date``);
* a manual run (trigger with a ``logical_date`` or explicit data interval) for a period before
  ``earliest`` or not ended yet is refused with ``ValueError``, which the REST API answers 400.

The run cap per backfill (``max_backfill_runs``) cannot live in ``next_dagrun_info``: Airflow also
enumerates existing runs through it (marking "past"/"future" runs), so ``backfill_refusal`` states
the rule once and ``install_backfill_guard`` applies it where Airflow stores a backfill (every
client: REST, UI, ``airflow backfill create``); the API server's middleware answers it early.

The class must be registered by a plugin (``plugins/cdr_reports_plugin.py``) for the Dag
processor, scheduler and API server to (de)serialize it.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.exceptions import AirflowTimetableInvalid
from airflow.timetables.base import DagRunInfo, DataInterval, Timetable
from airflow.timetables.trigger import CronTriggerTimetable

from cdr_reports.pipeline.periods import (
    WEEKDAY_NAMES,
    PeriodError,
    ReportPeriod,
    last_complete_period,
    local_wall_to_utc,
    period_containing,
    period_containing_instant,
)

if TYPE_CHECKING:
    from airflow.timetables.base import TimeRestriction
    from pendulum import DateTime

__all__ = ["CalendarPeriodTimetable", "LocalCronTriggerTimetable", "install_backfill_guard"]

log = logging.getLogger(__name__)

DEFAULT_TIMEZONE = "Europe/Istanbul"
DEFAULT_DUE_AFTER = datetime.timedelta(hours=2)

# Runs one backfill may create: about a year of daily reports. Longer ranges are split (Airflow
# runs one backfill per DAG at a time anyway).
DEFAULT_MAX_BACKFILL_RUNS = 366

# Upper bound for walking back from "now" to the latest due period; a due_after this
# many periods long is certainly a mistake.
_MAX_STEPS_BACK = 400


def _utcnow() -> datetime.datetime:
    """Current time; a module-level function so tests can pin it."""
    return datetime.datetime.now(datetime.UTC)


def _pendulum_utc(value: datetime.datetime) -> DateTime:
    return pendulum.instance(value.astimezone(datetime.UTC), tz=pendulum.UTC)


def _format_due(due_after: datetime.timedelta) -> str:
    days, rest = divmod(int(due_after.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")
    return f"+{days}d {clock}" if days else clock


class CalendarPeriodTimetable(Timetable):
    """One run per local calendar day / week / month, due ``due_after`` after the period ends.

    :param report_type: ``"daily"``, ``"weekly"`` or ``"monthly"``.
    :param timezone: IANA time zone whose calendar defines the periods.
    :param due_after: local wall-clock time after the period's end (local midnight) at
        which the run is due; must not be negative.
    :param week_start: first day of a weekly period, 0=Monday .. 6=Sunday.
    :param earliest: first local date a period may start on (``CDR_EARLIEST_REPORT_DATE``); None:
        unbounded (only ``start_date`` bounds the scheduler, nothing bounds a backfill).
    :param max_backfill_runs: most runs one backfill of the DAG may create.
    """

    periodic = True
    can_be_scheduled = True
    run_ordering = ("data_interval_end", "logical_date")

    def __init__(
        self,
        report_type: str,
        timezone: str = DEFAULT_TIMEZONE,
        due_after: datetime.timedelta = DEFAULT_DUE_AFTER,
        week_start: int = 0,
        earliest: datetime.date | None = None,
        max_backfill_runs: int = DEFAULT_MAX_BACKFILL_RUNS,
    ) -> None:
        if not isinstance(timezone, str):
            # Accept zoneinfo.ZoneInfo / pendulum Timezone objects by their IANA name.
            timezone = getattr(timezone, "key", None) or getattr(timezone, "name", None) or repr(timezone)
        if not isinstance(due_after, datetime.timedelta):
            raise PeriodError(f"due_after must be a datetime.timedelta, got {due_after!r}")
        if due_after < datetime.timedelta(0):
            raise PeriodError(f"due_after must not be negative, got {due_after!r}")
        # Building a period validates report type, zone and week start (PeriodError naming the value).
        period_containing(report_type, datetime.date(2000, 1, 3), timezone, week_start)
        if isinstance(earliest, datetime.datetime) or not (earliest is None or isinstance(earliest, datetime.date)):
            raise PeriodError(f"earliest must be a datetime.date or None, got {earliest!r}")
        if isinstance(max_backfill_runs, bool) or not isinstance(max_backfill_runs, int) or max_backfill_runs < 1:
            raise PeriodError(f"max_backfill_runs must be an integer >= 1, got {max_backfill_runs!r}")
        self.report_type = report_type
        self.timezone = timezone
        self.due_after = due_after
        self.week_start = week_start
        self.earliest = earliest
        self.max_backfill_runs = max_backfill_runs
        self.description = self._describe()

    # ------------------------------------------------------------------ (de)serialization

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        # Only processes that read stored DAGs deserialize (scheduler, API server, CLI): the
        # place to guard where Airflow stores backfills.
        install_backfill_guard()
        earliest = data.get("earliest")
        return cls(
            report_type=data["report_type"],
            timezone=data["timezone"],
            due_after=datetime.timedelta(seconds=data["due_after"]),
            week_start=data.get("week_start", 0),
            earliest=datetime.date.fromisoformat(earliest) if earliest else None,
            max_backfill_runs=data.get("max_backfill_runs", DEFAULT_MAX_BACKFILL_RUNS),
        )

    def serialize(self) -> dict[str, Any]:
        seconds = self.due_after.total_seconds()
        data: dict[str, Any] = {
            "report_type": self.report_type,
            "timezone": self.timezone,
            "due_after": int(seconds) if seconds.is_integer() else seconds,
            "week_start": self.week_start,
        }
        # Written only when set, so that DAGs serialized before these existed compare equal.
        if self.earliest is not None:
            data["earliest"] = self.earliest.isoformat()
        if self.max_backfill_runs != DEFAULT_MAX_BACKFILL_RUNS:
            data["max_backfill_runs"] = self.max_backfill_runs
        return data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CalendarPeriodTimetable):
            return NotImplemented
        return self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash((self.report_type, self.timezone, self.due_after, self.week_start, self.earliest))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(report_type={self.report_type!r}, timezone={self.timezone!r}, "
            f"due_after={self.due_after!r}, week_start={self.week_start!r}, earliest={self.earliest!r}, "
            f"max_backfill_runs={self.max_backfill_runs!r})"
        )

    def validate(self) -> None:
        try:
            type(self)(
                self.report_type, self.timezone, self.due_after, self.week_start, self.earliest, self.max_backfill_runs
            )
        except (PeriodError, TypeError) as exc:
            raise AirflowTimetableInvalid(str(exc)) from None

    # ------------------------------------------------------------------ UI texts

    @property
    def summary(self) -> str:
        kind = self.report_type
        if kind == "weekly":
            first = WEEKDAY_NAMES[self.week_start][:3]
            last = WEEKDAY_NAMES[(self.week_start + 6) % 7][:3]
            kind = f"weekly {first}-{last}"
        return f"{kind}, {self.timezone}, due {_format_due(self.due_after)}"

    def _describe(self) -> str:
        due = _format_due(self.due_after)
        days, _ = divmod(int(self.due_after.total_seconds()), 86400)
        clock = due.split(" ")[-1]
        if self.report_type == "daily":
            what, after = "calendar day", "the following day"
        elif self.report_type == "weekly":
            first = WEEKDAY_NAMES[self.week_start]
            last = WEEKDAY_NAMES[(self.week_start + 6) % 7]
            what, after = f"calendar week ({first} to {last})", f"the {first} after the week"
        else:
            what, after = "calendar month", "the 1st of the following month"
        when = f"{clock} local time on {after}"
        if days:
            when = f"{clock} local time, {days} day{'s' if days > 1 else ''} after {after}"
        return (
            f"One run per {what} in {self.timezone}, from local midnight to local midnight; each run is due at {when}."
        )

    # ------------------------------------------------------------------ periods

    def period_of(self, instant: datetime.datetime) -> ReportPeriod:
        """The period containing ``instant`` (e.g. a run's ``data_interval_start``)."""
        return period_containing_instant(self.report_type, instant, self.timezone, self.week_start)

    def due_at(self, period: ReportPeriod) -> datetime.datetime:
        """When ``period`` is due (aware UTC): local midnight of ``end_date`` + ``due_after``, wall clock."""
        wall = datetime.datetime.combine(period.end_date, datetime.time()) + self.due_after
        return max(local_wall_to_utc(wall, self.timezone), period.end_utc)

    def _latest_due_period(self, now: datetime.datetime) -> ReportPeriod:
        period = last_complete_period(self.report_type, now, self.timezone, self.week_start)
        for _ in range(_MAX_STEPS_BACK):
            if self.due_at(period) <= now:
                return period
            period = period.previous()
        raise PeriodError(f"no {self.report_type} period is due before {now.isoformat()}: due_after too large?")

    def _first_period_from(self, earliest: datetime.datetime) -> ReportPeriod:
        period = self.period_of(earliest)
        return period if period.start_utc >= earliest else period.next()

    def _period_after(self, last: DataInterval) -> ReportPeriod:
        # Normally last.end is a period boundary and this is the period starting there. If
        # the schedule changed (e.g. daily -> monthly), mimic Airflow's built-in timetables:
        # take the period containing last.end, but never one whose logical date (start) is
        # not after the previous run's, which would collide with an existing run.
        period = self.period_of(last.end)
        if period.start_utc <= last.start:
            period = period.next()
        return period

    def _info(self, period: ReportPeriod) -> DagRunInfo:
        return DagRunInfo(
            run_after=_pendulum_utc(self.due_at(period)),
            data_interval=DataInterval(_pendulum_utc(period.start_utc), _pendulum_utc(period.end_utc)),
        )

    # ------------------------------------------------------------------ bounds

    def _first_allowed_period(self) -> ReportPeriod:
        """The first whole period starting on or after ``earliest`` (which must be set)."""
        assert self.earliest is not None
        period = period_containing(self.report_type, self.earliest, self.timezone, self.week_start)
        # A weekly or monthly period containing `earliest` but starting before it is not allowed.
        return period if period.start_date >= self.earliest else period.next()

    def period_refusal(self, period: ReportPeriod, now: datetime.datetime) -> str | None:
        """Why no run may report ``period`` (before ``earliest``, or not ended at ``now``), or None."""
        if self.earliest is not None and period.start_date < self.earliest:
            return f"the {period.label()} period starts before CDR_EARLIEST_REPORT_DATE={self.earliest.isoformat()}"
        if period.end_utc > now:
            return f"the {period.label()} period has not ended yet (it ends {period.end_utc.isoformat()})"
        return None

    def backfill_refusal(
        self, dag_id: str, from_date: datetime.datetime, to_date: datetime.datetime, now: datetime.datetime
    ) -> str | None:
        """Why a backfill of ``dag_id`` over ``[from_date, to_date]`` must be refused, or None.

        The same runs Airflow would compute (one per period starting in the range, ended by
        ``now``), counted up to ``max_backfill_runs + 1`` at most: a refusal costs microseconds
        whatever the range.
        """
        try:
            first = self._first_period_from(from_date)
            if self.earliest is not None and first.start_date < self.earliest:
                return (
                    f"backfill of {dag_id} from {from_date.isoformat()} refused: the {first.label()} period starts "
                    f"before CDR_EARLIEST_REPORT_DATE={self.earliest.isoformat()}; start the backfill on or after "
                    f"{self.earliest.isoformat()} (local midnight: {self._first_allowed_period().start_utc.isoformat()})"
                )
            period, runs = first, 0
            while period.start_utc <= to_date and period.end_utc <= now:
                runs += 1
                if runs > self.max_backfill_runs:
                    return (
                        f"backfill of {dag_id} from {from_date.isoformat()} to {to_date.isoformat()} refused: it would "
                        f"create more than {self.max_backfill_runs} runs (the limit per backfill); split it into "
                        "shorter ranges"
                    )
                period = period.next()
        except (OverflowError, ValueError) as exc:
            return f"backfill of {dag_id} refused: its dates are outside the representable range ({exc})"
        return None

    # ------------------------------------------------------------------ Timetable API

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        """A manual run covers the last complete period (``end_utc <= run_after``).

        Raises ``ValueError`` (the REST API's 400) when that period starts before ``earliest``
        or has not ended yet (a ``logical_date`` in the future).
        """
        period = last_complete_period(self.report_type, run_after, self.timezone, self.week_start)
        refusal = self.period_refusal(period, _utcnow())
        if refusal is not None:
            raise ValueError(f"no manual run for logical_date {run_after.isoformat()}: {refusal}")
        return DataInterval(_pendulum_utc(period.start_utc), _pendulum_utc(period.end_utc))

    def generate_run_id(
        self, *, run_type: Any, run_after: DateTime, data_interval: DataInterval | None, **extra: Any
    ) -> str:
        # A manual run given an explicit data interval (REST `data_interval_start`/`_end`) does not
        # pass through infer_manual_data_interval: check its period here. Airflow builds the run id
        # before it creates the run, and answers this ValueError with 400.
        if data_interval is not None and str(getattr(run_type, "value", run_type)) == "manual":
            period = self.period_of(data_interval.start)
            refusal = self.period_refusal(period, _utcnow())
            if refusal is not None:
                raise ValueError(f"no manual run for the data interval {data_interval.start.isoformat()}: {refusal}")
        return super().generate_run_id(run_type=run_type, run_after=run_after, data_interval=data_interval, **extra)

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        earliest: datetime.datetime | None = restriction.earliest
        if self.earliest is not None and earliest is not None:
            # Raised, never invented: an unrestricted call (earliest None) still means "the latest
            # due period", which is after `earliest` anyway.
            earliest = max(earliest, self._first_allowed_period().start_utc)
        candidates: list[ReportPeriod] = []
        if last_automated_data_interval is not None:
            candidates.append(self._period_after(last_automated_data_interval))
        if earliest is not None:
            candidates.append(self._first_period_from(earliest))
        if not restriction.catchup or not candidates:
            # catchup=False: skip to the latest period that is already due (the built-in
            # timetables do the same). Also the fallback when nothing bounds the start
            # (catchup=True without start_date or previous run, only possible when the
            # caller lifts the restriction).
            candidates.append(self._latest_due_period(_utcnow()))
        period = max(candidates, key=lambda p: p.start_utc)
        if restriction.latest is not None and period.start_utc > restriction.latest:
            return None
        if restriction.catchup and restriction.latest is not None and period.end_utc > _utcnow():
            # An enumeration between two dates (backfill, dry run): nothing after "now" is ever
            # kept, so stop here instead of walking to `latest` (9999-12-31: millions of periods).
            return None
        return self._info(period)


# ---------------------------------------------------------------------- where backfills are stored

_guard_installed = False


def install_backfill_guard() -> None:
    """Check every backfill, and every manual run's ``report_date``, where Airflow stores them (idempotent).

    ``airflow.models.backfill._create_backfill`` (REST API, UI and ``airflow backfill create``
    alike) inserts the ``Backfill`` row, commits, and only then creates its runs. A
    ``before_insert`` hook on that model refuses the row, so nothing is created, when
    :meth:`CalendarPeriodTimetable.backfill_refusal` objects; the exception is Airflow's own
    ``InvalidBackfillDate``, which the REST API answers with 422 and the CLI prints. Likewise a
    ``before_insert`` hook on ``DagRun`` refuses a manual run whose ``conf.report_date`` names a
    period before ``earliest``, not ended or unrepresentable (``ValueError``: the REST API's 400;
    ``airflow dags trigger`` fails and creates nothing), so no client creates such a run; the
    ``plan`` task's check stays as the last line. Installed from ``deserialize``: every process
    that creates a backfill or a run has deserialized the DAG first.
    """
    global _guard_installed
    if _guard_installed:
        return
    # Deferred: the report DAG files import this module, and airflow.models (the metadata ORM) is
    # not loaded by airflow.sdk: parsing must not pay for it (as TID253 asks for SQLAlchemy).
    from airflow.models.backfill import Backfill
    from airflow.models.dagrun import DagRun
    from sqlalchemy import event

    event.listen(Backfill, "before_insert", _refuse_unbounded_backfill)
    event.listen(DagRun, "before_insert", _refuse_out_of_bounds_report_date)
    _guard_installed = True


def _stored_timetable(connection: Any, dag_id: str) -> Any:
    from airflow.models.serialized_dag import SerializedDagModel  # deferred: see install_backfill_guard
    from sqlalchemy.orm import Session

    # A short read on the flushing connection (same transaction): the DAG's stored timetable.
    with Session(bind=connection) as session:
        serdag = session.scalar(SerializedDagModel.latest_item_select_object(dag_id))
        return serdag.dag.timetable if serdag is not None else None


def report_date_refusal(timetable: CalendarPeriodTimetable, report_date: str, now: datetime.datetime) -> str | None:
    """Why a manual run with ``conf.report_date`` must not exist, or None (also for a non-date)."""
    try:
        day = datetime.date.fromisoformat(report_date)
    except ValueError:
        return None  # the param's own validation (format: date) answers
    try:
        period = period_containing(timetable.report_type, day, timetable.timezone, timetable.week_start)
        refusal = timetable.period_refusal(period, now)
    except (OverflowError, ValueError) as exc:
        refusal = f"its period is outside the dates this system can represent ({exc})"
    return None if refusal is None else f"report_date={report_date} refused: {refusal}"


def _refuse_out_of_bounds_report_date(mapper: Any, connection: Any, target: Any) -> None:
    conf = target.conf if isinstance(target.conf, dict) else {}
    report_date = conf.get("report_date")
    if str(getattr(target.run_type, "value", target.run_type)) != "manual" or not isinstance(report_date, str):
        return
    timetable = _stored_timetable(connection, target.dag_id)
    if not isinstance(timetable, CalendarPeriodTimetable):
        return
    refusal = report_date_refusal(timetable, report_date, _utcnow())
    if refusal is not None:
        log.warning("refused a run of %s: %s", target.dag_id, refusal)
        raise ValueError(refusal)


def _refuse_unbounded_backfill(mapper: Any, connection: Any, target: Any) -> None:
    from airflow.models.backfill import InvalidBackfillDate  # deferred: see install_backfill_guard

    timetable = _stored_timetable(connection, target.dag_id)
    if not isinstance(timetable, CalendarPeriodTimetable):
        return
    refusal = timetable.backfill_refusal(target.dag_id, _aware(target.from_date), _aware(target.to_date), _utcnow())
    if refusal is not None:
        log.warning("refused a backfill: %s", refusal)
        raise InvalidBackfillDate(refusal)


def _aware(value: datetime.datetime) -> datetime.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)


# ---------------------------------------------------------------------- cron with its zone in sight


class LocalCronTriggerTimetable(CronTriggerTimetable):
    """Airflow's ``CronTriggerTimetable`` whose summary and description name its time zone.

    The built-in one shows only the expression (``0 5 * * *``) in the UI's DAG list and in the
    API's ``timetable_summary``/``timetable_description``, and the API's DAG ``timezone`` field is
    always ``[core] default_timezone`` (``DagModel.timezone``, Airflow 3.3), so a DAG that runs at
    05:00 Istanbul time looked like one running at 05:00 UTC. Scheduling is the built-in's.
    Registered by the plugin, like ``CalendarPeriodTimetable``.
    """

    def __init__(self, cron: str, *, timezone: Any, **kwargs: Any) -> None:
        super().__init__(cron, timezone=timezone, **kwargs)
        if self.description:
            self.description = f"{self.description}, {self._zone_name()} time"

    def _zone_name(self) -> str:
        return str(getattr(self._timezone, "name", self._timezone))

    # The attribute names of the Task SDK's CronTriggerTimetable, which DAG code may read.
    @property
    def expression(self) -> str:
        return self._expression

    @property
    def timezone(self) -> Any:
        return self._timezone

    @property
    def summary(self) -> str:
        return f"{self._expression} ({self._zone_name()})"
