"""Who may see which report: the api-server's own authentication and DAG authorization.

* Authentication is Airflow's ``get_user`` dependency (``airflow.api_fastapi.core_api.security``):
  a ``Authorization: Bearer <JWT>`` header, else the UI's ``_token`` cookie (the same JWT the UI
  uses, refreshed by Airflow's ``JWTRefreshMiddleware``). No token: 401; an invalid one: 403;
  an expired one: 401.
* Authorization is Airflow's ``requires_access_dag("GET", DagAccessEntity.RUN, dag_id)`` on the
  DAG that writes the report type (daily -> ``cdr_daily_report``, ...): a report is what a run
  of that DAG stored, so whoever may read that DAG's runs may read its reports. With the FAB
  auth manager that is ``can_read`` on ``DAG:<dag_id>`` (or ``DAGs``) plus ``can_read`` on
  ``DAG Runs``: ReportViewer, ReportOperator and Admin. Refused: 403.

Airflow's modules are imported inside the functions: this module is imported by the plugin in
every Airflow process, and only the api-server ever calls it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cdr_reports.pipeline import report_types
from cdr_reports.pipeline.report_types import REPORT_TYPES

_bearer = HTTPBearer(auto_error=False)


async def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Any:
    """The authenticated Airflow user (401/403 otherwise), exactly as the core API resolves it."""
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, credentials)


def require_report_read(request: Request, user: Any, report_type: str) -> None:
    """Raise 403 unless `user` may read the runs of the DAG writing `report_type` reports."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=report_types.of(report_type).dag_id)(request, user)


def readable_report_types(user: Any) -> list[str]:
    """The report types `user` may read, in REPORT_TYPES order (for the view's type picker)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager = get_auth_manager()
    return [
        report_type
        for report_type in REPORT_TYPES
        if manager.is_authorized_dag(
            method="GET",
            access_entity=DagAccessEntity.RUN,
            details=DagDetails(id=report_types.of(report_type).dag_id),
            user=user,
        )
    ]


def user_name(user: Any) -> str:
    try:
        return str(user.get_name())
    except Exception:  # noqa: BLE001 - only used for display
        return ""
