"""The `services` marker (tests/conftest.py) and the service-free run of `make test-unit`.

`make test-unit` deselects `services`; .ci/run runs it with CDR_TEST_NO_SERVICES=1, where every
TCP connection is refused. These tests show both halves: tests using a server fixture are marked
without a line in their module, and a test that reaches a server without the marker fails there,
even while a server really listens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_service

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("fixtures", "params", "expected"),
    [
        (["tmp_path", "monkeypatch"], {}, False),
        (["sqlite_engine"], {}, False),
        (["mongo_db", "mongo_client", "mongo_uri"], {}, True),  # a closure: the URI fixture marks it
        (["pg_engine", "pg_schema", "pg_uri"], {}, True),
        (["cdr_db"], {"cdr_db": ("ferretdb", "stream")}, True),
        (["smtp_server"], {}, True),
        (["report_stack", "mongo_uri", "pg_uri"], {}, True),
        (["sql_engine"], {"sql_engine": "sqlite"}, False),
        (["sql_engine"], {"sql_engine": "postgres"}, True),
        (["storage"], {"storage": "file"}, False),
        (["storage"], {"storage": "s3"}, True),
        (["sink"], {"sink": "sqlite"}, False),
        (["sink"], {"sink": "postgres"}, True),
        (["request"], {"server": "mjs_db"}, True),  # parametrized with the fixture to fetch
        (["request"], {"uri_fixture": "mongo_uri", "strategy": "stream"}, True),
        (["request"], {"dialect": "postgresql", "strategy": "stream"}, False),
    ],
)
def test_tests_using_a_server_fixture_are_services(fixtures, params, expected):
    assert needs_service(fixtures, params) is expected


PROBE = """
import socket

PORT = {port}


def test_unmarked_but_reaches_a_server():
    socket.create_connection(("127.0.0.1", PORT), timeout=2).close()


def test_marked_by_its_fixture(pg_uri):
    pass


def test_needs_nothing():
    assert sum(range(4)) == 6
"""


def _run_probe(tmp_path: Path, port: int, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE.format(port=port))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "CDR_TEST_NO_SERVICES")} | extra_env
    # tests/conftest.py as a plugin: the probe lives outside tests/, the repo root stays the rootdir.
    cmd = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-m", "not services", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*cmd, "--rootdir", str(REPO), str(probe)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_service_free_run_fails_an_unmarked_test_that_reaches_a_server(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        normal = _run_probe(tmp_path, port, {})
        offline = _run_probe(tmp_path, port, {"CDR_TEST_NO_SERVICES": "1"})
    # Normally the listening server answers; the fixture-marked test is deselected either way.
    assert "2 passed, 1 deselected" in normal.stdout, normal.stdout[-3000:]
    assert "1 failed, 1 passed, 1 deselected" in offline.stdout, offline.stdout[-3000:]
    assert "FAILED" in offline.stdout and "test_unmarked_but_reaches_a_server" in offline.stdout
    assert "CDR_TEST_NO_SERVICES=1: no server at ('127.0.0.1', " in offline.stdout


def test_ci_runs_the_unit_selection_without_servers_before_the_whole_suite():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest-unit:", 1)[1].split("\n\n", 1)[0]
    assert '-m "not services" tests/unit tests/dags' in recipe
    steps = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert steps.index("CDR_TEST_NO_SERVICES=1 make test-unit") < steps.index("make test")
    # `make test` deselects nothing: under CI=true every service test runs (or fails).
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert test_recipe.strip().endswith("$(PY) -m pytest")
