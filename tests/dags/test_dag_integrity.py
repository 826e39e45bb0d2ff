"""The three report DAGs as Airflow 3.3 parses, serializes and schedules retries for them.

Parsing goes through Airflow's own DagBag over dags/ (the Dag processor's code path); the
retry delays are computed by Airflow's TaskInstance.next_retry_datetime on the serialized
tasks the scheduler uses.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cdr_reports.integration.dag_factory import DAG_IDS, build_report_dag
from cdr_reports.integration.timetable import CalendarPeriodTimetable
from cdr_reports.pipeline.config import load_settings
from cdr_reports.pipeline.periods import period_containing_instant

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
DAG_FILE = DAGS_FOLDER / "cdr_report_dags.py"
IST = "Europe/Istanbul"
REPORT_TYPES = ("daily", "weekly", "monthly")
DUE_AFTER = {"daily": timedelta(hours=2), "weekly": timedelta(hours=3), "monthly": timedelta(hours=4)}
SUMMARY = {
    "daily": "daily, Europe/Istanbul, due 02:00",
    "weekly": "weekly Mon-Sun, Europe/Istanbul, due 03:00",
    "monthly": "monthly, Europe/Istanbul, due 04:00",
}
TASK_IDS = ["plan", "extract", "aggregate", "load"]
# After the load, off the report's path (integration/quality_tasks.py); on by default.
QUALITY_TASK_IDS = {
    "daily": ["check_volume", "check_late_data"],
    "weekly": ["check_volume"],
    "monthly": ["check_volume"],
}
# Daily only (integration/rollup_tasks.py): after the load and the checks, stale weeks/months rebuilt.
ROLLUP_TASK_IDS = {"daily": ["rebuild_rollups", "trigger_rebuilds"], "weekly": [], "monthly": []}


def _parse_dags_folder(monkeypatch, env: dict[str, str] | None = None):
    """A DagBag over dags/ with exactly `env` as the CDR_* settings (none: the defaults)."""
    from airflow.dag_processing.dagbag import DagBag

    for key in list(os.environ):
        if key.startswith("CDR_"):
            monkeypatch.delenv(key)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    return DagBag(dag_folder=str(DAGS_FOLDER))


@pytest.fixture(scope="module")
def dagbag():
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _parse_dags_folder(monkeypatch)


@pytest.fixture(params=REPORT_TYPES)
def report_type(request) -> str:
    return request.param


@pytest.fixture
def dag(dagbag, report_type):
    return dagbag.dags[DAG_IDS[report_type]]


# plugins_from_repo: tests/dags/conftest.py


# --------------------------------------------------------------------------- parsing


def test_dags_folder_parses_without_errors(dagbag):
    assert dagbag.import_errors == {}  # no file of dags/ fails, not only ours
    assert set(DAG_IDS.values()) == {"cdr_daily_report", "cdr_weekly_report", "cdr_monthly_report"}
    assert set(DAG_IDS.values()) <= set(dagbag.dag_ids)
    assert {dagbag.dags[dag_id].fileloc for dag_id in DAG_IDS.values()} == {str(DAG_FILE)}


def test_schedule_is_the_calendar_period_timetable(dag, report_type):
    tt = dag.timetable
    assert isinstance(tt, CalendarPeriodTimetable)
    assert (tt.report_type, tt.timezone, tt.due_after, tt.week_start) == (report_type, IST, DUE_AFTER[report_type], 0)
    assert tt.summary == SUMMARY[report_type]
    # Airflow stores start_date in UTC; it is local midnight, so the first period is whole.
    assert dag.start_date == datetime(2025, 12, 31, 21, tzinfo=UTC)  # 2026-01-01 00:00 Istanbul


def test_run_policy(dag, report_type):
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.dagrun_timeout == timedelta(hours=6)
    assert {"cdr", report_type} <= set(dag.tags)
    assert dag.owner == "cdr-reports"


def test_docs_on_dag_and_every_task(dag, report_type):
    assert dag.doc_md and dag.doc_md.strip()
    assert dag.dag_id in dag.doc_md  # the re-run command names this DAG
    assert sorted(dag.task_ids) == sorted(TASK_IDS + QUALITY_TASK_IDS[report_type] + ROLLUP_TASK_IDS[report_type])
    for task in dag.tasks:
        assert task.doc_md and task.doc_md.strip(), task.task_id
    assert len({task.doc_md for task in dag.tasks}) == len(dag.tasks)  # one text per task, not a copy


def test_retry_and_timeout_defaults_on_every_task(dag):
    for task in dag.tasks:
        assert task.owner == "cdr-reports", task.task_id
        assert task.retries == 3, task.task_id
        assert task.retries >= 2, task.task_id
        assert task.retry_delay == timedelta(seconds=60), task.task_id
        assert type(task.retry_exponential_backoff) is float and task.retry_exponential_backoff == 2.0, task.task_id
        assert task.max_retry_delay == timedelta(seconds=600), task.task_id
        assert task.execution_timeout == timedelta(minutes=60), task.task_id


def test_report_date_param(dag):
    from airflow.sdk.definitions.param import ParamValidationError

    param = dag.params.get_param("report_date")
    assert param.schema["format"] == "date"
    assert set(param.schema["type"]) == {"null", "string"}
    assert param.value is None  # empty by default: the run's own period
    assert param.resolve("2026-11-27") == "2026-11-27"
    for bad in ("27.11.2026", "2026-13-01"):
        with pytest.raises(ParamValidationError):
            param.resolve(bad)


def test_task_graph_is_plan_extract_aggregate_load(dag, report_type):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert [t.task_id for t in dag.topological_sort()][: len(TASK_IDS)] == TASK_IDS
    plan, extract, aggregate, load = (dag.task_dict[t] for t in TASK_IDS)
    assert isinstance(extract, MappedOperator) and not isinstance(plan, MappedOperator)
    # extract is mapped over plan's output: one task instance per time slice
    assert extract.op_kwargs_expand_input.value["window"].operator is plan
    assert plan.upstream_task_ids == set()
    assert extract.upstream_task_ids == {"plan"}
    assert aggregate.upstream_task_ids == {"plan", "extract"}
    assert load.upstream_task_ids == {"aggregate"}
    finder = ROLLUP_TASK_IDS[report_type][:1]  # rebuild_rollups, then trigger_rebuilds mapped over its list
    assert load.downstream_task_ids == set(QUALITY_TASK_IDS[report_type] + finder)
    for task_id in QUALITY_TASK_IDS[report_type]:
        assert dag.task_dict[task_id].upstream_task_ids == {"load"}
        assert dag.task_dict[task_id].downstream_task_ids == set(finder)
    if finder:
        rebuild, trigger = dag.task_dict["rebuild_rollups"], dag.task_dict["trigger_rebuilds"]
        assert rebuild.upstream_task_ids == {"load", *QUALITY_TASK_IDS[report_type]}
        assert rebuild.downstream_task_ids == {"trigger_rebuilds"}
        assert trigger.upstream_task_ids == {"rebuild_rollups"} and trigger.downstream_task_ids == set()
        assert type(trigger).__name__ == "MappedOperator" and trigger.operator_name == "TriggerDagRunOperator"


# --------------------------------------------------------------------------- settings reach the DAG


def test_environment_overrides_reach_the_parsed_dags(monkeypatch):
    bag = _parse_dags_folder(
        monkeypatch,
        {
            "CDR_RETRIES": "5",
            "CDR_RETRY_DELAY_SECONDS": "30",
            "CDR_MAX_RETRY_DELAY_SECONDS": "900",
            "CDR_CATCHUP": "true",
        },
    )
    assert bag.import_errors == {}
    for dag in (bag.dags[dag_id] for dag_id in DAG_IDS.values()):
        assert dag.catchup is True
        for task in dag.tasks:
            assert (task.retries, task.retry_delay, task.max_retry_delay) == (
                5,
                timedelta(seconds=30),
                timedelta(seconds=900),
            ), (dag.dag_id, task.task_id)


def test_a_bad_setting_is_an_import_error_naming_the_variable(monkeypatch):
    bag = _parse_dags_folder(monkeypatch, {"CDR_RETRIES": "three"})
    assert not set(DAG_IDS.values()) & set(bag.dag_ids)
    error = bag.import_errors[str(DAG_FILE)]
    assert "CDR_RETRIES='three' is not a whole number" in error


def test_every_setting_of_the_run_policy_is_applied():
    settings = load_settings(
        {
            "CDR_RETRIES": "5",
            "CDR_RETRY_DELAY_SECONDS": "30",
            "CDR_MAX_RETRY_DELAY_SECONDS": "900",
            "CDR_EXECUTION_TIMEOUT_MINUTES": "15",
            "CDR_DAGRUN_TIMEOUT_HOURS": "2",
            "CDR_CATCHUP": "yes",
            "CDR_OWNER": "noc-team",
            "CDR_TIMEZONE": "Asia/Tokyo",
            "CDR_WEEK_START": "SUNDAY",
            "CDR_WEEKLY_DUE_HOUR": "7",
        }
    )
    dag = build_report_dag("weekly", settings)
    tt = dag.timetable
    assert (tt.report_type, tt.timezone, tt.due_after, tt.week_start) == ("weekly", "Asia/Tokyo", timedelta(hours=7), 6)
    assert dag.catchup is True
    assert dag.dagrun_timeout == timedelta(hours=2)
    assert dag.owner == "noc-team"
    for task in dag.tasks:
        assert task.retries == 5
        assert task.retry_delay == timedelta(seconds=30)
        assert task.retry_exponential_backoff == 2.0
        assert task.max_retry_delay == timedelta(seconds=900)
        assert task.execution_timeout == timedelta(minutes=15)
    assert "Asia/Tokyo" in dag.doc_md


# --------------------------------------------------------------------------- retry delays Airflow computes


def _retry_delays(dag, task_id: str) -> list[float]:
    """Seconds Airflow waits before each retry of `task_id`, by the scheduler's own code."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.serialization.serialized_objects import DagSerialization

    scheduler_dag = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    task = scheduler_dag.get_task(task_id)
    ti = TaskInstance(task=task, dag_version_id=None, run_id="scheduled__2026-11-27T21:00:00+00:00")
    ti.dag_run = DagRun(
        dag_id=dag.dag_id,
        run_id=ti.run_id,
        logical_date=datetime(2026, 11, 27, 21, tzinfo=UTC),
        run_type="scheduled",
    )
    failed_at = datetime(2026, 11, 28, 0, 5, tzinfo=UTC)
    ti.end_date = failed_at
    delays = []
    for try_number in range(1, task.retries + 1):
        ti.try_number = try_number  # the try that just failed
        delays.append((ti.next_retry_datetime() - failed_at).total_seconds())
    return delays


def test_default_retry_delays_are_exponential_with_jitter_and_capped(plugins_from_repo, report_type):
    dag = build_report_dag(report_type, load_settings({}))
    # Airflow: min_backoff = ceil(60 * 2.0 ** (try - 1)); delay = min_backoff + hash % min_backoff,
    # i.e. in [min_backoff, 2 * min_backoff), then capped by max_retry_delay (600 s).
    bounds = [(60, 120), (120, 240), (240, 480)]
    for task_id in TASK_IDS:
        delays = _retry_delays(dag, task_id)
        print(f"{dag.dag_id}.{task_id} retry delays (s): {delays}")
        assert len(delays) == 3
        for delay, (low, high) in zip(delays, bounds, strict=False):
            assert low <= delay < high, (task_id, delays)
        assert delays == sorted(delays) and max(delays) <= 600
        assert delays == _retry_delays(dag, task_id)  # deterministic per task instance


def test_max_retry_delay_caps_the_backoff(plugins_from_repo):
    capped = build_report_dag("daily", load_settings({"CDR_MAX_RETRY_DELAY_SECONDS": "100"}))
    delays = _retry_delays(capped, "extract")
    assert 60 <= delays[0] <= 100
    assert delays[1:] == [100.0, 100.0]  # [120, 240) and [240, 480) both cut to the cap
    # The settings the end-to-end tests use: 1 s, then 2 s (2 * 1 s capped at 2 s).
    fast = build_report_dag(
        "daily", load_settings({"CDR_RETRY_DELAY_SECONDS": "1", "CDR_MAX_RETRY_DELAY_SECONDS": "2"})
    )
    assert _retry_delays(fast, "extract") == [1.0, 2.0, 2.0]


# --------------------------------------------------------------------------- serialization


def test_dag_survives_serialization_round_trip(plugins_from_repo, dag, report_type):
    from airflow.serialization.serialized_objects import DagSerialization

    # through JSON text, as the Dag processor stores it and the scheduler reads it back
    stored = json.dumps(DagSerialization.to_dict(dag))
    scheduler_dag = DagSerialization.from_dict(json.loads(stored))
    tt = scheduler_dag.timetable
    assert isinstance(tt, CalendarPeriodTimetable)
    assert tt == dag.timetable
    assert (tt.report_type, tt.timezone, tt.due_after, tt.week_start) == (report_type, IST, DUE_AFTER[report_type], 0)
    assert tt.summary == SUMMARY[report_type]
    assert scheduler_dag.catchup is False and scheduler_dag.max_active_runs == 1
    assert scheduler_dag.dagrun_timeout == timedelta(hours=6)
    assert sorted(scheduler_dag.task_ids) == sorted(
        TASK_IDS + QUALITY_TASK_IDS[report_type] + ROLLUP_TASK_IDS[report_type]
    )
    assert scheduler_dag.params.get_param("report_date").schema["format"] == "date"
    for task_id in TASK_IDS:
        task = scheduler_dag.get_task(task_id)
        assert task.retries == 3 and task.retry_exponential_backoff == 2.0, task_id
        assert task.max_retry_delay == timedelta(seconds=600), task_id
        assert task.execution_timeout == timedelta(minutes=60), task_id
        assert task.doc_md == dag.task_dict[task_id].doc_md, task_id
    assert scheduler_dag.get_task("extract").is_mapped
    assert scheduler_dag.get_task("aggregate").upstream_task_ids == {"plan", "extract"}
    # the scheduler can plan the next run from the deserialized timetable
    # (unrestricted, so independent of start_date and today: the latest period already due)
    info = scheduler_dag.next_dagrun_info(last_automated_run_info=None, restricted=False)
    period = period_containing_instant(report_type, info.data_interval.start, IST)
    assert (info.data_interval.start, info.data_interval.end) == (period.start_utc, period.end_utc)
    assert info.run_after == tt.due_at(period)
    assert info.run_after <= datetime.now(UTC) < tt.due_at(period.next())
