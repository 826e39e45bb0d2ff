"""Read-only queries of the stored reports, for the view, the CSV and the e-mail.

Every query is SQLAlchemy Core against the one declaration of the report tables, so values are
bound parameters and the same code serves SQL Server, PostgreSQL and SQLite. Transactions are
opened read-only where the database supports it (PostgreSQL ``SET TRANSACTION READ ONLY``,
SQLite ``PRAGMA query_only``) and always rolled back; on SQL Server give the api-server a login
with ``db_datareader`` only (docs/report-view.md). Every list is bounded.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa

from cdr_reports.pipeline import report_types
from cdr_reports.pipeline.schema import ReportTables, report_tables

MAX_TREND_PERIODS = 100
DEFAULT_TREND_PERIODS = 30
MAX_LISTED_PERIODS = 500
DEFAULT_LISTED_PERIODS = 100
# Operators offered in the chart's operator picker (the shown report's, by calls, descending).
MAX_LISTED_OPERATORS = 1000

# Columns of cdr_operator_report whose value is the same on every row of one report.
PER_REPORT_COLUMNS = ("report_type", "period_start", "period_end", "generated_at", "dag_run_id")
SUMMED_COLUMNS = ("total_calls", "answered_calls", "total_duration_seconds")


def dag_id_for(report_type: str) -> str:
    """The DAG writing reports of `report_type` (report_types.py); ValueError for an unknown type."""
    return report_types.of(report_type).dag_id


@contextlib.contextmanager
def read_only(engine: sa.engine.Engine) -> Iterator[sa.engine.Connection]:
    """A connection in a transaction that cannot write (where the dialect can say so), rolled back."""
    with engine.connect() as conn:
        dialect = conn.dialect.name
        # The first statement begins the transaction (SQLAlchemy autobegin).
        if dialect == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        elif dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA query_only = ON")  # a connection setting, reset below
        try:
            yield conn
        finally:
            conn.rollback()
            if dialect == "sqlite":
                # The connection goes back to the pool, possibly to a writer (the delivery log).
                conn.exec_driver_sql("PRAGMA query_only = OFF")
                conn.rollback()


@dataclass(frozen=True)
class StoredReport:
    """One stored report: its `cdr_report_run` row and its `cdr_operator_report` rows."""

    run: dict[str, Any]
    rows: list[dict[str, Any]]
    columns: tuple[str, ...]  # cdr_operator_report columns, declaration order
    # The period's data-quality findings (cdr_quality_check); None when that table does not exist.
    quality: list[dict[str, Any]] | None = None

    @property
    def report_type(self) -> str:
        value: str = self.run["report_type"]
        return value

    @property
    def period_start(self) -> date:
        value: date = self.run["period_start"]
        return value

    def totals(self) -> dict[str, Any]:
        """Sums of the summed columns and the ratios recomputed from them (README definitions)."""
        sums = {column: sum(int(row[column] or 0) for row in self.rows) for column in SUMMED_COLUMNS}
        total, answered = sums["total_calls"], sums["answered_calls"]
        return {
            **sums,
            "answer_ratio": answered / total if total else None,
            "avg_answered_duration_seconds": sums["total_duration_seconds"] / answered if answered else None,
        }

    def checks(self) -> list[tuple[str, bool]]:
        """The stored report's own invariants (its data-quality checks), each with its outcome."""
        run, totals = self.run, self.totals()
        return [
            (
                f"source {run['source_records']:,} = valid {run['valid_records']:,} + rejected {run['rejected_records']:,}",
                run["source_records"] == run["valid_records"] + run["rejected_records"],
            ),
            (
                f"valid {run['valid_records']:,} = sum of operator calls {totals['total_calls']:,}",
                run["valid_records"] == totals["total_calls"],
            ),
            (
                f"operators {run['operators']:,} = operator rows {len(self.rows):,}",
                run["operators"] == len(self.rows),
            ),
            (
                "answered <= calls for every operator",
                all(int(row["answered_calls"]) <= int(row["total_calls"]) for row in self.rows),
            ),
        ]


@dataclass(frozen=True)
class PeriodInfo:
    period_start: date
    period_end: date
    operators: int
    valid_records: int


@dataclass(frozen=True)
class TrendPoint:
    period_start: date
    period_end: date
    total_calls: int
    answered_calls: int

    @property
    def answer_ratio(self) -> float | None:
        return self.answered_calls / self.total_calls if self.total_calls else None


@dataclass(frozen=True)
class Trend:
    report_type: str
    operator_id: str | None  # None: all operators
    points: list[TrendPoint] = field(default_factory=list)


def _tables_exist(conn: sa.engine.Connection, tables: ReportTables) -> bool:
    inspector = sa.inspect(conn)
    return inspector.has_table(tables.run.name, schema=tables.run.schema) and inspector.has_table(
        tables.operator.name, schema=tables.operator.schema
    )


def list_periods(
    engine: sa.engine.Engine, report_type: str, schema: str | None = None, limit: int = DEFAULT_LISTED_PERIODS
) -> list[PeriodInfo]:
    """Stored periods of `report_type`, newest first (at most `limit`, capped at MAX_LISTED_PERIODS)."""
    limit = max(1, min(int(limit), MAX_LISTED_PERIODS))
    tables = report_tables(schema)
    run = tables.run
    with read_only(engine) as conn:
        if not _tables_exist(conn, tables):
            return []
        rows = conn.execute(
            sa.select(run.c.period_start, run.c.period_end, run.c.operators, run.c.valid_records)
            .where(run.c.report_type == report_type)
            .order_by(run.c.period_start.desc())
            .limit(limit)
        ).all()
    return [PeriodInfo(r.period_start, r.period_end, int(r.operators), int(r.valid_records)) for r in rows]


def find_period(engine: sa.engine.Engine, report_type: str, day: date | None, schema: str | None = None) -> date | None:
    """The start of the stored period containing `day` (the latest stored period when `day` is None)."""
    tables = report_tables(schema)
    run = tables.run
    query = sa.select(run.c.period_start).where(run.c.report_type == report_type)
    if day is not None:
        query = query.where(run.c.period_start <= day, run.c.period_end > day)
    query = query.order_by(run.c.period_start.desc()).limit(1)
    with read_only(engine) as conn:
        if not _tables_exist(conn, tables):
            return None
        return conn.execute(query).scalar()


def _quality_findings(
    conn: sa.engine.Connection, report_type: str, period_start: date, schema: str | None
) -> list[dict[str, Any]] | None:
    table = report_tables(schema).quality
    if not sa.inspect(conn).has_table(table.name, schema=table.schema):
        return None
    rows = conn.execute(
        sa.select(table)
        .where(table.c.report_type == report_type, table.c.period_start == period_start)
        .order_by(table.c.verdict, table.c.operator_id)
        .limit(MAX_LISTED_OPERATORS)
    ).mappings()
    return [dict(row) for row in rows]


def read_stored_report(
    engine: sa.engine.Engine, report_type: str, period_start: date, schema: str | None = None
) -> StoredReport | None:
    """The stored report of (report_type, period_start), operators sorted by id; None when absent."""
    tables = report_tables(schema)
    run, operator = tables.run, tables.operator
    with read_only(engine) as conn:
        if not _tables_exist(conn, tables):
            return None
        run_row = (
            conn.execute(sa.select(run).where(run.c.report_type == report_type, run.c.period_start == period_start))
            .mappings()
            .first()
        )
        if run_row is None:
            return None
        rows = (
            conn.execute(
                sa.select(operator)
                .where(operator.c.report_type == report_type, operator.c.period_start == period_start)
                .order_by(operator.c.operator_id)
            )
            .mappings()
            .all()
        )
        quality = _quality_findings(conn, report_type, period_start, schema)
    return StoredReport(
        run=dict(run_row),
        rows=[dict(r) for r in rows],
        columns=tuple(c.name for c in operator.columns),
        quality=quality,
    )


def read_trend(
    engine: sa.engine.Engine,
    report_type: str,
    periods: int = DEFAULT_TREND_PERIODS,
    operator_id: str | None = None,
    until: date | None = None,
    schema: str | None = None,
) -> Trend:
    """Calls and answered calls of the last `periods` stored periods up to `until` (inclusive), oldest first.

    Overall (sum over operators) or for one operator; a stored period in which that operator had
    no calls counts as zero. `periods` is capped at MAX_TREND_PERIODS.
    """
    periods = max(1, min(int(periods), MAX_TREND_PERIODS))
    tables = report_tables(schema)
    run, operator = tables.run, tables.operator
    runs_query = sa.select(run.c.period_start, run.c.period_end).where(run.c.report_type == report_type)
    if until is not None:
        runs_query = runs_query.where(run.c.period_start <= until)
    runs_query = runs_query.order_by(run.c.period_start.desc()).limit(periods)
    with read_only(engine) as conn:
        if not _tables_exist(conn, tables):
            return Trend(report_type, operator_id)
        stored = conn.execute(runs_query).all()
        if not stored:
            return Trend(report_type, operator_id)
        first, last = stored[-1].period_start, stored[0].period_start
        sums = (
            sa.select(
                operator.c.period_start,
                sa.func.sum(operator.c.total_calls).label("total_calls"),
                sa.func.sum(operator.c.answered_calls).label("answered_calls"),
            )
            .where(
                operator.c.report_type == report_type,
                operator.c.period_start >= first,
                operator.c.period_start <= last,
            )
            .group_by(operator.c.period_start)
        )
        if operator_id is not None:
            sums = sums.where(operator.c.operator_id == operator_id)
        by_start = {row.period_start: row for row in conn.execute(sums).all()}
    points = []
    for row in reversed(stored):
        found = by_start.get(row.period_start)
        points.append(
            TrendPoint(
                row.period_start,
                row.period_end,
                int(found.total_calls or 0) if found else 0,
                int(found.answered_calls or 0) if found else 0,
            )
        )
    return Trend(report_type, operator_id, points)


def operator_choices(report: StoredReport, limit: int = MAX_LISTED_OPERATORS) -> list[str]:
    """Operator ids of a report for the chart's picker: most calls first, at most `limit`."""
    ranked = sorted(report.rows, key=lambda row: (-int(row["total_calls"]), str(row["operator_id"])))
    return [str(row["operator_id"]) for row in ranked[:limit]]


class EngineCache:
    """One SQLAlchemy engine per connection id, re-resolved after `ttl` seconds.

    The api-server serves many requests: building an engine (and its pool) per request would
    open a new database connection each time. A changed connection takes effect within `ttl`.
    """

    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._engines: dict[str, tuple[sa.engine.Engine, float]] = {}

    def get(self, conn_id: str, factory: Callable[[], sa.engine.Engine]) -> sa.engine.Engine:
        now = time.monotonic()
        with self._lock:
            cached = self._engines.get(conn_id)
            if cached is not None and now - cached[1] < self.ttl:
                return cached[0]
        engine = factory()
        with self._lock:
            old = self._engines.get(conn_id)
            self._engines[conn_id] = (engine, now)
        if old is not None and old[0] is not engine:
            old[0].dispose(close=False)  # requests still using it finish normally
        return engine

    def clear(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine, _ in engines:
            engine.dispose()


def period_days(report_type: str, start: date, end: date) -> str:
    """A short label of a period: ``2026-11-27``, ``2026-11-16..2026-11-22``, ``2026-10``."""
    if report_type == "daily":
        return start.isoformat()
    if report_type == "monthly":
        return f"{start:%Y-%m}"
    return f"{start.isoformat()}..{(end - timedelta(days=1)).isoformat()}"
