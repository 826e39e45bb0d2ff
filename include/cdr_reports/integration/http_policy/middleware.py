"""The one root middleware the plugin registers: the four HTTP policies, composed here.

Outermost first, as each request meets them: the security headers (so that the other policies'
own answers carry them too), the closed endpoints, the token brake, the backfill and trigger
bounds, then Airflow's app. Each policy passes on what is not its business.
"""

from __future__ import annotations

from cdr_reports.integration.http_policy.asgi import ASGIApp, Receive, Scope, Send
from cdr_reports.integration.http_policy.closed_endpoints import ClosedEndpoints
from cdr_reports.integration.http_policy.headers import SecurityHeaders
from cdr_reports.integration.http_policy.run_bounds import RunBounds
from cdr_reports.integration.http_policy.token_brake import (
    DEFAULT_TOKEN_FAILURES,
    DEFAULT_WINDOW_SECONDS,
    TokenBrake,
)


class HttpPolicyMiddleware:
    """Security headers, closed endpoints, token brute-force brake and backfill bounds (http_policy/)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token_failures: int = DEFAULT_TOKEN_FAILURES,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
    ) -> None:
        self.app = app
        self.token_brake = TokenBrake(RunBounds(app), token_failures=token_failures, window_seconds=window_seconds)
        self.chain: ASGIApp = SecurityHeaders(ClosedEndpoints(self.token_brake))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.chain(scope, receive, send)
