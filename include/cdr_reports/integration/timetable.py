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

The class must be registered by a plugin (``plugins/cdr_reports_plugin.py``) for the Dag
processor, scheduler and API server to (de)serialize it.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.exceptions import AirflowTimetableInvalid
from airflow.timetables.base import DagRunInfo, DataInterval, Timetable

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

__all__ = ["CalendarPeriodTimetable"]

DEFAULT_TIMEZONE = "Europe/Istanbul"
DEFAULT_DUE_AFTER = datetime.timedelta(hours=2)

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
        self.report_type = report_type
        self.timezone = timezone
        self.due_after = due_after
        self.week_start = week_start
        self.description = self._describe()

    # ------------------------------------------------------------------ (de)serialization

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        return cls(
            report_type=data["report_type"],
            timezone=data["timezone"],
            due_after=datetime.timedelta(seconds=data["due_after"]),
            week_start=data.get("week_start", 0),
        )

    def serialize(self) -> dict[str, Any]:
        seconds = self.due_after.total_seconds()
        return {
            "report_type": self.report_type,
            "timezone": self.timezone,
            "due_after": int(seconds) if seconds.is_integer() else seconds,
            "week_start": self.week_start,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CalendarPeriodTimetable):
            return NotImplemented
        return self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash((self.report_type, self.timezone, self.due_after, self.week_start))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(report_type={self.report_type!r}, timezone={self.timezone!r}, "
            f"due_after={self.due_after!r}, week_start={self.week_start!r})"
        )

    def validate(self) -> None:
        try:
            type(self)(self.report_type, self.timezone, self.due_after, self.week_start)
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

    # ------------------------------------------------------------------ Timetable API

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        """A manual run covers the last complete period (``end_utc <= run_after``)."""
        period = last_complete_period(self.report_type, run_after, self.timezone, self.week_start)
        return DataInterval(_pendulum_utc(period.start_utc), _pendulum_utc(period.end_utc))

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        candidates: list[ReportPeriod] = []
        if last_automated_data_interval is not None:
            candidates.append(self._period_after(last_automated_data_interval))
        if restriction.earliest is not None:
            candidates.append(self._first_period_from(restriction.earliest))
        if not restriction.catchup or not candidates:
            # catchup=False: skip to the latest period that is already due (the built-in
            # timetables do the same). Also the fallback when nothing bounds the start
            # (catchup=True without start_date or previous run, only possible when the
            # caller lifts the restriction).
            candidates.append(self._latest_due_period(_utcnow()))
        period = max(candidates, key=lambda p: p.start_utc)
        if restriction.latest is not None and period.start_utc > restriction.latest:
            return None
        return self._info(period)
