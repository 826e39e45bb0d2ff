"""Local calendar periods -> UTC ranges (cdr_reports.pipeline.periods), with real tz database cases.

Istanbul facts used below (from the tz database, checked with zoneinfo):
* until 2016-09-07 Istanbul had DST: +02 in winter, +03 in summer; since then +03 all year;
* 2015-03-29 and 2016-03-27 (DST start, 03:00 -> 04:00) were 23 hours long;
* 2015-11-08 (DST end delayed for the election, 04:00 -> 03:00) was 25 hours long;
* 1964-05-15 started DST at midnight (00:00 -> 01:00): local midnight did not exist.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr_reports.pipeline.periods import (
    REPORT_TYPES,
    PeriodError,
    ReportPeriod,
    last_complete_period,
    load_zone,
    local_midnight_utc,
    local_wall_to_utc,
    period_containing,
    period_containing_instant,
)

UTC = UTC
IST = "Europe/Istanbul"
H = timedelta(hours=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# --------------------------------------------------------------------------- basics


def test_daily_period_is_local_day_in_utc():
    p = period_containing("daily", date(2026, 11, 27), IST)
    assert p == ReportPeriod("daily", date(2026, 11, 27), date(2026, 11, 28), IST)
    assert p.start_utc == utc(2026, 11, 26, 21)
    assert p.end_utc == utc(2026, 11, 27, 21)
    assert p.start_utc.tzinfo is UTC
    assert p.label() == "daily 2026-11-27"
    assert p.next().label() == "daily 2026-11-28"
    assert p.previous().label() == "daily 2026-11-26"


def test_offset_comes_from_tz_database_not_a_fixed_offset():
    # Istanbul was UTC+2 in winter before September 2016.
    assert period_containing("daily", date(2016, 1, 15), IST).start_utc == utc(2016, 1, 14, 22)
    assert period_containing("daily", date(2026, 1, 15), IST).start_utc == utc(2026, 1, 14, 21)


def test_weekly_period_monday_to_sunday():
    p = period_containing("weekly", date(2026, 11, 19), IST)
    assert (p.start_date, p.end_date) == (date(2026, 11, 16), date(2026, 11, 23))
    assert p.label() == "weekly 2026-11-16..2026-11-22"
    assert (p.start_utc, p.end_utc) == (utc(2026, 11, 15, 21), utc(2026, 11, 22, 21))


@pytest.mark.parametrize("day", [date(2026, 12, 28), date(2027, 1, 1), date(2027, 1, 3)])
def test_week_across_new_year(day):
    p = period_containing("weekly", day, IST)
    assert (p.start_date, p.end_date) == (date(2026, 12, 28), date(2027, 1, 4))
    assert p.label() == "weekly 2026-12-28..2027-01-03"
    assert (p.start_utc, p.end_utc) == (utc(2026, 12, 27, 21), utc(2027, 1, 3, 21))
    assert p.next().label() == "weekly 2027-01-04..2027-01-10"
    assert p.previous().label() == "weekly 2026-12-21..2026-12-27"


@pytest.mark.parametrize(
    ("week_start", "expected_start"),
    [(0, date(2026, 11, 23)), (2, date(2026, 11, 25)), (4, date(2026, 11, 27)), (6, date(2026, 11, 22))],
)
def test_week_start_setting(week_start, expected_start):
    p = period_containing("weekly", date(2026, 11, 27), IST, week_start=week_start)  # a Friday
    assert p.start_date == expected_start
    assert p.end_date == expected_start + timedelta(days=7)
    assert p.start_date.weekday() == week_start


def test_monthly_period_and_year_boundary():
    oct_ = period_containing("monthly", date(2026, 10, 17), IST)
    assert oct_.label() == "monthly 2026-10"
    assert (oct_.start_utc, oct_.end_utc) == (utc(2026, 9, 30, 21), utc(2026, 10, 31, 21))
    dec = period_containing("monthly", date(2026, 12, 31), IST)
    assert (dec.start_date, dec.end_date) == (date(2026, 12, 1), date(2027, 1, 1))
    assert dec.end_utc == utc(2026, 12, 31, 21)
    jan = dec.next()
    assert jan.label() == "monthly 2027-01"
    assert (jan.start_date, jan.end_date) == (date(2027, 1, 1), date(2027, 2, 1))
    assert jan.previous() == dec


def test_leap_february_2028_has_29_days():
    feb = period_containing("monthly", date(2028, 2, 29), IST)
    assert (feb.start_date, feb.end_date) == (date(2028, 2, 1), date(2028, 3, 1))
    assert feb.end_utc - feb.start_utc == timedelta(days=29)
    assert feb.end_utc == utc(2028, 2, 29, 21)
    assert period_containing("monthly", date(2027, 2, 10), IST).duration == timedelta(days=28)
    leap_day = period_containing("daily", date(2028, 2, 28), IST).next()
    assert leap_day.label() == "daily 2028-02-29"
    assert leap_day.next().label() == "daily 2028-03-01"


# --------------------------------------------------------------------------- DST


@pytest.mark.parametrize(
    ("day", "start", "end", "hours"),
    [
        (date(2015, 3, 29), utc(2015, 3, 28, 22), utc(2015, 3, 29, 21), 23),  # DST start
        (date(2016, 3, 27), utc(2016, 3, 26, 22), utc(2016, 3, 27, 21), 23),  # DST start
        (date(2015, 11, 8), utc(2015, 11, 7, 21), utc(2015, 11, 8, 22), 25),  # DST end
        (date(2014, 10, 26), utc(2014, 10, 25, 21), utc(2014, 10, 26, 22), 25),  # DST end
        (date(2016, 9, 7), utc(2016, 9, 6, 21), utc(2016, 9, 7, 21), 24),  # permanent +03 from here
    ],
)
def test_istanbul_days_of_23_and_25_hours(day, start, end, hours):
    p = period_containing("daily", day, IST)
    assert (p.start_utc, p.end_utc) == (start, end)
    assert p.end_utc - p.start_utc == timedelta(hours=hours)


def test_week_and_month_containing_dst_change():
    week = period_containing("weekly", date(2016, 3, 27), IST)
    assert week.label() == "weekly 2016-03-21..2016-03-27"
    assert week.duration == timedelta(days=7) - H
    assert period_containing("monthly", date(2016, 3, 1), IST).duration == timedelta(days=31) - H
    assert period_containing("monthly", date(2015, 11, 1), IST).duration == timedelta(days=30) + H


def test_midnight_in_dst_gap_is_first_instant_after_gap():
    # 1964-05-15 00:00 +02 -> 01:00 +03: local midnight never happened.
    zone = ZoneInfo(IST)
    first = local_midnight_utc(date(1964, 5, 15), IST)
    assert first == utc(1964, 5, 14, 22)
    assert first.astimezone(zone).replace(tzinfo=None) == datetime(1964, 5, 15, 1, 0)
    assert (first - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None) == datetime(1964, 5, 14, 23, 59, 59)
    assert period_containing("daily", date(1964, 5, 15), IST).duration == timedelta(hours=23)
    # A wall time inside a later gap (2016-03-27 03:00 -> 04:00) also maps to the change instant.
    assert local_wall_to_utc(datetime(2016, 3, 27, 3, 30), IST) == utc(2016, 3, 27, 1)


def test_ambiguous_midnight_is_earlier_instant():
    # Havana 2000-10-29: 01:00 CDT -> 00:00 CST, so 00:00-01:00 happened twice.
    assert local_midnight_utc(date(2000, 10, 29), "America/Havana") == utc(2000, 10, 29, 4)
    assert period_containing("daily", date(2000, 10, 29), "America/Havana").duration == timedelta(hours=25)
    # And an ambiguous wall time in Istanbul (2015-11-08 04:00 -> 03:00): the +03 reading.
    assert local_wall_to_utc(datetime(2015, 11, 8, 3, 30), IST) == utc(2015, 11, 8, 0, 30)


def test_skipped_calendar_day_has_zero_length_and_still_tiles():
    # Samoa skipped 2011-12-30 entirely.
    day = period_containing("daily", date(2011, 12, 30), "Pacific/Apia")
    assert day.start_utc == day.end_utc == utc(2011, 12, 30, 10)
    before = day.previous()
    assert before.end_utc == day.start_utc
    assert period_containing_instant("daily", utc(2011, 12, 30, 10), "Pacific/Apia").label() == "daily 2011-12-31"


# --------------------------------------------------------------------------- slices


def test_slices_split_evenly_by_whole_seconds():
    p = period_containing("daily", date(2026, 11, 27), IST)
    pieces = p.slices(7)  # 86400 s / 7 = 12342.857...
    assert len(pieces) == 7
    assert pieces[0][0] == p.start_utc and pieces[-1][1] == p.end_utc
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    lengths = sorted({(end - start).total_seconds() for start, end in pieces})
    assert lengths == [12342.0, 12343.0]
    assert sum(((end - start) for start, end in pieces), timedelta()) == timedelta(days=1)
    assert all(start.microsecond == 0 for start, _ in pieces)
    assert pieces[1][0] == utc(2026, 11, 27, 0, 25, 42)


def test_slices_of_23_hour_day_and_single_slice():
    p = period_containing("daily", date(2016, 3, 27), IST)
    pieces = p.slices(24)
    assert {end - start for start, end in pieces} == {timedelta(seconds=3450)}  # 82800 / 24
    assert p.slices(1) == [(utc(2016, 3, 26, 22), utc(2016, 3, 27, 21))]


def test_more_slices_than_seconds_falls_back_to_microseconds():
    p = period_containing("daily", date(2026, 11, 27), IST)
    pieces = p.slices(100_000)
    assert len(pieces) == 100_000
    assert pieces[0][0] == p.start_utc and pieces[-1][1] == p.end_utc
    assert {end - start for start, end in pieces} == {timedelta(microseconds=864_000)}


@pytest.mark.parametrize("count", [0, -1, 1.5, "3", True, None])
def test_bad_slice_count(count):
    p = period_containing("daily", date(2026, 11, 27), IST)
    with pytest.raises(PeriodError, match="slice count"):
        p.slices(count)


@settings(max_examples=200, deadline=None)
@given(
    report_type=st.sampled_from(REPORT_TYPES),
    day=st.dates(min_value=date(1960, 1, 1), max_value=date(2060, 12, 31)),
    count=st.integers(min_value=1, max_value=1000),
)
def test_slices_always_tile_the_period(report_type, day, count):
    p = period_containing(report_type, day, IST)
    pieces = p.slices(count)
    assert len(pieces) == count
    assert pieces[0][0] == p.start_utc and pieces[-1][1] == p.end_utc
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    lengths = {end - start for start, end in pieces}
    assert min(lengths) > timedelta(0)
    assert max(lengths) - min(lengths) <= timedelta(seconds=1)


# --------------------------------------------------------------------------- errors


def test_unknown_time_zone_names_value_and_setting():
    with pytest.raises(PeriodError) as err:
        load_zone("Mars/Base")
    assert str(err.value).startswith("unknown time zone 'Mars/Base' (setting CDR_TIMEZONE)")
    for bad in ("Europe", "../etc/passwd", "", "UTC+3", "europe/istanbul"):
        with pytest.raises(PeriodError, match="unknown time zone"):
            load_zone(bad)
    with pytest.raises(PeriodError, match="'Mars/Base'"):
        period_containing("daily", date(2026, 1, 1), "Mars/Base")
    assert load_zone(IST) == ZoneInfo(IST)


def test_bad_report_type_and_week_start():
    with pytest.raises(PeriodError, match="unknown report type 'hourly'"):
        period_containing("hourly", date(2026, 1, 1), IST)
    with pytest.raises(PeriodError, match="week_start 7"):
        period_containing("weekly", date(2026, 1, 1), IST, week_start=7)
    with pytest.raises(PeriodError, match="not a weekly period"):
        ReportPeriod("weekly", date(2026, 11, 17), date(2026, 11, 24), IST)  # a Tuesday
    with pytest.raises(PeriodError, match="not a monthly period"):
        ReportPeriod("monthly", date(2026, 11, 1), date(2026, 11, 30), IST)


def test_instants_must_be_aware_and_dates_must_be_dates():
    with pytest.raises(PeriodError, match="naive"):
        period_containing_instant("daily", datetime(2026, 11, 27, 12), IST)
    with pytest.raises(TypeError, match=r"datetime\.date"):
        period_containing("daily", datetime(2026, 11, 27, 12, tzinfo=UTC), IST)


# --------------------------------------------------------------------------- instants


def test_period_containing_instant_uses_local_date():
    # 2026-11-27T22:30Z is already 01:30 on the 28th in Istanbul.
    assert period_containing_instant("daily", utc(2026, 11, 27, 22, 30), IST).label() == "daily 2026-11-28"
    assert period_containing_instant("daily", utc(2026, 11, 27, 20, 59, 59), IST).label() == "daily 2026-11-27"
    # The start instant belongs to the period.
    assert period_containing_instant("monthly", utc(2026, 9, 30, 21), IST).label() == "monthly 2026-10"
    # Aware non-UTC instants are converted first.
    local = datetime(2026, 11, 1, 0, 0, tzinfo=ZoneInfo(IST))
    assert period_containing_instant("monthly", local, IST).label() == "monthly 2026-11"


@pytest.mark.parametrize(
    ("report_type", "instant", "expected"),
    [
        ("daily", utc(2026, 11, 27, 21), "daily 2026-11-27"),  # == end_utc: complete
        ("daily", utc(2026, 11, 27, 20, 59, 59, 999999), "daily 2026-11-26"),
        ("weekly", utc(2026, 11, 22, 21), "weekly 2026-11-16..2026-11-22"),
        ("weekly", utc(2026, 11, 22, 20, 59, 59), "weekly 2026-11-09..2026-11-15"),
        ("monthly", utc(2026, 10, 31, 21), "monthly 2026-10"),
        ("monthly", utc(2026, 10, 31, 20, 59), "monthly 2026-09"),
        ("monthly", utc(2027, 1, 1, 12), "monthly 2026-12"),
        ("daily", utc(2015, 11, 8, 22), "daily 2015-11-08"),  # end of the 25-hour day
        ("daily", utc(2015, 11, 8, 21, 30), "daily 2015-11-07"),  # 23:30 local on the 8th
    ],
)
def test_last_complete_period_at_exact_boundaries(report_type, instant, expected):
    p = last_complete_period(report_type, instant, IST)
    assert p.label() == expected
    assert p.end_utc <= instant < p.next().end_utc


# --------------------------------------------------------------------------- properties

ZONES = (IST, "UTC", "America/Havana", "Pacific/Apia", "Asia/Tehran", "Australia/Lord_Howe")
instants = st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2080, 12, 31), timezones=st.just(UTC))


@settings(max_examples=500, deadline=None)
@given(
    report_type=st.sampled_from(REPORT_TYPES),
    instant=instants,
    tz_name=st.sampled_from(ZONES),
    week_start=st.integers(min_value=0, max_value=6),
)
def test_periods_tile_time(report_type, instant, tz_name, week_start):
    p = period_containing_instant(report_type, instant, tz_name, week_start)
    assert p.start_utc <= instant < p.end_utc
    assert p.next().start_utc == p.end_utc
    assert p.previous().end_utc == p.start_utc
    assert p.next().previous() == p
    if tz_name == IST:  # no backward change crosses midnight there, so the local date decides
        assert p.start_date <= instant.astimezone(ZoneInfo(tz_name)).date() < p.end_date
    done = last_complete_period(report_type, instant, tz_name, week_start)
    assert done.end_utc <= instant < done.next().end_utc
    assert done.next() == p


@settings(max_examples=300, deadline=None)
@given(
    report_type=st.sampled_from(REPORT_TYPES),
    day=st.dates(min_value=date(1940, 1, 1), max_value=date(2100, 12, 31)),
    week_start=st.integers(min_value=0, max_value=6),
)
def test_period_containing_day(report_type, day, week_start):
    p = period_containing(report_type, day, IST, week_start)
    assert p.start_date <= day < p.end_date
    assert p.next().start_date == p.end_date
    assert p.start_utc < p.end_utc
    nominal = timedelta(days=(p.end_date - p.start_date).days)
    assert abs(p.duration - nominal) <= H  # Istanbul's changes were all one hour
    assert period_containing_instant(report_type, p.start_utc, IST, week_start) == p
