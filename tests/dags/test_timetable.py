"""CalendarPeriodTimetable against Airflow 3.3's scheduling, serialization and backfill code paths.

Istanbul is UTC+3 since 2016-09-07; before that +02 in winter / +03 in summer, so
2016-03-27 was a 23-hour day and 2015-11-08 a 25-hour day.
"""

from __future__ import annotations

import datetime
import itertools

import pendulum
import pytest
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction

import cdr_reports.integration.timetable as timetable_module
from cdr_reports.integration.timetable import CalendarPeriodTimetable
from cdr_reports.pipeline.periods import PeriodError, period_containing, period_containing_instant

IST = "Europe/Istanbul"
DUE = {
    "daily": datetime.timedelta(hours=2),
    "weekly": datetime.timedelta(hours=3),
    "monthly": datetime.timedelta(hours=4),
}
TIMETABLE_PATH = "cdr_reports.integration.timetable.CalendarPeriodTimetable"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> pendulum.DateTime:
    return pendulum.datetime(year, month, day, hour, minute, second, tz="UTC")


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> pendulum.DateTime:
    return pendulum.datetime(year, month, day, hour, minute, second, tz=IST)


def make(report_type: str, **kwargs) -> CalendarPeriodTimetable:
    return CalendarPeriodTimetable(report_type, IST, kwargs.pop("due_after", DUE[report_type]), **kwargs)


def interval_of(report_type: str, day: datetime.date) -> DataInterval:
    p = period_containing(report_type, day, IST)
    return DataInterval(pendulum.instance(p.start_utc), pendulum.instance(p.end_utc))


@pytest.fixture
def now(monkeypatch):
    """Pin the timetable's clock: now(datetime) sets it."""

    def set_now(value: datetime.datetime) -> None:
        monkeypatch.setattr(timetable_module, "_utcnow", lambda: value)

    return set_now


def next_info(tt, last=None, earliest=None, latest=None, catchup=True) -> DagRunInfo | None:
    return tt.next_dagrun_info(
        last_automated_data_interval=last, restriction=TimeRestriction(earliest, latest, catchup)
    )


def enumerate_runs(tt, earliest, latest, catchup=True, limit=5000) -> list[DagRunInfo]:
    """What the scheduler / backfill do: ask again with the previous run until None."""
    restriction = TimeRestriction(earliest, latest, catchup)
    infos, last = [], None
    while (info := tt.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)) is not None:
        infos.append(info)
        last = info.data_interval
        assert len(infos) < limit
    return infos


# --------------------------------------------------------------------------- due times


@pytest.mark.parametrize(
    ("report_type", "previous_day", "start", "end", "run_after"),
    [
        # daily 2026-11-27 is due 2026-11-28 02:00 Istanbul = 2026-11-27T23:00Z
        ("daily", datetime.date(2026, 11, 26), utc(2026, 11, 26, 21), utc(2026, 11, 27, 21), utc(2026, 11, 27, 23)),
        # week of 2026-11-16 is due Monday 2026-11-23 03:00 Istanbul = 00:00Z
        ("weekly", datetime.date(2026, 11, 9), utc(2026, 11, 15, 21), utc(2026, 11, 22, 21), utc(2026, 11, 23, 0)),
        # October 2026 is due 2026-11-01 04:00 Istanbul = 01:00Z
        ("monthly", datetime.date(2026, 9, 1), utc(2026, 9, 30, 21), utc(2026, 10, 31, 21), utc(2026, 11, 1, 1)),
        # month and year boundary: December 2026 -> January 2027
        ("daily", datetime.date(2026, 12, 31), utc(2026, 12, 31, 21), utc(2027, 1, 1, 21), utc(2027, 1, 1, 23)),
        ("monthly", datetime.date(2026, 11, 5), utc(2026, 11, 30, 21), utc(2026, 12, 31, 21), utc(2027, 1, 1, 1)),
        ("monthly", datetime.date(2026, 12, 5), utc(2026, 12, 31, 21), utc(2027, 1, 31, 21), utc(2027, 2, 1, 1)),
        # leap February 2028 (29 days), then the 29th itself
        ("monthly", datetime.date(2028, 1, 9), utc(2028, 1, 31, 21), utc(2028, 2, 29, 21), utc(2028, 3, 1, 1)),
        ("daily", datetime.date(2028, 2, 28), utc(2028, 2, 28, 21), utc(2028, 2, 29, 21), utc(2028, 2, 29, 23)),
        # the week across New Year 2026-12-28..2027-01-03
        ("weekly", datetime.date(2026, 12, 24), utc(2026, 12, 27, 21), utc(2027, 1, 3, 21), utc(2027, 1, 4, 0)),
        # 23-hour day 2016-03-27 (+02 -> +03); due 2016-03-28 02:00 +03
        ("daily", datetime.date(2016, 3, 26), utc(2016, 3, 26, 22), utc(2016, 3, 27, 21), utc(2016, 3, 27, 23)),
        # 25-hour day 2015-11-08 (+03 -> +02); due 2015-11-09 02:00 +02
        ("daily", datetime.date(2015, 11, 7), utc(2015, 11, 7, 21), utc(2015, 11, 8, 22), utc(2015, 11, 9, 0)),
        # a week and a month containing the 25-hour day (start +03, end +02)
        ("weekly", datetime.date(2015, 10, 28), utc(2015, 11, 1, 21), utc(2015, 11, 8, 22), utc(2015, 11, 9, 1)),
        ("monthly", datetime.date(2015, 10, 3), utc(2015, 10, 31, 21), utc(2015, 11, 30, 22), utc(2015, 12, 1, 2)),
    ],
)
def test_next_dagrun_after_previous_run(report_type, previous_day, start, end, run_after):
    tt = make(report_type)
    info = tt.next_dagrun_info(
        last_automated_data_interval=interval_of(report_type, previous_day),
        restriction=TimeRestriction(earliest=utc(2000, 1, 1), latest=None, catchup=True),
    )
    assert info.data_interval == DataInterval(start, end)
    assert info.run_after == run_after
    assert info.logical_date == start
    for value in (info.run_after, *info.data_interval):
        assert isinstance(value, pendulum.DateTime)
        assert value.utcoffset() == datetime.timedelta(0)


def test_due_time_inside_dst_gap_and_fold():
    # due 03:30 local on 2016-03-27 does not exist (03:00 -> 04:00): the run is due at the change.
    tt = make("daily", due_after=datetime.timedelta(hours=3, minutes=30))
    info = tt.next_dagrun_info(
        last_automated_data_interval=interval_of("daily", datetime.date(2016, 3, 25)),
        restriction=TimeRestriction(None, None, True),
    )
    assert info.data_interval.start == utc(2016, 3, 25, 22)
    assert info.run_after == utc(2016, 3, 27, 1)  # 04:00 +03
    # due 03:30 local on 2015-11-08 happened twice (04:00 -> 03:00): the first one (+03).
    info = tt.next_dagrun_info(
        last_automated_data_interval=interval_of("daily", datetime.date(2015, 11, 6)),
        restriction=TimeRestriction(None, None, True),
    )
    assert info.data_interval == DataInterval(utc(2015, 11, 6, 21), utc(2015, 11, 7, 21))
    assert info.run_after == utc(2015, 11, 8, 0, 30)


def test_due_after_longer_than_a_day():
    tt = make("daily", due_after=datetime.timedelta(days=1, hours=6))
    info = tt.next_dagrun_info(
        last_automated_data_interval=interval_of("daily", datetime.date(2026, 11, 26)),
        restriction=TimeRestriction(None, None, True),
    )
    assert info.run_after == utc(2026, 11, 29, 3)  # 2026-11-29 06:00 Istanbul
    assert tt.summary == "daily, Europe/Istanbul, due +1d 06:00"
    assert tt.description.endswith("each run is due at 06:00 local time, 1 day after the following day.")


# --------------------------------------------------------------------------- catchup / restrictions


def test_catchup_enumerates_every_day_once_across_dst_changes():
    infos = enumerate_runs(make("daily"), local(2015, 10, 1), local(2016, 4, 30))
    assert len(infos) == 213  # 2015-10-01 .. 2016-04-30
    assert infos[0].data_interval.start == local(2015, 10, 1)
    assert infos[-1].data_interval.start == local(2016, 4, 30)
    assert all(a.data_interval.end == b.data_interval.start for a, b in itertools.pairwise(infos))
    assert all(a.run_after < b.run_after for a, b in itertools.pairwise(infos))
    lengths = [i.data_interval.end - i.data_interval.start for i in infos]
    assert lengths.count(datetime.timedelta(hours=25)) == 1  # 2015-11-08
    assert lengths.count(datetime.timedelta(hours=23)) == 1  # 2016-03-27
    assert lengths.count(datetime.timedelta(hours=24)) == 211


def test_catchup_enumerates_weeks_and_months(now):
    now(utc(2029, 1, 1))  # an enumeration between two dates stops at the first period not ended
    weeks = enumerate_runs(make("weekly"), local(2026, 12, 1), local(2027, 1, 31))
    labels = [period_containing_instant("weekly", w.data_interval.start, IST).label() for w in weeks]
    assert labels == [
        "weekly 2026-12-07..2026-12-13",  # earliest 12-01 is a Tuesday: first whole week
        "weekly 2026-12-14..2026-12-20",
        "weekly 2026-12-21..2026-12-27",
        "weekly 2026-12-28..2027-01-03",
        "weekly 2027-01-04..2027-01-10",
        "weekly 2027-01-11..2027-01-17",
        "weekly 2027-01-18..2027-01-24",
        "weekly 2027-01-25..2027-01-31",
    ]
    months = enumerate_runs(make("monthly"), local(2027, 1, 1), local(2028, 12, 1))
    assert len(months) == 24
    assert all(a.data_interval.end == b.data_interval.start for a, b in itertools.pairwise(months))
    feb_2028 = months[13]
    assert feb_2028.data_interval == DataInterval(utc(2028, 1, 31, 21), utc(2028, 2, 29, 21))
    assert feb_2028.run_after == utc(2028, 3, 1, 1)


def test_earliest_and_latest_bound_the_period_start_inclusively():
    tt = make("daily")
    # earliest exactly on a boundary: that day is the first run.
    first = next_info(tt, earliest=local(2026, 11, 1))
    assert first.data_interval.start == local(2026, 11, 1)
    # earliest a second after the boundary: the next day.
    first = tt.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(local(2026, 11, 1).add(seconds=1), None, True),
    )
    assert first.data_interval.start == local(2026, 11, 2)
    # latest == start of a period includes it; nothing after.
    last_interval = interval_of("daily", datetime.date(2026, 11, 4))
    restriction = TimeRestriction(local(2026, 11, 1), local(2026, 11, 5), True)
    info = tt.next_dagrun_info(last_automated_data_interval=last_interval, restriction=restriction)
    assert info.data_interval.start == local(2026, 11, 5)
    info = tt.next_dagrun_info(last_automated_data_interval=info.data_interval, restriction=restriction)
    assert info is None
    # a later start_date than the last run wins.
    info = tt.next_dagrun_info(
        last_automated_data_interval=last_interval, restriction=TimeRestriction(local(2026, 11, 20), None, True)
    )
    assert info.data_interval.start == local(2026, 11, 20)


@pytest.mark.parametrize(
    ("report_type", "now_utc", "expected_start", "expected_run_after"),
    [
        # 03:30 on the 28th in Istanbul: yesterday's report is due (since 23:00Z).
        ("daily", utc(2026, 11, 28, 0, 30), local(2026, 11, 27), utc(2026, 11, 27, 23)),
        # exactly at the due time counts as due
        ("daily", utc(2026, 11, 27, 23), local(2026, 11, 27), utc(2026, 11, 27, 23)),
        # 01:59:59 local: the 27th is not due yet, the 26th is the latest due
        ("daily", utc(2026, 11, 27, 22, 59, 59), local(2026, 11, 26), utc(2026, 11, 26, 23)),
        ("weekly", utc(2026, 11, 25, 12), local(2026, 11, 16), utc(2026, 11, 23, 0)),
        ("weekly", utc(2026, 11, 22, 23, 59), local(2026, 11, 9), utc(2026, 11, 16, 0)),
        ("monthly", utc(2026, 11, 1, 0, 59), local(2026, 9, 1), utc(2026, 10, 1, 1)),
        ("monthly", utc(2026, 11, 1, 1), local(2026, 10, 1), utc(2026, 11, 1, 1)),
    ],
)
def test_no_catchup_first_run_is_latest_due_period(now, report_type, now_utc, expected_start, expected_run_after):
    now(now_utc)
    tt = make(report_type)
    for earliest in (None, local(2020, 1, 1)):
        info = next_info(tt, earliest=earliest, catchup=False)
        assert info.data_interval.start == expected_start
        assert info.run_after == expected_run_after
        assert info.run_after <= now_utc


def test_no_catchup_skips_missed_periods_but_not_future_ones(now):
    now(utc(2026, 11, 28, 0, 30))
    tt = make("daily")
    # last run a month ago: jump to the latest due day
    info = next_info(tt, interval_of("daily", datetime.date(2026, 10, 20)), local(2020, 1, 1), catchup=False)
    assert info.data_interval.start == local(2026, 11, 27)
    # last run is the latest due day: the next one, due in the future
    info = next_info(tt, interval_of("daily", datetime.date(2026, 11, 27)), local(2020, 1, 1), catchup=False)
    assert info.data_interval == DataInterval(local(2026, 11, 28), local(2026, 11, 29))
    assert info.run_after == utc(2026, 11, 28, 23)
    # start_date in the future wins over "latest due"
    info = next_info(tt, earliest=local(2027, 1, 1), catchup=False)
    assert info.data_interval.start == local(2027, 1, 1)
    assert info.run_after == utc(2027, 1, 1, 23)
    # ... unless it is past end_date
    info = tt.next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(local(2020, 1, 1), local(2026, 11, 1), False)
    )
    assert info is None


def test_unrestricted_first_run_is_latest_due_period(now):
    # catchup=True without start_date or previous run (SerializedDAG.next_dagrun_info(restricted=False)).
    now(utc(2026, 11, 28, 0, 30))
    info = next_info(make("daily"))
    assert info.data_interval.start == local(2026, 11, 27)


def test_schedule_change_never_reuses_a_logical_date():
    # Previously daily (last run 2026-11-15); now monthly: November contains last.end but
    # starts before the last run, so December is next (as Airflow's built-in timetables do).
    info = make("monthly").next_dagrun_info(
        last_automated_data_interval=interval_of("daily", datetime.date(2026, 11, 15)),
        restriction=TimeRestriction(None, None, True),
    )
    assert info.data_interval.start == local(2026, 12, 1)


# --------------------------------------------------------------------------- manual runs


@pytest.mark.parametrize(
    ("report_type", "run_after", "start", "end"),
    [
        ("daily", utc(2026, 11, 28, 10), utc(2026, 11, 26, 21), utc(2026, 11, 27, 21)),
        ("daily", utc(2026, 11, 27, 21), utc(2026, 11, 26, 21), utc(2026, 11, 27, 21)),  # end == run_after
        ("daily", utc(2026, 11, 27, 20, 59, 59), utc(2026, 11, 25, 21), utc(2026, 11, 26, 21)),
        ("weekly", utc(2026, 11, 27, 12), utc(2026, 11, 15, 21), utc(2026, 11, 22, 21)),
        ("monthly", utc(2026, 11, 15), utc(2026, 9, 30, 21), utc(2026, 10, 31, 21)),
        ("monthly", utc(2028, 3, 1), utc(2028, 1, 31, 21), utc(2028, 2, 29, 21)),
    ],
)
def test_infer_manual_data_interval_is_last_complete_period(now, report_type, run_after, start, end):
    now(utc(2028, 6, 1))
    interval = make(report_type).infer_manual_data_interval(run_after=run_after)
    assert interval == DataInterval(start, end)
    assert isinstance(interval.start, pendulum.DateTime)


# --------------------------------------------------------------------------- serialization


def test_serialize_round_trip_keeps_all_parameters():
    tt = CalendarPeriodTimetable("weekly", "America/Havana", datetime.timedelta(hours=4, minutes=30), week_start=6)
    data = tt.serialize()
    assert data == {"report_type": "weekly", "timezone": "America/Havana", "due_after": 16200, "week_start": 6}
    back = CalendarPeriodTimetable.deserialize(data)
    assert back == tt
    assert (back.report_type, back.timezone, back.due_after, back.week_start) == (
        "weekly",
        "America/Havana",
        datetime.timedelta(hours=4, minutes=30),
        6,
    )
    assert CalendarPeriodTimetable.deserialize(make("daily").serialize()) == make("daily")
    assert make("daily") != make("monthly")


# plugins_from_repo and no_plugins: tests/dags/conftest.py


def test_plugin_registers_the_timetable(plugins_from_repo):
    plugins, errors = plugins_from_repo._get_plugins()
    assert errors == {}
    ours = [p for p in plugins if p.name == "cdr_reports"]
    assert len(ours) == 1
    assert type(ours[0]).__name__ == "CdrReportsPlugin"
    assert plugins_from_repo.get_timetables_plugins()[TIMETABLE_PATH] is CalendarPeriodTimetable


def test_airflow_encode_decode_round_trip(plugins_from_repo):
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    tt = CalendarPeriodTimetable("monthly", IST, datetime.timedelta(hours=4), week_start=3)
    encoded = encode_timetable(tt)
    assert encoded == {
        "__type": "cdr_reports.integration.timetable.CalendarPeriodTimetable",
        "__var": {"report_type": "monthly", "timezone": IST, "due_after": 14400, "week_start": 3},
    }
    decoded = decode_timetable(encoded)
    assert isinstance(decoded, CalendarPeriodTimetable)
    assert decoded == tt
    assert decoded.summary == tt.summary


def test_airflow_refuses_the_timetable_without_the_plugin(no_plugins):
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.serialization.helpers import TimetableNotRegistered

    with pytest.raises(TimetableNotRegistered, match="CalendarPeriodTimetable"):
        encode_timetable(make("daily"))
    with pytest.raises(TimetableNotRegistered, match="CalendarPeriodTimetable"):
        decode_timetable({"__type": TIMETABLE_PATH, "__var": make("daily").serialize()})


def _serialized_dag(tt: CalendarPeriodTimetable, start: pendulum.DateTime):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("cdr_timetable_test", schedule=tt, start_date=start, catchup=True) as dag:
        EmptyOperator(task_id="noop")
    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def test_dag_serialization_and_backfill_yield_one_run_per_period(plugins_from_repo):
    from airflow.models.backfill import _get_info_list

    tt = make("daily")
    sdag = _serialized_dag(tt, local(2015, 1, 1))
    assert sdag.timetable == tt
    assert sdag.timetable.summary == "daily, Europe/Istanbul, due 02:00"
    # The code path of `airflow backfill create` (models/backfill.py): iter_dagrun_infos_between
    # then keep runs whose data interval has ended.
    infos = _get_info_list(from_date=local(2015, 11, 1), to_date=local(2015, 11, 30), reverse=False, dag=sdag)
    assert [i.data_interval.start for i in infos] == [local(2015, 11, d) for d in range(1, 31)]
    assert all(a.data_interval.end == b.data_interval.start for a, b in itertools.pairwise(infos))
    assert infos[7].data_interval.end - infos[7].data_interval.start == datetime.timedelta(hours=25)

    monthly = _serialized_dag(make("monthly"), local(2015, 1, 1))
    infos = _get_info_list(from_date=local(2016, 1, 1), to_date=local(2016, 12, 31), reverse=True, dag=monthly)
    assert [i.data_interval.start for i in infos] == [local(2016, m, 1) for m in range(12, 0, -1)]
    # a UTC-midnight bound (the CLI default for naive dates) is after Istanbul midnight
    infos = _get_info_list(from_date=utc(2016, 10, 1), to_date=utc(2016, 10, 3), reverse=False, dag=sdag)
    assert [i.data_interval.start for i in infos] == [local(2016, 10, 2), local(2016, 10, 3)]


# --------------------------------------------------------------------------- texts and validation


def test_summary_and_description():
    assert make("daily").summary == "daily, Europe/Istanbul, due 02:00"
    assert make("weekly").summary == "weekly Mon-Sun, Europe/Istanbul, due 03:00"
    assert make("weekly", week_start=6).summary == "weekly Sun-Sat, Europe/Istanbul, due 03:00"
    assert make("monthly").summary == "monthly, Europe/Istanbul, due 04:00"
    assert make("daily").description == (
        "One run per calendar day in Europe/Istanbul, from local midnight to local midnight; "
        "each run is due at 02:00 local time on the following day."
    )
    assert make("weekly").description == (
        "One run per calendar week (Monday to Sunday) in Europe/Istanbul, from local midnight to local "
        "midnight; each run is due at 03:00 local time on the Monday after the week."
    )
    assert make("monthly").description.endswith("due at 04:00 local time on the 1st of the following month.")
    assert len(make("weekly").description) < 1000  # DagModel.timetable_description is String(1000)


def test_class_attributes_and_type_name():
    tt = CalendarPeriodTimetable("daily")
    assert (tt.timezone, tt.due_after, tt.week_start) == (IST, datetime.timedelta(hours=2), 0)
    assert tt.periodic is True
    assert tt.can_be_scheduled is True
    assert tuple(tt.run_ordering) == ("data_interval_end", "logical_date")
    assert tt.partitioned is False
    assert tt.type_name == "cdr_reports.integration.timetable.CalendarPeriodTimetable"
    tt.validate()
    assert CalendarPeriodTimetable("daily", timezone=pendulum.timezone(IST)).timezone == IST


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"report_type": "hourly"}, "unknown report type 'hourly'"),
        ({"report_type": "daily", "timezone": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
        ({"report_type": "daily", "due_after": datetime.timedelta(hours=-1)}, "must not be negative"),
        ({"report_type": "daily", "due_after": 2}, "timedelta"),
        ({"report_type": "weekly", "week_start": 7}, "week_start 7"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(PeriodError, match=message):
        CalendarPeriodTimetable(**kwargs)


# --------------------------------------------------------------------------- bounds (docs/security.md)

EARLIEST = datetime.date(2026, 1, 1)
# Every form Airflow's BackfillPostBody accepts for a date, each meaning a moment before EARLIEST.
EARLY_DATE_FORMS = [
    0,
    "0",
    1.5,
    "1.5",
    1_000_000_000_000,  # pydantic reads large numbers as milliseconds: 2001-09-09
    "1970-01-01",
    "1970-01-01T00:00:00",  # naive: [core] default_timezone
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:00:00+14:00",
    "2025-12-30T21:00:00Z",  # the start of the last local day before EARLIEST
]


def bounded(report_type: str, **kwargs) -> CalendarPeriodTimetable:
    return make(report_type, earliest=EARLIEST, **kwargs)


def _as_airflow_reads_it(value) -> pendulum.DateTime:
    """A request's date exactly as the backfill routes read it."""
    from airflow._shared.timezones import timezone
    from airflow.api_fastapi.core_api.datamodels.backfills import BackfillPostBody

    body = BackfillPostBody.model_validate({"dag_id": "d", "from_date": value, "to_date": "2026-01-05T00:00:00Z"})
    return timezone.coerce_datetime(body.from_date)


@pytest.mark.parametrize("form", EARLY_DATE_FORMS, ids=repr)
def test_backfill_runs_never_start_before_earliest_whatever_the_date_form(now, plugins_from_repo, form):
    from airflow.models.backfill import _get_info_list

    now(utc(2026, 12, 1, 7))
    sdag = _serialized_dag(bounded("daily"), local(2026, 1, 1))
    start = _as_airflow_reads_it(form)
    assert start < local(2026, 1, 1)
    infos = _get_info_list(from_date=start, to_date=local(2026, 1, 5), reverse=False, dag=sdag)
    assert [i.data_interval.start for i in infos] == [local(2026, 1, d) for d in range(1, 6)]
    refusal = bounded("daily").backfill_refusal("cdr_daily_report", start, local(2026, 1, 5), utc(2026, 12, 1, 7))
    assert "starts before CDR_EARLIEST_REPORT_DATE=2026-01-01" in refusal


def test_a_far_future_end_stops_at_the_first_period_not_ended(now, monkeypatch, plugins_from_repo):
    from airflow.models.backfill import _get_info_list

    now(utc(2026, 12, 1, 7))  # 10:00 in Istanbul: 2026-11-30 is the last complete day
    tt = bounded("daily")
    sdag = _serialized_dag(tt, local(2026, 1, 1))
    calls = []
    original = CalendarPeriodTimetable.next_dagrun_info
    monkeypatch.setattr(
        CalendarPeriodTimetable, "next_dagrun_info", lambda self, **kw: calls.append(1) or original(self, **kw)
    )
    infos = _get_info_list(
        from_date=local(2026, 11, 1),
        to_date=pendulum.datetime(9999, 12, 31, 23, 59, 59, tz="UTC"),
        reverse=False,
        dag=sdag,
    )
    assert [i.data_interval.start for i in infos] == [local(2026, 11, d) for d in range(1, 31)]
    # 30 runs and the call that said "no more": not the 2.9 million days up to 9999.
    assert len(calls) == 31
    # The counting of a refusal is bounded by the cap, not by the range.
    assert (
        tt.backfill_refusal("d", local(2026, 1, 1), pendulum.datetime(9999, 12, 31, tz="UTC"), utc(2026, 12, 1, 7))
        is None
    )
    assert "more than 100 runs" in bounded("daily", max_backfill_runs=100).backfill_refusal(
        "d", local(2026, 1, 1), pendulum.datetime(9999, 12, 31, tz="UTC"), utc(2026, 12, 1, 7)
    )


def test_the_scheduler_still_sees_the_next_period_ahead(now):
    # No `latest` (the report DAGs have no end_date): the next run may lie in the future.
    now(utc(2026, 12, 1, 7))
    tt = bounded("daily")
    info = next_info(tt, interval_of("daily", datetime.date(2026, 11, 30)), local(2026, 1, 1), catchup=True)
    assert info.data_interval.start == local(2026, 12, 1)
    # start_date before earliest is raised to earliest; unrestricted stays "the latest due period".
    assert next_info(tt, earliest=local(2020, 1, 1)).data_interval.start == local(2026, 1, 1)
    assert next_info(tt).data_interval.start == local(2026, 11, 30)
    weekly = bounded("weekly")  # 2026-01-01 is a Thursday: the first whole week starts on the 5th
    assert next_info(weekly, earliest=local(2020, 1, 1)).data_interval.start == local(2026, 1, 5)


def test_backfill_cap_counts_the_runs_airflow_would_create():
    now_utc = utc(2026, 12, 1, 7)
    tt = bounded("daily")
    # 334 complete days in 2026: under 366; with a cap of 333, one too many.
    assert tt.backfill_refusal("d", local(2026, 1, 1), utc(2026, 12, 31), now_utc) is None
    assert "more than 333 runs" in bounded("daily", max_backfill_runs=333).backfill_refusal(
        "d", local(2026, 1, 1), utc(2026, 12, 31), now_utc
    )
    assert (
        bounded("daily", max_backfill_runs=334).backfill_refusal("d", local(2026, 1, 1), utc(2026, 12, 31), now_utc)
        is None
    )
    assert bounded("monthly").backfill_refusal("d", local(2026, 1, 1), utc(2026, 12, 31), now_utc) is None
    assert "outside the representable range" in tt.backfill_refusal(
        "d", pendulum.datetime(9999, 12, 31, tz="UTC"), pendulum.datetime(9999, 12, 31, tz="UTC"), now_utc
    )


@pytest.mark.parametrize(
    ("logical_date", "needle"),
    [
        (utc(1970, 1, 1), "starts before CDR_EARLIEST_REPORT_DATE=2026-01-01"),
        (local(2026, 1, 1), "starts before CDR_EARLIEST_REPORT_DATE"),  # reports 2025-12-31
        (utc(2026, 12, 3), "has not ended yet"),  # the last complete period before it is 12-02
        (utc(2030, 1, 1), "has not ended yet"),
    ],
)
def test_manual_runs_outside_the_bounds_are_refused(now, logical_date, needle):
    now(utc(2026, 12, 1, 7))
    with pytest.raises(ValueError, match=needle):
        bounded("daily").infer_manual_data_interval(run_after=logical_date)
    # An explicit data interval (REST data_interval_start/_end) is checked when the run id is made.
    from airflow.utils.types import DagRunType

    period = bounded("daily").period_of(logical_date)
    interval = DataInterval(pendulum.instance(period.start_utc), pendulum.instance(period.end_utc))
    if period.end_utc > utc(2026, 12, 1, 7) or period.start_date < EARLIEST:
        with pytest.raises(ValueError, match="no manual run"):
            bounded("daily").generate_run_id(run_type=DagRunType.MANUAL, run_after=logical_date, data_interval=interval)


def test_manual_runs_inside_the_bounds_and_scheduled_run_ids_pass(now):
    from airflow.utils.types import DagRunType

    now(utc(2026, 12, 1, 7))
    tt = bounded("daily")
    assert tt.infer_manual_data_interval(run_after=utc(2026, 12, 1, 7)).start == local(2026, 11, 30)
    assert tt.infer_manual_data_interval(run_after=local(2026, 1, 2)).start == local(2026, 1, 1)
    future = interval_of("daily", datetime.date(2026, 12, 5))
    # Only manual runs are checked: the scheduler's own ids are never refused.
    run_id = tt.generate_run_id(run_type=DagRunType.SCHEDULED, run_after=future.end, data_interval=future)
    assert run_id.startswith("scheduled__")


def test_bounds_survive_serialization():
    tt = bounded("weekly", max_backfill_runs=52)
    data = tt.serialize()
    assert data["earliest"] == "2026-01-01" and data["max_backfill_runs"] == 52
    back = CalendarPeriodTimetable.deserialize(data)
    assert (back.earliest, back.max_backfill_runs) == (EARLIEST, 52)
    assert back == tt
    # The DAGs carry CDR_EARLIEST_REPORT_DATE.
    from cdr_reports.integration.dag_factory import build_report_dag
    from cdr_reports.pipeline.config import load_settings

    dag = build_report_dag("monthly", load_settings({"CDR_EARLIEST_REPORT_DATE": "2025-03-01"}))
    assert dag.timetable.earliest == datetime.date(2025, 3, 1)


# --------------------------------------------------------------------------- cron DAGs show their zone


@pytest.mark.parametrize(
    ("module", "builder", "expression", "clock"),
    [
        ("cdr_reports.integration.source_audit", "build_source_audit_dag", "0 5 * * *", "05:00"),
        ("cdr_reports.integration.maintenance", "build_maintenance_dag", "30 5 * * *", "05:30"),
    ],
)
def test_audit_and_retention_dags_show_their_time_zone(plugins_from_repo, module, builder, expression, clock):
    """What the DAG processor stores for the UI and API (DagModel.timetable_summary/description)."""
    import importlib

    from airflow.serialization.serialized_objects import DagSerialization

    from cdr_reports.integration.timetable import LocalCronTriggerTimetable
    from cdr_reports.pipeline.config import load_settings

    dag = getattr(importlib.import_module(module), builder)(load_settings({}))
    stored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert isinstance(stored.timetable, LocalCronTriggerTimetable)
    assert stored.timetable.summary == f"{expression} (Europe/Istanbul)"
    assert stored.timetable.description == f"At {clock}, Europe/Istanbul time"
    # Scheduling is the built-in cron's: 05:00 Istanbul is 02:00 UTC.
    info = stored.timetable.next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(local(2026, 11, 1), None, True)
    )
    assert info.run_after.in_timezone("UTC").strftime("%H:%M") == f"{int(clock[:2]) - 3:02d}:{clock[3:]}"


@pytest.mark.parametrize(
    ("report_date", "needle"),
    [
        ("2025-12-31", "starts before CDR_EARLIEST_REPORT_DATE=2026-01-01"),
        ("2026-12-01", "has not ended yet"),  # today in Istanbul
        ("9999-12-31", "outside the dates this system can represent"),
        ("0001-01-01", "starts before CDR_EARLIEST_REPORT_DATE"),
        ("2026-11-30", None),
        ("2026-01-01", None),
        ("not a date", None),  # the param's own validation answers
    ],
)
def test_report_date_refusal(report_date, needle):
    from cdr_reports.integration.timetable import report_date_refusal

    refusal = report_date_refusal(bounded("daily"), report_date, utc(2026, 12, 1, 7))
    if needle is None:
        assert refusal is None
    else:
        assert refusal.startswith(f"report_date={report_date} refused: ") and needle in refusal
