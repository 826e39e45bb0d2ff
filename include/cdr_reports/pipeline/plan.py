"""Plan a run: which local calendar period it reports, and how that period is sliced.

The first step of plan → extract → aggregate → load. Pure (no Airflow): the DAG's `plan`
task and the failure alerts both call `resolve_period` with values taken from the run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.errors import PermanentError
from cdr_reports.pipeline.periods import (
    PeriodError,
    ReportPeriod,
    last_complete_period,
    period_containing,
    period_containing_instant,
)


def resolve_period(
    report_type: str,
    settings: Settings,
    report_date: str | date | None,
    data_interval_start: datetime | None,
    run_after: datetime | None,
    *,
    now: datetime | None = None,
) -> ReportPeriod:
    """The period a run reports: the `report_date` param, else the run's data interval.

    Scheduled runs carry the period as their data interval (CalendarPeriodTimetable); manual
    runs get the last complete period before the trigger; a run without a data interval falls
    back to the last complete period before `run_after`.

    Only reportable periods come back; anything else is a PermanentError (no retry can help)
    naming the param or setting at fault, raised before anything is read or stored:

    * a period whose dates or UTC bounds fall outside what `datetime` can represent (e.g.
      report_date 9999-12-31 or 0001-01-01, which would otherwise surface as OverflowError);
    * a period starting before `CDR_EARLIEST_REPORT_DATE` (the DAGs' start_date): the source
      holds nothing that old, and an empty report would be stored as if it were final;
    * when `now` is given (the `plan` task passes the current time): a period that has not
      ended yet, since its report would be partial. Callers that only describe a run (the
      failure alerts) leave `now` out.
    """
    tz = settings.time_zone
    if report_date:
        try:
            day = report_date if isinstance(report_date, date) else date.fromisoformat(str(report_date).strip())
        except ValueError:
            raise PermanentError(f"param report_date={report_date!r} is not a date (YYYY-MM-DD)") from None
        source = f"param report_date={day.isoformat()}"
        period = _bounded(source, lambda: period_containing(report_type, day, tz, settings.week_start))
    elif data_interval_start is not None:
        source = f"the run's data interval (start {data_interval_start.isoformat()})"
        period = _bounded(
            source, lambda: period_containing_instant(report_type, data_interval_start, tz, settings.week_start)
        )
    elif run_after is None:
        raise PermanentError("the run has neither a report_date param, a data interval nor a run_after time")
    else:
        source = f"the run's run_after time {run_after.isoformat()}"
        period = _bounded(source, lambda: last_complete_period(report_type, run_after, tz, settings.week_start))
    check_reportable(period, settings, now=now, source=source)
    return period


def _bounded(source: str, build: Callable[[], ReportPeriod]) -> ReportPeriod:
    """The period `build` returns, with its UTC bounds computed: they overflow at the calendar's ends."""
    try:
        period = build()
        period.start_utc, period.end_utc  # noqa: B018 - computed for their OverflowError
        return period
    except PeriodError as exc:
        raise PermanentError(f"{source}: {exc}") from None
    except (OverflowError, ValueError) as exc:
        # date + timedelta and the UTC conversion raise OverflowError, date(10000, ...) ValueError.
        raise PermanentError(
            f"{source}: its period lies outside the dates this system can represent "
            f"({date.min.isoformat()} .. {date.max.isoformat()}, local and UTC): {exc}"
        ) from None


def check_reportable(period: ReportPeriod, settings: Settings, *, now: datetime | None, source: str) -> None:
    """PermanentError unless `period` starts on/after CDR_EARLIEST_REPORT_DATE and (given `now`) has ended."""
    earliest = settings.earliest_report_date
    if period.start_date < earliest:
        raise PermanentError(
            f"{source}: the {period.label()} period starts before CDR_EARLIEST_REPORT_DATE={earliest.isoformat()}, "
            "the first day reports exist for; nothing is stored (set CDR_EARLIEST_REPORT_DATE earlier if the "
            "source really holds older CDRs)"
        )
    if now is not None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise PermanentError(f"now={now!r} is naive: pass an aware datetime")
        if period.end_utc > now:
            raise PermanentError(
                f"{source}: the {period.label()} period has not ended yet (it ends {period.end_date.isoformat()} "
                f"00:00 {period.tz_name} = {period.end_utc.isoformat()}, now is "
                f"{now.astimezone(period.end_utc.tzinfo).isoformat()}); only complete periods are reported, "
                "nothing is stored"
            )


def period_to_dict(period: ReportPeriod) -> dict[str, Any]:
    """A JSON-able form of the period (it travels between tasks through XCom)."""
    return {
        "report_type": period.report_type,
        "start_date": period.start_date.isoformat(),
        "end_date": period.end_date.isoformat(),
        "tz_name": period.tz_name,
        "week_start": period.week_start,
    }


def period_from_dict(data: dict[str, Any]) -> ReportPeriod:
    return ReportPeriod(
        report_type=data["report_type"],
        start_date=date.fromisoformat(data["start_date"]),
        end_date=date.fromisoformat(data["end_date"]),
        tz_name=data["tz_name"],
        week_start=int(data["week_start"]),
    )


def plan_windows(period: ReportPeriod, slices: int) -> list[dict[str, Any]]:
    """One XCom-able window per extract slice; each carries the period for the aggregate step."""
    return [
        {"period": period_to_dict(period), "start": start.isoformat(), "end": end.isoformat()}
        for start, end in period.slices(slices)
    ]
