"""`make demo-archive`: the demo's stored reports archived with a short retention, then restored.

After `make demo`: runs the real `cdr_report_retention` DAG (`airflow dags test`) on the demo's
report database with `CDR_REPORT_RETENTION_DAYS` (default 7: the demo's weekly and monthly reports
expire, the daily one stays) and `CDR_ARCHIVE_URL` (default a folder `demo_archive` in the demo's
state folder), lists the Parquet files it wrote, then loads every archived period back with
`python -m cdr_reports.pipeline.archive restore` and checks the restored rows equal the deleted ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdr_reports_dev.demo.airflow_config import airflow_env
from cdr_reports_dev.demo.metadata_db import ensure_metadata_db
from cdr_reports_dev.demo.processes import airflow
from cdr_reports_dev.demo.state import demo_mongo_uri, demo_paths, log, make_private, mongo_database

RETENTION_DAYS = "7"


def _rows(db: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of the report tables, in key order (what the restore must give back)."""
    import sqlalchemy as sa

    from cdr_reports.pipeline.schema import OPERATOR_TABLE, QUALITY_CHECK_TABLE, RUN_TABLE, report_tables

    engine = sa.create_engine(f"sqlite:///{db}")
    meta = report_tables().metadata
    try:
        with engine.connect() as conn:
            return {
                name: [
                    dict(r)
                    for r in conn.execute(
                        sa.select(meta.tables[name]).order_by(*meta.tables[name].primary_key.columns)
                    ).mappings()
                ]
                for name in (RUN_TABLE, OPERATOR_TABLE, QUALITY_CHECK_TABLE)
                if sa.inspect(engine).has_table(name)
            }
    finally:
        engine.dispose()


def main() -> int:
    paths = demo_paths()
    make_private(paths)
    if not paths.reports_db.exists():
        raise SystemExit(f"no demo reports in {paths.reports_db}: run `make demo` first")
    archive_url = os.environ.get("CDR_ARCHIVE_URL") or f"file://{paths.state / 'demo_archive'}"
    env = airflow_env(paths, demo_mongo_uri(paths.repo), mongo_database())
    env.update(
        {
            "CDR_REPORT_RETENTION_DAYS": os.environ.get("CDR_REPORT_RETENTION_DAYS") or RETENTION_DAYS,
            "CDR_ARCHIVE_URL": archive_url,
        }
    )
    ensure_metadata_db(paths, env)
    before = _rows(paths.reports_db)
    periods = {(r["report_type"], r["period_start"]) for r in before.get("cdr_report_run", [])}
    log(f"{len(periods)} stored reports: " + ", ".join(f"{t} {d}" for t, d in sorted(periods)))
    log(
        f"running cdr_report_retention with CDR_REPORT_RETENTION_DAYS={env['CDR_REPORT_RETENTION_DAYS']} "
        f"and CDR_ARCHIVE_URL={archive_url}"
    )
    log_file = paths.airflow_home / "logs" / "dags-test-cdr_report_retention.log"
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    result = airflow(env, "dags", "test", "cdr_report_retention", now, log_file=log_file)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"airflow dags test cdr_report_retention failed (full output: {log_file})")
    after = _rows(paths.reports_db)
    kept = {(r["report_type"], r["period_start"]) for r in after["cdr_report_run"]}
    archived = sorted(periods - kept)
    log(f"archived and deleted: {', '.join(f'{t} {d}' for t, d in archived) or 'nothing'}; kept: {len(kept)}")
    if archive_url.startswith("file://"):
        folder = Path(archive_url.removeprefix("file://"))
        for file in sorted(folder.rglob("*.parquet")):
            print(f"  {file.relative_to(folder)}  ({file.stat().st_size} bytes)")
    for report_type in sorted({t for t, _ in archived}):
        starts = [d for t, d in archived if t == report_type]
        command = [
            sys.executable,
            "-m",
            "cdr_reports.pipeline.archive",
            "restore",
            "--type",
            report_type,
            "--from",
            min(starts).isoformat(),
            "--to",
            max(starts).isoformat(),
            "--url",
            f"sqlite:///{paths.reports_db}",
            "--archive-url",
            archive_url,
        ]
        log("$ " + " ".join(command[1:]))
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        print(done.stdout, end="")
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-4000:])
            raise SystemExit(f"restoring the {report_type} reports failed")
    restored = _rows(paths.reports_db)
    same = restored == before
    log(f"restored reports identical to the deleted ones: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
