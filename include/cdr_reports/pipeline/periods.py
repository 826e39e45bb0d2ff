"""Report periods: local calendar days, weeks and months, and the UTC instants they cover.

A report covers a LOCAL calendar period (in the configured time zone, Europe/Istanbul by
default) and is queried as a half-open UTC range ``[start_utc, end_utc)``. The conversion
always goes through the tz database (``zoneinfo``), never a fixed offset: local days are
not always 24 hours long. Istanbul had 23-hour days when DST started (e.g. 2016-03-27)
and 25-hour days when it ended (e.g. 2015-11-08), and in 1940-1964 DST started at local
midnight, so some days (e.g. 1964-05-15) began at 01:00.

Rules for turning a local wall-clock time into an instant:

* a wall time that does not exist (skipped by a forward DST change) maps to the first
  instant after the gap, i.e. the moment of the change;
* a wall time that happens twice (backward change) maps to the earlier instant (fold=0).

Pure standard library (no Airflow, no pendulum) so it can be used and tested anywhere.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cdr_reports.pipeline.report_types import REPORT_TYPES

__all__ = [
    "REPORT_TYPES",
    "WEEKDAY_NAMES",
    "PeriodError",
    "ReportPeriod",
    "last_complete_period",
    "load_zone",
    "local_date_of",
    "local_midnight_utc",
    "local_wall_to_utc",
    "period_containing",
    "period_containing_instant",
]

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

UTC = UTC
_ONE_SECOND = timedelta(seconds=1)


class PeriodError(ValueError):
    """A report period cannot be built from the given values (bad type, zone, slice count...)."""


# --------------------------------------------------------------------------- validation


@functools.lru_cache(maxsize=64)
def _load_zone_cached(tz_name: str) -> ZoneInfo:
    return ZoneInfo(tz_name)


def load_zone(tz_name: str, *, setting: str = "CDR_TIMEZONE") -> ZoneInfo:
    """Return the tz database zone called ``tz_name``; PeriodError names the value and the setting."""
    if not isinstance(tz_name, str) or not tz_name.strip():
        raise PeriodError(
            f"unknown time zone {tz_name!r} (setting {setting}): expected an IANA name like 'Europe/Istanbul'"
        )
    try:
        return _load_zone_cached(tz_name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # ValueError: malformed keys such as '../x'; OSError: e.g. a directory name like 'Europe'.
        reason = f"not in the tz database ({type(exc).__name__})"
        raise PeriodError(f"unknown time zone {tz_name!r} (setting {setting}): {reason}") from None


def _check_report_type(report_type: str) -> str:
    if report_type not in REPORT_TYPES:
        raise PeriodError(f"unknown report type {report_type!r}: expected one of {', '.join(REPORT_TYPES)}")
    return report_type


def _check_week_start(week_start: int) -> int:
    if isinstance(week_start, bool) or not isinstance(week_start, int) or not 0 <= week_start <= 6:
        raise PeriodError(f"invalid week_start {week_start!r} (setting CDR_WEEK_START): expected 0=Monday .. 6=Sunday")
    return week_start


def _check_date(value: date, what: str) -> date:
    # datetime is a subclass of date: refuse it, a datetime here is almost always a bug
    # (use period_containing_instant for instants).
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(
            f"{what} must be a datetime.date (not {type(value).__name__}); use period_containing_instant() for instants"
        )
    return value


def _to_utc(instant: datetime, what: str = "instant") -> datetime:
    """An aware datetime (stdlib or pendulum) as a plain stdlib datetime in UTC."""
    if not isinstance(instant, datetime):
        raise TypeError(f"{what} must be an aware datetime, not {type(instant).__name__}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise PeriodError(f"{what} {instant!r} is naive: pass an aware datetime (e.g. tzinfo=UTC)")
    u = instant.astimezone(UTC)
    return datetime(u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond, tzinfo=UTC)


# --------------------------------------------------------------------------- local time


def _wall(instant_utc: datetime, zone: ZoneInfo) -> datetime:
    return instant_utc.astimezone(zone).replace(tzinfo=None)


def _local_wall_to_utc(naive: datetime, zone: ZoneInfo) -> datetime:
    earlier = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(earlier, zone) == naive:
        # Exists; for an ambiguous wall time fold=0 is the earlier of the two instants.
        return earlier
    # In a gap (PEP 495: fold=0 uses the offset before the change, fold=1 the one after,
    # so fold=1 gives the smaller UTC value). The first instant after the gap is the
    # moment of the change: the smallest instant whose wall time is past `naive`.
    # tz database transitions fall on whole seconds, so search whole seconds.
    lo = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)  # wall(lo) < naive
    hi = earlier  # wall(hi) > naive
    lo_s, hi_s = math.floor(lo.timestamp()), math.floor(hi.timestamp()) + 1
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), zone) > naive:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def local_wall_to_utc(naive: datetime, tz_name: str) -> datetime:
    """The instant (aware UTC) of local wall time ``naive`` in ``tz_name``.

    A wall time inside a DST gap maps to the first instant after the gap; an ambiguous
    one to the earlier instant.
    """
    if not isinstance(naive, datetime) or naive.tzinfo is not None:
        raise PeriodError(f"expected a naive local wall-clock datetime, got {naive!r}")
    return _local_wall_to_utc(naive, load_zone(tz_name))


@functools.lru_cache(maxsize=4096)
def _local_midnight_utc(d: date, tz_name: str) -> datetime:
    return _local_wall_to_utc(datetime.combine(d, time()), load_zone(tz_name))


def local_midnight_utc(d: date, tz_name: str) -> datetime:
    """First instant of local date ``d`` in ``tz_name``, as an aware UTC datetime.

    If local midnight does not exist (DST gap at 00:00) this is the first instant after
    the gap; if it is ambiguous, the earlier instant.
    """
    _check_date(d, "d")
    load_zone(tz_name)
    return _local_midnight_utc(d, tz_name)


def local_date_of(instant: datetime, tz_name: str) -> date:
    """The local calendar date of an aware instant in ``tz_name``."""
    return _to_utc(instant).astimezone(load_zone(tz_name)).date()


# --------------------------------------------------------------------------- periods


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + (d.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def _bounds(report_type: str, day: date, week_start: int) -> tuple[date, date]:
    if report_type == "daily":
        return day, day + timedelta(days=1)
    if report_type == "weekly":
        start = day - timedelta(days=(day.weekday() - week_start) % 7)
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    return start, _add_months(start, 1)


@dataclass(frozen=True)
class ReportPeriod:
    """One local calendar period ``[start_date, end_date)`` of a report type in a time zone."""

    report_type: str
    start_date: date  # local calendar date, inclusive
    end_date: date  # local calendar date, exclusive
    tz_name: str
    week_start: int = 0  # 0=Monday..6=Sunday; only meaningful for weekly

    def __post_init__(self) -> None:
        _check_report_type(self.report_type)
        _check_week_start(self.week_start)
        load_zone(self.tz_name)
        _check_date(self.start_date, "start_date")
        _check_date(self.end_date, "end_date")
        expected = _bounds(self.report_type, self.start_date, self.week_start)
        if expected != (self.start_date, self.end_date):
            raise PeriodError(
                f"[{self.start_date}, {self.end_date}) is not a {self.report_type} period"
                + (f" starting on {WEEKDAY_NAMES[self.week_start]}" if self.report_type == "weekly" else "")
                + f"; expected [{expected[0]}, {expected[1]})"
            )

    @property
    def start_utc(self) -> datetime:
        """First instant of ``start_date`` in the zone (aware UTC)."""
        return _local_midnight_utc(self.start_date, self.tz_name)

    @property
    def end_utc(self) -> datetime:
        """First instant of ``end_date`` in the zone (aware UTC); exclusive."""
        return _local_midnight_utc(self.end_date, self.tz_name)

    @property
    def duration(self) -> timedelta:
        return self.end_utc - self.start_utc

    def contains(self, instant: datetime) -> bool:
        return self.start_utc <= _to_utc(instant) < self.end_utc

    def slices(self, count: int) -> list[tuple[datetime, datetime]]:
        """Split ``[start_utc, end_utc)`` into ``count`` contiguous UTC pieces, as even as possible.

        Boundaries fall on whole seconds when there are at least ``count`` seconds to share
        (always, for real periods), otherwise on whole microseconds. Piece lengths differ by
        at most one unit; the first starts at ``start_utc`` and the last ends at ``end_utc``.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise PeriodError(f"invalid slice count {count!r} (setting CDR_EXTRACT_SLICES): expected an integer >= 1")
        start, end = self.start_utc, self.end_utc
        total_us = (end - start) // timedelta(microseconds=1)
        if total_us % 1_000_000 == 0 and total_us // 1_000_000 >= count:
            unit, units = _ONE_SECOND, total_us // 1_000_000
        elif total_us >= count:
            unit, units = timedelta(microseconds=1), total_us
        else:
            raise PeriodError(f"invalid slice count {count!r}: {self.label()} is only {total_us} microseconds long")
        edges = [start + unit * (units * i // count) for i in range(count)] + [end]
        return list(itertools.pairwise(edges))

    def next(self) -> ReportPeriod:
        return period_containing(self.report_type, self.end_date, self.tz_name, self.week_start)

    def previous(self) -> ReportPeriod:
        day_before = self.start_date - timedelta(days=1)
        return period_containing(self.report_type, day_before, self.tz_name, self.week_start)

    def label(self) -> str:
        """E.g. ``daily 2026-11-27``, ``weekly 2026-11-16..2026-11-22``, ``monthly 2026-10``."""
        if self.report_type == "daily":
            return f"daily {self.start_date.isoformat()}"
        if self.report_type == "weekly":
            last = self.end_date - timedelta(days=1)
            return f"weekly {self.start_date.isoformat()}..{last.isoformat()}"
        return f"monthly {self.start_date:%Y-%m}"

    def __str__(self) -> str:
        return f"{self.label()} ({self.tz_name})"


def period_containing(report_type: str, day: date, tz_name: str, week_start: int = 0) -> ReportPeriod:
    """The ``report_type`` period that contains local calendar date ``day``."""
    _check_report_type(report_type)
    _check_week_start(week_start)
    _check_date(day, "day")
    start, end = _bounds(report_type, day, week_start)
    return ReportPeriod(report_type, start, end, tz_name, week_start)


def period_containing_instant(report_type: str, instant: datetime, tz_name: str, week_start: int = 0) -> ReportPeriod:
    """The period with ``start_utc <= instant < end_utc`` (found via the instant's local date)."""
    u = _to_utc(instant)
    period = period_containing(report_type, local_date_of(u, tz_name), tz_name, week_start)
    # The local date is right except where a backward change crosses midnight (the repeated
    # wall times belong to the earlier date but come after the later date's first instant);
    # step so the UTC ranges, which tile time, decide.
    while u >= period.end_utc:
        period = period.next()
    while u < period.start_utc:
        period = period.previous()
    return period


def last_complete_period(report_type: str, instant: datetime, tz_name: str, week_start: int = 0) -> ReportPeriod:
    """The latest period whose ``end_utc <= instant`` (an instant equal to ``end_utc`` counts as complete)."""
    return period_containing_instant(report_type, instant, tz_name, week_start).previous()
