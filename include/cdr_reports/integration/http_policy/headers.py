"""Security headers on every api-server response that does not set its own.

A Content-Security-Policy (the React UI runs only its own scripts; the FAB sign-in pages also
need their inline scripts), ``X-Frame-Options: SAMEORIGIN`` with CSP ``frame-ancestors 'self'``
(no framing by other sites, while the UI can still frame its own plugin views),
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``.
"""

from __future__ import annotations

from cdr_reports.integration.http_policy.asgi import ASGIApp, Message, Receive, Scope, Send, app_path

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


def content_security_policy(path: str) -> str:
    return FAB_CONTENT_SECURITY_POLICY if path == "/auth" or path.startswith("/auth/") else UI_CONTENT_SECURITY_POLICY


def with_security_headers(send: Send, path: str) -> Send:
    """`send`, adding the security headers a response lacks (a view's own, stricter header wins)."""
    policy = content_security_policy(path)

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


class SecurityHeaders:
    """ASGI policy: the headers above on every HTTP response, the other policies' answers included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = with_security_headers(send, app_path(scope))
        await self.app(scope, receive, send)
