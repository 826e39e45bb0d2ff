"""Store a report idempotently: one transaction replaces its (report_type, period_start).

The tables are defined once with SQLAlchemy Core, which generates each dialect's DDL and
DML (SQL Server in production, PostgreSQL and SQLite supported). Values are always bound
parameters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, overload

import sqlalchemy as sa

from cdr_reports.pipeline.aggregate import Report
from cdr_reports.pipeline.errors import classify_sql_error
from cdr_reports.pipeline.migrations import ensure_schema
from cdr_reports.pipeline.rollup import StaleRollupError, check_inputs
from cdr_reports.pipeline.schema import ReportTables, report_tables

log = logging.getLogger(__name__)


def ensure_tables(engine: sa.engine.Engine, schema: str | None = None) -> None:
    """Create or upgrade the report tables to the current schema revision (no-op when at head)."""
    ensure_schema(engine, schema)


# Operator rows are bound a chunk at a time, in the one transaction: the parameter dicts of a
# 100,000-operator day (and the dialect's processed copies of them) held ~100 MiB at once.
INSERT_CHUNK_ROWS = 5_000


class OperatorRowParams(Sequence[dict[str, Any]]):
    """The insert parameters of a report's operator rows, each dict built only when asked for."""

    def __init__(self, report: Report, generated_at: Any):
        self._report = report
        self._generated_at = generated_at

    def _params(self, row: Any) -> dict[str, Any]:
        report = self._report
        return {
            "report_type": report.report_type,
            "period_start": report.period_start,
            "operator_id": row.operator_id,
            "period_end": report.period_end,
            "total_calls": row.total_calls,
            "answered_calls": row.answered_calls,
            "total_duration_seconds": row.total_duration_seconds,
            "answer_ratio": row.answer_ratio,
            "avg_answered_duration_seconds": row.avg_answered_duration_seconds,
            "total_duration_ms": row.total_duration_ms,
            "generated_at": self._generated_at,
            "dag_run_id": report.dag_run_id,
        }

    def __len__(self) -> int:
        return len(self._report.rows)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._params(row) for row in self._report.rows[index]]
        return self._params(self._report.rows[index])

    def __eq__(self, other: object) -> bool:
        return list(self) == other if isinstance(other, Sequence) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, mutable-alike: unhashable like one

    def chunks(self, size: int = INSERT_CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
        for begin in range(0, len(self), size):
            yield self[begin : begin + size]


def replace_statements(tables: ReportTables, report: Report) -> list[tuple[Any, Any]]:
    """The statements of one load, in order, with their parameters (compiled by any dialect)."""
    key = {"report_type": report.report_type, "period_start": report.period_start}
    generated_at = report.generated_at.astimezone(UTC).replace(tzinfo=None)
    operator_rows = OperatorRowParams(report, generated_at)
    run_row = {
        **key,
        "period_end": report.period_end,
        "time_zone": report.time_zone,
        "source_records": report.source_records,
        "valid_records": report.valid_records,
        "rejected_records": report.rejected_records,
        "operators": report.operators,
        "generated_at": generated_at,
        "dag_run_id": report.dag_run_id,
        "extract_strategy": report.extract_strategy,
        "method": report.method,
        "days_extracted": report.days_extracted,
        "rules_fingerprint": report.rules_fingerprint,
        "rollup_inputs_sha256": report.rollup_inputs_sha256,
    }

    def same_period(table: sa.Table) -> Any:
        return sa.and_(table.c.report_type == report.report_type, table.c.period_start == report.period_start)

    statements: list[tuple[Any, Any]] = [
        # The run row first: its delete locks the period for concurrent loads where it exists.
        (sa.delete(tables.run).where(same_period(tables.run)), None),
        (sa.delete(tables.operator).where(same_period(tables.operator)), None),
    ]
    if operator_rows:
        statements.append((sa.insert(tables.operator), operator_rows))
    statements.append((sa.insert(tables.run), run_row))
    return statements


@dataclass(frozen=True)
class LoadResult:
    operator_rows: int
    replaced_operator_rows: int
    seconds: float


def _replayed_once_on_conflict(step: Any, what: str) -> None:
    """Run one transactional step; replay it once if a concurrent writer made it conflict.

    Two loads of the same period at once (or two first loads creating the tables at once):
    the one that commits second hits a unique key (or an existing table) and rolls back
    whole. Replayed, it sees the other's committed rows and replaces them, so the final state
    is one complete report. A second conflict is a real data error, classified as usual.
    """
    for attempt in (1, 2):
        try:
            step()
            return
        except StaleRollupError:
            raise  # not a database error: the caller builds the report again
        except sa.exc.DBAPIError as exc:
            if attempt == 2 or not _is_conflict(exc):
                raise classify_sql_error(exc, what) from exc
            log.warning("%s: conflict with a concurrent load (%s); replaying", what, str(exc.orig).splitlines()[0])
        except Exception as exc:
            raise classify_sql_error(exc, what) from exc


def _is_conflict(exc: sa.exc.DBAPIError) -> bool:
    """A unique key taken by a concurrent writer, or a table it created since our check."""
    if isinstance(exc, sa.exc.IntegrityError):
        return True
    text = str(exc.orig).lower()
    return "already exists" in text or "there is already an object named" in text


def load_report(
    engine: sa.engine.Engine,
    report: Report,
    schema: str | None = None,
    *,
    also: Callable[[sa.engine.Connection, Report], None] | None = None,
) -> LoadResult:
    """Replace the stored report of (report_type, period_start) in one transaction.

    `also(conn, report)` runs last in that transaction: what must commit with the report, or not
    at all (a rebuilt week's finding, integration/rollup_tasks.py).
    """
    tables = report_tables(schema)
    what = f"loading {report.report_type} report {report.period_start.isoformat()}"
    began = time.monotonic()
    log.info("%s: start (%d operator rows)", what, len(report.rows))
    replaced = 0

    def replace() -> None:
        nonlocal replaced
        with engine.begin() as conn:
            for statement, params in replace_statements(tables, report):
                if isinstance(params, OperatorRowParams):
                    for chunk in params.chunks():
                        conn.execute(statement, chunk)
                    continue
                result = conn.execute(statement, params) if params is not None else conn.execute(statement)
                if statement.is_delete and statement.table is tables.run:
                    # The period is locked (its run row, where one exists): now check, and lock, the
                    # daily reports a roll-up read, so the last writer never stores older days.
                    check_inputs(conn, report, report.time_zone, schema)
                if statement.is_delete and statement.table is tables.operator:
                    replaced = result.rowcount
            if also is not None:
                also(conn, report)

    _replayed_once_on_conflict(lambda: ensure_schema(engine, schema), f"{what} (creating or upgrading tables)")
    _replayed_once_on_conflict(replace, what)
    seconds = time.monotonic() - began
    log.info("%s: done in %.3f s, %d rows written, %d replaced", what, seconds, len(report.rows), replaced)
    return LoadResult(operator_rows=len(report.rows), replaced_operator_rows=replaced, seconds=seconds)


def read_report(
    engine: sa.engine.Engine, report_type: str, period_start: Any, schema: str | None = None
) -> dict[str, Any] | None:
    """The stored run row and operator rows of one period (None when absent), for checks and printing."""
    tables = report_tables(schema)
    with engine.connect() as conn:
        run = (
            conn.execute(
                sa.select(tables.run).where(
                    tables.run.c.report_type == report_type, tables.run.c.period_start == period_start
                )
            )
            .mappings()
            .first()
        )
        if run is None:
            return None
        rows = (
            conn.execute(
                sa.select(tables.operator)
                .where(tables.operator.c.report_type == report_type, tables.operator.c.period_start == period_start)
                .order_by(tables.operator.c.operator_id)
            )
            .mappings()
            .all()
        )
    return {"run": dict(run), "rows": [dict(row) for row in rows]}
