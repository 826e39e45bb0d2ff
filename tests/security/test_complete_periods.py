"""Only complete periods, in range: `resolve_period` and the real `plan` task refuse the rest at once.

A run whose period has not ended in the report time zone, that starts before
CDR_EARLIEST_REPORT_DATE, or whose date cannot be represented (9999-12-31, 0001-01-01 used to
raise OverflowError, retried three times) fails as a PermanentError naming the param or
setting, and nothing is stored. The stack test triggers such runs as ReportOperator through
the REST API and reads the outcome back from the scheduler's real task instances.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta

import pytest

from cdr_reports.pipeline.config import DEFAULT_EARLIEST_REPORT_DATE, Settings, load_settings
from cdr_reports.pipeline.errors import PermanentError
from cdr_reports.pipeline.periods import local_date_of, period_containing
from cdr_reports.pipeline.plan import resolve_period
from tests.support.airflow_stack import AIRFLOW
from tests.support.fab_stack import quote, task_log_text

from .conftest import EARLIEST_REPORT_DATE

TZ = "Europe/Istanbul"
# 2026-12-01 10:00 in Istanbul.
NOW = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
SETTINGS = Settings()


def _resolve(report_type: str, report_date: str | None = None, *, interval_start=None, run_after=None, now=NOW):
    return resolve_period(report_type, SETTINGS, report_date, interval_start, run_after, now=now)


def test_the_default_earliest_date_is_the_dags_start_date():
    from cdr_reports.integration.dag_factory import build_report_dag

    assert load_settings({}).earliest_report_date == DEFAULT_EARLIEST_REPORT_DATE == date(2026, 1, 1)
    dag = build_report_dag("daily", load_settings({}))
    # Local midnight of that day in the report time zone (Airflow stores it in UTC).
    assert dag.start_date == period_containing("daily", date(2026, 1, 1), TZ).start_utc
    moved = build_report_dag("daily", load_settings({"CDR_EARLIEST_REPORT_DATE": "2025-03-01"}))
    assert moved.start_date == period_containing("daily", date(2025, 3, 1), TZ).start_utc


@pytest.mark.parametrize(
    ("report_type", "report_date", "start"),
    [
        ("daily", "2026-11-30", date(2026, 11, 30)),  # ended 2026-12-01 00:00 local
        ("weekly", "2026-11-29", date(2026, 11, 23)),  # Monday..Sunday, ended 2026-11-30
        ("monthly", "2026-11-15", date(2026, 11, 1)),
        ("daily", "2026-01-01", date(2026, 1, 1)),  # the earliest day itself
        ("monthly", "2026-01-31", date(2026, 1, 1)),
    ],
)
def test_complete_periods_from_the_earliest_date_on_are_reported(report_type, report_date, start):
    assert _resolve(report_type, report_date).start_date == start


def test_a_period_ending_exactly_now_is_complete():
    day = period_containing("daily", date(2026, 11, 30), TZ)
    assert _resolve("daily", "2026-11-30", now=day.end_utc).start_date == day.start_date
    with pytest.raises(PermanentError, match="has not ended yet"):
        _resolve("daily", "2026-11-30", now=day.end_utc - timedelta(microseconds=1))


@pytest.mark.parametrize(
    ("report_type", "report_date", "needles"),
    [
        # The current day, week and month, and a date in the future: partial reports.
        (
            "daily",
            "2026-12-01",
            ["param report_date=2026-12-01", "has not ended yet", "2026-12-02 00:00 Europe/Istanbul"],
        ),
        (
            "weekly",
            "2026-11-30",
            ["param report_date=2026-11-30", "weekly 2026-11-30..2026-12-06", "has not ended yet"],
        ),
        ("monthly", "2026-12-01", ["param report_date=2026-12-01", "monthly 2026-12", "has not ended yet"]),
        ("daily", "2027-06-15", ["param report_date=2027-06-15", "has not ended yet"]),
        # Before the first day reports exist for: an empty report would be stored as final.
        ("daily", "2020-01-01", ["param report_date=2020-01-01", "CDR_EARLIEST_REPORT_DATE=2026-01-01"]),
        ("weekly", "2026-01-01", ["weekly 2025-12-29..2026-01-04", "starts before CDR_EARLIEST_REPORT_DATE"]),
        ("monthly", "2025-12-31", ["monthly 2025-12", "CDR_EARLIEST_REPORT_DATE"]),
        # The ends of the calendar (OverflowError / "year 10000 is out of range" before).
        ("daily", "9999-12-31", ["param report_date=9999-12-31", "outside the dates this system can represent"]),
        ("weekly", "9999-12-31", ["param report_date=9999-12-31", "outside the dates"]),
        ("monthly", "9999-12-31", ["param report_date=9999-12-31", "outside the dates"]),
        ("daily", "0001-01-01", ["param report_date=0001-01-01", "outside the dates"]),
        ("monthly", "0001-01-01", ["param report_date=0001-01-01", "outside the dates"]),
        ("daily", "2026-02-30", ["param report_date='2026-02-30' is not a date"]),
    ],
)
def test_incomplete_early_and_unrepresentable_periods_are_permanent_errors(report_type, report_date, needles):
    with pytest.raises(PermanentError) as caught:
        _resolve(report_type, report_date)
    for needle in needles:
        assert needle in str(caught.value)


def test_data_interval_and_run_after_are_checked_too():
    # A scheduled run's data interval at the end of the calendar, and a run_after at its start.
    with pytest.raises(PermanentError, match=r"the run's data interval .* outside the dates"):
        _resolve("daily", interval_start=datetime(9999, 12, 31, 21, 0, tzinfo=UTC))
    with pytest.raises(PermanentError, match=r"the run's run_after time .* outside the dates"):
        _resolve("monthly", run_after=datetime(1, 1, 1, tzinfo=UTC))
    # A data interval before the earliest date (a backfill from long ago).
    with pytest.raises(PermanentError, match="CDR_EARLIEST_REPORT_DATE"):
        _resolve("daily", interval_start=datetime(1970, 1, 1, 21, 0, tzinfo=UTC))
    # The failure alerts describe a run without `now`: no completeness check, same period.
    today = resolve_period("daily", SETTINGS, "2026-12-01", None, None)
    assert today.start_date == date(2026, 12, 1)


def test_the_earliest_date_follows_its_setting():
    settings = load_settings({"CDR_EARLIEST_REPORT_DATE": "2019-06-01"})
    assert resolve_period("daily", settings, "2020-01-01", None, None, now=NOW).start_date == date(2020, 1, 1)
    with pytest.raises(PermanentError, match="CDR_EARLIEST_REPORT_DATE=2019-06-01"):
        resolve_period("monthly", settings, "2019-05-31", None, None, now=NOW)


# -- the real plan task, in the stack --------------------------------------------------------------


# Creates manual runs past the run guard (removed in this process only), as direct database access would.
BYPASS_SCRIPT = """
import json, sys
from sqlalchemy import event
from airflow.api.common.trigger_dag import trigger_dag
from airflow.models.dagrun import DagRun
from airflow.utils.types import DagRunTriggeredByType
import cdr_reports.integration.timetable as timetable
timetable.install_backfill_guard()
event.remove(DagRun, "before_insert", timetable._refuse_out_of_bounds_report_date)
for report_date in json.loads(sys.argv[1]):
    run = trigger_dag("DAG_ID", triggered_by=DagRunTriggeredByType.CLI, conf={"report_date": report_date})
    print("RUN", report_date, run.run_id)
"""


@pytest.mark.e2e
def test_the_plan_task_refuses_such_runs_at_once_and_nothing_is_stored(airflow_stack):
    """Runs the plan task must refuse; each fails on its first try (the stack runs with
    CDR_RETRIES=2), names the param, and no report is stored.

    No client creates such a run: the REST API (UI included) answers 422, `airflow dags trigger`
    fails where Airflow stores the run (timetable.install_backfill_guard). The plan task is the
    last line for a run created past every guard, as direct database access would: the test
    creates those runs with the guard removed."""
    import json

    import sqlalchemy as sa

    from cdr_reports.pipeline.load import read_report

    today = local_date_of(datetime.now(UTC), TZ)
    refused = {
        # Tomorrow, not today: the run may start after Istanbul's midnight, when today has ended.
        (today + timedelta(days=1)).isoformat(): "has not ended yet",
        "2020-01-01": f"starts before CDR_EARLIEST_REPORT_DATE={EARLIEST_REPORT_DATE}",
        "9999-12-31": "outside the dates this system can represent",
    }
    dag_id = "cdr_daily_report"
    runs_before = len(airflow_stack.dag_runs(dag_id))
    for report_date, reason in refused.items():
        response = airflow_stack.trigger_report("operator", dag_id, report_date)
        assert response.status_code == 422, response.text
        assert reason in response.json()["detail"]
        conf = json.dumps({"report_date": report_date})
        cli = airflow_stack.run_cli(AIRFLOW, "dags", "trigger", dag_id, "--conf", conf, check=False)
        assert cli.returncode != 0, cli.stdout[-2000:]
        assert reason in cli.stdout + cli.stderr, (cli.stdout + cli.stderr)[-3000:]
    assert len(airflow_stack.dag_runs(dag_id)) == runs_before  # not one run was created

    bypass = BYPASS_SCRIPT.replace("DAG_ID", dag_id)
    created = airflow_stack.run_cli(sys.executable, "-c", bypass, json.dumps(list(refused)), timeout=300)
    run_ids = dict(line.split()[1:3] for line in created.stdout.splitlines() if line.startswith("RUN "))
    assert set(run_ids) == set(refused), created.stdout[-3000:]

    for report_date, reason in refused.items():
        run_id = run_ids[report_date]
        run = airflow_stack.wait_run_finished(dag_id, run_id, timeout=240)
        assert run["state"] == "failed", (report_date, run)
        tis = airflow_stack.request("admin", "GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances")
        assert tis.status_code == 200, tis.text
        by_task = {t["task_id"]: t for t in tis.json()["task_instances"]}
        plan = by_task["plan"]
        # Failed on the first try although retries are configured: a permanent error.
        assert (plan["state"], plan["try_number"], plan["max_tries"]) == ("failed", 1, 2), (report_date, plan)
        assert by_task["load"]["state"] == "upstream_failed", report_date
        status, text = task_log_text(airflow_stack, "operator", dag_id, run_id, "plan")
        assert status == 200
        assert f"report_date={report_date}" in text, text[-2000:]
        assert reason in text, text[-2000:]
        assert "AirflowFailException" in text or "Marking task as FAILED" in text, text[-2000:]
        assert "OverflowError" not in text

    engine = sa.create_engine(f"sqlite:///{airflow_stack.home / 'reports.db'}")
    try:
        for report_date in (today.isoformat(), "2020-01-01"):
            assert read_report(engine, "daily", date.fromisoformat(report_date)) is None
        # The reports the fixture stored (two daily, one weekly) are still the only ones.
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM cdr_report_run")).scalar() == 3
    finally:
        engine.dispose()
