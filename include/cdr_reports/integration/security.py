"""Dashboard roles for the report DAGs (Airflow's FAB auth manager).

Two custom roles, next to FAB's built-in Admin:

* ``ReportViewer``: read-only on the three report DAGs: the DAGs, their runs, task
  instances, task logs, code, XComs. Nothing on connections, variables, pools, config, users.
* ``ReportOperator``: ReportViewer plus trigger, clear, mark and delete runs and edit task
  instances of the three report DAGs only (and pause/unpause them).

How FAB scopes this (airflow/providers/fab/auth_manager/fab_auth_manager.py, provider 3.10):
every request on a DAG's sub-entity (runs, task instances, logs, XComs...) needs BOTH the
*global* permission on that entity type (e.g. ``can_read`` on ``Task Instances``) AND the
per-DAG permission on the resource ``DAG:<dag_id>`` (``can_read`` for GET, ``can_edit`` for any
write). So the roles get global sub-entity permissions (``ensure_roles``), and the per-DAG
``DAG:<dag_id>`` / ``DAG Run:<dag_id>`` permissions come from the DAGs' ``access_control``
(``REPORT_DAG_ACCESS_CONTROL``), which the DAG processor syncs on every parse. Neither role
ever gets the global ``DAGs`` resource: that one would open every DAG of the deployment.

This module imports nothing from Flask/FAB at top level: dag_factory imports it at parse time.

CLI (run after ``airflow db migrate`` and BEFORE the DAG processor first parses the DAGs,
because syncing ``access_control`` fails for a role that does not exist)::

    python -m cdr_reports.integration.security ensure-roles
    python -m cdr_reports.integration.security show
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from cdr_reports.pipeline.report_types import REPORT_TYPES, REPORTS

log = logging.getLogger(__name__)

# The FAB auth manager plus tokens that end with their user's credentials (auth_manager.py).
# Every process of a deployment must use the same one; compose, `make airflow` and the test stacks do.
AUTH_MANAGER = "cdr_reports.integration.auth_manager.CdrFabAuthManager"

REPORT_VIEWER = "ReportViewer"
REPORT_OPERATOR = "ReportOperator"
REPORT_ROLES = (REPORT_VIEWER, REPORT_OPERATOR)

# The report DAGs, in REPORT_TYPES order (report_types.py declares their ids).
REPORT_DAG_IDS = tuple(row.dag_id for row in REPORTS.values())

# FAB resource and action names (airflow.providers.fab.www.security.permissions), spelled out
# so that this module stays importable without the provider.
CAN_READ, CAN_EDIT, CAN_CREATE, CAN_DELETE, MENU_ACCESS = (
    "can_read",
    "can_edit",
    "can_create",
    "can_delete",
    "menu_access",
)
DAGS = "DAGs"
DAG_RUNS = "DAG Runs"
TASK_INSTANCES = "Task Instances"
DAG_PREFIX = "DAG:"
DAG_RUN_PREFIX = "DAG Run:"
DAG_SPECIFIC_PREFIXES = (DAG_PREFIX, DAG_RUN_PREFIX)

# Per-DAG permissions, set as `access_control` on each report DAG. Valid actions per resource
# (FAB RESOURCE_DETAILS_MAP): "DAGs": can_read/can_edit/can_delete; "DAG Runs": can_read/
# can_create/can_delete/menu_access (there is no per-DAG can_edit on runs).
REPORT_DAG_ACCESS_CONTROL: dict[str, dict[str, set[str]]] = {
    REPORT_VIEWER: {DAGS: {CAN_READ}, DAG_RUNS: {CAN_READ}},
    REPORT_OPERATOR: {DAGS: {CAN_READ, CAN_EDIT}, DAG_RUNS: {CAN_READ, CAN_CREATE, CAN_DELETE}},
}


# Per-report roles an admin configures (docs/security.md, "Per-report roles"):
#   CDR_REPORT_ACCESS='{"FinanceReports": {"monthly": "read"}, "NocReports": {"daily": "trigger"}}'
# Each role gets, on the DAGs of the report types it names only, what ReportViewer ("read") or
# ReportOperator ("trigger") gets on all three. The DAGs' access_control carries it, so the DAG
# processor's authoritative sync keeps these grants instead of revoking them; ensure-roles creates
# the roles (with the global permissions of the level) before the DAG processor parses the DAGs.
REPORT_ACCESS_VARIABLE = "CDR_REPORT_ACCESS"
ACCESS_LEVELS: dict[str, str] = {"read": REPORT_VIEWER, "trigger": REPORT_OPERATOR}
# Names the setting may not grant to: FAB's built-in roles and the two report roles.
RESERVED_ROLES = frozenset({"Admin", "Op", "User", "Viewer", "Public", REPORT_VIEWER, REPORT_OPERATOR})
_MAX_ROLE_NAME = 64  # ab_role.name is VARCHAR(64)


class ReportAccessError(ValueError):
    """CDR_REPORT_ACCESS is not a valid mapping; the message names the setting and the value."""


def report_access(env: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """The per-report roles of ``CDR_REPORT_ACCESS`` (``os.environ`` by default), validated.

    Returns ``{role: {report_type: "read" | "trigger"}}``; an unset or empty setting is ``{}``.
    """
    raw = (os.environ if env is None else env).get(REPORT_ACCESS_VARIABLE, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ReportAccessError(f"{REPORT_ACCESS_VARIABLE} is not JSON ({exc}): {raw!r}") from None
    if not isinstance(value, dict):
        raise ReportAccessError(f"{REPORT_ACCESS_VARIABLE} must be a JSON object of roles, got {raw!r}")
    access: dict[str, dict[str, str]] = {}
    for role, grants in value.items():
        if not role.strip() or role != role.strip() or len(role) > _MAX_ROLE_NAME or not role.isprintable():
            raise ReportAccessError(f"{REPORT_ACCESS_VARIABLE}: invalid role name {role!r} (1-64 printable characters)")
        if role in RESERVED_ROLES:
            raise ReportAccessError(
                f"{REPORT_ACCESS_VARIABLE}: role {role!r} is built in; name a role of your own "
                f"(not one of {', '.join(sorted(RESERVED_ROLES))})"
            )
        if not isinstance(grants, dict) or not grants:
            raise ReportAccessError(
                f'{REPORT_ACCESS_VARIABLE}: role {role!r} needs an object of report types, e.g. {{"weekly": "read"}}'
            )
        for report_type, level in grants.items():
            if report_type not in REPORT_TYPES:
                raise ReportAccessError(
                    f"{REPORT_ACCESS_VARIABLE}: role {role!r}: unknown report type {report_type!r} "
                    f"(one of {', '.join(REPORT_TYPES)})"
                )
            if level not in ACCESS_LEVELS:
                raise ReportAccessError(
                    f"{REPORT_ACCESS_VARIABLE}: role {role!r}: {report_type} access {level!r} is not one of "
                    f"{', '.join(ACCESS_LEVELS)}"
                )
        access[role] = dict(grants)
    return access


def report_dag_access_control(
    report_type: str | None = None, access: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, dict[str, set[str]]]:
    """The ``access_control`` of one report DAG, a fresh dict (DAG objects keep the one they get).

    ReportViewer and ReportOperator on every report DAG, plus the per-report roles of
    ``CDR_REPORT_ACCESS`` (``access``; the environment by default) that name ``report_type``.
    """
    control = {
        role: {resource: set(actions) for resource, actions in per.items()}
        for role, per in REPORT_DAG_ACCESS_CONTROL.items()
    }
    if report_type is None:
        return control
    for role, grants in (report_access() if access is None else access).items():
        if report_type in grants:
            template = REPORT_DAG_ACCESS_CONTROL[ACCESS_LEVELS[grants[report_type]]]
            control[role] = {resource: set(actions) for resource, actions in template.items()}
    return control


# Global (not DAG-specific) permissions. The sub-entity ones only take effect together with
# the per-DAG `DAG:<dag_id>` permission above, so they do not reach other teams' DAGs.
_VIEWER_GLOBAL: frozenset[tuple[str, str]] = frozenset(
    [
        (CAN_READ, resource)
        for resource in (
            DAG_RUNS,
            TASK_INSTANCES,
            "Task Logs",
            "DAG Code",
            "DAG Dependencies",
            "DAG Versions",
            "DAG Warnings",
            "XComs",
            "HITL Detail",  # the UI's DAG list endpoint requires it
            # The UI builds its navigation, the "CDR Reports" entry included, from /api/v2/plugins.
            # It lists plugin names and class paths (no secrets): the price of a visible entry.
            "Plugins",
            "Website",
            "My Profile",
            "My Password",
        )
    ]
    + [(CAN_EDIT, "My Profile"), (CAN_EDIT, "My Password")]
    + [(MENU_ACCESS, resource) for resource in ("Browse", DAGS, DAG_RUNS, TASK_INSTANCES, "Docs", "Documentation")]
)
_OPERATOR_EXTRA: frozenset[tuple[str, str]] = frozenset(
    [
        # Trigger (POST run), mark run state (PATCH run), clear (POST run/clear), delete run.
        (CAN_CREATE, DAG_RUNS),
        (CAN_EDIT, DAG_RUNS),
        (CAN_DELETE, DAG_RUNS),
        # Clear task instances and mark them success/failed.
        (CAN_EDIT, TASK_INSTANCES),
    ]
)

ROLE_GLOBAL_PERMISSIONS: dict[str, frozenset[tuple[str, str]]] = {
    REPORT_VIEWER: _VIEWER_GLOBAL,
    REPORT_OPERATOR: _VIEWER_GLOBAL | _OPERATOR_EXTRA,
}


def role_global_permissions(
    access: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, frozenset[tuple[str, str]]]:
    """ROLE_GLOBAL_PERMISSIONS plus the per-report roles (the global permissions of their highest level).

    Global sub-entity permissions only take effect together with a per-DAG ``DAG:<dag_id>`` one,
    so a role that may trigger the daily report and only read the weekly one gets
    ReportOperator's globals and still cannot trigger the weekly report (no ``can_edit`` there).
    """
    roles = dict(ROLE_GLOBAL_PERMISSIONS)
    for role, grants in (report_access() if access is None else access).items():
        top = REPORT_OPERATOR if "trigger" in grants.values() else REPORT_VIEWER
        roles[role] = ROLE_GLOBAL_PERMISSIONS[top]
    return roles


# Resources neither role may hold globally (tests/security check ROLE_GLOBAL_PERMISSIONS against it).
FORBIDDEN_RESOURCES = frozenset(
    {DAGS, "Connections", "Variables", "Configurations", "Users", "Roles", "Passwords", "Pools", "Providers"}
)


# Least privilege of the report database (docs/security.md): what the DAG's login may do, per
# table. The init step owns the DDL (`python -m cdr_reports.pipeline.migrations upgrade` as the
# admin login); the DAG's login only reads the schema version (no DDL when it is at head),
# replaces a period (DELETE + INSERT), reads reports (report view) and deletes old ones
# (retention): no UPDATE, no DDL, nothing on any other table. docker/mssql-init.sql grants exactly
# this (tests/unit/test_compose.py compares); every table of pipeline/schema.py must be listed.
REPORT_DB_GRANTS: dict[str, tuple[str, ...]] = {
    "cdr_operator_report": ("SELECT", "INSERT", "DELETE"),
    "cdr_report_run": ("SELECT", "INSERT", "DELETE"),
    # Data-quality findings and source audits: replaced (DELETE + INSERT) when a check runs again.
    "cdr_quality_check": ("SELECT", "INSERT", "DELETE"),
    "cdr_source_audit": ("SELECT", "INSERT", "DELETE"),
    # The e-mail delivery log: replaced per period when a (corrected) copy is sent.
    "cdr_report_delivery": ("SELECT", "INSERT", "DELETE"),
    "cdr_reports_schema_version": ("SELECT",),
}

# Airflow settings of the hardened deployment (docs/security.md), as environment variables. One
# table, applied by the compose stack (tests/unit/test_compose.py compares), by `make airflow` and
# by the security test stack, so the tests run the configuration that ships.
AIRFLOW_HARDENING_ENV: dict[str, str] = {
    # API/UI tokens live 1 hour (Airflow's default: 24 h), CLI tokens 1 hour (said explicitly).
    # The UI re-authenticates through the FAB session when its token expires (no refresh token).
    "AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": "3600",
    "AIRFLOW__API_AUTH__JWT_CLI_EXPIRATION_TIME": "3600",
    # The FAB session behind that silent re-authentication: ends after 8 h without a visit to a
    # FAB page and, whatever the activity, 12 h after the login (UI tokens are capped to it).
    "AIRFLOW__FAB__SESSION_LIFETIME_MINUTES": "480",
    "AIRFLOW__FAB__SESSION_MAX_LIFETIME_MINUTES": "720",
    # No Swagger UI / ReDoc pages: they load their JavaScript from a CDN without integrity hashes.
    "AIRFLOW__API__ENABLE_SWAGGER_UI": "False",
    "AIRFLOW__API__EXPOSE_CONFIG": "False",
    # The URL-encoded forms of every masked secret (connection passwords...) are masked too.
    "AIRFLOW__LOGGING__SECRET_MASK_ADAPTER": "cdr_reports.integration.security.url_encoded_forms",
}


def url_encoded_forms(secret: str) -> list[str]:
    """The forms a secret takes inside a URI, for Airflow's ``[logging] secret_mask_adapter``.

    Airflow masks the exact text of a connection password in task logs, but a connection URI
    carries it percent-encoded (``Connection.get_uri()`` quotes with ``safe=""``, SQLAlchemy's
    ``URL.render_as_string`` with ``safe=" +"``, form encoding uses ``quote_plus``), and that text
    went out unmasked. Airflow calls this for every secret it registers, in every process that
    configures the masker (task processes and their supervisors included), and masks each form
    returned as well as the secret itself.
    """
    if not isinstance(secret, str):
        return []
    forms = {
        quote(secret, safe=""),
        quote(secret),  # safe="/"
        quote(secret, safe=" +"),
        quote_plus(secret, safe=""),
        quote_plus(secret),
    }
    # Lower-case escapes decode the same and some clients produce them.
    forms |= {_lower_escapes(form) for form in forms}
    forms.discard(secret)
    return sorted(forms)


def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda match: match.group(0).lower(), text)


def is_dag_specific(resource: str) -> bool:
    return resource.startswith(DAG_SPECIFIC_PREFIXES)


def ensure_roles(
    session: Any = None,
    *,
    access: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Create or converge ReportViewer, ReportOperator and the per-report roles; idempotent.

    Each role ends with exactly its ``role_global_permissions(access)`` as global permissions
    (extra ones, e.g. added by hand in the UI, are revoked) and with the per-DAG permissions of
    ``report_dag_access_control`` on each report DAG, the same ones the DAG processor syncs from
    the DAGs, so the roles work at once, before the DAGs' next parse. ``access`` is
    ``CDR_REPORT_ACCESS`` (from the environment by default). Needs the FAB tables (``airflow db
    migrate`` with the FAB auth manager configured). Returns what changed, per role.
    """
    # Deferred: importing Airflow's core initialises its settings (config, home folder), and the demo
    # tooling imports this module (AIRFLOW_HARDENING_ENV) before it has written that config.
    from airflow.utils.session import create_session

    access = report_access() if access is None else access
    if session is None:
        with create_session() as own_session:
            return ensure_roles(own_session, access=access)

    from airflow.providers.fab.www.security_appless import ApplessAirflowSecurityManager

    sm = ApplessAirflowSecurityManager(session=session)
    changes: dict[str, dict[str, list[str]]] = {}
    for role_name, wanted in role_global_permissions(access).items():
        added: list[str] = []
        removed: list[str] = []
        role = sm.find_role(role_name)
        if role is None:
            role = sm.add_role(role_name)
            added.append("(role created)")
        current = {(p.action.name, p.resource.name): p for p in role.permissions if p.action and p.resource}
        for action, resource in sorted(wanted - current.keys()):
            sm.add_permission_to_role(role, sm.create_permission(action, resource))
            added.append(f"{action} on {resource}")
        for (action, resource), perm in sorted(current.items()):
            if not is_dag_specific(resource) and (action, resource) not in wanted:
                sm.remove_permission_from_role(role, perm)
                removed.append(f"{action} on {resource}")
        changes[role_name] = {"added": added, "removed": removed}

    for report_type, dag_id in ((row.name, row.dag_id) for row in REPORTS.values()):
        # Same call as the DAG processor's sync: grants these and revokes other non-Admin roles'
        # per-DAG permissions on the report DAGs.
        sm.sync_perm_for_dag(dag_id, report_dag_access_control(report_type, access))
    session.commit()
    return changes


def role_permissions(session: Any = None) -> dict[str, list[tuple[str, str]]]:
    """The stored permissions of the report roles, sorted; roles that do not exist are absent."""
    from airflow.utils.session import create_session  # deferred: see ensure_roles

    if session is None:
        with create_session() as own_session:
            return role_permissions(own_session)
    from airflow.providers.fab.www.security_appless import ApplessAirflowSecurityManager

    sm = ApplessAirflowSecurityManager(session=session)
    result: dict[str, list[tuple[str, str]]] = {}
    for role_name in role_global_permissions():
        role = sm.find_role(role_name)
        if role is not None:
            result[role_name] = sorted(
                (p.action.name, p.resource.name) for p in role.permissions if p.action and p.resource
            )
    return result


def ensure_user(username: str, role: str, password: str, *, email: str | None = None, reset: bool = False) -> str:
    """Create the FAB user with ``role`` and ``password``; an existing user's password is reset
    only with ``reset``. Returns what happened: "created", "password reset" or "exists".

    The same calls as ``airflow users create`` / ``reset-password``, without their flaw: those take
    the password on the command line (visible to every local user in the process list, and kept
    in any log of the command), or prompt on the terminal. The CLI below reads it from stdin.
    """
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    if not password:
        raise SystemExit("an empty password is refused")
    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        found_role = sm.find_role(role)
        if found_role is None:
            raise SystemExit(f"role {role!r} does not exist (run ensure-roles first?)")
        user = sm.find_user(username=username)
        if user is None:
            email = email or f"{username}@example.invalid"
            if not sm.add_user(username, username, "User", email, found_role, password):
                raise SystemExit(f"could not create user {username!r}")
            return "created"
        if not reset:
            return "exists"
        if not sm.reset_password(user.id, password):
            raise SystemExit(f"could not reset the password of {username!r}")
        return "password reset"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdr_reports.integration.security", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "ensure-roles",
        help="create/converge ReportViewer, ReportOperator and the roles of CDR_REPORT_ACCESS (idempotent)",
    )
    sub.add_parser("show", help="print the report roles' stored permissions as JSON")
    user = sub.add_parser(
        "ensure-user", help="create a user (password: first line of stdin, never an argument); idempotent"
    )
    user.add_argument("--username", required=True)
    user.add_argument("--role", required=True)
    user.add_argument("--email")
    user.add_argument("--reset", action="store_true", help="reset the password of an existing user")
    args = parser.parse_args(argv)
    if args.command == "ensure-user":
        password = sys.stdin.readline().rstrip("\r\n")
        outcome = ensure_user(args.username, args.role, password, email=args.email, reset=args.reset)
        print(f"user {args.username!r} ({args.role}): {outcome}")
        return 0
    # FAB logs every permission it creates at INFO; the summary below says the same.
    logging.getLogger("airflow.providers.fab").setLevel(logging.WARNING)
    if args.command == "ensure-roles":
        changes = ensure_roles()
        for role_name, change in changes.items():
            summary = ", ".join(change["added"] + [f"-{r}" for r in change["removed"]]) or "up to date"
            print(f"{role_name}: {summary}")
        return 0
    print(json.dumps(role_permissions(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
