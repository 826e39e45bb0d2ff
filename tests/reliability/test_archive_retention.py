"""Archive before purge through the retention DAG and under faults: the cdr_report_retention DAG
archiving to the S3 server of `make services` through an Amazon provider connection and to a local
folder; the archiving process killed between its writes and its delete; a period that cannot be
archived failing the run (with an alert) after the others; CDR_ARCHIVE_REQUIRED; and 10,000
periods in one run (its time and memory: bench/archive.py)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from cdr_reports.integration.archive_storage import archive_root
from cdr_reports.integration.maintenance import (
    DELETING_WITHOUT_ARCHIVE,
    archive_then_prune,
    build_maintenance_dag,
    build_restore_dag,
)
from cdr_reports.pipeline.archive import REPORTS, list_periods, report_group, restore
from cdr_reports.pipeline.config import Settings, load_settings
from cdr_reports.pipeline.load import load_report
from cdr_reports.pipeline.periods import period_containing
from cdr_reports.pipeline.schema import OPERATOR_TABLE, QUALITY_CHECK_TABLE, RUN_TABLE
from tests.support.archive import aws_connection_uri, new_bucket, s3_endpoint, seed, snapshot
from tests.support.processes import run_output, smtp_connection_uri, task_states
from tests.support.reports import make_report

TZ = "Europe/Istanbul"
REPO = Path(__file__).resolve().parents[2]


def _today() -> date:
    return datetime.now(ZoneInfo(TZ)).date()


def _load(engine, days_back: list[int]) -> list[date]:
    """Real reports (load_report) of the local days `days_back` days ago; returns their period starts."""
    starts = []
    for i, back in enumerate(days_back):
        period = period_containing("daily", _today() - timedelta(days=back), TZ)
        load_report(engine, make_report(f"d{back}", range(0, 2 + i % 3), base=10 + i, period=period))
        starts.append(period.start_date)
    return starts


def _dag(dag_env, tmp_path, settings: dict[str, str], connections: dict[str, str] | None = None):
    sink = tmp_path / "reports.db"
    dag_env(
        {"CDR_REPORT_RETENTION_DAYS": "30", **settings}, {"cdr_reports_db": f"sqlite:///{sink}", **(connections or {})}
    )
    return sa.create_engine(f"sqlite:///{sink}"), build_maintenance_dag(load_settings())


def test_without_an_archive_retention_deletes_as_before_and_says_so(dag_env, tmp_path, capfd, caplog):
    engine, dag = _dag(dag_env, tmp_path, {})
    keep = _load(engine, [0, 5])
    _load(engine, [40, 400])
    caplog.set_level(logging.INFO)
    run = dag.test()
    assert str(run.state) == "success"
    assert f"{DELETING_WITHOUT_ARCHIVE}: CDR_ARCHIVE_URL is not set" in run_output(capfd, caplog)
    assert [r["period_start"] for r in snapshot(engine)[RUN_TABLE]] == sorted(keep)


def test_archive_required_refuses_to_delete_without_an_archive(dag_env, tmp_path, capfd, caplog):
    engine, dag = _dag(dag_env, tmp_path, {"CDR_ARCHIVE_REQUIRED": "true"})
    _load(engine, [0, 40, 400])
    before = snapshot(engine)
    caplog.set_level(logging.INFO)
    run = dag.test()
    assert str(run.state) == "failed"
    assert task_states(run) == {"prune": ("failed", 1)}  # no retry: a setting must change
    out = run_output(capfd, caplog)
    assert "CDR_ARCHIVE_REQUIRED=true and CDR_ARCHIVE_URL is not set: refusing to delete any report" in out
    assert snapshot(engine) == before


@pytest.mark.services  # make services' S3 server (moto), reached through s3_endpoint()
def test_the_dag_archives_to_s3_through_the_amazon_connection_then_deletes(dag_env, tmp_path):
    endpoint = s3_endpoint()
    bucket = new_bucket(endpoint)
    engine, dag = _dag(
        dag_env,
        tmp_path,
        {"CDR_ARCHIVE_URL": f"s3://{bucket}/cdr-reports", "CDR_ARCHIVE_CONN_ID": "cdr_archive"},
        {"cdr_archive": aws_connection_uri(endpoint)},
    )
    keep = _load(engine, [0, 5, 28])
    expire = _load(engine, [32, 90, 800])
    original = snapshot(engine)
    run = dag.test()
    assert str(run.state) == "success", task_states(run)
    assert [r["period_start"] for r in snapshot(engine)[RUN_TABLE]] == sorted(keep)

    # What is in the bucket, read with boto3 (not through our code).
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1"
    )
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == sorted(
        "cdr-reports/" + report_group({"report_type": "daily", "period_start": d}, []).label for d in expire
    )
    # Restored from the bucket, the reports are what they were, value for value, and the report
    # view (its own query) shows them again.
    from cdr_reports.integration.report_view.queries import read_stored_report

    assert read_stored_report(engine, "daily", expire[0]) is None
    root = archive_root(Settings(archive_url=f"s3://{bucket}/cdr-reports", archive_conn_id="cdr_archive"))
    restore(engine, root, "daily", min(expire), max(expire))
    assert snapshot(engine)[RUN_TABLE] == original[RUN_TABLE]
    assert snapshot(engine)[OPERATOR_TABLE] == original[OPERATOR_TABLE]
    shown = read_stored_report(engine, "daily", expire[0])
    assert shown is not None
    assert shown.run == next(r for r in original[RUN_TABLE] if r["period_start"] == expire[0])
    assert shown.rows == [r for r in original[OPERATOR_TABLE] if r["period_start"] == expire[0]]


def test_a_period_that_cannot_be_archived_fails_the_run_after_the_others_and_alerts(dag_env, tmp_path, smtp_server):
    archive = tmp_path / "archive"
    engine, dag = _dag(
        dag_env,
        tmp_path,
        {"CDR_ARCHIVE_URL": f"file://{archive}", "CDR_ALERT_EMAILS": "ops@example.org"},
        {"smtp_default": smtp_connection_uri(smtp_server)},
    )
    keep = _load(engine, [0, 5])
    expire = _load(engine, [40, 41, 42, 400])
    bad = archive / report_group({"report_type": "daily", "period_start": expire[1]}, []).label
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")  # e.g. a truncated copy someone put there
    run = dag.test()
    assert str(run.state) == "failed"
    assert task_states(run) == {"prune": ("failed", 1)}  # a retry cannot fix it
    assert [r["period_start"] for r in snapshot(engine)[RUN_TABLE]] == sorted([*keep, expire[1]])
    assert bad.read_bytes() == b"not parquet"
    root = archive_root(Settings(archive_url=f"file://{archive}"))
    # The three others archived; the bad file untouched (it is listed, restore would refuse it).
    assert list_periods(root, REPORTS, "daily", date(2000, 1, 1), _today()) == sorted(expire)
    [mail] = smtp_server.received()
    text = mail["message"].get_body(preferencelist=("html", "plain")).get_content()
    assert "cdr_report_retention" in mail["message"]["Subject"]
    assert "1 group(s) could not be archived and were NOT deleted" in text
    assert "ArchiveCorrupt" in text


def test_the_restore_dag_loads_archived_periods_back(dag_env, tmp_path):
    archive = tmp_path / "archive"
    engine, retention = _dag(dag_env, tmp_path, {"CDR_ARCHIVE_URL": f"file://{archive}"})
    _load(engine, [0, 3])
    expire = _load(engine, [35, 36, 37])
    original = snapshot(engine)
    assert str(retention.test().state) == "success"
    assert len(snapshot(engine)[RUN_TABLE]) == 2
    dag = build_restore_dag(load_settings())
    assert dag.dag_id == "cdr_report_restore" and type(dag.timetable).__name__ == "NullTimetable"  # manual only
    run = dag.test(run_conf={"report_type": "daily", "from": str(min(expire)), "to": str(max(expire))})
    assert str(run.state) == "success", task_states(run)
    assert snapshot(engine)[RUN_TABLE] == original[RUN_TABLE]
    assert snapshot(engine)[OPERATOR_TABLE] == original[OPERATOR_TABLE]
    # Nothing archived in the range: the run fails, it does not pass silently.
    empty = dag.test(run_conf={"report_type": "weekly", "from": "2020-01-01", "to": "2020-12-31"})
    assert str(empty.state) == "failed" and task_states(empty) == {"restore": ("failed", 1)}


_ARCHIVER = textwrap.dedent(
    """
    import sys
    from datetime import date
    import sqlalchemy as sa
    from cdr_reports.integration.archive_storage import archive_root
    from cdr_reports.integration.maintenance import archive_then_prune
    from cdr_reports.pipeline.config import Settings

    engine = sa.create_engine(sys.argv[1])
    root = archive_root(Settings(archive_url=sys.argv[2]))
    print("archiving", flush=True)
    # One batch: every file is written before the one delete transaction starts.
    archive_then_prune(engine, root, date.fromisoformat(sys.argv[3]), batch_size=100_000)
    print("deleted", flush=True)
    """
)


def test_killed_between_writing_and_deleting_a_rerun_loses_and_duplicates_nothing(tmp_path):
    db = tmp_path / "reports.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    days = [date(2020, 1, 1) + timedelta(days=i) for i in range(3000)]
    seed(engine, "daily", days, operators=2, findings=1)
    original = snapshot(engine)
    archive = tmp_path / "archive"
    url = f"file://{archive}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _ARCHIVER, f"sqlite:///{db}", url, "2030-01-01"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while len(list(archive.rglob("*.parquet"))) < 200:
            assert proc.poll() is None, "the archiver ended before it could be killed"
            assert time.monotonic() < deadline, "the archiver wrote nothing in 300 s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the task dies: no cleanup, no delete
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    written = len(list(archive.rglob("*.parquet")))
    assert 200 <= written < 3000  # killed mid-way
    assert snapshot(engine) == original  # nothing was deleted

    root = archive_root(Settings(archive_url=url))
    summary = archive_then_prune(engine, root, date(2030, 1, 1))
    assert (summary.kept, summary.written) == (written, 2 * 3000 - written)  # reports + findings
    assert (summary.report_periods, summary.quality_rows) == (3000, 3000)
    assert snapshot(engine) == {table: [] for table in original}
    assert len(list(archive.rglob("*.parquet"))) == 6000  # one file per group, none twice
    restore(engine, root, "daily", days[0], days[-1])
    after = snapshot(engine)
    for table in (RUN_TABLE, OPERATOR_TABLE, QUALITY_CHECK_TABLE):
        assert after[table] == original[table], table


def test_ten_thousand_periods_in_one_retention_run(tmp_path):
    """One run archives, verifies and deletes 10,000 periods (time and memory: bench/archive.py)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'reports.db'}")
    days = [date(1990, 1, 1) + timedelta(days=i) for i in range(10_000)]
    for i in range(0, len(days), 2500):
        seed(engine, "daily", days[i : i + 2500], operators=1, findings=0)
    root = archive_root(Settings(archive_url=f"file://{tmp_path / 'archive'}"))
    summary = archive_then_prune(engine, root, days[-1] + timedelta(days=1))
    assert (summary.written, summary.report_periods, summary.operator_rows) == (10_000, 10_000, 10_000)
    assert snapshot(engine)[RUN_TABLE] == []
    assert list_periods(root, REPORTS, "daily", date(2017, 5, 1), date(2017, 5, 31)) == [
        d for d in days if (d.year, d.month) == (2017, 5)
    ]
