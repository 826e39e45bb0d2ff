"""A FAB-authenticated Airflow stack driven through its REST API, shared by tests/security and tests/ui.

- `fab_stack_env()`: `airflow_env()` plus the FAB auth manager, the repository's FAB config and
  the deployment's hardening settings (token lifetimes, sessions, masking, Swagger off), as
  compose sets them;
- `FabStack`: the process plumbing of `AirflowProcesses` plus the REST API as the test users
  (one JWT per user), triggering report runs, waiting for runs, DAGs and health;
- `task_log_text()`, `quote()`: a task log as a user reads it, a run id in a URL path;
- `OTHER_DAG_SOURCE`: a DAG of another team, which report roles must not see.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdr_reports.integration.security import AIRFLOW_HARDENING_ENV, AUTH_MANAGER
from tests.support.airflow_stack import REPO_ROOT, AirflowProcesses, airflow_env

FAB_AUTH_MANAGER = AUTH_MANAGER  # FAB, with tokens that end with the credentials
REPORT_DAG_IDS = ("cdr_daily_report", "cdr_weekly_report", "cdr_monthly_report")
OTHER_DAG_ID = "other_team_dag"

OTHER_DAG_SOURCE = """
import pendulum
from airflow.sdk import DAG, task

with DAG("other_team_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), tags=["other-team"]):

    @task
    def hello():
        return "not a report"

    hello()
"""


def fab_stack_env(
    home: Path, dags: Path, port: int, stack_secrets: dict[str, str], metadata_url: str
) -> dict[str, str]:
    """The environment of every process of a FAB stack (LocalExecutor, parallelism 4)."""
    env = airflow_env(home, dags, port, metadata_url, stack_secrets, "LocalExecutor")
    env.update(
        {
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
            "AIRFLOW__FAB__CONFIG_FILE": str(REPO_ROOT / "config" / "webserver_config.py"),
        }
    )
    # The deployment's hardening (token lifetimes, sessions, masking, Swagger off), as compose sets it.
    env.update(AIRFLOW_HARDENING_ENV)
    return env


@dataclass(kw_only=True)
class FabStack(AirflowProcesses):
    """The process plumbing (airflow_stack.py) plus the REST API as the test users (FAB logins)."""

    base_url: str
    secrets: dict[str, str]
    passwords: dict[str, str]
    _tokens: dict[str, str] = field(default_factory=dict)

    # -- HTTP helpers ----------------------------------------------------------------------
    def client(self, **kwargs: Any):
        import httpx

        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)

    def token(self, username: str) -> str:
        if username not in self._tokens:
            with self.client() as client:
                response = client.post("/auth/token", json={"username": username, "password": self.passwords[username]})
            assert response.status_code == 201, f"token for {username}: {response.status_code} {response.text}"
            self._tokens[username] = response.json()["access_token"]
        return self._tokens[username]

    def request(self, username: str | None, method: str, path: str, **kwargs: Any):
        headers = dict(kwargs.pop("headers", {}))
        if username is not None:
            headers["Authorization"] = f"Bearer {self.token(username)}"
        with self.client() as client:
            return client.request(method, path, headers=headers, **kwargs)

    def trigger_report(self, username: str, dag_id: str, report_date: str):
        """The REST API's response to `username` triggering `dag_id` for `report_date`."""
        return self.request(
            username,
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": {"report_date": report_date}},
        )

    def create_users(self, roles: dict[str, str]) -> None:
        """Users (username -> FAB role, password from `passwords`) created through the FAB users API as Admin."""
        for username, role in roles.items():
            created = self.request(
                "admin", "POST", "/auth/fab/v1/users",
                json={"username": username, "password": self.passwords[username], "email": f"{username}@example.test",
                      "first_name": username, "last_name": "Test", "roles": [{"name": role}]},
            )  # fmt: skip
            assert created.status_code == 200, created.text

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        response = self.request("admin", "GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})
        assert response.status_code == 200, response.text
        return response.json()["dag_runs"]

    def wait_run_finished(self, dag_id: str, run_id: str, timeout: float = 150) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}"
        state = None
        while time.monotonic() < deadline:
            self.check_alive()
            response = self.request("admin", "GET", path)
            assert response.status_code == 200, response.text
            run = response.json()
            state = run["state"]
            if state in ("success", "failed"):
                return run
            time.sleep(2)
        raise AssertionError(f"{dag_id} run {run_id} still {state} after {timeout} s\n{self.log_tails()}")

    def wait_healthy(self, timeout: float) -> None:
        def healthy() -> bool:
            with self.client() as client:
                return client.get("/api/v2/monitor/health").json()["metadatabase"]["status"] == "healthy"

        self.wait_until("api-server health", healthy, timeout)

    def wait_dags(self, expected: set[str], timeout: float) -> None:
        """Until the API lists exactly the DAGs `expected`."""

        def all_dags_registered() -> bool:
            response = self.request("admin", "GET", "/api/v2/dags", params={"limit": 100})
            return response.status_code == 200 and {d["dag_id"] for d in response.json()["dags"]} == expected

        self.wait_until(f"DAGs {sorted(expected)} registered", all_dags_registered, timeout)


def quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def task_log_text(stack: FabStack, username: str, dag_id: str, run_id: str, task_id: str, try_number: int = 1):
    """(status, text) of a task log read through the REST API as `username`."""
    response = stack.request(
        username, "GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances/{task_id}/logs/{try_number}",
        headers={"Accept": "application/json"},
    )  # fmt: skip
    if response.status_code != 200:
        return response.status_code, response.text
    content = response.json()["content"]
    lines = [json.dumps(item) if not isinstance(item, str) else item for item in content]
    return 200, "\n".join(lines)
