"""Endpoints closed to anonymous visitors, and API documentation pages closed to everyone.

``/api/v2/version``, every OpenAPI document and the execution API's changelog answer 401 without
a valid token (the UI sends its cookie, so it keeps working); the Swagger/ReDoc pages (JavaScript
from a CDN, no integrity hashes) answer 404 for everyone.
"""

from __future__ import annotations

from cdr_reports.integration.http_policy.asgi import ASGIApp, Receive, Scope, Send, app_path, send_json

# Anonymous visitors get 401 here; any valid token (header or the UI's cookie) passes.
AUTHENTICATED_ONLY_PATHS = frozenset(
    {"/api/v2/version", "/openapi.json", "/auth/openapi.json", "/execution/openapi.json", "/execution/changelog"}
)
# API documentation pages (Swagger UI, ReDoc): 404 for everyone.
CLOSED_PATHS = frozenset(
    {
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/auth/docs",
        "/auth/docs/oauth2-redirect",
        "/auth/redoc",
        "/execution/docs",
        "/execution/docs/oauth2-redirect",
        "/execution/redoc",
    }
)


async def authenticated(scope: Scope) -> bool:
    """Whether the request carries a token Airflow accepts (Bearer header, else the UI's cookie)."""
    # Deferred: the api-server's modules; this module is imported by every Airflow process.
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token
    from fastapi import HTTPException
    from starlette.requests import Request

    request = Request(scope)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        token = request.cookies.get(COOKIE_NAME_JWT_TOKEN, "")
    if not token:
        return False
    try:
        await resolve_user_from_token(token)
    except HTTPException:
        return False
    return True


class ClosedEndpoints:
    """ASGI policy: 404 on the documentation pages, 401 on the authenticated-only paths without a token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = app_path(scope)
            if path in CLOSED_PATHS:
                await send_json(send, 404, {"detail": "Not Found"})
                return
            if path in AUTHENTICATED_ONLY_PATHS and not await authenticated(scope):
                await send_json(send, 401, {"detail": "Not authenticated"}, {"www-authenticate": "Bearer"})
                return
        await self.app(scope, receive, send)
