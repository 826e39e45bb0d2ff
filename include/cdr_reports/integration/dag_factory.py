"""One factory for the three report DAGs (daily, weekly, monthly).

`dags/cdr_report_dags.py` calls `build_report_dag` once per DAG, with the id in plain sight.
Parsing runs only this module's top level: it reads settings from the environment and builds
the DAG objects; task bodies (`tasks.py`) import pymongo, SQLAlchemy and the hooks at run time,
and no Variable, Connection, network or database is touched while parsing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from cdr_reports.integration import tasks
from cdr_reports.integration.alerts import daily_deadline_alert
from cdr_reports.integration.dag_docs import dag_doc, due_after, task_docs
from cdr_reports.integration.email_task import add_email_task
from cdr_reports.integration.quality_tasks import add_quality_tasks
from cdr_reports.integration.report_assets import event_extra, report_asset
from cdr_reports.integration.rollup_tasks import add_rebuild_tasks, rebuild_reason
from cdr_reports.integration.security import report_dag_access_control
from cdr_reports.integration.task_policy import task_default_args
from cdr_reports.integration.timetable import CalendarPeriodTimetable
from cdr_reports.pipeline import report_types
from cdr_reports.pipeline.config import Settings, load_settings
from cdr_reports.pipeline.report_types import REPORT_TYPES, REPORTS

DAG_IDS = {name: row.dag_id for name, row in REPORTS.items()}  # report_types.py declares them
TAGS = ["cdr", "reports"]
# The first period the DAGs know of (local time) is settings.earliest_report_date
# (CDR_EARLIEST_REPORT_DATE, default DEFAULT_EARLIEST_REPORT_DATE): the DAGs' start_date, and the
# `plan` task refuses any period starting before it (backfills and report_date included).


def build_report_dag(report_type: str, settings: Settings | None = None, *, dag_id: str | None = None) -> DAG:
    """Build the DAG of one report type from the settings (environment by default).

    `dag_id`, when given, must be the canonical id of the report type: the RBAC roles, the
    report view and the alerts all map report types to these ids.
    """
    settings = settings or load_settings()
    canonical = report_types.of(report_type).dag_id
    if dag_id is not None and dag_id != canonical:
        raise ValueError(f"the {report_type} report DAG is {canonical!r}, not {dag_id!r}")
    dag_id = canonical
    docs = task_docs(report_type)
    timetable = CalendarPeriodTimetable(
        report_type=report_type,
        timezone=settings.time_zone,
        due_after=due_after(report_type, settings),
        week_start=settings.week_start,
        earliest=settings.earliest_report_date,  # no run, backfill or trigger before it (timetable.py)
    )
    with DAG(
        dag_id=dag_id,
        schedule=timetable,
        start_date=pendulum.datetime(
            settings.earliest_report_date.year,
            settings.earliest_report_date.month,
            settings.earliest_report_date.day,
            tz=settings.time_zone,
        ),
        catchup=settings.catchup,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=settings.dagrun_timeout_hours),
        deadline=daily_deadline_alert(settings) if report_type == "daily" else None,
        default_args=task_default_args(settings, report_type),
        tags=[*TAGS, report_type],
        doc_md=dag_doc(report_type, settings, dag_id),
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
        access_control=report_dag_access_control(report_type),  # + CDR_REPORT_ACCESS roles (security.py)
    ) as dag:

        @task(task_id="plan", doc_md=docs["plan"])
        def plan(**context: Any) -> list[dict[str, Any]]:
            return tasks.plan(report_type, settings, context)

        @task(task_id="extract", doc_md=docs["extract"], map_index_template="{{ window_label }}")
        def extract(window: dict[str, Any]) -> dict[str, Any]:
            # Names the mapped task in the UI by its slice instead of a bare index.
            context: dict[str, Any] = get_current_context()  # type: ignore[assignment]  # template variables are free-form
            context["window_label"] = f"{window['start']} .. {window['end']}"
            return tasks.extract(window, settings)

        @task(task_id="aggregate", doc_md=docs["aggregate"])
        def aggregate(windows: list[dict[str, Any]], slices: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
            return tasks.aggregate(windows, slices, context["run_id"])

        # Each stored report is an event of the type's Asset (period and counts in its extra).
        @task(task_id="load", doc_md=docs["load"], outlets=[report_asset(report_type)])
        def load(report_data: dict[str, Any], **context: Any) -> dict[str, Any]:
            # A run started by the daily DAG's trigger_rebuilds says why in its conf (rollup_tasks.py).
            loaded = tasks.load(report_data, settings, rebuild_reason=rebuild_reason(context))
            context["outlet_events"][report_asset(report_type)].extra = event_extra({**report_data, **loaded})
            return loaded

        # XComArgs stand for the values at run time (typed Any: mypy cannot follow TaskFlow).
        windows: Any = plan()
        slices: Any = extract.expand(window=windows)
        report: Any = aggregate(windows, slices)
        loaded = load(report)
        # Volume-drop and (daily) late-data checks after the load, off the report's path (quality_tasks.py).
        checks = add_quality_tasks(report_type, settings, loaded)
        # Daily: stored weeks and months whose days changed are rebuilt by runs of their DAGs (rollup_tasks.py).
        add_rebuild_tasks(report_type, settings, loaded, after=checks)
        # E-mail delivery only when CDR_REPORT_EMAILS_<TYPE> names recipients, after the checks
        # so that it carries their findings (email_task.py).
        add_email_task(report_type, settings, loaded, after=checks)
        add_failure_watcher(dag)
    return dag


WATCHER_DOC = (
    "### Fail the run when a task failed\n"
    "Runs only when a task of this run failed (`one_failed`), and fails, so that the run is marked "
    "failed. Without it the run would end as `success`: a last task that runs whatever happened before "
    "it (`email_report`, trigger rule `all_done`) decides the run's state. The failed task has already "
    "alerted; this one does not alert again."
)


def add_failure_watcher(dag: DAG) -> None:
    """Add `watcher` after every task when a last task of `dag` does not need its upstreams to succeed.

    Airflow decides a run's state from its last tasks: one with `all_done` succeeds or skips whatever
    failed before it, and the run would end "success" (a weekly run with e-mail delivery whose extract
    failed did). The watcher, the idiom of Airflow's own system tests, runs only when a task failed and
    fails the run. Derived from the DAG's shape, so it follows any task added later with such a rule.
    """
    last_tasks = [t for t in dag.tasks if not t.downstream_task_ids]
    if all(t.trigger_rule == "all_success" for t in last_tasks):
        return  # a failure reaches a last task as upstream_failed: the run fails by itself
    upstream = list(dag.tasks)

    @task(task_id="watcher", doc_md=WATCHER_DOC, trigger_rule="one_failed", retries=0, on_failure_callback=None)
    def watcher() -> None:
        raise AirflowFailException("a task of this run failed (see the run's failed task and its alert)")

    upstream >> watcher()


def build_report_dags(settings: Settings | None = None) -> dict[str, DAG]:
    """All three report DAGs by id (tests and tools; the DAG file builds them one by one)."""
    settings = settings or load_settings()
    return {DAG_IDS[report_type]: build_report_dag(report_type, settings) for report_type in REPORT_TYPES}
