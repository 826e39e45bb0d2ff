"""Plan a run: which local calendar period it reports, and how that period is sliced.

The first step of plan → extract → aggregate → load. Pure (no Airflow): the DAG's `plan`
task and the failure alerts both call `resolve_period` with values taken from the run.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.errors import PermanentError
from cdr_reports.pipeline.periods import (
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
) -> ReportPeriod:
    """The period a run reports: the `report_date` param, else the run's data interval.

    Scheduled runs carry the period as their data interval (CalendarPeriodTimetable); manual
    runs get the last complete period before the trigger; a run without a data interval falls
    back to the last complete period before `run_after`.
    """
    tz = settings.time_zone
    if report_date:
        try:
            day = report_date if isinstance(report_date, date) else date.fromisoformat(str(report_date).strip())
        except ValueError:
            raise PermanentError(f"param report_date={report_date!r} is not a date (YYYY-MM-DD)") from None
        return period_containing(report_type, day, tz, settings.week_start)
    if data_interval_start is not None:
        return period_containing_instant(report_type, data_interval_start, tz, settings.week_start)
    if run_after is None:
        raise PermanentError("the run has neither a report_date param, a data interval nor a run_after time")
    return last_complete_period(report_type, run_after, tz, settings.week_start)


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
