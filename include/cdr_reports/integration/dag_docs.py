"""The Markdown shown in the Airflow UI for each report DAG and task (`doc_md`)."""

from __future__ import annotations

from datetime import timedelta

from cdr_reports.pipeline import report_types
from cdr_reports.pipeline.config import Settings


def due_after(report_type: str, settings: Settings) -> timedelta:
    """How long after its period ends (local midnight) a report is due: the CDR_*_DUE_HOUR setting."""
    return timedelta(hours=settings.due.hour_for(report_type))


def task_docs(report_type: str) -> dict[str, str]:
    return {
        "plan": (
            f"### Plan the {report_type} report\n"
            "Works out the local calendar period this run reports (the `report_date` param, else the run's "
            "data interval) and splits it into `CDR_EXTRACT_SLICES_<TYPE>` (else `CDR_EXTRACT_SLICES`) UTC time slices, one per `extract` task."
        ),
        "extract": (
            "### Extract one time slice\n"
            "Reads the slice's CDRs through connection `cdr_mongo` in **one round trip** "
            "(`CDR_EXTRACT_STRATEGY`, default `auto`): on MongoDB one aggregation (`$match` on the "
            "`DateTime.Start` index and the global filter, then `$facet`) returns per operator the valid "
            "and answered calls and summed durations, plus the source and rejected counts; on FerretDB one "
            "projected `find` streams the slice and the rules are applied as it arrives. Transient server "
            "errors are retried with exponential backoff; configuration errors fail at once."
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


def dag_doc(report_type: str, settings: Settings, dag_id: str) -> str:
    row = report_types.of(report_type)
    return f"""
# {row.label} CDR report

Per-operator call statistics for **{row.period}** in `{settings.time_zone}`,
computed from the MongoDB collection `{settings.collection}` (connection `{settings.mongo_conn_id}`)
and stored in SQL (connection `{settings.sql_conn_id}`):

* `cdr_operator_report`: one row per operator: `total_calls`, `answered_calls`,
  `total_duration_seconds`, `answer_ratio`, `avg_answered_duration_seconds`;
* `cdr_report_run`: one row per period: source / valid / rejected record counts.

Each run's data interval is the reported period; the run is due {due_after(report_type, settings)}
after the period ends (local time). Tasks: `plan` → `extract` (one per time slice) → `aggregate` → `load`.
After the load, off the report's path: `check_volume` (volume drops, vanished and new operators) and,
in the daily DAG, `check_late_data` (re-counts the previous days); findings go to `cdr_quality_check`.
Then, in the daily DAG with `CDR_ROLLUP=auto`: `rebuild_rollups` lists the stored weeks and months
whose daily reports changed (and why), and `trigger_rebuilds` starts a run of the weekly or monthly
DAG for each (its note says why).

**Re-run a period** (late data, fixes): *Clear* its run, or trigger with the `report_date` param
(any date inside the period), e.g.
`airflow dags test {dag_id} --conf '{{"report_date": "2026-11-27"}}'`. The load replaces the stored
report of that period, so re-runs never duplicate rows.
"""
