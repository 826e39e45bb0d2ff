"""`make demo-archive` (devtools/cdr_reports_dev/archive_demo.py): the demo's reports archived by the
real retention DAG with a 7-day retention, then restored identical, in a private demo state folder."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from cdr_reports.pipeline.load import load_report
from cdr_reports.pipeline.periods import period_containing
from tests.support.reports import make_report

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
TZ = "Europe/Istanbul"


def test_demo_archives_with_a_short_retention_and_restores(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    engine = sa.create_engine(f"sqlite:///{state / 'demo_reports.db'}")
    today = datetime.now(ZoneInfo(TZ)).date()
    periods = {
        "daily": period_containing("daily", today - timedelta(days=1), TZ),  # kept
        "weekly": period_containing("weekly", today - timedelta(days=14), TZ),  # expires
        "monthly": period_containing("monthly", today - timedelta(days=45), TZ),  # expires
    }
    for i, period in enumerate(periods.values()):
        load_report(engine, make_report(period.report_type, range(3 + i), base=100 * (i + 1), period=period))
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CDR_", "DEMO_", "_AIRFLOW"))}
    env.update(
        {
            "DEMO_STATE_DIR": str(state),
            "DEMO_METADATA_DB_URL": f"sqlite:///{tmp_path / 'airflow.db'}",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "cdr_reports_dev.archive_demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    weekly, monthly = periods["weekly"].start_date, periods["monthly"].start_date
    assert f"archived and deleted: monthly {monthly}, weekly {weekly}; kept: 1" in out
    assert f"reports/type=weekly/year={weekly.year}/month={weekly.month}/period_start={weekly}.parquet" in out
    assert f"restored monthly {monthly}: 5 operator rows" in out
    assert "restored reports identical to the deleted ones: yes" in out
    assert (state / "demo_archive" / "reports" / "type=monthly").is_dir()
