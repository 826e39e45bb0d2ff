"""Archive before purge: expiring reports become Parquet files, verified, restorable, then deleted.

Retention (integration/maintenance.py) calls `archive_expired` when `CDR_ARCHIVE_URL` is set: every
period older than the cutoff is written as one Parquet file, read back and compared (row count and a
SHA-256 of the content) with the database rows, and only then deleted, one transaction per batch.
`restore` (and `python -m cdr_reports.pipeline.archive restore`) loads archived periods back with
the load's own delete-then-insert, one transaction per period.

Layout under the archive root (Hive-style folders, so DuckDB, Spark, Trino or pyarrow read each
dataset as one partitioned table)::

    reports/type=daily/year=2026/month=11/period_start=2026-11-27.parquet          cdr_operator_report rows
    quality_checks/type=daily/year=2026/month=11/period_start=2026-11-27.parquet   cdr_quality_check rows
    source_audits/year=2026/month=11/audited_on=2026-11-27.parquet                 cdr_source_audit rows

A report file holds the period's operator rows; its run row (reconciliation, method, strategy,
generated_at, dag_run_id, ...) is the file's key-value metadata `cdr_reports.run` (JSON), so one
object is one period and is written atomically. Columns and Parquet types are derived from
schema.py (a column added there is archived and restored without a change here): dates as
`date32`, timestamps as `timestamp[us, UTC]`, integers as `int64`, floats as `float64`, text as
UTF-8 `string`; nullable columns are nullable fields.

No Airflow here: the storage is passed in as a path object with pathlib's API over fsspec
(Airflow's `ObjectStoragePath` in the DAG, see integration/archive_storage.py; universal_pathlib's
`UPath` in the restore command).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from cdr_reports.pipeline.errors import PermanentError, classify_sql_error
from cdr_reports.pipeline.migrations import ensure_schema
from cdr_reports.pipeline.report_types import REPORT_TYPES
from cdr_reports.pipeline.schema import (
    OPERATOR_TABLE,
    QUALITY_CHECK_TABLE,
    RUN_TABLE,
    SOURCE_AUDIT_TABLE,
    TABLES,
    Column,
    ReportTables,
    report_tables,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
META_PREFIX = "cdr_reports."
DEFAULT_BATCH_SIZE = 500  # periods per delete transaction (and per read of the database)
# Files written and read back at once on an object store, where each request waits tens of ms for
# the network (a local disk gains nothing from threads: one at a time there).
OBJECT_STORE_WORKERS = 16
_KEY_DATASET = META_PREFIX + "dataset"
_KEY_SHA = META_PREFIX + "content_sha256"
_KEY_ROWS = META_PREFIX + "rows"
_KEY_RUN = META_PREFIX + "run"


class ArchiveError(Exception):
    """A period could not be archived (or restored); it was not deleted (or not loaded)."""


class ArchiveConflict(PermanentError, ArchiveError):
    """The destination holds a different archive of the same period: never overwritten silently."""


class ArchiveCorrupt(PermanentError, ArchiveError):
    """The destination holds a file that is not a readable archive of ours (corrupt, partial, foreign)."""


class ArchiveVerifyError(ArchiveError):
    """The file read back differs from what was written (row count or checksum)."""


@dataclass(frozen=True)
class Dataset:
    """One archived table: the folder under the root and the table whose rows the files hold."""

    name: str
    table: str
    partition: str  # the file name's key: period_start or audited_on

    @property
    def columns(self) -> tuple[Column, ...]:
        return TABLES[self.table]


REPORTS = Dataset("reports", OPERATOR_TABLE, "period_start")
QUALITY_CHECKS = Dataset("quality_checks", QUALITY_CHECK_TABLE, "period_start")
SOURCE_AUDITS = Dataset("source_audits", SOURCE_AUDIT_TABLE, "audited_on")
DATASETS = (REPORTS, QUALITY_CHECKS, SOURCE_AUDITS)


# --------------------------------------------------------------------------- types and checksums


def _kind(column: Column) -> str:
    """The archive's kind of a schema column, from its SQLAlchemy type (every dialect variant alike)."""
    import sqlalchemy as sa

    t = column.type
    if isinstance(t, sa.DateTime):
        return "timestamp"
    if isinstance(t, sa.Date):
        return "date"
    if isinstance(t, sa.Boolean):
        return "bool"
    if isinstance(t, sa.Integer):  # Integer, BigInteger, SmallInteger
        return "int"
    if isinstance(t, sa.Float):
        return "float"
    if isinstance(t, sa.Numeric):
        return "decimal"
    if isinstance(t, sa.String):  # String, Unicode, Text
        return "str"
    raise TypeError(f"column {column.name}: no Parquet type for {t!r}; extend archive._kind")


def arrow_type(column: Column) -> Any:
    """The Parquet (Arrow) type of a schema column."""
    kind = _kind(column)
    if kind == "decimal":
        return pa.decimal128(column.type.precision or 38, column.type.scale or 0)
    return {
        "timestamp": pa.timestamp("us", tz="UTC"),  # the database holds naive UTC
        "date": pa.date32(),
        "bool": pa.bool_(),
        "int": pa.int64(),  # counts summed by an engine never overflow
        "float": pa.float64(),
        "str": pa.string(),
    }[kind]


def arrow_schema(columns: Sequence[Column]) -> Any:
    return pa.schema([pa.field(col.name, arrow_type(col), nullable=col.nullable) for col in columns])


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def _canonical(kind: str, value: Any) -> Any:
    """A JSON value that is equal for equal cell values, whichever driver or reader produced them."""
    if value is None:
        return None
    if kind == "timestamp":
        return _naive_utc(value).isoformat(timespec="microseconds")
    if kind == "date":
        return (value.date() if isinstance(value, datetime) else value).isoformat()
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)  # JSON keeps repr(float): exact
    if kind == "decimal":
        return str(Decimal(value))
    if kind == "bool":
        return bool(value)
    return str(value)


def _decode(kind: str, value: Any) -> Any:
    """A database value from a canonical one (the run row in the file metadata)."""
    if value is None:
        return None
    if kind == "timestamp":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    return value


def canonical_row(columns: Sequence[Column], row: dict[str, Any]) -> dict[str, Any]:
    """NULLs are left out: a file written before a nullable column existed matches a row where it is NULL."""
    out = {}
    for col in columns:
        value = _canonical(_kind(col), row.get(col.name))
        if value is not None:
            out[col.name] = value
    return out


def content_sha256(columns: Sequence[Column], rows: Iterable[dict[str, Any]], run: dict[str, Any] | None) -> str:
    """SHA-256 of the content (rows in key order, and the run row), independent of storage and driver."""
    keys = [col.name for col in columns if col.key]
    canon = sorted(
        (canonical_row(columns, row) for row in rows), key=lambda r: json.dumps([r.get(k) for k in keys], default=str)
    )
    document = {"rows": canon, "run": canonical_row(TABLES[RUN_TABLE], run) if run is not None else None}
    blob = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class Group:
    """The rows of one archive file: a report period, a period's findings, or a day of source audits."""

    dataset: Dataset
    partition: dict[str, str]  # folder keys: type, year, month
    value: date  # period_start / audited_on
    rows: list[dict[str, Any]]
    run: dict[str, Any] | None = None

    @property
    def parts(self) -> tuple[str, ...]:
        folders = tuple(f"{k}={v}" for k, v in self.partition.items())
        return (self.dataset.name, *folders, f"{self.dataset.partition}={self.value.isoformat()}.parquet")

    @property
    def label(self) -> str:
        return "/".join(self.parts)

    def sha256(self) -> str:
        return content_sha256(self.dataset.columns, self.rows, self.run)


def _partition(report_type: str | None, day: date) -> dict[str, str]:
    keys = {"type": report_type} if report_type is not None else {}
    return {**keys, "year": str(day.year), "month": str(day.month)}


def report_group(run: dict[str, Any], rows: list[dict[str, Any]]) -> Group:
    start = run["period_start"]
    return Group(REPORTS, _partition(run["report_type"], start), start, rows, run)


def quality_group(report_type: str, period_start: date, rows: list[dict[str, Any]]) -> Group:
    return Group(QUALITY_CHECKS, _partition(report_type, period_start), period_start, rows)


def audit_group(day: date, rows: list[dict[str, Any]]) -> Group:
    return Group(SOURCE_AUDITS, _partition(None, day), day, rows)


def encode(group: Group, sha256: str | None = None) -> bytes:
    """The Parquet file of a group (rows sorted by key, content checksum in the metadata)."""
    columns = group.dataset.columns
    kinds = {col.name: _kind(col) for col in columns}
    keys = [col.name for col in columns if col.key]
    rows = sorted(group.rows, key=lambda r: tuple(_canonical(kinds[k], r[k]) for k in keys))

    def cell(name: str, value: Any) -> Any:
        if value is not None and kinds[name] == "timestamp":
            return _naive_utc(value).replace(tzinfo=UTC)
        if value is not None and kinds[name] == "float":
            return float(value)
        return value

    data = {col.name: [cell(col.name, row.get(col.name)) for row in rows] for col in columns}
    metadata = {
        _KEY_DATASET: group.dataset.name,
        META_PREFIX + "table": group.dataset.table,
        META_PREFIX + "format_version": FORMAT_VERSION,
        _KEY_ROWS: str(len(rows)),
        _KEY_SHA: sha256 or group.sha256(),
    }
    if group.run is not None:
        metadata[_KEY_RUN] = json.dumps(canonical_row(TABLES[RUN_TABLE], group.run), sort_keys=True)
    schema = arrow_schema(columns).with_metadata(metadata)
    table = pa.Table.from_pydict(data, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


@dataclass(frozen=True)
class Archived:
    """A file read back: its rows as the database holds them, its run row, and checksums."""

    rows: list[dict[str, Any]]
    run: dict[str, Any] | None
    sha256: str  # recomputed from the content
    stated_sha256: str  # what the file's metadata says


def decode(data: bytes, dataset: Dataset, where: str = "") -> Archived:
    """Read an archive file; ArchiveCorrupt when it is not a complete one of `dataset`."""
    try:
        # ParquetFile, not read_table: no dataset discovery, a fraction of the time per small file.
        table = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)  # tiny files: threads cost more
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ArchiveCorrupt(f"{where}: not a readable Parquet file ({exc})") from exc
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if meta.get(_KEY_DATASET) != dataset.name or _KEY_SHA not in meta:
        raise ArchiveCorrupt(f"{where}: a Parquet file, but not a cdr-reports {dataset.name} archive")
    declared = {col.name: col for col in dataset.columns}
    unknown = [name for name in table.column_names if name not in declared]
    if unknown:
        raise ArchiveCorrupt(f"{where}: columns {unknown} are not in {dataset.table} (archive of a newer release?)")
    kinds = {name: _kind(col) for name, col in declared.items()}
    rows = []
    for record in table.to_pylist():
        row: dict[str, Any] = dict.fromkeys(declared)
        for name, value in record.items():
            row[name] = _naive_utc(value) if value is not None and kinds[name] == "timestamp" else value
        rows.append(row)
    run = None
    if _KEY_RUN in meta:
        canon = json.loads(meta[_KEY_RUN])
        run = {col.name: _decode(_kind(col), canon.get(col.name)) for col in TABLES[RUN_TABLE]}
    if str(len(rows)) != meta.get(_KEY_ROWS):
        raise ArchiveCorrupt(f"{where}: {len(rows)} rows, its metadata says {meta.get(_KEY_ROWS)}")
    sha = content_sha256(dataset.columns, rows, run)
    if sha != meta[_KEY_SHA]:
        raise ArchiveCorrupt(f"{where}: content checksum {sha[:12]}… differs from its metadata {meta[_KEY_SHA][:12]}…")
    return Archived(rows, run, sha, meta[_KEY_SHA])


# --------------------------------------------------------------------------- the storage


def _is_local(path: Any) -> bool:
    protocol = getattr(path, "protocol", "") or ""
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return any(p in ("", "file", "local") for p in protocols)


def _join(root: Any, parts: Sequence[str]) -> Any:
    return root / "/".join(parts)  # one join: each one builds a path object


def put(root: Any, group: Group) -> str:
    """Write `group` under `root` and verify it; 'written', or 'kept' when an identical file is there.

    Raises ArchiveConflict (a different file is there), ArchiveCorrupt (an unreadable one is there),
    ArchiveVerifyError (the read-back differs) or the storage's own error (permissions, no bucket).
    """
    path = _join(root, group.parts)
    expected = group.sha256()
    if path.exists():
        found = decode(path.read_bytes(), group.dataset, str(path))
        if found.sha256 != expected:
            raise ArchiveConflict(
                f"{path} already holds a different archive of this {group.dataset.name} group "
                f"(checksum {found.sha256[:12]}…, the database's {expected[:12]}…); not overwritten: "
                "compare them, then move the file away and re-run"
            )
        return "kept"
    data = encode(group, expected)
    if _is_local(path):
        # A crash mid-write must not leave a partial file under the final name: write aside, then
        # rename (atomic on one file system). Object stores publish a PUT whole or not at all.
        # (File-system calls on path strings: path objects cost more than the write itself.)
        fs, final = path.fs, path.path
        fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        aside = f"{final}.{uuid.uuid4().hex}.tmp"
        fs.pipe_file(aside, data)
        fs.mv(aside, final)
    else:
        path.write_bytes(data)
    back = decode(path.read_bytes(), group.dataset, str(path))
    if back.sha256 != expected or len(back.rows) != len(group.rows):
        raise ArchiveVerifyError(
            f"{path}: read back {len(back.rows)} rows, checksum {back.sha256[:12]}…; "
            f"the database has {len(group.rows)} rows, checksum {expected[:12]}…"
        )
    return "written"


def fetch(root: Any, group_parts: Sequence[str], dataset: Dataset) -> Archived | None:
    """The archive file at `group_parts` under root, verified; None when absent."""
    path = _join(root, group_parts)
    if not path.exists():
        return None
    return decode(path.read_bytes(), dataset, str(path))


def _months(first: date, last: date) -> Iterator[date]:
    month = first.replace(day=1)
    while month <= last:
        yield month
        month = (month + timedelta(days=32)).replace(day=1)


def list_periods(root: Any, dataset: Dataset, report_type: str | None, first: date, last: date) -> list[date]:
    """The archived groups of `dataset` (and type) whose date is in [first, last], in order."""
    found: list[date] = []
    prefix = f"{dataset.partition}="
    for month in _months(first, last):
        folder = _join(root, (dataset.name, *(f"{k}={v}" for k, v in _partition(report_type, month).items())))
        try:
            names = [p.name for p in folder.iterdir()]
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name.startswith(prefix) and name.endswith(".parquet"):
                try:
                    day = date.fromisoformat(name[len(prefix) : -len(".parquet")])
                except ValueError:
                    continue
                if first <= day <= last:
                    found.append(day)
    return sorted(found)


# --------------------------------------------------------------------------- archive, then delete


@dataclass
class ArchiveSummary:
    """What one retention run archived and deleted, and what failed (kept in the database)."""

    older_than: date
    written: int = 0
    kept: int = 0  # identical file already there (a re-run after a crash)
    report_periods: int = 0  # deleted after archiving
    operator_rows: int = 0
    run_rows: int = 0
    quality_rows: int = 0
    audit_rows: int = 0
    changed: int = 0  # rewritten in the database after archiving: left for the next run
    failures: list[tuple[str, BaseException]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "older_than": self.older_than.isoformat(),
            "files_written": self.written,
            "files_kept": self.kept,
            "report_periods": self.report_periods,
            "operator_rows": self.operator_rows,
            "run_rows": self.run_rows,
            "quality_rows": self.quality_rows,
            "audit_rows": self.audit_rows,
            "changed_since_archived": self.changed,
            "failed": [label for label, _ in self.failures],
            "seconds": round(self.seconds, 3),
        }

    @property
    def permanent(self) -> bool:
        """Every failure is one a retry cannot fix (conflict, corrupt file, permissions, no bucket)."""
        return bool(self.failures) and all(
            isinstance(exc, (PermanentError, PermissionError, FileNotFoundError, NotADirectoryError))
            for _, exc in self.failures
        )


def _put_many(root: Any, groups: list[Group], summary: ArchiveSummary, workers: int) -> list[bool]:
    """Archive `groups` (`workers` at a time: object stores answer each request in tens of ms); which succeeded."""

    def attempt(group: Group) -> tuple[str | None, BaseException | None]:
        try:
            return put(root, group), None
        except Exception as exc:  # noqa: BLE001 - one group's failure must not stop the others; reported at the end
            return None, exc

    if workers > 1 and len(groups) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(groups)), thread_name_prefix="archive") as pool:
            outcomes = list(pool.map(attempt, groups))
    else:
        outcomes = [attempt(group) for group in groups]
    done = []
    for group, (outcome, exc) in zip(groups, outcomes, strict=True):
        if exc is not None:
            log.error("archive %s FAILED, not deleted: %s: %s", group.label, type(exc).__name__, exc)
            summary.failures.append((group.label, exc))
        elif outcome == "written":
            summary.written += 1
        else:
            summary.kept += 1
            log.info("archive %s: identical file already there (kept)", group.label)
        done.append(exc is None)
    return done


def _archive_reports(
    engine: Any, root: Any, t: ReportTables, older_than: date, batch: int, s: ArchiveSummary, workers: int
) -> None:
    import sqlalchemy as sa

    with engine.connect() as conn:
        types = sorted(
            conn.execute(sa.select(t.run.c.report_type).where(t.run.c.period_start < older_than).distinct()).scalars()
        )
    for report_type in types:
        after: date | None = None
        while True:
            query = sa.select(t.run).where(t.run.c.report_type == report_type, t.run.c.period_start < older_than)
            if after is not None:
                query = query.where(t.run.c.period_start > after)
            with engine.connect() as conn:
                runs = [dict(r) for r in conn.execute(query.order_by(t.run.c.period_start).limit(batch)).mappings()]
                if not runs:
                    break
                after = runs[-1]["period_start"]
                rows_of: dict[date, list[dict[str, Any]]] = {run["period_start"]: [] for run in runs}
                operators = conn.execute(
                    sa.select(t.operator).where(
                        t.operator.c.report_type == report_type,
                        t.operator.c.period_start >= runs[0]["period_start"],
                        t.operator.c.period_start <= after,
                    )
                ).mappings()
                for row in operators:
                    rows_of.setdefault(row["period_start"], []).append(dict(row))
            groups = [report_group(run, rows_of[run["period_start"]]) for run in runs]
            archived = [run for run, ok in zip(runs, _put_many(root, groups, s, workers), strict=True) if ok]
            if archived:
                _delete_reports(engine, t, archived, rows_of, s)


def _matching(table: Any, names: Sequence[str]) -> Any:
    """DELETE FROM table WHERE each of `names` equals its bound parameter: built and compiled once."""
    import sqlalchemy as sa

    return sa.delete(table).where(*(table.c[name] == sa.bindparam(f"m_{name}") for name in names))


def _params(row: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {f"m_{name}": row[name] for name in names}


def _delete_reports(
    engine: Any,
    t: ReportTables,
    runs: list[dict[str, Any]],
    rows_of: dict[date, list[dict[str, Any]]],
    s: ArchiveSummary,
) -> None:
    """One transaction for the batch; a period rewritten since it was read (its run row differs) stays."""
    period = ("report_type", "period_start")
    archived_version = (*period, "generated_at", "dag_run_id")
    run_delete = _matching(t.run, archived_version)
    operator_delete = _matching(t.operator, period)
    delivery_delete = _matching(t.delivery, period)
    with engine.begin() as conn:
        for run in runs:
            # The run row first (a concurrent load deletes it first too), and only the version archived.
            if conn.execute(run_delete, _params(run, archived_version)).rowcount != 1:
                log.warning(
                    "%s report %s was rewritten after it was archived: kept", run["report_type"], run["period_start"]
                )
                s.changed += 1
                continue
            s.operator_rows += conn.execute(operator_delete, _params(run, period)).rowcount
            conn.execute(delivery_delete, _params(run, period))
            s.run_rows += 1
            s.report_periods += 1


def _archive_quality(
    engine: Any, root: Any, t: ReportTables, older_than: date, batch: int, s: ArchiveSummary, workers: int
) -> None:
    import sqlalchemy as sa

    q = t.quality
    with engine.connect() as conn:
        types = sorted(
            conn.execute(sa.select(q.c.report_type).where(q.c.period_start < older_than).distinct()).scalars()
        )
    for report_type in types:
        after: date | None = None
        while True:
            starts_query = sa.select(q.c.period_start).where(
                q.c.report_type == report_type, q.c.period_start < older_than
            )
            if after is not None:
                starts_query = starts_query.where(q.c.period_start > after)
            with engine.connect() as conn:
                starts = list(conn.execute(starts_query.distinct().order_by(q.c.period_start).limit(batch)).scalars())
                if not starts:
                    break
                after = starts[-1]
                rows_of: dict[date, list[dict[str, Any]]] = {start: [] for start in starts}
                for row in conn.execute(
                    sa.select(q).where(
                        q.c.report_type == report_type, q.c.period_start >= starts[0], q.c.period_start <= after
                    )
                ).mappings():
                    rows_of[row["period_start"]].append(dict(row))
            items = list(rows_of.items())
            groups = [quality_group(report_type, start, rows) for start, rows in items]
            done = [rows for (_, rows), ok in zip(items, _put_many(root, groups, s, workers), strict=True) if ok]
            key = [col.name for col in QUALITY_CHECKS.columns if col.key]
            s.quality_rows += _delete_rows(engine, q, [row for rows in done for row in rows], [*key, "checked_at"])


def _archive_audits(
    engine: Any, root: Any, t: ReportTables, older_than: date, batch: int, s: ArchiveSummary, workers: int
) -> None:
    """Source audits by UTC day of `audited_at`, `batch` days per transaction."""
    import sqlalchemy as sa

    a = t.audit
    cutoff = datetime.combine(older_than, dtime.min)  # naive UTC, as stored
    start: datetime | None = datetime.combine(date(1, 1, 1), dtime.min)
    while True:
        with engine.connect() as conn:
            start = conn.execute(
                sa.select(sa.func.min(a.c.audited_at)).where(a.c.audited_at >= start, a.c.audited_at < cutoff)
            ).scalar()
            if start is None:
                return
            first_day = start.date()
            end = min(datetime.combine(first_day + timedelta(days=batch), dtime.min), cutoff)
            rows_of: dict[date, list[dict[str, Any]]] = {}
            for row in conn.execute(
                sa.select(a).where(a.c.audited_at >= datetime.combine(first_day, dtime.min), a.c.audited_at < end)
            ).mappings():
                rows_of.setdefault(row["audited_at"].date(), []).append(dict(row))
        items = sorted(rows_of.items())
        groups = [audit_group(day, rows) for day, rows in items]
        done = [rows for (_, rows), ok in zip(items, _put_many(root, groups, s, workers), strict=True) if ok]
        s.audit_rows += _delete_rows(engine, a, [row for rows in done for row in rows], ["dag_run_id", "audited_at"])
        start = end


def _delete_rows(engine: Any, table: Any, rows: list[dict[str, Any]], match: list[str]) -> int:
    """Delete exactly the archived rows (their key and timestamp), in one transaction."""
    if not rows:
        return 0
    deleted = 0
    statement = _matching(table, match)
    with engine.begin() as conn:
        for row in rows:
            deleted += conn.execute(statement, _params(row, match)).rowcount
    return deleted


def archive_expired(
    engine: Any,
    root: Any,
    older_than: date,
    schema: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
) -> ArchiveSummary:
    """Archive, verify, then delete every report, finding and audit older than `older_than`.

    A group that fails is logged, kept in the database and listed in `failures`; the others go on.
    Idempotent: a re-run keeps identical files and deletes what they hold. `workers`: files written
    and verified at once (default: 1 on a local file system, OBJECT_STORE_WORKERS on an object store).
    """
    import sqlalchemy as sa

    began = time.monotonic()
    summary = ArchiveSummary(older_than)
    try:
        if not sa.inspect(engine).has_table(RUN_TABLE, schema=schema):
            log.info("archive: no report tables yet, nothing to archive")
            return summary
        ensure_schema(engine, schema)  # every declared column exists (no DDL when at head)
        tables = report_tables(schema)
        workers = workers or (1 if _is_local(root) else OBJECT_STORE_WORKERS)
        for step in (_archive_reports, _archive_quality, _archive_audits):
            step(engine, root, tables, older_than, batch_size, summary, workers)
    except sa.exc.SQLAlchemyError as exc:
        raise classify_sql_error(exc, f"archiving reports with period_start < {older_than}") from exc
    summary.seconds = time.monotonic() - began
    log.info(
        "archive before %s: %d files written, %d already there; deleted %d report periods (%d operator rows), "
        "%d quality findings, %d source audits; %d failed, %d rewritten meanwhile; %.1f s",
        older_than,
        summary.written,
        summary.kept,
        summary.report_periods,
        summary.operator_rows,
        summary.quality_rows,
        summary.audit_rows,
        len(summary.failures),
        summary.changed,
        summary.seconds,
    )
    return summary


# --------------------------------------------------------------------------- restore


@dataclass
class RestoreSummary:
    periods: list[date] = field(default_factory=list)
    operator_rows: int = 0
    quality_rows: int = 0


def restore(
    engine: Any,
    root: Any,
    report_type: str,
    first: date,
    last: date,
    schema: str | None = None,
    echo: Callable[[str], None] = log.info,
) -> RestoreSummary:
    """Load the archived reports of `report_type` with period_start in [first, last] back.

    Each period is one transaction, the load's replace: delete the period's run row and operator
    rows (and its findings when they were archived too), insert the archived ones. Re-runnable.
    """
    import sqlalchemy as sa

    if report_type not in REPORT_TYPES:
        raise PermanentError(f"report type {report_type!r} is not one of {', '.join(REPORT_TYPES)}")
    if last < first:
        raise PermanentError(f"--to {last} is before --from {first}")
    summary = RestoreSummary()
    periods = list_periods(root, REPORTS, report_type, first, last)
    if not periods:
        echo(f"no archived {report_type} report between {first} and {last} under {root}")
        return summary
    try:
        ensure_schema(engine, schema)
        t = report_tables(schema)
        for start in periods:
            report = fetch(root, report_group({"report_type": report_type, "period_start": start}, []).parts, REPORTS)
            if report is None or report.run is None:
                raise ArchiveCorrupt(f"{report_type} {start}: the archive file vanished or has no run row")
            findings = fetch(root, quality_group(report_type, start, []).parts, QUALITY_CHECKS)
            with engine.begin() as conn:
                for table in (t.run, t.operator):  # run row first, as load.py does
                    conn.execute(
                        sa.delete(table).where(table.c.report_type == report_type, table.c.period_start == start)
                    )
                if report.rows:
                    conn.execute(sa.insert(t.operator), report.rows)
                conn.execute(sa.insert(t.run), report.run)
                if findings is not None:
                    conn.execute(
                        sa.delete(t.quality).where(
                            t.quality.c.report_type == report_type, t.quality.c.period_start == start
                        )
                    )
                    if findings.rows:
                        conn.execute(sa.insert(t.quality), findings.rows)
                    summary.quality_rows += len(findings.rows)
            summary.periods.append(start)
            summary.operator_rows += len(report.rows)
            echo(
                f"restored {report_type} {start}: {len(report.rows)} operator rows"
                + (f", {len(findings.rows)} quality findings" if findings is not None else "")
            )
    except sa.exc.SQLAlchemyError as exc:
        raise classify_sql_error(exc, f"restoring {report_type} reports {first}..{last}") from exc
    return summary


# --------------------------------------------------------------------------- command line


def open_root(url: str, storage_options: dict[str, str] | None = None) -> Any:
    """The archive root as a universal_pathlib path (credentials: fsspec's and the cloud SDK's usual chain)."""
    return UPath(url, **(storage_options or {}))


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--storage-option {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdr_reports.pipeline.archive",
        description="Archived CDR reports (Parquet): list them, or restore them into the report database.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("restore", "load archived reports back (replaces those periods)"), ("list", "list them")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--type", required=True, choices=REPORT_TYPES, dest="report_type")
        cmd.add_argument("--from", required=True, type=date.fromisoformat, dest="first", help="YYYY-MM-DD")
        cmd.add_argument("--to", required=True, type=date.fromisoformat, dest="last", help="YYYY-MM-DD (inclusive)")
        cmd.add_argument("--archive-url", default=os.environ.get("CDR_ARCHIVE_URL"), help="default: CDR_ARCHIVE_URL")
        cmd.add_argument(
            "--storage-option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="fsspec option of the archive's file system, e.g. endpoint_url=http://127.0.0.1:9000",
        )
        if name == "restore":
            cmd.add_argument(
                "--url",
                default=os.environ.get("CDR_RESTORE_DB_URL"),
                help="SQLAlchemy URL of the report database (default: CDR_RESTORE_DB_URL), "
                "e.g. mssql+pymssql://user:pass@host:1433/cdr_reports",
            )
            cmd.add_argument("--schema", default=os.environ.get("CDR_SQL_SCHEMA") or None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.archive_url:
        parser.error("no archive: give --archive-url or set CDR_ARCHIVE_URL")
    root = open_root(args.archive_url.rstrip("/"), _options(args.storage_option))
    if args.command == "list":
        for start in list_periods(root, REPORTS, args.report_type, args.first, args.last):
            print(
                f"{args.report_type} {start}  {_join(root, report_group({'report_type': args.report_type, 'period_start': start}, []).parts)}"
            )
        return 0
    if not args.url:
        parser.error("no report database: give --url or set CDR_RESTORE_DB_URL")
    import sqlalchemy as sa

    engine = sa.create_engine(args.url)
    try:
        summary = restore(engine, root, args.report_type, args.first, args.last, args.schema, echo=print)
    except (ArchiveError, PermanentError) as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"{len(summary.periods)} {args.report_type} reports restored ({summary.operator_rows} operator rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
