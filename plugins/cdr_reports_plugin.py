"""Registers the CDR report timetable and the "CDR Reports" view with Airflow.

A Dag's timetable is stored serialized (class path + ``serialize()`` output). Airflow only
deserializes custom timetable classes that a plugin declares, so the Dag processor, the
scheduler and the API server all need this plugin loaded (it lives in the plugins folder)
to read the report Dags; without it they fail with TimetableNotRegistered
("Timetable class ... is not registered").

The view is a FastAPI app the api-server mounts at ``/cdr-reports`` plus a top-level navigation
entry (an external view the UI shows in a frame); its code lives in
``cdr_reports.integration.report_view`` (docs/report-view.md).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cdr_reports.integration.http_policy.middleware import HttpPolicyMiddleware
from cdr_reports.integration.report_view.app import plugin_registration
from cdr_reports.integration.timetable import CalendarPeriodTimetable, LocalCronTriggerTimetable

_report_app, _report_nav = plugin_registration()


class CdrReportsPlugin(AirflowPlugin):
    name = "cdr_reports"
    # The report DAGs' periods; the audit and retention DAGs' cron, shown with its time zone.
    timetables = [CalendarPeriodTimetable, LocalCronTriggerTimetable]
    # Security headers, closed doc endpoints, token brute-force brake, backfill bounds (docs/security.md).
    fastapi_root_middlewares = [{"name": "cdr_http_policy", "middleware": HttpPolicyMiddleware}]
    fastapi_apps = [_report_app]
    external_views = [_report_nav]
