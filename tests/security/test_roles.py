"""Role definitions (cdr_reports.integration.security), the DAGs' access_control and config/webserver_config.py."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import textwrap

import pytest

from cdr_reports.integration import security
from cdr_reports.integration.security import (
    REPORT_DAG_ACCESS_CONTROL,
    REPORT_DAG_IDS,
    REPORT_OPERATOR,
    REPORT_ROLES,
    REPORT_VIEWER,
    ROLE_GLOBAL_PERMISSIONS,
    ReportAccessError,
    report_access,
    report_dag_access_control,
    role_global_permissions,
)

from .conftest import REPO_ROOT, WEEKLY_ROLE


def _expected_dag_permissions(role: str) -> set[tuple[str, str]]:
    prefixes = {"DAGs": "DAG:", "DAG Runs": "DAG Run:"}
    return {
        (action, f"{prefixes[resource]}{dag_id}")
        for dag_id in REPORT_DAG_IDS
        for resource, actions in REPORT_DAG_ACCESS_CONTROL[role].items()
        for action in actions
    }


def test_report_dag_ids_match_the_factory():
    from cdr_reports.integration.dag_factory import DAG_IDS

    assert REPORT_DAG_IDS == tuple(DAG_IDS.values()) == ("cdr_daily_report", "cdr_weekly_report", "cdr_monthly_report")


def test_roles_never_hold_global_dag_or_admin_resources():
    for role, perms in ROLE_GLOBAL_PERMISSIONS.items():
        granted = {resource for action, resource in perms if action != "menu_access"}
        assert not granted & security.FORBIDDEN_RESOURCES, role
        assert not [r for r in granted if security.is_dag_specific(r)], role
    viewer, operator = ROLE_GLOBAL_PERMISSIONS[REPORT_VIEWER], ROLE_GLOBAL_PERMISSIONS[REPORT_OPERATOR]
    assert viewer < operator
    # The viewer is read-only: besides menus it may only edit its own profile and password.
    assert {(a, r) for a, r in viewer if a not in ("can_read", "menu_access")} == {
        ("can_edit", "My Profile"),
        ("can_edit", "My Password"),
    }
    assert operator - viewer == {
        ("can_create", "DAG Runs"),
        ("can_edit", "DAG Runs"),
        ("can_delete", "DAG Runs"),
        ("can_edit", "Task Instances"),
    }


def test_access_control_uses_only_actions_fab_accepts():
    from airflow.providers.fab.www.security.permissions import RESOURCE_DETAILS_MAP

    for role, per_resource in REPORT_DAG_ACCESS_CONTROL.items():
        for resource, actions in per_resource.items():
            assert resource in RESOURCE_DETAILS_MAP, (role, resource)
            assert set(actions) <= RESOURCE_DETAILS_MAP[resource]["actions"], (role, resource)


def test_each_report_dag_carries_its_own_access_control():
    from cdr_reports.integration.dag_factory import build_report_dags
    from cdr_reports.pipeline.config import load_settings

    dags = build_report_dags(load_settings({}))
    assert sorted(dags) == sorted(REPORT_DAG_IDS)
    for dag in dags.values():
        assert {
            role: per for role, per in dag.access_control.items() if role in REPORT_ROLES
        } == REPORT_DAG_ACCESS_CONTROL
    # Separate dicts: mutating one DAG's (as FAB's sync does with copies) cannot touch another's.
    first, second = (dag.access_control for dag in list(dags.values())[:2])
    assert first is not second and first[REPORT_VIEWER]["DAGs"] is not second[REPORT_VIEWER]["DAGs"]


WEEKLY_ONLY = {"WeeklyReaders": {"weekly": "read"}}


def test_report_access_grants_per_report_type():
    access = report_access(
        {
            "CDR_REPORT_ACCESS": '{"FinanceReports": {"monthly": "read"}, "NocReports": {"daily": "trigger", "weekly": "read"}}'
        }
    )
    assert access == {"FinanceReports": {"monthly": "read"}, "NocReports": {"daily": "trigger", "weekly": "read"}}
    assert report_access({}) == report_access({"CDR_REPORT_ACCESS": "  "}) == {}
    daily, weekly, monthly = (report_dag_access_control(t, access) for t in ("daily", "weekly", "monthly"))
    assert daily["NocReports"] == REPORT_DAG_ACCESS_CONTROL[REPORT_OPERATOR]
    assert weekly["NocReports"] == REPORT_DAG_ACCESS_CONTROL[REPORT_VIEWER]
    assert "FinanceReports" not in daily and "FinanceReports" not in weekly
    assert monthly["FinanceReports"] == REPORT_DAG_ACCESS_CONTROL[REPORT_VIEWER]
    for control in (daily, weekly, monthly):  # the report roles are always there
        assert {r: p for r, p in control.items() if r in REPORT_ROLES} == REPORT_DAG_ACCESS_CONTROL
    # Global permissions: those of the highest level the role holds anywhere.
    globals_ = role_global_permissions(access)
    assert globals_["FinanceReports"] == ROLE_GLOBAL_PERMISSIONS[REPORT_VIEWER]
    assert globals_["NocReports"] == ROLE_GLOBAL_PERMISSIONS[REPORT_OPERATOR]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("weekly=read", "CDR_REPORT_ACCESS is not JSON"),
        ('["WeeklyReaders"]', "must be a JSON object"),
        ('{"Admin": {"weekly": "read"}}', "'Admin' is built in"),
        ('{"ReportViewer": {"weekly": "read"}}', "built in"),
        ('{"X": {"yearly": "read"}}', "unknown report type 'yearly'"),
        ('{"X": {"weekly": "write"}}', "'write' is not one of read, trigger"),
        ('{"X": {}}', "needs an object of report types"),
        ('{"": {"weekly": "read"}}', "invalid role name"),
        ('{"' + "R" * 65 + '": {"weekly": "read"}}', "invalid role name"),
    ],
)
def test_report_access_refuses_what_it_cannot_grant(value, needle):
    with pytest.raises(ReportAccessError, match=needle):
        report_access({"CDR_REPORT_ACCESS": value})


def test_the_dags_carry_the_configured_roles(monkeypatch):
    from cdr_reports.integration.dag_factory import build_report_dags
    from cdr_reports.pipeline.config import load_settings

    monkeypatch.setenv("CDR_REPORT_ACCESS", json.dumps(WEEKLY_ONLY))
    dags = build_report_dags(load_settings({}))
    assert dags["cdr_weekly_report"].access_control["WeeklyReaders"] == {"DAGs": {"can_read"}, "DAG Runs": {"can_read"}}
    assert "WeeklyReaders" not in dags["cdr_daily_report"].access_control
    assert "WeeklyReaders" not in dags["cdr_monthly_report"].access_control


def test_security_module_imports_no_flask():
    code = "import sys, cdr_reports.integration.security; print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'flask_appbuilder')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_webserver_config_requires_login_with_the_database_backend():
    from flask_appbuilder.const import AUTH_DB

    config = runpy.run_path(str(REPO_ROOT / "config" / "webserver_config.py"))
    assert config["AUTH_TYPE"] == AUTH_DB
    assert config["AUTH_ROLE_PUBLIC"] is None
    assert config["AUTH_USER_REGISTRATION"] is False
    assert config["WTF_CSRF_ENABLED"] is True
    assert config["AUTH_RATE_LIMITED"] is True
    assert config["SESSION_COOKIE_HTTPONLY"] is True


@pytest.mark.e2e
def test_ensure_roles_is_idempotent_and_reverts_hand_made_grants(airflow_stack):
    """Against the live stack's database: grant by hand, converge, converge again."""
    script = textwrap.dedent(
        """
        import contextlib, io, json
        from airflow.providers.fab.www.security_appless import ApplessAirflowSecurityManager
        from airflow.utils.session import create_session
        from cdr_reports.integration import security

        with create_session() as session:
            sm = ApplessAirflowSecurityManager(session=session)
            # What someone might click in Security > Roles: connections for the viewer, and
            # the operator losing the task logs.
            sm.add_permission_to_role(sm.find_role("ReportViewer"), sm.create_permission("can_read", "Connections"))
            sm.remove_permission_from_role(sm.find_role("ReportOperator"), sm.get_permission("can_read", "Task Logs"))
        first = security.ensure_roles()
        second = security.ensure_roles()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            security.main(["show"])
        print(json.dumps({"first": first, "second": second, "show": json.loads(out.getvalue())}))
        """
    )
    result = airflow_stack.run_cli(sys.executable, "-c", script, timeout=180)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    unchanged = {"added": [], "removed": []}
    assert report["first"] == {
        REPORT_VIEWER: {"added": [], "removed": ["can_read on Connections"]},
        REPORT_OPERATOR: {"added": ["can_read on Task Logs"], "removed": []},
        WEEKLY_ROLE: unchanged,  # the stack's CDR_REPORT_ACCESS role, created by its init step
    }
    assert report["second"] == dict.fromkeys((REPORT_VIEWER, REPORT_OPERATOR, WEEKLY_ROLE), unchanged)
    for role in (REPORT_VIEWER, REPORT_OPERATOR):
        stored = {tuple(p) for p in report["show"][role]}
        assert {p for p in stored if not security.is_dag_specific(p[1])} == ROLE_GLOBAL_PERMISSIONS[role]
        # Per-DAG grants: exactly the access_control on the three report DAGs, nothing else.
        assert {p for p in stored if security.is_dag_specific(p[1])} == _expected_dag_permissions(role)
