"""Registers the CDR report timetable with Airflow.

A Dag's timetable is stored serialized (class path + ``serialize()`` output). Airflow only
deserializes custom timetable classes that a plugin declares, so the Dag processor, the
scheduler and the API server all need this plugin loaded (it lives in the plugins folder)
to read the report Dags; without it they fail with TimetableNotRegistered
("Timetable class ... is not registered").
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cdr_reports.integration.timetable import CalendarPeriodTimetable


class CdrReportsPlugin(AirflowPlugin):
    name = "cdr_reports"
    timetables = [CalendarPeriodTimetable]
