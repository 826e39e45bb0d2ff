"""Bounded storage: delete stored reports older than the retention period.

``prune_reports`` is the whole rule, without Airflow: one transaction deletes the operator rows
and run rows of every period whose ``period_start`` is before ``older_than``. The DAG
``cdr_report_retention`` runs it daily with ``older_than`` = local date of the run minus
``CDR_REPORT_RETENTION_DAYS``; with the variable unset (the default) reports are kept forever:
the DAG still runs, logs ``retention disabled`` and deletes nothing.

**Archive before purge.** With `CDR_ARCHIVE_URL` set, ``archive_then_prune`` replaces the plain
delete: every expiring period is written as Parquet through ``ObjectStoragePath``, read back and
compared with the database (pipeline/archive.py), and only then deleted; a period that fails stays
and fails the run (an alert) after the others went on. Without it retention deletes as before and
logs ``deleting without archive``; ``CDR_ARCHIVE_REQUIRED=true`` then refuses to delete anything.

Airflow's own metadata (DAG runs, task instances, logs, XComs) is pruned with
``airflow db clean``, which needs the metadata database and so cannot run as a task in
Airflow 3 (tasks have no metadata DB access); see docs/reliability.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException

from cdr_reports.integration.archive_storage import archive_root
from cdr_reports.integration.connections import sql_engine
from cdr_reports.integration.failures import fail_fast
from cdr_reports.integration.task_policy import task_default_args
from cdr_reports.integration.timetable import LocalCronTriggerTimetable
from cdr_reports.pipeline.config import Settings, load_settings
from cdr_reports.pipeline.errors import PermanentError, classify_sql_error
from cdr_reports.pipeline.periods import local_date_of
from cdr_reports.pipeline.report_types import REPORT_TYPES

log = logging.getLogger(__name__)

DAG_ID = "cdr_report_retention"
RETENTION_DISABLED = "retention disabled"
DELETING_WITHOUT_ARCHIVE = "deleting without archive"
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

    from cdr_reports.pipeline.schema import report_tables

    tables = report_tables(schema)
    quality, audit, delivery = tables.quality, tables.audit, tables.delivery
    what = f"pruning reports with period_start < {older_than.isoformat()}"
    try:
        present = tables.existing(engine)
        if not {tables.operator.name, tables.run.name} & present:
            log.info("%s: no report tables yet, nothing to delete", what)
            return PruneCounts(older_than, 0, 0)
        cutoff_instant = datetime.combine(older_than, time.min)  # naive UTC, as stored
        with engine.begin() as conn:
            operator_rows = conn.execute(
                sa.delete(tables.operator).where(tables.operator.c.period_start < older_than)
            ).rowcount
            run_rows = conn.execute(sa.delete(tables.run).where(tables.run.c.period_start < older_than)).rowcount
            # Tables of a later release may be missing where no load has upgraded the schema yet.
            quality_rows = (
                conn.execute(sa.delete(quality).where(quality.c.period_start < older_than)).rowcount
                if quality.name in present
                else 0
            )
            if delivery.name in present:
                conn.execute(sa.delete(delivery).where(delivery.c.period_start < older_than))
            audit_rows = (
                conn.execute(sa.delete(audit).where(audit.c.audited_at < cutoff_instant)).rowcount
                if audit.name in present
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


class ArchiveIncomplete(RuntimeError):
    """Some expiring groups could not be archived: they were kept; the run fails (and alerts)."""


class ArchiveIncompletePermanent(ArchiveIncomplete, PermanentError):
    """Likewise, and a retry cannot help (a conflicting or corrupt file, permissions, no bucket)."""


def archive_then_prune(engine: Any, root: Any, older_than: date, schema: str | None = None, **kwargs: Any) -> Any:
    """Archive, verify and delete everything older than `older_than`; raise after the others went on.

    Returns the ArchiveSummary when every group was archived; raises ArchiveIncomplete(Permanent)
    naming the failed groups otherwise (what did archive is deleted all the same).
    """
    from cdr_reports.pipeline.archive import archive_expired  # SQLAlchemy and pyarrow: at run time only

    summary = archive_expired(engine, root, older_than, schema=schema, **kwargs)
    if summary.failures:
        shown = "; ".join(f"{label}: {type(exc).__name__}: {exc}" for label, exc in summary.failures[:5])
        more = f" (and {len(summary.failures) - 5} more)" if len(summary.failures) > 5 else ""
        cls = ArchiveIncompletePermanent if summary.permanent else ArchiveIncomplete
        raise cls(
            f"{len(summary.failures)} group(s) could not be archived and were NOT deleted; "
            f"{summary.report_periods} report periods were archived and deleted: {shown}{more}"
        )
    return summary


def build_maintenance_dag(settings: Settings | None = None) -> Any:
    """The daily DAG `cdr_report_retention` (one task, `prune`)."""
    settings = settings or load_settings()
    days = settings.report_retention_days
    policy = f"keep {days} days" if days else "keep forever (CDR_REPORT_RETENTION_DAYS unset)"
    if settings.archive_url:
        archive = (
            f"archive to `{settings.archive_url}` (connection `{settings.archive_conn_id or 'none'}`), then delete"
        )
    elif settings.archive_required:
        archive = "refuse to delete: `CDR_ARCHIVE_REQUIRED=true` and no `CDR_ARCHIVE_URL`"
    else:
        archive = "delete without archive (`CDR_ARCHIVE_URL` unset)"
    with DAG(
        dag_id=DAG_ID,
        # Airflow's CronTriggerTimetable, shown with its zone in the UI and API (timetable.py).
        schedule=LocalCronTriggerTimetable(SCHEDULE_CRON, timezone=settings.time_zone),
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

With `CDR_ARCHIVE_URL` set, each expiring period (and the data-quality findings and source audits
retention prunes) is first written as a Parquet file, read back and checked (row count, SHA-256 of
the content), and only then deleted, one transaction per batch; a period that fails to archive is
kept and the run fails (alert) after the others. Restore:
`python -m cdr_reports.pipeline.archive restore --type daily --from YYYY-MM-DD --to YYYY-MM-DD`.

Current policy: **{policy}**; **{archive}**.
""",
    ) as dag:

        @task(
            task_id="prune",
            doc_md="### Prune\nWith `CDR_ARCHIVE_URL`: archives every report, finding and source audit older "
            "than the retention cutoff as Parquet, verifies each file by reading it back, then deletes what was "
            "archived (one transaction per batch); fails after the others when a period cannot be archived. "
            "Without it: deletes them in one transaction (`deleting without archive`), or refuses to when "
            "`CDR_ARCHIVE_REQUIRED=true`. Logs `retention disabled` and deletes nothing while "
            "`CDR_REPORT_RETENTION_DAYS` is unset.",
        )
        def prune(**context: Any) -> dict[str, Any]:
            if days is None:
                log.info("%s: CDR_REPORT_RETENTION_DAYS is not set, every report is kept", RETENTION_DISABLED)
                return {"retention_days": None, "operator_rows": 0, "run_rows": 0}
            run_after = getattr(context.get("dag_run"), "run_after", None) or datetime.now(UTC)
            cutoff = retention_cutoff(local_date_of(run_after, settings.time_zone), days)
            what = f"pruning reports older than {cutoff} via connection {settings.sql_conn_id!r} (CDR_SQL_CONN_ID)"
            if not settings.archive_url:
                if settings.archive_required:
                    raise AirflowFailException(
                        "CDR_ARCHIVE_REQUIRED=true and CDR_ARCHIVE_URL is not set: refusing to delete any report "
                        "(set CDR_ARCHIVE_URL, e.g. file:///var/lib/cdr-archive or s3://bucket/cdr-reports)"
                    )
                log.info(
                    "%s: CDR_ARCHIVE_URL is not set, expiring reports are deleted for good", DELETING_WITHOUT_ARCHIVE
                )
                with fail_fast(what):
                    counts = prune_reports(sql_engine(settings), cutoff, schema=settings.sql_schema)
                return {"retention_days": days, "archive": None, **counts.to_dict()}
            log.info("archiving to %s before deleting (CDR_ARCHIVE_URL)", settings.archive_url)
            with fail_fast(f"archiving to {settings.archive_url} (CDR_ARCHIVE_URL), then {what}"):
                summary = archive_then_prune(
                    sql_engine(settings), archive_root(settings), cutoff, schema=settings.sql_schema
                )
            return {"retention_days": days, "archive": settings.archive_url, **summary.to_dict()}

        prune()
    return dag


RESTORE_DAG_ID = "cdr_report_restore"


def build_restore_dag(settings: Settings | None = None) -> Any:
    """The manually triggered DAG `cdr_report_restore` (one task, `restore`): archived reports loaded back."""
    settings = settings or load_settings()
    with DAG(
        dag_id=RESTORE_DAG_ID,
        schedule=None,  # triggered by a person, with the period range as params
        start_date=pendulum.datetime(2026, 1, 1, tz=settings.time_zone),
        catchup=False,
        max_active_runs=1,
        default_args=task_default_args(settings),
        tags=["cdr", "maintenance"],
        params={
            "report_type": Param("daily", type="string", enum=list(REPORT_TYPES), title="Report type"),
            "from": Param(type="string", format="date", title="From", description="first period_start (local date)"),
            "to": Param(type="string", format="date", title="To", description="last period_start, inclusive"),
        },
        doc_md=f"""
# CDR report restore

Loads archived reports back from `CDR_ARCHIVE_URL` (now `{settings.archive_url or "unset"}`, connection
`{settings.archive_conn_id or "none"}`) into the report database (connection `{settings.sql_conn_id}`):
every archived period of `report_type` whose `period_start` is in [`from`, `to`], one transaction per
period that replaces the period's rows with the archived ones (and its data-quality findings when
they were archived). The same as `python -m cdr_reports.pipeline.archive restore`. Periods older
than the retention are archived and deleted again by the next `cdr_report_retention` run.
""",
    ) as dag:

        @task(
            task_id="restore",
            doc_md="### Restore\nReads each archived file of the range, checks its content checksum, and "
            "replaces the period's stored report with it (one transaction per period).",
        )
        def restore_task(**context: Any) -> dict[str, Any]:
            from cdr_reports.pipeline.archive import restore  # SQLAlchemy and pyarrow: at run time only

            params = context["params"]
            report_type = params["report_type"]
            try:
                first, last = date.fromisoformat(params["from"]), date.fromisoformat(params["to"])
            except (TypeError, ValueError) as exc:
                raise AirflowFailException(f"params from/to must be dates YYYY-MM-DD: {exc}") from exc
            with fail_fast(f"restoring {report_type} reports {first}..{last} from {settings.archive_url}"):
                summary = restore(
                    sql_engine(settings),
                    archive_root(settings),
                    report_type,
                    first,
                    last,
                    schema=settings.sql_schema,
                )
            if not summary.periods:
                raise AirflowFailException(f"no archived {report_type} report between {first} and {last}")
            return {
                "report_type": report_type,
                "periods": [d.isoformat() for d in summary.periods],
                "operator_rows": summary.operator_rows,
                "quality_rows": summary.quality_rows,
            }

        restore_task()
    return dag
