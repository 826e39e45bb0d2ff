"""The daily report on CeleryExecutor: slices spread over two workers, and a worker killed mid-slice.

Both tests trigger `cdr_daily_report` with CDR_EXTRACT_SLICES=4 through the scheduler (`airflow
dags trigger`, conf report_date), wait for the run, compare the stored report with the
independent reference (tests/support/reference.py) and read the task instances (state, try
number, the hostname of the worker that ran each try) from the metadata DB. The stack is
tests/celery/conftest.py; its Celery keys are config/celery.env, shared with docker-compose.yaml.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

import pytest

from tests.celery.conftest import KILL_DAY, SPREAD_DAY
from tests.celery.stack import SLICES, TZ, WORKERS, CeleryStack, describe_processes, worker_of
from tests.support.reference import expected_report

pytestmark = [pytest.mark.e2e, pytest.mark.services, pytest.mark.celery]

RUN_TIMEOUT = 300  # a liveness bound for the waits, not a performance assertion


def assert_stored_report(
    stack: CeleryStack, engine, docs: list[dict], report_date: date, run_id: str
) -> dict[str, Any]:
    """The stored report equals the reference, and the period has exactly one run row and one row per operator."""
    import sqlalchemy as sa

    from cdr_reports.pipeline.load import read_report
    from cdr_reports.pipeline.periods import period_containing
    from cdr_reports.pipeline.schema import report_tables

    period = period_containing("daily", report_date, TZ)
    expected = expected_report(docs, period.start_utc, period.end_utc)
    assert expected["valid"] > 1000 and expected["rejected"] > 100 and len(expected["rows"]) >= 5  # a real dataset

    stored = read_report(engine, "daily", period.start_date, schema=stack.sink_schema)
    assert stored is not None, f"no daily report stored for {period.start_date}"
    run = stored["run"]
    assert (run["period_start"], run["period_end"], run["time_zone"], run["dag_run_id"]) == (
        period.start_date, period.end_date, TZ, run_id,
    )  # fmt: skip
    assert (run["source_records"], run["valid_records"], run["rejected_records"]) == (
        expected["source"], expected["valid"], expected["rejected"],
    )  # fmt: skip
    rows = {row["operator_id"]: row for row in stored["rows"]}
    assert run["operators"] == len(stored["rows"]) == len(rows) == len(expected["rows"])
    assert set(rows) == set(expected["rows"])
    for key, want in expected["rows"].items():
        got = rows[key]
        assert (got["total_calls"], got["answered_calls"], got["total_duration_seconds"]) == (
            want["total_calls"], want["answered_calls"], want["total_duration_seconds"],
        ), key  # fmt: skip
        assert got["answer_ratio"] == pytest.approx(want["answer_ratio"]), key
        assert got["avg_answered_duration_seconds"] == pytest.approx(want["avg_answered_duration_seconds"]), key
        assert got["dag_run_id"] == run_id, key

    # Physical rows of the period: a slice counted twice or a second load would show here.
    tables = report_tables(stack.sink_schema)
    with engine.connect() as conn:
        run_rows = conn.execute(
            sa.select(sa.func.count()).select_from(tables.run).where(tables.run.c.period_start == period.start_date)
        ).scalar_one()
        operator_rows = conn.execute(
            sa.select(sa.func.count())
            .select_from(tables.operator)
            .where(tables.operator.c.period_start == period.start_date)
        ).scalar_one()
    assert (run_rows, operator_rows) == (1, len(expected["rows"]))
    return expected


def test_slices_run_on_both_workers_and_the_report_equals_the_reference(
    celery_stack: CeleryStack, sink_engine, seeded_docs
):
    stack = celery_stack
    stack.ensure_workers()
    started = time.monotonic()

    run_id = stack.trigger(SPREAD_DAY)
    state = stack.wait_run(run_id, RUN_TIMEOUT)

    elapsed = time.monotonic() - started
    tis = stack.task_instances(run_id)
    assert state == "success", f"{tis}\n{stack.log_tails()}"
    extract = [ti for ti in tis if ti["task_id"] == "extract"]
    assert [ti["map_index"] for ti in extract] == list(range(SLICES))
    assert {(ti["task_id"], ti["state"], ti["try_number"]) for ti in tis} == {
        (task, "success", 1)
        for task in ("plan", "extract", "aggregate", "load", "check_volume", "check_late_data", "rebuild_rollups")
    } | {("trigger_rebuilds", "skipped", 0)}  # no stored week or month to rebuild: mapped over nothing
    by_worker = {
        name: sorted(ti["map_index"] for ti in extract if worker_of(ti["hostname"]) == name) for name in WORKERS
    }
    print(
        f"\nslices per worker: {by_worker}; query seconds per slice: {stack.slice_seconds(run_id)}; "
        f"run took {elapsed:.1f} s from trigger"
    )
    # Every slice ran on one of the two workers, and both workers ran slices.
    assert sorted(by_worker["w1"] + by_worker["w2"]) == list(range(SLICES)), [ti["hostname"] for ti in extract]
    assert by_worker["w1"] and by_worker["w2"], by_worker
    assert_stored_report(stack, sink_engine, seeded_docs, SPREAD_DAY, run_id)


def kill_a_worker_mid_slice(stack: CeleryStack, run_id: str) -> dict[str, Any]:
    """SIGKILL the worker of an extract slice that is mid-query; what it ran, when, and who survives."""

    def slice_mid_query() -> dict[str, Any] | None:
        """A running extract whose log shows its queries started and not finished; none still queued."""
        extract = stack.task_instances(run_id, "extract")
        if len(extract) != SLICES or any(ti["state"] in ("queued", "scheduled", None) for ti in extract):
            return None  # a slice not yet started could sit on the victim, unseen until task_queued_timeout
        for ti in extract:
            if ti["state"] == "running" and worker_of(ti["hostname"]) in WORKERS:
                log = stack.task_log(run_id, "extract", ti["map_index"], 1)
                if ": start" in log and ": done in" not in log:
                    return ti
        return None

    for _attempt in range(5):
        target = stack.wait_until("an extract slice running its queries", slice_mid_query, RUN_TIMEOUT, interval=0.3)
        victim = worker_of(target["hostname"])
        assert victim is not None, f"a running slice names no test worker: {target['hostname']!r}"
        # Freeze the victim before reading what it runs: a slice that finished between the choice
        # and the kill would otherwise count as lost. The pause lets requests already sent land.
        stack.freeze_worker(victim)
        time.sleep(1)
        running_before = stack.task_instances(run_id, "extract")
        still_running = any(
            ti["map_index"] == target["map_index"] and ti["state"] == "running" for ti in running_before
        )
        if still_running and ": done in" not in stack.task_log(run_id, "extract", target["map_index"], 1):
            break
        stack.freeze_worker(victim, frozen=False)  # it finished meanwhile: let it go on, choose again
    else:
        raise AssertionError("no extract slice stayed mid-query long enough to be killed")
    survivor = next(name for name in WORKERS if name != victim)
    stack.kill_worker(victim)
    killed_at = datetime.now(UTC)
    killed_mono = time.monotonic()
    lost = sorted(
        ti["map_index"] for ti in running_before if ti["state"] == "running" and worker_of(ti["hostname"]) == victim
    )
    assert target["map_index"] in lost
    assert stack.node_processes(victim) == [], describe_processes(stack.node_processes(victim))

    return {
        "victim": victim, "survivor": survivor, "target": target, "lost": lost,
        "killed_at": killed_at, "killed_mono": killed_mono,
    }  # fmt: skip


def test_worker_killed_mid_slice_the_slice_is_retried_on_the_other_worker(
    celery_stack: CeleryStack, sink_engine, seeded_docs
):
    stack = celery_stack
    stack.ensure_workers()
    run_id = stack.trigger(KILL_DAY)
    killed = kill_a_worker_mid_slice(stack, run_id)
    victim, survivor, target, lost = killed["victim"], killed["survivor"], killed["target"], killed["lost"]
    killed_at, killed_mono = killed["killed_at"], killed["killed_mono"]

    # Observe when the scheduler gives up on the lost try (heartbeat timeout) and the retry starts.
    seen: dict[str, float] = {}

    def observed() -> bool:
        ti = next(t for t in stack.task_instances(run_id, "extract") if t["map_index"] == target["map_index"])
        if ti["try_number"] >= 2 or ti["state"] in ("up_for_retry", "failed"):
            seen.setdefault("lost try failed", time.monotonic() - killed_mono)
        if ti["try_number"] >= 2 and ti["state"] in ("running", "success"):
            seen.setdefault("retry running", time.monotonic() - killed_mono)
        return stack.run_state(run_id) in ("success", "failed")

    stack.wait_until(f"run {run_id} to finish after the kill", observed, RUN_TIMEOUT, interval=0.5)
    assert stack.run_state(run_id) == "success", stack.log_tails()

    extract = {ti["map_index"]: ti for ti in stack.task_instances(run_id, "extract")}
    history = stack.history(run_id, "extract")
    for index in range(SLICES):
        ti = extract[index]
        assert ti["state"] == "success", ti
        if index in lost:
            # The lost try is in the history, on the killed worker; the retry ran on the survivor.
            assert ti["try_number"] == 2, ti
            assert worker_of(ti["hostname"]) == survivor, ti
            earlier = [h for h in history if h["map_index"] == index]
            assert [(h["try_number"], worker_of(h["hostname"])) for h in earlier] == [(1, victim)], earlier
            assert earlier[0]["state"] in ("failed", "up_for_retry"), earlier
        else:
            assert ti["try_number"] == 1 and not [h for h in history if h["map_index"] == index], (ti, history)
    # The killed try really died inside its queries: its log has the start and never the end.
    first_log = stack.task_log(run_id, "extract", target["map_index"], 1)
    assert ": start" in first_log and ": done in" not in first_log
    assert ": done in" in stack.task_log(run_id, "extract", target["map_index"], 2)
    for task in ("plan", "aggregate", "load"):
        (ti,) = stack.task_instances(run_id, task)
        assert (ti["state"], ti["try_number"]) == ("success", 1), ti

    retried = extract[target["map_index"]]
    queued_after = (retried["queued_dttm"] - killed_at).total_seconds()
    started_after = (retried["start_date"] - killed_at).total_seconds()
    timeout = stack.env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]
    print(
        f"\nkilled {victim} running slices {lost}; heartbeat timeout {timeout} s: "
        f"lost try failed after ~{seen.get('lost try failed', float('nan')):.1f} s, "
        f"retry queued after {queued_after:.1f} s, started on {survivor} after {started_after:.1f} s"
    )
    assert started_after > 0
    assert_stored_report(stack, sink_engine, seeded_docs, KILL_DAY, run_id)


def test_worker_killed_then_metadata_db_crash_the_slice_is_retried_within_twice_the_heartbeat_timeout(
    celery_stack: CeleryStack, sink_engine, seeded_docs, metadata_cluster
):
    """The campaign's worst case: a worker dies mid-slice, 15 s later the metadata PostgreSQL crashes.

    The scheduler and the DAG processor exit with it (expected of Airflow); the stack restarts them
    as compose's `restart: always` does. The restarted scheduler must not ignore the lost slice until
    Airflow's default orphan check (300 s): config/celery.env's orphan-check settings bound it by
    twice the heartbeat timeout (docs/reliability.md, "Recovery").
    """
    stack = celery_stack
    stack.ensure_workers()
    run_id = stack.trigger(KILL_DAY)
    killed = kill_a_worker_mid_slice(stack, run_id)
    target, survivor = killed["target"], killed["survivor"]
    time.sleep(15)
    stack.restart_exited = True
    try:
        crashed = time.monotonic()
        metadata_cluster.stop("immediate")  # every backend killed, shared memory dropped: a crash
        time.sleep(3)
        metadata_cluster.start()  # crash recovery, then accepting connections again
        back = time.monotonic()
        state = stack.wait_run(run_id, RUN_TIMEOUT)
    finally:
        stack.restart_exited = False
    restarted = sorted({name for name, _code, when in stack.restarts if when >= crashed})
    print(f"\nrestarted after the crash (compose: restart: always): {stack.restarts}")
    assert state == "success", stack.log_tails()
    assert "scheduler" in restarted, restarted  # the crash ended it: the restart policy is what saved the run

    extract = {ti["map_index"]: ti for ti in stack.task_instances(run_id, "extract")}
    retried = extract[target["map_index"]]
    assert (retried["state"], retried["try_number"], worker_of(retried["hostname"])) == ("success", 2, survivor)
    earlier = [h for h in stack.history(run_id, "extract") if h["map_index"] == target["map_index"]]
    assert [(h["try_number"], worker_of(h["hostname"])) for h in earlier] == [(1, killed["victim"])], earlier
    timeout = int(stack.env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"])
    queued_after = (retried["queued_dttm"] - killed["killed_at"]).total_seconds()
    started_after = (retried["start_date"] - killed["killed_at"]).total_seconds()
    run = stack.dag_run(run_id)
    assert run is not None, f"no dag_run row for {run_id}"
    print(
        f"metadata DB down {back - crashed:.1f} s, from {crashed - killed['killed_mono']:.1f} s after the kill; "
        f"lost slice retry queued {queued_after:.1f} s and started {started_after:.1f} s after the kill "
        f"(heartbeat timeout {timeout} s); run ended {(run['end_date'] - killed['killed_at']).total_seconds():.1f} s "
        "after the kill"
    )
    # The promised bound (config/celery.env); the retry's own start-up on the survivor comes on top.
    assert queued_after <= 2 * timeout, queued_after
    assert_stored_report(stack, sink_engine, seeded_docs, KILL_DAY, run_id)
