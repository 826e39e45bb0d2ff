"""One factory for the three report DAGs (daily, weekly, monthly).

Parsing a DAG file runs only this module's top level: it reads settings from the environment
and builds the DAG objects. pymongo, SQLAlchemy and the provider hooks are imported inside the
tasks, and no Variable, Connection, network or database is touched while parsing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from cdr_reports.alerts import FailureAlert, daily_deadline_alert
from cdr_reports.config import Settings, load_settings
from cdr_reports.periods import REPORT_TYPES, ReportPeriod
from cdr_reports.security import report_dag_access_control
from cdr_reports.timetable import CalendarPeriodTimetable

log = logging.getLogger(__name__)

DAG_IDS = {report_type: f"cdr_{report_type}_report" for report_type in REPORT_TYPES}
TAGS = ["cdr", "reports"]

_WINDOW_TEXT = {
    "daily": "the previous local calendar day, [D 00:00, D+1 00:00)",
    "weekly": "the previous local week, [Monday 00:00, next Monday 00:00)",
    "monthly": "the previous local calendar month, [1st 00:00, next 1st 00:00)",
}


@contextlib.contextmanager
def fail_fast(what: str) -> Iterator[None]:
    """Turn permanent errors into AirflowFailException (no retry); let transient ones retry."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

    from cdr_reports.errors import PermanentError

    try:
        yield
    except PermanentError as exc:
        raise AirflowFailException(f"{what}: {exc}") from exc
    except AirflowNotFoundException as exc:
        raise AirflowFailException(f"{what}: {exc} (create the Airflow connection, see the README)") from exc
    except Exception as exc:
        # A hook rejecting its connection (e.g. MongoHook: "conn_type must be 'mongo'").
        if any(cls.__name__ == "AirflowConfigException" for cls in type(exc).__mro__):
            raise AirflowFailException(f"{what}: {exc}") from exc
        raise


def _due_after(report_type: str, settings: Settings) -> timedelta:
    hour = {"daily": settings.due.daily_hour, "weekly": settings.due.weekly_hour, "monthly": settings.due.monthly_hour}
    return timedelta(hours=hour[report_type])


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
    from cdr_reports.periods import last_complete_period, period_containing, period_containing_instant

    tz = settings.time_zone
    if report_date:
        try:
            day = report_date if isinstance(report_date, date) else date.fromisoformat(str(report_date).strip())
        except ValueError:
            from cdr_reports.errors import PermanentError

            raise PermanentError(f"param report_date={report_date!r} is not a date (YYYY-MM-DD)") from None
        return period_containing(report_type, day, tz, settings.week_start)
    if data_interval_start is not None:
        return period_containing_instant(report_type, data_interval_start, tz, settings.week_start)
    if run_after is None:
        from cdr_reports.errors import PermanentError

        raise PermanentError("the run has neither a report_date param, a data interval nor a run_after time")
    return last_complete_period(report_type, run_after, tz, settings.week_start)


def _period_from_dict(data: dict[str, Any]) -> ReportPeriod:
    return ReportPeriod(
        report_type=data["report_type"],
        start_date=date.fromisoformat(data["start_date"]),
        end_date=date.fromisoformat(data["end_date"]),
        tz_name=data["tz_name"],
        week_start=int(data["week_start"]),
    )


def _period_to_dict(period: ReportPeriod) -> dict[str, Any]:
    return {
        "report_type": period.report_type,
        "start_date": period.start_date.isoformat(),
        "end_date": period.end_date.isoformat(),
        "tz_name": period.tz_name,
        "week_start": period.week_start,
    }


def mongo_collection(settings: Settings) -> Any:
    """The CDR collection through MongoHook (connection `settings.mongo_conn_id`)."""
    from airflow.providers.mongo.hooks.mongo import MongoHook

    hook = MongoHook(mongo_conn_id=settings.mongo_conn_id)
    # Fail a try in seconds when the server is down, not after pymongo's 30 s default.
    for option in ("serverSelectionTimeoutMS", "connectTimeoutMS", "socketTimeoutMS"):
        hook.extras.setdefault(option, settings.mongo_timeout_ms)
    database = settings.mongo_database or hook.connection.schema
    if not database:
        from cdr_reports.errors import PermanentError

        raise PermanentError(
            f"connection {settings.mongo_conn_id!r} names no database (its schema) and CDR_MONGO_DATABASE is unset"
        )
    return hook.get_conn()[database][settings.collection]


def sql_engine(settings: Settings) -> Any:
    """A SQLAlchemy engine from the `settings.sql_conn_id` connection's own hook."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(settings.sql_conn_id)
    hook = connection.get_hook()
    if not hasattr(hook, "get_sqlalchemy_engine"):
        from cdr_reports.errors import PermanentError

        raise PermanentError(f"connection {settings.sql_conn_id!r} (type {connection.conn_type}) is not a SQL database")
    return hook.get_sqlalchemy_engine()


def _task_docs(report_type: str) -> dict[str, str]:
    return {
        "plan": (
            f"### Plan the {report_type} report\n"
            "Works out the local calendar period this run reports (the `report_date` param, else the run's "
            "data interval) and splits it into `CDR_EXTRACT_SLICES` UTC time slices, one per `extract` task."
        ),
        "extract": (
            "### Extract one time slice\n"
            "Counts the slice's CDRs **inside MongoDB** (`$match` on `DateTime.Start` plus the global filter, "
            "`$group` by `Operator.Id`) through connection `cdr_mongo`: source, valid, rejected and answered "
            "calls and summed durations per operator. Transient server errors are retried with exponential "
            "backoff; configuration errors fail at once."
        ),
        "aggregate": (
            "### Aggregate\n"
            "Merges the slices, derives `answer_ratio` and `avg_answered_duration_seconds`, and checks the "
            "invariants: slices tile the period, source = valid + rejected, answered <= total."
        ),
        "load": (
            "### Load\n"
            "Replaces the period's rows in `cdr_operator_report` and `cdr_report_run` in **one transaction** "
            "through connection `cdr_reports_db` (SQL Server, PostgreSQL or SQLite): re-running a period is "
            "idempotent and a failed load leaves the previous report intact."
        ),
    }


def _dag_doc(report_type: str, settings: Settings, dag_id: str) -> str:
    return f"""
# {report_type.capitalize()} CDR report

Per-operator call statistics for **{_WINDOW_TEXT[report_type]}** in `{settings.time_zone}`,
computed from the MongoDB collection `{settings.collection}` (connection `{settings.mongo_conn_id}`)
and stored in SQL (connection `{settings.sql_conn_id}`):

* `cdr_operator_report`: one row per operator: `total_calls`, `answered_calls`,
  `total_duration_seconds`, `answer_ratio`, `avg_answered_duration_seconds`;
* `cdr_report_run`: one row per period: source / valid / rejected record counts.

Each run's data interval is the reported period; the run is due {_due_after(report_type, settings)}
after the period ends (local time). Tasks: `plan` → `extract` (one per time slice) → `aggregate` → `load`.

**Re-run a period** (late data, fixes): *Clear* its run, or trigger with the `report_date` param
(any date inside the period), e.g.
`airflow dags test {dag_id} --conf '{{"report_date": "2026-11-27"}}'`. The load replaces the stored
report of that period, so re-runs never duplicate rows.
"""


def task_default_args(settings: Settings, report_type: str | None = None) -> dict[str, Any]:
    """Retry, timeout and alert policy shared by every task of the package's DAGs."""
    return {
        "owner": settings.owner,
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=settings.max_retry_delay_seconds),
        "execution_timeout": timedelta(minutes=settings.execution_timeout_minutes),
        # Runs once a task has failed for good (not on retries): e-mail / Slack, see alerts.py.
        "on_failure_callback": FailureAlert(settings, report_type),
    }


def build_report_dag(report_type: str, settings: Settings | None = None) -> DAG:
    """Build the DAG of one report type from the settings (environment by default)."""
    settings = settings or load_settings()
    dag_id = DAG_IDS[report_type]
    docs = _task_docs(report_type)
    timetable = CalendarPeriodTimetable(
        report_type=report_type,
        timezone=settings.time_zone,
        due_after=_due_after(report_type, settings),
        week_start=settings.week_start,
    )
    default_args = task_default_args(settings, report_type)
    with DAG(
        dag_id=dag_id,
        schedule=timetable,
        start_date=pendulum.datetime(2026, 1, 1, tz=settings.time_zone),
        catchup=settings.catchup,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=settings.dagrun_timeout_hours),
        deadline=daily_deadline_alert(settings) if report_type == "daily" else None,
        default_args=default_args,
        tags=[*TAGS, report_type],
        doc_md=_dag_doc(report_type, settings, dag_id),
        params={
            "report_date": Param(
                None,
                type=["null", "string"],
                format="date",
                title="Report date",
                description=f"Any date inside the {report_type} period to report (local calendar). "
                "Empty: the run's own period (scheduled) or the last complete one (manual trigger).",
            )
        },
        render_template_as_native_obj=False,
        # Per-DAG RBAC for the FAB auth manager (ReportViewer/ReportOperator); ignored by others.
        access_control=report_dag_access_control(),
    ) as dag:

        @task(task_id="plan", doc_md=docs["plan"])
        def plan(**context: Any) -> list[dict[str, Any]]:
            with fail_fast("planning the report"):
                dag_run = context.get("dag_run")
                period = resolve_period(
                    report_type,
                    settings,
                    context["params"].get("report_date"),
                    getattr(dag_run, "data_interval_start", None) or context.get("data_interval_start"),
                    getattr(dag_run, "run_after", None),
                )
                windows = period.slices(settings.extract_slices)
            log.info("reporting %s: %s .. %s UTC in %d slice(s)", period.label(), period.start_utc, period.end_utc, len(windows))
            return [
                {"period": _period_to_dict(period), "start": start.isoformat(), "end": end.isoformat()}
                for start, end in windows
            ]

        @task(task_id="extract", doc_md=docs["extract"], map_index_template="{{ window_label }}")
        def extract(window: dict[str, Any]) -> dict[str, Any]:
            from airflow.sdk import get_current_context
            from bson import json_util

            from cdr_reports.extract import extract_slice

            start, end = datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])
            # Names the mapped task in the UI by its slice instead of a bare index.
            get_current_context()["window_label"] = f"{window['start']} .. {window['end']}"
            # The message names the connection, the filter and their settings: what to fix when wrong.
            where = f"connection {settings.mongo_conn_id!r} (CDR_MONGO_CONN_ID), CDR_GLOBAL_FILTER={json_util.dumps(settings.global_filter)}"
            with fail_fast(f"extracting {window['start']}..{window['end']} via {where}"):
                collection = mongo_collection(settings)
                counts = extract_slice(collection, start, end, settings.global_filter, settings.max_call_duration_seconds)
            return counts.to_dict()

        @task(task_id="aggregate", doc_md=docs["aggregate"])
        def aggregate(windows: list[dict[str, Any]], slices: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
            from cdr_reports.aggregate import build_report
            from cdr_reports.extract import SliceCounts

            period = _period_from_dict(windows[0]["period"])
            report = build_report(period, [SliceCounts.from_dict(s) for s in slices], dag_run_id=context["run_id"])
            return report.to_dict()

        @task(task_id="load", doc_md=docs["load"])
        def load(report_data: dict[str, Any]) -> dict[str, Any]:
            from cdr_reports.aggregate import Report
            from cdr_reports.load import load_report

            report = Report.from_dict(report_data)
            with fail_fast(f"loading the {report.report_type} report of {report.period_start} via connection {settings.sql_conn_id!r} (CDR_SQL_CONN_ID)"):
                result = load_report(sql_engine(settings), report, schema=settings.sql_schema)
            return {
                "report_type": report.report_type,
                "period_start": report.period_start.isoformat(),
                "operators": result.operator_rows,
                "replaced_rows": result.replaced_operator_rows,
                "source_records": report.source_records,
                "valid_records": report.valid_records,
                "rejected_records": report.rejected_records,
            }

        windows = plan()
        slices = extract.expand(window=windows)
        load(aggregate(windows, slices))
    return dag


def build_report_dags(settings: Settings | None = None) -> dict[str, DAG]:
    settings = settings or load_settings()
    return {DAG_IDS[report_type]: build_report_dag(report_type, settings) for report_type in REPORT_TYPES}
