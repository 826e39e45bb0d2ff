"""The brute-force brake on the endpoints that take a password in a JSON body.

``POST /auth/token``, ``/auth/token/cli`` and FAB's ``/auth/api/v1/security/login``: after
``token_failures`` failed attempts (401) within ``window_seconds`` from one client address, the
address gets 429 until the window slides (an attempt counts from its arrival, so parallel
attempts get no more tries). FAB's own limiter only covers the sign-in form. The count lives in
each api-server worker process (``[api] workers``), so N workers allow up to N times the budget:
the limit of record belongs at the reverse proxy (docs/security.md).
"""

from __future__ import annotations

import time
from collections import deque

from cdr_reports.integration.http_policy.asgi import ASGIApp, Message, Receive, Scope, Send, app_path, send_json

# Password-taking JSON endpoints (FAB's sign-in form has its own limiter: AUTH_RATE_LIMIT).
TOKEN_PATHS = frozenset({"/auth/token", "/auth/token/cli", "/auth/api/v1/security/login"})
DEFAULT_TOKEN_FAILURES = 10
DEFAULT_WINDOW_SECONDS = 60.0
# Client addresses remembered at once (oldest forgotten first), so that a flood of addresses
# cannot grow the table without bound.
MAX_TRACKED_CLIENTS = 10_000


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


class TokenBrake:
    """ASGI policy: 429 for a client address with too many recent failed password attempts."""

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
        if scope["type"] != "http" or scope.get("method", "GET") != "POST" or app_path(scope) not in TOKEN_PATHS:
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.failures.retry_after(client, time.monotonic())
        if wait is not None:
            seconds = max(int(wait + 0.999), 1)
            await send_json(
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
