"""The daily DAG's `rebuild_rollups` task: corrections of a day reach its stored week and month.

After `load` and the data-quality tasks (a late-data re-report changes earlier days), it looks
at the weeks and months containing this run's day and the `CDR_LATE_DATA_LOOKBACK_DAYS` days
before it. Each stored one whose daily reports changed since it was stored (runner.stale_rollups)
is built again from the stored daily reports with the same idempotent load, then e-mailed as a
CORRECTED copy when its content changed and it has subscribers. Its return value (XCom) and its
log name every period rebuilt and why; the rebuilt report's run row names this run. Off with
`CDR_ROLLUP=off`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from cdr_reports.pipeline.config import Settings

log = logging.getLogger(__name__)

REBUILD_DOC = (
    "### Rebuild stale weeks and months\n"
    "Finds the stored weekly and monthly reports containing this run's day (and the late-data lookback "
    "days) whose daily reports changed since they were stored, and rebuilds each from the stored daily "
    "reports (the same idempotent load; a CORRECTED e-mail when the content changed). Returns what was "
    "rebuilt and why."
)


def rebuild_rollups_task(
    settings: Settings, loaded: Mapping[str, Any], context: Mapping[str, Any]
) -> list[dict[str, Any]]:
    from cdr_reports.integration.connections import mongo_collection, sql_engine
    from cdr_reports.integration.failures import fail_fast
    from cdr_reports.integration.report_view.delivery import deliver_report
    from cdr_reports.pipeline.runner import run_report, stale_rollups

    day = date.fromisoformat(str(loaded["period_start"]))
    days = [day - timedelta(days=i) for i in range(settings.late_data_lookback_days + 1)]
    run_id = str(context["run_id"])
    rebuilt: list[dict[str, Any]] = []
    with fail_fast(f"rebuilding the weeks and months of {days[-1]}..{day} via connection {settings.sql_conn_id!r}"):
        engine = sql_engine(settings)
        for period, reason in stale_rollups(engine, days, settings):
            log.warning("rebuilding %s: %s", period.label(), reason)
            report = run_report(mongo_collection(settings), engine, period, settings, run_id)
            delivery = deliver_report(settings, period.report_type, period.start_date, run_id, engine=engine)
            rebuilt.append(
                {
                    "report_type": period.report_type,
                    "period_start": period.start_date.isoformat(),
                    "reason": reason,
                    "method": report.method,
                    "days_extracted": report.days_extracted,
                    "e-mail": delivery.status,
                }
            )
    log.info("rebuilt %d week(s)/month(s)%s", len(rebuilt), "".join(f"\n  {r}" for r in rebuilt))
    return rebuilt


def add_rebuild_task(report_type: str, settings: Settings, loaded: Any, after: list[Any]) -> Any:
    """Add `rebuild_rollups` to the daily DAG (inside its context), after the load and the checks."""
    if report_type != "daily" or settings.rollup == "off":
        return None
    from airflow.sdk import task

    @task(task_id="rebuild_rollups", doc_md=REBUILD_DOC)
    def rebuild_rollups(loaded_summary: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
        return rebuild_rollups_task(settings, loaded_summary, context)

    rebuild = rebuild_rollups(loaded)
    for upstream in after:
        upstream >> rebuild
    return rebuild
