"""The api-server's HTTP policy: one ASGI root middleware, registered by the plugin.

Airflow 3.3 puts a plugin's ``fastapi_root_middlewares`` around the whole api-server app: the
React UI and its static files, ``/api/v2``, ``/ui``, the FAB pages and APIs under ``/auth``, the
task execution API under ``/execution`` and plugin apps. ``HttpPolicyMiddleware`` adds there
what Airflow and FAB do not do themselves (docs/security.md lists it, tests/security checks it):

* **Response headers** on every response that does not set its own: a Content-Security-Policy
  (the React UI runs only its own scripts; the FAB sign-in pages also need their inline scripts),
  ``X-Frame-Options: SAMEORIGIN`` with CSP ``frame-ancestors 'self'`` (no framing by other sites,
  while the UI can still frame its own plugin views), ``X-Content-Type-Options: nosniff`` and
  ``Referrer-Policy: same-origin``.
* **Closed for anonymous visitors**: ``/api/v2/version``, every OpenAPI document and the execution
  API's changelog answer 401 without a valid token (the UI sends its cookie, so it keeps
  working); the Swagger/ReDoc pages (JavaScript from a CDN, no integrity hashes) answer 404 for
  everyone.
* **Brute-force brake** on the endpoints that take a password in a JSON body (``POST
  /auth/token``, ``/auth/token/cli`` and FAB's ``/auth/api/v1/security/login``): after
  ``token_failures`` failed attempts (401) within ``window_seconds`` from one client address, the
  address gets 429 until the window slides (an attempt counts from its arrival, so parallel
  attempts get no more tries). FAB's own limiter only covers the sign-in form. The
  count lives in each api-server worker process (``[api] workers``), so N workers allow up to N
  times the budget: the limit of record belongs at the reverse proxy (docs/security.md).
* **Backfill and trigger bounds, answered early** for the DAGs on ``CalendarPeriodTimetable``:
  ``POST /api/v2/backfills`` (and its dry run) is refused with 422 when the backfill would start
  before ``CDR_EARLIEST_REPORT_DATE`` or create more than the timetable's run cap, and ``POST
  /api/v2/dags/<id>/dagRuns`` when its ``conf.report_date`` names such a period. The body is read
  with Airflow's own request models (every date form Airflow accepts: ISO text with or without an
  offset, date-only, unix seconds as number or text) and the rule is the timetable's
  (``timetable.py``), which also enforces it at depth for every client, the CLI included. FAB
  authorizes a backfill as "create DAG runs", the same permission as a manual trigger, so a role
  that may trigger may also backfill.

Only the standard library and Starlette-free ASGI at import time: the plugin that imports this
module is loaded by every Airflow process, and only the api-server builds the middleware.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The React UI: its own module scripts only. Chakra/emotion inject <style> elements and the page
# sets style attributes, hence 'unsafe-inline' for styles (not for scripts). Plugin views are
# framed from the same origin (frame-src), and nothing may frame the UI but itself.
UI_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)
# The FAB pages under /auth (sign-in form, user management): their templates carry inline scripts.
FAB_CONTENT_SECURITY_POLICY = UI_CONTENT_SECURITY_POLICY.replace(
    "script-src 'self'", "script-src 'self' 'unsafe-inline'"
)
SECURITY_HEADERS: dict[str, str] = {
    "x-frame-options": "SAMEORIGIN",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}

# Password-taking JSON endpoints (FAB's sign-in form has its own limiter: AUTH_RATE_LIMIT).
TOKEN_PATHS = frozenset({"/auth/token", "/auth/token/cli", "/auth/api/v1/security/login"})
DEFAULT_TOKEN_FAILURES = 10
DEFAULT_WINDOW_SECONDS = 60.0
# Client addresses remembered at once (oldest forgotten first), so that a flood of addresses
# cannot grow the table without bound.
MAX_TRACKED_CLIENTS = 10_000

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

BACKFILL_PATHS = frozenset({"/api/v2/backfills", "/api/v2/backfills/dry_run"})
TRIGGER_PATH = re.compile(r"^/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns$")


class FailureWindow:
    """Failed attempts per client address within a sliding window (one api-server process)."""

    def __init__(self, limit: int, window_seconds: float, max_clients: int = MAX_TRACKED_CLIENTS) -> None:
        self.limit = limit
        self.window = window_seconds
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures

    def retry_after(self, client: str, now: float) -> float | None:
        """Seconds until `client` may try again, or None when it is not blocked."""
        failures = self._recent(client, now)
        if failures is None or len(failures) < self.limit:
            return None
        return max(failures[-self.limit] + self.window - now, 0.0)

    def forget(self, client: str, stamp: float) -> None:
        """Withdraw one recorded attempt (it turned out not to be a failure)."""
        failures = self._failures.get(client)
        if failures is not None and stamp in failures:
            failures.remove(stamp)
            if not failures:
                del self._failures[client]

    def record_failure(self, client: str, now: float) -> None:
        failures = self._recent(client, now)
        if failures is None:
            if len(self._failures) >= self.max_clients:
                del self._failures[next(iter(self._failures))]  # dicts keep insertion order
            failures = self._failures[client] = deque()
        failures.append(now)
        if len(failures) > self.limit:
            failures.popleft()


class HttpPolicyMiddleware:
    """Security headers, closed endpoints, token brute-force brake and backfill bounds (see module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token_failures: int = DEFAULT_TOKEN_FAILURES,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
    ) -> None:
        self.app = app
        self.failures = FailureWindow(token_failures, window_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _app_path(scope)
        send = _with_security_headers(send, path)
        method = scope.get("method", "GET")
        if path in CLOSED_PATHS:
            await _json(send, 404, {"detail": "Not Found"})
            return
        if path in AUTHENTICATED_ONLY_PATHS and not await _authenticated(scope):
            await _json(send, 401, {"detail": "Not authenticated"}, {"www-authenticate": "Bearer"})
            return
        if method == "POST" and path in TOKEN_PATHS:
            await self._token_request(scope, receive, send)
            return
        trigger = TRIGGER_PATH.match(path) if method == "POST" else None
        if method == "POST" and (path in BACKFILL_PATHS or trigger):
            from anyio import to_thread

            body, receive = await _read_body(receive)
            # The DAG's stored timetable is a database read: off the event loop.
            if trigger:
                refusal = await to_thread.run_sync(trigger_refusal, trigger["dag_id"], body)
            else:
                refusal = await to_thread.run_sync(backfill_refusal, body)
            if refusal is not None:
                log.warning("refused a %s request: %s", "trigger" if trigger else "backfill", refusal)
                await _json(send, 422, {"detail": refusal})
                return
        await self.app(scope, receive, send)

    async def _token_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.failures.retry_after(client, time.monotonic())
        if wait is not None:
            seconds = max(int(wait + 0.999), 1)
            await _json(
                send,
                429,
                {"detail": f"Too many failed sign-in attempts; retry in {seconds} s"},
                {"retry-after": str(seconds)},
            )
            return
        # Counted as a failure from the start and forgiven unless the answer is 401: attempts sent
        # in parallel, or right after the previous answer, already find every earlier one counted.
        stamp = time.monotonic()
        self.failures.record_failure(client, stamp)

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] != 401:
                self.failures.forget(client, stamp)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except BaseException:
            self.failures.forget(client, stamp)  # a server error is no wrong password
            raise


def _app_path(scope: Scope) -> str:
    """The request path without the deployment's root path (``[api] base_url`` with a subpath)."""
    path = scope.get("path") or "/"
    root = (scope.get("root_path") or "").rstrip("/")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return path.rstrip("/") or "/"


def _with_security_headers(send: Send, path: str) -> Send:
    policy = FAB_CONTENT_SECURITY_POLICY if path == "/auth" or path.startswith("/auth/") else UI_CONTENT_SECURITY_POLICY

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or [])
            present = {name.lower() for name, _ in headers}
            wanted = {**SECURITY_HEADERS, "content-security-policy": policy}
            for name, value in wanted.items():
                if name.encode() not in present:  # a view's own (stricter) header wins
                    headers.append((name.encode(), value.encode()))
            message["headers"] = headers
        await send(message)

    return send_with_headers


async def _json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a `receive` that replays it to the app."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return b"".join(chunks), replay


async def _authenticated(scope: Scope) -> bool:
    """Whether the request carries a token Airflow accepts (Bearer header, else the UI's cookie)."""
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


def stored_timetable(dag_id: str) -> Any:
    """The timetable of the latest serialized version of ``dag_id`` (None: no such DAG)."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        serdag = session.scalar(SerializedDagModel.latest_item_select_object(dag_id))
        return serdag.dag.timetable if serdag is not None else None


def backfill_refusal(
    body: bytes, now: datetime | None = None, timetable_of: Callable[[str], Any] = stored_timetable
) -> str | None:
    """Why a backfill request must be refused, or None (Airflow decides the rest).

    The body is validated by Airflow's own ``BackfillPostBody`` and its dates coerced as the route
    does (``timezone.coerce_datetime``: naive means ``[core] default_timezone``), so the dates
    checked are exactly the dates Airflow would use. Only DAGs on ``CalendarPeriodTimetable``.
    """
    from airflow._shared.timezones import timezone  # what the backfill routes use
    from airflow.api_fastapi.core_api.datamodels.backfills import BackfillPostBody
    from pydantic import ValidationError

    from cdr_reports.integration.timetable import CalendarPeriodTimetable

    try:
        request = BackfillPostBody.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        return None  # Airflow answers malformed bodies itself (422)
    timetable = timetable_of(request.dag_id)
    if not isinstance(timetable, CalendarPeriodTimetable):
        return None
    start = timezone.coerce_datetime(request.from_date)
    end = timezone.coerce_datetime(request.to_date)
    return timetable.backfill_refusal(request.dag_id, start, end, now or datetime.now(UTC))


def trigger_refusal(
    dag_id: str, body: bytes, now: datetime | None = None, timetable_of: Callable[[str], Any] = stored_timetable
) -> str | None:
    """Why a manual run's ``conf.report_date`` must be refused, or None.

    ``logical_date`` and explicit data intervals are refused by the timetable itself (400); the
    ``report_date`` param is plain text to Airflow (JSON schema ``format: date``), so its period
    is checked here, before a run is created (the ``plan`` task would refuse it at run time).
    """
    from cdr_reports.integration.timetable import CalendarPeriodTimetable, report_date_refusal

    try:
        request = json.loads(body)
    except ValueError:
        return None
    conf = request.get("conf") if isinstance(request, dict) else None
    report_date = conf.get("report_date") if isinstance(conf, dict) else None
    if not isinstance(report_date, str):
        return None
    timetable = timetable_of(dag_id)
    if not isinstance(timetable, CalendarPeriodTimetable):
        return None
    return report_date_refusal(timetable, report_date, now or datetime.now(UTC))
