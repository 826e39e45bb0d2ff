"""Bounded storage: delete stored reports older than the retention period.

``prune_reports`` is the whole rule, without Airflow: one transaction deletes the operator rows
and run rows of every period whose ``period_start`` is before ``older_than``. The DAG
``cdr_report_retention`` runs it daily with ``older_than`` = local date of the run minus
``CDR_REPORT_RETENTION_DAYS``; with the variable unset (the default) reports are kept forever:
the DAG still runs, logs ``retention disabled`` and deletes nothing.

Airflow's own metadata (DAG runs, task instances, logs, XComs) is pruned with
``airflow db clean``, which needs the metadata database and so cannot run as a task in
Airflow 3 (tasks have no metadata DB access); see docs/reliability.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from cdr_reports.pipeline.config import Settings, load_settings

log = logging.getLogger(__name__)

DAG_ID = "cdr_report_retention"
RETENTION_DISABLED = "retention disabled"
SCHEDULE_CRON = "30 5 * * *"  # daily, local time, after the reports are due


@dataclass(frozen=True)
class PruneCounts:
    older_than: date
    operator_rows: int
    run_rows: int
    quality_rows: int = 0  # data-quality findings of the pruned periods
    audit_rows: int = 0  # source audits older than the cutoff

    def to_dict(self) -> dict[str, Any]:
        return {
            "older_than": self.older_than.isoformat(),
            "operator_rows": self.operator_rows,
            "run_rows": self.run_rows,
            "quality_rows": self.quality_rows,
            "audit_rows": self.audit_rows,
        }


def retention_cutoff(today: date, retention_days: int) -> date:
    """Reports whose period starts before this date are deleted (kept: the last `retention_days` days)."""
    if retention_days < 1:
        raise ValueError(f"retention_days must be >= 1, got {retention_days}")
    return today - timedelta(days=retention_days)


def prune_reports(engine: Any, older_than: date, schema: str | None = None) -> PruneCounts:
    """Delete every stored report with period_start < older_than (all report types), atomically."""
    # Imported here: the DAG file imports this module while parsing.
    import sqlalchemy as sa

    from cdr_reports.pipeline.errors import classify_sql_error
    from cdr_reports.pipeline.load import report_tables
    from cdr_reports.pipeline.schema import (
        DELIVERY_TABLE,
        OPERATOR_TABLE,
        QUALITY_CHECK_TABLE,
        RUN_TABLE,
        SOURCE_AUDIT_TABLE,
        build_metadata,
    )

    tables = report_tables(schema)
    what = f"pruning reports with period_start < {older_than.isoformat()}"
    try:
        inspector = sa.inspect(engine)
        if not (inspector.has_table(OPERATOR_TABLE, schema=schema) or inspector.has_table(RUN_TABLE, schema=schema)):
            log.info("%s: no report tables yet, nothing to delete", what)
            return PruneCounts(older_than, 0, 0)
        metadata = build_metadata(schema)
        prefix = f"{schema}." if schema else ""
        quality = metadata.tables[prefix + QUALITY_CHECK_TABLE]
        audit = metadata.tables[prefix + SOURCE_AUDIT_TABLE]
        delivery = metadata.tables[prefix + DELIVERY_TABLE]
        cutoff_instant = datetime.combine(older_than, time.min)  # naive UTC, as stored
        with engine.begin() as conn:
            operator_rows = conn.execute(
                sa.delete(tables.operator).where(tables.operator.c.period_start < older_than)
            ).rowcount
            run_rows = conn.execute(sa.delete(tables.run).where(tables.run.c.period_start < older_than)).rowcount
            # Tables of a later release may be missing where no load has upgraded the schema yet.
            quality_rows = (
                conn.execute(sa.delete(quality).where(quality.c.period_start < older_than)).rowcount
                if inspector.has_table(QUALITY_CHECK_TABLE, schema=schema)
                else 0
            )
            if inspector.has_table(DELIVERY_TABLE, schema=schema):
                conn.execute(sa.delete(delivery).where(delivery.c.period_start < older_than))
            audit_rows = (
                conn.execute(sa.delete(audit).where(audit.c.audited_at < cutoff_instant)).rowcount
                if inspector.has_table(SOURCE_AUDIT_TABLE, schema=schema)
                else 0
            )
    except Exception as exc:
        raise classify_sql_error(exc, what) from exc
    log.info(
        "%s: deleted %d operator rows, %d run rows, %d quality findings, %d source audits",
        what,
        operator_rows,
        run_rows,
        quality_rows,
        audit_rows,
    )
    return PruneCounts(older_than, operator_rows, run_rows, quality_rows, audit_rows)


def build_maintenance_dag(settings: Settings | None = None) -> Any:
    """The daily DAG `cdr_report_retention` (one task, `prune`)."""
    import pendulum
    from airflow.sdk import DAG, CronTriggerTimetable, task

    from cdr_reports.integration.connections import sql_engine
    from cdr_reports.integration.failures import fail_fast
    from cdr_reports.integration.task_policy import task_default_args
    from cdr_reports.pipeline.periods import local_date_of

    settings = settings or load_settings()
    days = settings.report_retention_days
    policy = f"keep {days} days" if days else "keep forever (CDR_REPORT_RETENTION_DAYS unset)"
    with DAG(
        dag_id=DAG_ID,
        schedule=CronTriggerTimetable(SCHEDULE_CRON, timezone=settings.time_zone),
        start_date=pendulum.datetime(2026, 1, 1, tz=settings.time_zone),
        catchup=False,
        max_active_runs=1,
        default_args=task_default_args(settings),
        tags=["cdr", "maintenance"],
        doc_md=f"""
# CDR report retention

Deletes stored reports (`cdr_operator_report` and `cdr_report_run` rows, every report type) whose
period starts more than `CDR_REPORT_RETENTION_DAYS` days before the run's local date
(`{settings.time_zone}`), in one transaction, through connection `{settings.sql_conn_id}`.

Current policy: **{policy}**.
""",
    ) as dag:

        @task(
            task_id="prune",
            doc_md="### Prune\nDeletes, in one transaction, the operator rows and run rows of every report "
            "whose `period_start` is older than the retention cutoff; logs `retention disabled` and deletes "
            "nothing while `CDR_REPORT_RETENTION_DAYS` is unset.",
        )
        def prune(**context: Any) -> dict[str, Any]:
            if days is None:
                log.info("%s: CDR_REPORT_RETENTION_DAYS is not set, every report is kept", RETENTION_DISABLED)
                return {"retention_days": None, "operator_rows": 0, "run_rows": 0}
            run_after = getattr(context.get("dag_run"), "run_after", None) or datetime.now(UTC)
            cutoff = retention_cutoff(local_date_of(run_after, settings.time_zone), days)
            with fail_fast(
                f"pruning reports older than {cutoff} via connection {settings.sql_conn_id!r} (CDR_SQL_CONN_ID)"
            ):
                counts = prune_reports(sql_engine(settings), cutoff, schema=settings.sql_schema)
            return {"retention_days": days, **counts.to_dict()}

        prune()
    return dag
