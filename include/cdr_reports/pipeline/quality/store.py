"""Where the data-quality checks read and write: stored reports and `cdr_quality_check` findings.

SQLAlchemy Core against the report tables of schema.py (`report_tables`); run-time only (the
task bodies import it), so SQLAlchemy is imported at the top.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from cdr_reports.pipeline.errors import classify_sql_error
from cdr_reports.pipeline.migrations import ensure_schema
from cdr_reports.pipeline.quality.rules import LATE_DATA, REREPORT_PENDING, Finding
from cdr_reports.pipeline.schema import QUALITY_CHECK_TABLE, column, report_tables

_DETAIL_CHARS = column(QUALITY_CHECK_TABLE, "detail").type.length


def operator_calls(
    engine: sa.engine.Engine, report_type: str, period_starts: Iterable[date], schema: str | None = None
) -> dict[date, dict[str, int]]:
    """{period_start: {operator_id: total_calls}} of the stored reports of those periods."""
    operator = report_tables(schema).operator
    starts = list(period_starts)
    result: dict[date, dict[str, int]] = {start: {} for start in starts}
    if not starts:
        return result
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(operator.c.period_start, operator.c.operator_id, operator.c.total_calls).where(
                operator.c.report_type == report_type, operator.c.period_start.in_(starts)
            )
        )
        for period_start, operator_id, total_calls in rows:
            result[period_start][operator_id] = int(total_calls)
    return result


def previous_periods(
    engine: sa.engine.Engine, report_type: str, before: date, limit: int, schema: str | None = None
) -> list[date]:
    """The `limit` most recent stored periods of `report_type` starting before `before`, newest first."""
    run = report_tables(schema).run
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(run.c.period_start)
                .where(run.c.report_type == report_type, run.c.period_start < before)
                .order_by(run.c.period_start.desc())
                .limit(limit)
            ).scalars()
        )


def stored_run(
    engine: sa.engine.Engine, report_type: str, period_start: date, schema: str | None = None
) -> dict[str, Any] | None:
    """The stored run row of one report (None: not stored)."""
    run = report_tables(schema).run
    with engine.connect() as conn:
        row = (
            conn.execute(sa.select(run).where(run.c.report_type == report_type, run.c.period_start == period_start))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


def replace_findings(
    engine: sa.engine.Engine,
    report_type: str,
    period_start: date,
    verdicts: Sequence[str],
    findings: Sequence[Finding],
    dag_run_id: str,
    checked_at: datetime,
    schema: str | None = None,
) -> None:
    """In one transaction: delete the period's rows of `verdicts`, insert `findings` (idempotent)."""
    _finding_rows(report_type, period_start, verdicts, findings, dag_run_id, checked_at)  # ValueError before any I/O
    what = f"storing the {'/'.join(verdicts)} checks of the {report_type} report {period_start.isoformat()}"
    try:
        ensure_schema(engine, schema)
        with engine.begin() as conn:
            replace_findings_in(conn, report_type, period_start, verdicts, findings, dag_run_id, checked_at, schema)
    except Exception as exc:
        raise classify_sql_error(exc, what) from exc


def replace_findings_in(
    conn: sa.engine.Connection,
    report_type: str,
    period_start: date,
    verdicts: Sequence[str],
    findings: Sequence[Finding],
    dag_run_id: str,
    checked_at: datetime,
    schema: str | None = None,
) -> None:
    """replace_findings inside the caller's transaction (e.g. a load's: the report and its finding commit together)."""
    checks = report_tables(schema).quality
    rows = _finding_rows(report_type, period_start, verdicts, findings, dag_run_id, checked_at)
    conn.execute(
        sa.delete(checks).where(
            checks.c.report_type == report_type,
            checks.c.period_start == period_start,
            checks.c.verdict.in_(list(verdicts)),
        )
    )
    if rows:
        conn.execute(sa.insert(checks), rows)


def _finding_rows(
    report_type: str,
    period_start: date,
    verdicts: Sequence[str],
    findings: Sequence[Finding],
    dag_run_id: str,
    checked_at: datetime,
) -> list[dict[str, Any]]:
    """The rows of `findings`; ValueError for one that is not of this period and these verdicts."""
    stamp = checked_at.astimezone(UTC).replace(tzinfo=None)
    rows = []
    for finding in findings:
        if (finding.report_type, finding.period_start) != (
            report_type,
            period_start,
        ) or finding.verdict not in verdicts:
            raise ValueError(f"finding {finding} is not one of the {report_type} {period_start} {verdicts} findings")
        rows.append(
            {
                **finding.__dict__,
                "detail": finding.detail[:_DETAIL_CHARS],
                "dag_run_id": dag_run_id,
                "checked_at": stamp,
            }
        )
    return rows


def read_findings(
    engine: sa.engine.Engine,
    report_type: str | None = None,
    period_start: date | None = None,
    schema: str | None = None,
    *,
    verdicts: Sequence[str] | None = None,
    dag_run_id: str | None = None,
) -> list[dict[str, Any]]:
    """Stored findings (all, or those matching every filter given), oldest period first."""
    checks = report_tables(schema).quality
    query = sa.select(checks)
    if report_type is not None:
        query = query.where(checks.c.report_type == report_type)
    if period_start is not None:
        query = query.where(checks.c.period_start == period_start)
    if verdicts is not None:
        query = query.where(checks.c.verdict.in_(list(verdicts)))
    if dag_run_id is not None:
        query = query.where(checks.c.dag_run_id == dag_run_id)
    query = query.order_by(checks.c.report_type, checks.c.period_start, checks.c.verdict, checks.c.operator_id)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def pending_rereport(
    engine: sa.engine.Engine, report_type: str, period_start: date, schema: str | None = None
) -> Finding | None:
    """The late_data finding of a period whose re-report was started and not marked done, if any."""
    for row in read_findings(engine, report_type, period_start, schema, verdicts=(LATE_DATA,)):
        if str(row["detail"]).startswith(REREPORT_PENDING):
            return Finding.from_row(row)
    return None
