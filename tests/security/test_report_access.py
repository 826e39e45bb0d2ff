"""A per-report role from configuration, end to end: CDR_REPORT_ACCESS={"WeeklyReaders": {"weekly": "read"}}.

The stack's init step (`ensure-roles`) created the role from the setting, the DAG processor put it
into the weekly DAG's access_control, and the user `weekly` holds only that role. It reads the
weekly report everywhere (REST API, report view, CSV, chart data) and gets 403 for everything
else; Airflow's authoritative permission sync keeps the grant.
"""

from __future__ import annotations

import pytest

from tests.support.airflow_stack import AIRFLOW

from .conftest import WEEKLY_REPORT_DATE, WEEKLY_ROLE

pytestmark = pytest.mark.e2e

WEEKLY, DAILY, MONTHLY = "cdr_weekly_report", "cdr_daily_report", "cdr_monthly_report"


def _get(stack, path, **params):
    return stack.request("weekly", "GET", path, params=params)


def _assert_weekly_only(stack) -> None:
    listed = _get(stack, "/api/v2/dags")
    assert listed.status_code == 200, listed.text
    assert [d["dag_id"] for d in listed.json()["dags"]] == [WEEKLY]
    for path in (f"/api/v2/dags/{WEEKLY}", f"/api/v2/dags/{WEEKLY}/dagRuns", f"/api/v2/dags/{WEEKLY}/details"):
        assert _get(stack, path).status_code == 200, path
    for dag_id in (DAILY, MONTHLY, "other_team_dag"):
        for path in (f"/api/v2/dags/{dag_id}", f"/api/v2/dags/{dag_id}/dagRuns"):
            assert _get(stack, path).status_code == 403, path
    # The report view: the weekly report, its CSV and its chart data...
    report = _get(stack, "/cdr-reports/api/report", type="weekly", period=WEEKLY_REPORT_DATE)
    assert report.status_code == 200, report.text
    assert report.json()["run"]["dag_run_id"] == "run-security-weekly"
    csv = _get(stack, "/cdr-reports/report.csv", type="weekly", period=WEEKLY_REPORT_DATE)
    assert csv.status_code == 200 and "op-001" in csv.text, csv.text[:500]
    trend = _get(stack, "/cdr-reports/api/trend", type="weekly", periods=10)
    assert trend.status_code == 200 and any(p["total_calls"] for p in trend.json()["points"]), trend.text
    page = stack.request("weekly", "GET", "/cdr-reports/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "op-001" in page.text  # defaults to the one readable type
    # ...and 403 for the other report types, on every endpoint.
    for report_type in ("daily", "monthly"):
        for path in ("/cdr-reports/api/report", "/cdr-reports/report.csv", "/cdr-reports/api/trend", "/cdr-reports/"):
            assert _get(stack, path, type=report_type).status_code == 403, (path, report_type)


def test_the_weekly_only_role_reads_the_weekly_report_and_nothing_else(airflow_stack):
    _assert_weekly_only(airflow_stack)
    # Read only: no trigger, no backfill, no pause; no connections, variables, users.
    trigger = airflow_stack.request("weekly", "POST", f"/api/v2/dags/{WEEKLY}/dagRuns", json={"logical_date": None})
    assert trigger.status_code == 403, trigger.text
    body = {"dag_id": WEEKLY, "from_date": "2026-11-01T00:00:00Z", "to_date": "2026-11-20T00:00:00Z"}
    assert airflow_stack.request("weekly", "POST", "/api/v2/backfills/dry_run", json=body).status_code == 403
    paused = airflow_stack.request("weekly", "PATCH", f"/api/v2/dags/{WEEKLY}", json={"is_paused": True})
    assert paused.status_code == 403
    for path in ("/api/v2/connections", "/api/v2/variables", "/auth/fab/v1/users", "/api/v2/pools"):
        assert _get(airflow_stack, path).status_code == 403, path


def test_the_authoritative_sync_keeps_the_configured_grant(airflow_stack):
    """`airflow sync-perm --include-dags` applies every DAG's access_control, revoking per-DAG grants
    that are not in it (what the DAG processor does at each parse): the configured role survives."""
    airflow_stack.run_cli(AIRFLOW, "sync-perm", "--include-dags", timeout=300)
    roles = airflow_stack.request("admin", "GET", f"/auth/fab/v1/roles/{WEEKLY_ROLE}")
    assert roles.status_code == 200, roles.text
    granted = {(a["action"]["name"], a["resource"]["name"]) for a in roles.json()["actions"]}
    assert ("can_read", f"DAG:{WEEKLY}") in granted
    # No other report DAG and never the global "DAGs" resource (its menu entry aside).
    assert not {(a, r) for a, r in granted if r in (f"DAG:{DAILY}", f"DAG:{MONTHLY}", "DAGs") and a != "menu_access"}
    _assert_weekly_only(airflow_stack)
