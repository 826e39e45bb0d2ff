"""config/celery.env is the one Celery configuration of compose and of the native Celery tests.

docker-compose.yaml's Airflow services read it as `env_file` and never override its keys; the
test stack of tests/celery/ puts every key into its processes unchanged. The sizing rules that
docs/scale-out.md explains are checked against the values.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cdr_reports.pipeline.config import Settings
from tests.celery.stack import CELERY_ENV_FILE, WORKERS, read_env_file, stack_env

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"


@pytest.fixture(scope="module")
def shared() -> dict[str, str]:
    return read_env_file(CELERY_ENV_FILE)


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_airflow_service_reads_the_shared_file_and_overrides_none_of_its_keys(services, shared):
    airflow_services = {name for name in services if name.startswith("airflow-") or name == "flower"}
    assert {"airflow-scheduler", "airflow-worker", "airflow-apiserver", "airflow-dag-processor"} <= airflow_services
    for name in airflow_services:
        assert services[name].get("env_file") == ["./config/celery.env"], name
        overridden = set(services[name].get("environment") or {}) & set(shared)
        assert not overridden, f"{name} overrides {overridden} of config/celery.env"
    # The executor switch and the broker/result backend stay per deployment, outside the file.
    assert not {"AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND"} & set(
        shared
    )


def test_the_test_stack_runs_with_exactly_the_shared_values(shared, tmp_path):
    env = stack_env(
        tmp_path, tmp_path, 8080, 6379, "postgresql+psycopg://u:p@127.0.0.1/m", "mongo://h/db", "postgresql://x", "s"
    )
    assert {key: env[key] for key in shared} == shared
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_the_file_is_plain_key_value_lines(shared):
    # compose's env_file takes values literally: no quotes, no ${...}, no inline comments.
    for key, value in shared.items():
        assert re.fullmatch(r"AIRFLOW__[A-Z_]+__[A-Z_]+", key), key
        assert value and not re.search(r"[\"'$#\s]", value), (key, value)


def test_sizing_rules(shared, services):
    concurrency = int(shared["AIRFLOW__CELERY__WORKER_CONCURRENCY"])
    parallelism = int(shared["AIRFLOW__CORE__PARALLELISM"])
    # Parallelism = workers x slots for the two workers of the compose example and of the tests:
    # the scheduler never queues a task no worker slot can start (task_queued_timeout).
    assert parallelism == len(WORKERS) * concurrency
    assert "--scale airflow-worker=2" in COMPOSE.read_text()
    assert int(shared["AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER"]) == 1
    assert shared["AIRFLOW__CELERY__TASK_ACKS_LATE"] == "True"
    # Redis must not redeliver a message while its task can still run: longer than the
    # execution timeout plus queue time, and at least the DAG run timeout.
    defaults = Settings()
    visibility = int(shared["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"])
    queued_timeout = float(shared["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"])
    assert visibility >= defaults.dagrun_timeout_hours * 3600
    assert visibility > defaults.execution_timeout_minutes * 60 + queued_timeout
    # A task heartbeats every 5 s ([workers] min_heartbeat_interval): the timeout allows many misses
    # and is detected faster than it elapses.
    heartbeat_timeout = int(shared["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"])
    detection = float(shared["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL"])
    assert heartbeat_timeout >= 10 * 5
    assert detection < heartbeat_timeout / 4


def test_a_task_lost_with_its_worker_is_retried_within_twice_the_heartbeat_timeout_whatever_the_scheduler_does(
    shared,
):
    """The bound of docs/reliability.md ("Recovery"): a restarted scheduler adopts the dead job's tasks
    once that job's heartbeat is older than the health threshold, at its next orphan check; only then
    does its heartbeat-timeout check judge them. Worst case: the old scheduler dies just before it
    would have failed the task."""
    heartbeat_timeout = int(shared["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"])
    detection = float(shared["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL"])
    orphan_check = float(shared["AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL"])
    threshold = float(shared["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD"])
    worst = heartbeat_timeout + threshold + orphan_check + detection
    assert worst <= 2 * heartbeat_timeout, worst
    # Airflow's default orphan check (300 s) alone would exceed the bound: the setting is needed.
    assert heartbeat_timeout + threshold + 300 + detection > 2 * heartbeat_timeout


def test_compose_restarts_every_long_running_airflow_component_and_checks_its_health(tmp_path):
    """`docker compose config` (the real CLI): restart policy and health check of each component that
    a metadata-DB crash (or anything else) may end."""
    from tests.unit.test_compose import _compose_cli, _filled_env_file, _run_compose

    cli = _compose_cli()
    result = _run_compose(cli, _filled_env_file(tmp_path), "--profile", "celery", "config")
    assert result.returncode == 0, result.stderr[-3000:]
    rendered = yaml.safe_load(result.stdout)["services"]
    for name in (
        "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-apiserver", "airflow-worker",
        "postgres", "redis",
    ):  # fmt: skip
        service = rendered[name]
        assert service.get("restart") == "always", (name, service.get("restart"))
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), (name, check)
        assert check.get("interval") and check.get("retries"), (name, check)


def test_compose_renders_the_shared_values_into_the_scheduler_and_the_workers(shared, tmp_path):
    """`docker-compose config` (the real CLI) resolves the env_file: the same keys and values arrive."""
    from tests.unit.test_compose import _compose_cli, _filled_env_file, _run_compose

    cli = _compose_cli()
    result = _run_compose(cli, _filled_env_file(tmp_path), "--profile", "celery", "config")
    assert result.returncode == 0, result.stderr[-3000:]
    rendered = yaml.safe_load(result.stdout)["services"]
    for name in ("airflow-scheduler", "airflow-worker", "airflow-apiserver", "airflow-dag-processor"):
        env = {key: str(value) for key, value in rendered[name]["environment"].items()}
        assert {key: env.get(key) for key in shared} == shared, name
