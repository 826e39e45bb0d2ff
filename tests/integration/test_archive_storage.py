"""The report archive on real storage, as deployed: Airflow's ObjectStoragePath (integration/
archive_storage.py) over a local folder (file://) and over the S3 server of `make services` (moto)
through an Amazon provider connection; SQLite and PostgreSQL as the report database.

Archive -> verify -> delete -> restore must give back every row exactly; DuckDB, an independent
Parquet reader, reads the partitioned layout; unwritable destinations and corrupt files fail the
groups concerned and delete nothing of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from cdr_reports.integration.archive_storage import archive_root
from cdr_reports.pipeline.archive import (
    REPORTS,
    SOURCE_AUDITS,
    ArchiveConflict,
    ArchiveCorrupt,
    archive_expired,
    audit_group,
    fetch,
    list_periods,
    report_group,
    restore,
)
from cdr_reports.pipeline.config import ConfigError, Settings
from cdr_reports.pipeline.schema import OPERATOR_TABLE, QUALITY_CHECK_TABLE, RUN_TABLE, SOURCE_AUDIT_TABLE
from tests.support.archive import aws_connection_uri, new_bucket, s3_endpoint, seed, seed_audits, snapshot

CUTOFF = date(2025, 3, 1)
DAYS = [date(2025, 1, 20) + timedelta(days=i) for i in range(50)]  # 40 before the cutoff, 10 after
WEEKS = [date(2025, 1, 6) + timedelta(weeks=i) for i in range(12)]
MONTHS = [date(2024, 11, 1), date(2024, 12, 1), date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)]
AUDIT_DAYS = [date(2025, 2, 26), date(2025, 2, 27), date(2025, 2, 28), date(2025, 3, 1)]


@pytest.fixture(params=["file", "s3"])
def storage(request, tmp_path, monkeypatch):
    """(kind, ObjectStoragePath root, base URL) of a fresh archive on the local disk or in a fresh S3 bucket."""
    if request.param == "file":
        url = f"file://{tmp_path}/archive"
        return "file", archive_root(Settings(archive_url=url)), url
    endpoint = s3_endpoint()
    monkeypatch.setenv("AIRFLOW_CONN_CDR_ARCHIVE_TEST", aws_connection_uri(endpoint))
    url = f"s3://{new_bucket(endpoint)}/cdr-reports"
    return "s3", archive_root(Settings(archive_url=url, archive_conn_id="cdr_archive_test")), url


def _seed_all(engine) -> None:
    seed(engine, "daily", DAYS, operators=4, findings=2)
    seed(engine, "weekly", WEEKS, operators=3)
    seed(engine, "monthly", MONTHS, operators=5, findings=0)
    seed_audits(engine, AUDIT_DAYS)


def test_archive_verify_delete_restore_gives_back_every_row(storage, sql_engine):
    _kind, root, _url = storage
    _seed_all(sql_engine)
    original = snapshot(sql_engine)
    expiring = snapshot(sql_engine, before=CUTOFF)
    summary = archive_expired(sql_engine, root, CUTOFF, batch_size=16)  # several batches per type

    periods = len(expiring[RUN_TABLE])
    quality_groups = {(r["report_type"], r["period_start"]) for r in expiring[QUALITY_CHECK_TABLE]}
    assert summary.failures == [] and summary.changed == 0
    assert summary.written == periods + len(quality_groups) + 3  # three audit days before the cutoff
    assert (summary.report_periods, summary.run_rows) == (periods, periods) == (40 + 8 + 4, 52)
    assert summary.operator_rows == len(expiring[OPERATOR_TABLE])
    assert summary.quality_rows == len(expiring[QUALITY_CHECK_TABLE])
    assert summary.audit_rows == len(expiring[SOURCE_AUDIT_TABLE]) == 6
    # Deleted: exactly the expired rows; the newer ones untouched.
    after = snapshot(sql_engine)
    for table, rows in original.items():
        kept = [row for row in rows if row not in expiring[table]]
        assert after[table] == kept, table
    # The layout query engines read as partitions.
    assert list_periods(root, REPORTS, "daily", date(2025, 1, 1), date(2025, 12, 31)) == DAYS[:40]
    assert (root / "reports/type=monthly/year=2024/month=11/period_start=2024-11-01.parquet").exists()
    assert (root / "source_audits/year=2025/month=2/audited_on=2025-02-28.parquet").exists()
    audits = fetch(root, audit_group(date(2025, 2, 27), []).parts, SOURCE_AUDITS)
    assert audits is not None
    assert audits.rows == [r for r in expiring[SOURCE_AUDIT_TABLE] if r["audited_at"].date() == date(2025, 2, 27)]

    # A second run finds nothing left to archive and changes nothing.
    again = archive_expired(sql_engine, root, CUTOFF)
    assert (again.written, again.kept, again.report_periods, again.failures) == (0, 0, 0, [])

    for report_type in ("daily", "weekly", "monthly"):
        restore(sql_engine, root, report_type, date(2024, 1, 1), date(2025, 2, 28))
    restored = snapshot(sql_engine)
    for table in (RUN_TABLE, OPERATOR_TABLE, QUALITY_CHECK_TABLE):
        assert restored[table] == original[table], table  # every value of every row, NULLs included
    # Restoring twice is the same replace.
    restore(sql_engine, root, "daily", date(2025, 1, 1), date(2025, 1, 31))
    assert snapshot(sql_engine)[OPERATOR_TABLE] == original[OPERATOR_TABLE]


def test_a_rerun_after_a_crash_before_the_delete_keeps_the_files_and_deletes_once(storage, sqlite_engine):
    """Files written, rows not yet deleted (the crash itself is tests/reliability/test_archive_retention.py)."""
    _kind, root, _url = storage
    _seed_all(sqlite_engine)
    expiring = snapshot(sqlite_engine, before=CUTOFF)
    for run in expiring[RUN_TABLE][:10]:  # what the killed run had written
        rows = [
            r
            for r in expiring[OPERATOR_TABLE]
            if (r["report_type"], r["period_start"]) == (run["report_type"], run["period_start"])
        ]
        from cdr_reports.pipeline.archive import put

        assert put(root, report_group(run, rows)) == "written"
    summary = archive_expired(sqlite_engine, root, CUTOFF)
    assert (summary.kept, summary.report_periods, summary.failures) == (10, 52, [])
    assert snapshot(sqlite_engine, before=CUTOFF) == {table: [] for table in expiring}


def test_duckdb_reads_the_archive_as_partitioned_tables(storage, sqlite_engine):
    """An independent reader (DuckDB's own Parquet reader) sums calls by type and year."""
    import duckdb

    kind, root, url = storage
    _seed_all(sqlite_engine)
    expected: dict[tuple[str, int], int] = {}
    with sqlite_engine.connect() as conn:
        for row in conn.execute(
            sa.text(f"SELECT report_type, period_start, total_calls FROM {OPERATOR_TABLE} WHERE period_start < :c"),
            {"c": CUTOFF},
        ):
            key = (row.report_type, int(str(row.period_start)[:4]))
            expected[key] = expected.get(key, 0) + row.total_calls
    assert archive_expired(sqlite_engine, root, CUTOFF).failures == []

    con = duckdb.connect()
    if kind == "s3":
        con.register_filesystem(root.fs)  # the provider's s3fs, with the connection's endpoint and keys
        base = "s3://" + url.removeprefix("s3://")
    else:
        base = url.removeprefix("file://")
    sums = con.sql(
        f"SELECT type, year, sum(total_calls) FROM read_parquet('{base}/reports/*/*/*/*.parquet', "
        "hive_partitioning = true) GROUP BY type, year ORDER BY type, year"
    ).fetchall()
    assert {(t, y): int(s) for t, y, s in sums} == expected
    assert len(expected) == 4  # daily 2025, weekly 2025, monthly 2024 and 2025
    types = dict(
        con.sql(
            f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet("
            f"'{base}/reports/*/*/*/*.parquet', hive_partitioning = true))"
        ).fetchall()
    )
    assert (types["period_start"], types["total_calls"], types["year"], types["month"]) == (
        "DATE",
        "BIGINT",
        "BIGINT",
        "BIGINT",
    )
    assert types["generated_at"] == "TIMESTAMP WITH TIME ZONE"
    findings = con.sql(
        f"SELECT count(*) FROM read_parquet('{base}/quality_checks/*/*/*/*.parquet', hive_partitioning = true)"
    ).fetchall()
    assert findings == [(2 * 40 + 8,)]


def test_a_corrupt_file_at_the_destination_keeps_its_period_only(storage, sqlite_engine):
    _kind, root, _url = storage
    _seed_all(sqlite_engine)
    victim = root / report_group({"report_type": "daily", "period_start": DAYS[3]}, []).label
    if _kind == "file":
        victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_bytes(b"PAR1 half a file")
    summary = archive_expired(sqlite_engine, root, CUTOFF)
    assert [label for label, _ in summary.failures] == [victim_label(DAYS[3])]
    assert isinstance(summary.failures[0][1], ArchiveCorrupt) and summary.permanent
    assert summary.report_periods == 51  # every other period went on
    left = snapshot(sqlite_engine, before=CUTOFF)
    assert {(r["report_type"], r["period_start"]) for r in left[RUN_TABLE]} == {("daily", DAYS[3])}
    assert len(left[OPERATOR_TABLE]) == 4
    assert victim.read_bytes() == b"PAR1 half a file"  # never overwritten silently
    # A person removes the bad file; the next run archives and deletes the period.
    victim.unlink()
    assert archive_expired(sqlite_engine, root, CUTOFF).report_periods == 1
    assert snapshot(sqlite_engine, before=CUTOFF)[RUN_TABLE] == []


def victim_label(day: date) -> str:
    return report_group({"report_type": "daily", "period_start": day}, []).label


def test_a_different_archive_of_a_period_is_a_conflict_not_an_overwrite(storage, sqlite_engine):
    _kind, root, _url = storage
    seed(sqlite_engine, "daily", DAYS[:3])
    assert archive_expired(sqlite_engine, root, CUTOFF).report_periods == 3
    original = (root / victim_label(DAYS[0])).read_bytes()
    seed(sqlite_engine, "daily", DAYS[:1], operators=2)  # the period reported again, differently
    summary = archive_expired(sqlite_engine, root, CUTOFF)
    assert isinstance(summary.failures[0][1], ArchiveConflict) and summary.report_periods == 0
    assert (root / victim_label(DAYS[0])).read_bytes() == original
    assert len(snapshot(sqlite_engine, before=CUTOFF)[OPERATOR_TABLE]) == 2


def test_a_destination_that_cannot_be_written_deletes_nothing(storage, sqlite_engine, tmp_path):
    kind, root, url = storage
    if kind == "file":
        # A regular file where the archive folder should be (permissions do not stop root, CI's user).
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("x")
        root = archive_root(Settings(archive_url=f"file://{blocker}/archive"))
    else:
        # The bucket does not exist: s3fs must not create it, the write must fail.
        root = archive_root(
            Settings(archive_url=f"s3://missing-{url.split('/')[2]}/cdr", archive_conn_id="cdr_archive_test")
        )
    _seed_all(sqlite_engine)
    before = snapshot(sqlite_engine)
    summary = archive_expired(sqlite_engine, root, CUTOFF)
    assert summary.written == 0 and summary.report_periods == 0
    assert len(summary.failures) == 52 + 48 + 3  # every report, finding and audit group
    assert summary.permanent, summary.failures[0]
    assert snapshot(sqlite_engine) == before
    if kind == "s3":
        assert all(isinstance(exc, FileNotFoundError) for _, exc in summary.failures)


def test_an_unknown_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match="CDR_ARCHIVE_URL='nosuchfs://x' cannot be opened"):
        archive_root(Settings(archive_url="nosuchfs://x"))


def test_restore_command_loads_periods_back(storage, tmp_path):
    """`python -m cdr_reports.pipeline.archive restore` (no Airflow: universal_pathlib and a DB URL)."""
    kind, root, url = storage
    db = tmp_path / "reports.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    _seed_all(engine)
    original = snapshot(engine)
    assert archive_expired(engine, root, CUTOFF).failures == []
    cmd = [sys.executable, "-m", "cdr_reports.pipeline.archive"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "CDR_"))}
    env.update({"CDR_ARCHIVE_URL": url, "CDR_RESTORE_DB_URL": f"sqlite:///{db}"})
    options = []
    if kind == "s3":
        env.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"})
        options = ["--storage-option", f"endpoint_url={s3_endpoint()}"]
    listed = subprocess.run(
        [*cmd, "list", "--type", "weekly", "--from", "2025-01-01", "--to", "2025-02-28", *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[1] for line in listed.stdout.splitlines()] == [str(w) for w in WEEKS[:8]]
    done = subprocess.run(
        [*cmd, "restore", "--type", "daily", "--from", "2025-01-25", "--to", "2025-02-03", *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "10 daily reports restored (40 operator rows)"
    now = snapshot(engine)
    window = [d for d in DAYS if date(2025, 1, 25) <= d <= date(2025, 2, 3)]
    for table in (RUN_TABLE, OPERATOR_TABLE, QUALITY_CHECK_TABLE):
        expected = [
            r
            for r in original[table]
            if r["period_start"] >= CUTOFF or (r["report_type"] == "daily" and r["period_start"] in window)
        ]
        assert now[table] == expected, table
    nothing = subprocess.run(
        [*cmd, "restore", "--type", "monthly", "--from", "2020-01-01", "--to", "2020-12-31", *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert nothing.returncode == 0 and "no archived monthly report between 2020-01-01 and 2020-12-31" in nothing.stdout
