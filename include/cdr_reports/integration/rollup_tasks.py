"""Corrections of a day reach its stored week and month: the daily DAG's last two tasks.

- `rebuild_rollups` (after `load` and the data-quality checks, since a late-data re-report changes
  earlier days) looks at the weeks and months containing this run's day and the
  `CDR_LATE_DATA_LOOKBACK_DAYS` days before it, and lists each stored one that its daily reports
  no longer match (`runner.stale_rollups`), with the reason. That list is its return value (XCom)
  and its log.
- `trigger_rebuilds` (Airflow's `TriggerDagRunOperator`, mapped over that list) starts one run of
  `cdr_weekly_report` / `cdr_monthly_report` per stale period, with `report_date` in its conf and
  the reason as the run's note. That run is an ordinary run of the weekly or monthly DAG: the
  same plan (roll-up from the stored daily reports), idempotent load, checks and CORRECTED e-mail
  when the content changed, the same retries and failure alerts, listed in that DAG's grid.

Durable without bookkeeping: staleness is read from the report tables, so a try that died is
simply made again; the run id is derived from the period and the digest of the daily reports it
will roll up (`rebuild__<period start>__<digest>`), so the same correction never starts two
runs (`skip_when_already_exists`: that mapped task instance is skipped) and a newer correction
starts a new one. Off with `CDR_ROLLUP=off`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cdr_reports.integration.failures import fail_fast
from cdr_reports.pipeline import report_types
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.report_types import ROLLUP_SOURCE

log = logging.getLogger(__name__)

REBUILD_DOC = (
    "### Find stale weeks and months\n"
    "Lists the stored weekly and monthly reports containing this run's day (and the late-data lookback "
    "days) whose daily reports changed since they were stored, and why. `trigger_rebuilds` starts one "
    "run of the weekly or monthly DAG per entry."
)
TRIGGER_DOC = (
    "### Rebuild them\n"
    "One run of `cdr_weekly_report` / `cdr_monthly_report` per stale period found by `rebuild_rollups` "
    "(conf `report_date`, the reason as the run's note): that run rolls the period up again from the "
    "stored daily reports and e-mails a CORRECTED copy when its content changed. A correction already "
    "triggered is skipped."
)
RUN_ID_PREFIX = "rebuild__"
# The conf key that makes a weekly or monthly run a rebuild: why (written by rebuild_requests, read by
# the load, which records it in the `rebuilt` finding, and by the failure alert).
REBUILD_REASON = "rebuild_reason"


def rebuild_run_id(period_start: date, inputs_sha256: str | None) -> str:
    """The run id of the rebuild of one period from one state of its daily reports."""
    return f"{RUN_ID_PREFIX}{period_start.isoformat()}__{(inputs_sha256 or 'none')[:16]}"


def rebuild_reason(context: Mapping[str, Any]) -> str | None:
    """Why this run rebuilds its period (its conf, from trigger_rebuilds); None for any other run."""
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    reason = conf.get(REBUILD_REASON) if isinstance(conf, Mapping) else None
    return str(reason) if reason else None


def rebuild_requests(settings: Settings, loaded: Mapping[str, Any], run_id: str, dag_id: str) -> list[dict[str, Any]]:
    """Body of `rebuild_rollups`: the TriggerDagRunOperator arguments of each stale week or month."""
    from cdr_reports.integration.connections import sql_engine
    from cdr_reports.pipeline.runner import stale_rollups

    day = date.fromisoformat(str(loaded["period_start"]))
    days = [day - timedelta(days=i) for i in range(settings.late_data_lookback_days + 1)]
    with fail_fast(
        f"looking for weeks and months to rebuild ({days[-1]}..{day}) via connection {settings.sql_conn_id!r}"
    ):
        stale = stale_rollups(sql_engine(settings), days, settings)
    requests = []
    for item in stale:
        period = item.period
        note = (
            f"Rebuild of the {period.label()}: {item.reason}. "
            f"Requested by {dag_id} run {run_id} (task rebuild_rollups)."
        )
        requests.append(
            {
                "trigger_dag_id": report_types.of(period.report_type).dag_id,
                "trigger_run_id": rebuild_run_id(period.start_date, item.inputs_sha256),
                "conf": {"report_date": period.start_date.isoformat(), REBUILD_REASON: item.reason},
                "note": note,
            }
        )
        log.warning("%s", note)
    log.info("%d week(s)/month(s) to rebuild", len(requests))
    return requests


def rebuilt_finding(engine: Any, report: Any, reason: str | None, settings: Settings) -> Callable[[Any, Any], None]:
    """For a weekly/monthly load: writes, in the load's transaction, its `rebuilt` finding (or none).

    With `reason` (a run started by trigger_rebuilds) the finding says why, by which run, how the
    report was computed and its source CDRs before and after; the report view and the e-mail list
    findings, so a CORRECTED copy says why it was corrected. Without, the period's `rebuilt`
    finding is removed: it described an older report. One transaction with the report, so a kill
    never leaves one without the other; "before" is read now, from the report this load replaces
    (on a retry after this run already committed: from this run's own finding).
    """
    import sqlalchemy as sa

    from cdr_reports.pipeline.quality.rules import REBUILT, WHOLE_PERIOD, Finding
    from cdr_reports.pipeline.quality.store import read_findings, replace_findings_in, stored_run
    from cdr_reports.pipeline.schema import RUN_TABLE  # SQLAlchemy and its dialects: not at DAG parse time

    before: float | None = None
    if reason:
        with engine.connect() as conn:
            exists = sa.inspect(conn).has_table(RUN_TABLE, schema=settings.sql_schema)
        stored = stored_run(engine, report.report_type, report.period_start, settings.sql_schema) if exists else None
        if stored is not None and stored["dag_run_id"] == report.dag_run_id:
            own = read_findings(
                engine, report.report_type, report.period_start, settings.sql_schema,
                verdicts=(REBUILT,), dag_run_id=report.dag_run_id,
            )  # fmt: skip
            before = own[0]["expected"] if own else None
        elif stored is not None:
            before = float(stored["source_records"])

    def write(conn: Any, loaded: Any) -> None:
        findings = []
        if reason:
            was = f"{before:.0f} source CDRs before" if before is not None else "not stored before"
            detail = (
                f"by run {loaded.dag_run_id} ({loaded.method}, {loaded.days_extracted} day(s) read from "
                f"MongoDB): {reason}; {was}, {loaded.source_records} now"
            )
            period = (loaded.report_type, loaded.period_start)
            findings.append(Finding(*period, WHOLE_PERIOD, REBUILT, before, loaded.source_records, detail))
            log.warning("%s %s rebuilt %s", loaded.report_type, loaded.period_start, detail)
        replace_findings_in(
            conn, loaded.report_type, loaded.period_start, (REBUILT,), findings, loaded.dag_run_id,
            datetime.now(UTC), settings.sql_schema,
        )  # fmt: skip

    return write


def add_rebuild_tasks(report_type: str, settings: Settings, loaded: Any, after: list[Any]) -> list[Any]:
    """Add `rebuild_rollups` >> `trigger_rebuilds` to the daily DAG (inside its context)."""
    if report_type != ROLLUP_SOURCE or settings.rollup == "off":
        return []
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk import task

    @task(task_id="rebuild_rollups", doc_md=REBUILD_DOC)
    def rebuild_rollups(loaded_summary: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
        return rebuild_requests(settings, loaded_summary, str(context["run_id"]), str(context["dag"].dag_id))

    requests = rebuild_rollups(loaded)
    for upstream in after:
        upstream >> requests
    trigger = TriggerDagRunOperator.partial(
        task_id="trigger_rebuilds",
        doc_md=TRIGGER_DOC,
        # No logical date: a manual-style run of the period named in its conf (the plan task reads it).
        logical_date=None,
        skip_when_already_exists=True,
        wait_for_completion=False,
    ).expand_kwargs(requests)
    return [requests, trigger]
