"""Servers started by `make services`, the skip-or-fail rule, and loopback ports.

Server URIs come from the environment (CDR_TEST_MONGO_URI, CDR_TEST_PG_URI, CDR_TEST_MJS_URI) or
from the .services/env file `make services` writes. Under CI=true anything a test needs and
cannot have fails the run; locally the test skips with a loud reason.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

from cdr_reports_dev.services import service_uri as _service_uri

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES_DIR = REPO_ROOT / ".services"
SERVICES_ENV = SERVICES_DIR / "env"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Fail under CI=true (every service test must run there); skip loudly elsewhere."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(f"!!! SKIPPED: {reason}")


def require(condition: bool, reason: str) -> None:
    if not condition:
        skip_or_fail(reason)


def service_uri(name: str) -> str | None:
    return _service_uri(name, SERVICES_ENV)


def require_service(name: str, what: str) -> str:
    uri = service_uri(name)
    if not uri:
        skip_or_fail(f"{what} not configured: set {name} or run `make services`")
    return uri


def ping_or_fail(check: Callable[[], object], what: str) -> None:
    try:
        check()
    except Exception as exc:
        skip_or_fail(f"{what} is configured but unreachable: {exc!r}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for(predicate: Callable[[], object], seconds: float, what: str, interval: float = 0.05) -> None:
    """Poll `predicate` until it is truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} within {seconds} s")
