"""pipeline/archive.py without servers: Parquet types from schema.py, exact round trips, checksums,
corrupt and foreign files, idempotent writes on a local folder (universal_pathlib, file://)."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from upath import UPath

from cdr_reports.pipeline.archive import (
    DATASETS,
    QUALITY_CHECKS,
    REPORTS,
    SOURCE_AUDITS,
    ArchiveConflict,
    ArchiveCorrupt,
    arrow_schema,
    audit_group,
    content_sha256,
    decode,
    encode,
    put,
    report_group,
)
from cdr_reports.pipeline.schema import OPERATOR_COLUMNS, RUN_COLUMNS, TABLES

START = date(2025, 2, 3)
RUN = {
    "report_type": "daily",
    "period_start": START,
    "period_end": date(2025, 2, 4),
    "time_zone": "Europe/Istanbul",
    "source_records": 12_000_000_001,
    "valid_records": 12_000_000_000,
    "rejected_records": 1,
    "operators": 2,
    "generated_at": datetime(2025, 2, 4, 0, 0, 1, 999_999),
    "dag_run_id": "scheduled__2025-02-03T21:00:00+00:00",
    "extract_strategy": "pushdown",
}
ROWS = [
    {
        "report_type": "daily",
        "period_start": START,
        "operator_id": "Türk Telekom-İ",
        "period_end": date(2025, 2, 4),
        "total_calls": 9_000_000_000,
        "answered_calls": 3,
        "total_duration_seconds": 7,
        "answer_ratio": 0.1 + 0.2,
        "avg_answered_duration_seconds": None,
        "generated_at": datetime(2025, 2, 4, 0, 0, 1, 999_999),
        "dag_run_id": RUN["dag_run_id"],
    },
    {
        "report_type": "daily",
        "period_start": START,
        "operator_id": "0",
        "period_end": date(2025, 2, 4),
        "total_calls": 3_000_000_000,
        "answered_calls": 2,
        "total_duration_seconds": 5,
        "answer_ratio": 2 / 3,
        "avg_answered_duration_seconds": 1e-300,
        "generated_at": datetime(2025, 2, 4, 0, 0, 1, 999_999),
        "dag_run_id": RUN["dag_run_id"],
    },
]


def _full(columns, row):
    """`row` with every declared column (columns a test did not fill are NULL, as after a migration)."""
    return {col.name: row.get(col.name) for col in columns}


def test_parquet_types_derive_from_every_declared_column():
    for dataset in DATASETS:
        schema = arrow_schema(dataset.columns)
        assert schema.names == [col.name for col in TABLES[dataset.table]]
        for col in dataset.columns:
            assert schema.field(col.name).nullable == col.nullable, col.name
    reports = arrow_schema(REPORTS.columns)
    assert reports.field("period_start").type == pa.date32()
    assert reports.field("total_calls").type == pa.int64()
    assert reports.field("answer_ratio").type == pa.float64()
    assert reports.field("avg_answered_duration_seconds").nullable
    assert reports.field("generated_at").type == pa.timestamp("us", tz="UTC")
    assert reports.field("operator_id").type == pa.string()
    assert arrow_schema(RUN_COLUMNS).field("operators").type == pa.int64()  # every count is 64-bit


def test_a_report_file_round_trips_exactly():
    group = report_group(RUN, ROWS)
    data = encode(group)
    back = decode(data, REPORTS)
    assert back.rows == sorted((_full(OPERATOR_COLUMNS, r) for r in ROWS), key=lambda r: r["operator_id"])
    assert back.run == _full(RUN_COLUMNS, RUN)
    assert back.sha256 == back.stated_sha256 == group.sha256()
    # What any Parquet reader sees: the columns, the rows, UTC instants, the run row as metadata.
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == 2 and table.column_names == [c.name for c in OPERATOR_COLUMNS]
    assert table.column("generated_at")[0].as_py() == datetime(2025, 2, 4, 0, 0, 1, 999_999, tzinfo=UTC)
    assert b"cdr_reports.run" in table.schema.metadata


def test_an_empty_period_keeps_its_run_row():
    run = {**RUN, "operators": 0, "valid_records": 0, "source_records": 1}
    back = decode(encode(report_group(run, [])), REPORTS)
    assert (back.rows, back.run["source_records"], back.run["rejected_records"]) == ([], 1, 1)


def test_checksum_is_order_free_and_sees_every_value():
    base = content_sha256(OPERATOR_COLUMNS, ROWS, RUN)
    assert content_sha256(OPERATOR_COLUMNS, list(reversed(ROWS)), RUN) == base
    # A file written before a nullable column existed equals a row holding NULL there.
    assert content_sha256(OPERATOR_COLUMNS, [{**r, "total_duration_ms": None} for r in ROWS], RUN) == base
    changed = [dict(ROWS[0], answer_ratio=0.30000000000000004 + 1e-16), ROWS[1]]
    assert content_sha256(OPERATOR_COLUMNS, changed, RUN) != base
    assert content_sha256(OPERATOR_COLUMNS, ROWS, {**RUN, "dag_run_id": "manual"}) != base
    later = dict(ROWS[1], generated_at=datetime(2025, 2, 4, 0, 0, 2))
    assert content_sha256(OPERATOR_COLUMNS, [ROWS[0], later], RUN) != base


def test_corrupt_partial_and_foreign_files_are_refused():
    data = encode(report_group(RUN, ROWS))
    with pytest.raises(ArchiveCorrupt, match="not a readable Parquet file"):
        decode(data[: len(data) // 2], REPORTS, "half")
    with pytest.raises(ArchiveCorrupt, match="not a readable Parquet file"):
        decode(b"", REPORTS, "empty")
    foreign = io.BytesIO()
    pq.write_table(pa.table({"x": [1]}), foreign)
    with pytest.raises(ArchiveCorrupt, match="not a cdr-reports reports archive"):
        decode(foreign.getvalue(), REPORTS, "foreign")
    with pytest.raises(ArchiveCorrupt, match="not a cdr-reports quality_checks archive"):
        decode(data, QUALITY_CHECKS, "wrong dataset")
    # Rows edited behind the archive's back: the stated checksum no longer matches the content.
    table = pq.read_table(io.BytesIO(data))
    edited = table.set_column(table.column_names.index("total_calls"), "total_calls", pa.array([1, 2], type=pa.int64()))
    tampered = io.BytesIO()
    pq.write_table(edited, tampered)
    with pytest.raises(ArchiveCorrupt, match="differs from its metadata"):
        decode(tampered.getvalue(), REPORTS, "tampered")


def test_put_writes_once_keeps_identical_and_refuses_different(tmp_path):
    root = UPath(f"file://{tmp_path}/archive")
    group = report_group(RUN, ROWS)
    assert put(root, group) == "written"
    path = tmp_path / "archive/reports/type=daily/year=2025/month=2/period_start=2025-02-03.parquet"
    written = path.read_bytes()
    assert put(root, group) == "kept"
    assert put(root, report_group(RUN, list(reversed(ROWS)))) == "kept"  # same content, other order
    with pytest.raises(ArchiveConflict, match="not overwritten"):
        put(root, report_group({**RUN, "dag_run_id": "manual__rerun"}, ROWS))
    assert path.read_bytes() == written
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    path.write_bytes(written[:100])  # a partial file where the archive should be
    with pytest.raises(ArchiveCorrupt):
        put(root, group)
    assert path.read_bytes() == written[:100]  # still not overwritten: a person decides


def test_source_audits_go_by_utc_day():
    row = {
        "dag_run_id": "scheduled__x",
        "audited_at": datetime(2025, 3, 31, 23, 59, 59, 1),
        "unplaceable_records": 5,
        "previous_records": None,
        "sample_ids": '["a"]',
    }
    group = audit_group(date(2025, 3, 31), [row])
    assert group.label == "source_audits/year=2025/month=3/audited_on=2025-03-31.parquet"
    assert decode(encode(group), SOURCE_AUDITS).rows == [row]


def test_restore_command_explains_what_it_needs(tmp_path):
    cmd = [sys.executable, "-m", "cdr_reports.pipeline.archive"]
    env = {"PATH": "/usr/bin:/bin"}
    usage = subprocess.run([*cmd, "restore", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert usage.returncode == 0 and "--type {daily,weekly,monthly}" in usage.stdout and "--url" in usage.stdout
    no_archive = subprocess.run(
        [*cmd, "restore", "--type", "daily", "--from", "2025-01-01", "--to", "2025-01-31"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert no_archive.returncode == 2 and "give --archive-url or set CDR_ARCHIVE_URL" in no_archive.stderr
    no_db = subprocess.run(
        [*cmd, "restore", "--type", "daily", "--from", "2025-01-01", "--to", "2025-01-31"],
        capture_output=True,
        text=True,
        env={**env, "CDR_ARCHIVE_URL": f"file://{tmp_path}"},
        timeout=60,
    )
    assert no_db.returncode == 2 and "give --url or set CDR_RESTORE_DB_URL" in no_db.stderr
