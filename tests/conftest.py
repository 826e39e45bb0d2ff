"""Shared fixtures: real servers only (FerretDB for MongoDB, PostgreSQL, SQLite files).

Server URIs come from the environment (CDR_TEST_MONGO_URI, CDR_TEST_PG_URI) or from the
.services/env file that `make services` writes. Under CI=true a missing server fails the
run; locally the tests skip with a loud reason.

Every test that needs a server carries the `services` marker: the ones whose fixtures start or
reach a server are marked here (`SERVICE_FIXTURES`), the others in their module. `make test-unit`
deselects them. With CDR_TEST_NO_SERVICES=1 (.ci/run's first test step) the run behaves as on a
machine with no server at all: every service URI points at a closed port, every TCP connection
of the test process is refused and CI=true turns the missing server into a failure, so a service
test left unmarked in the unit selection fails CI instead of skipping.
"""

from __future__ import annotations

import errno
import os
import socket
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from cdr_reports.pipeline.config import Settings
from tests.support.services import ping_or_fail, require_service

REPO_ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_TEST_HOME = REPO_ROOT / ".services" / "airflow_home"

# Airflow reads its configuration when first imported: point it at this repo's dags/ and
# plugins/ and a throw-away home (SQLite metadata DB) before any test imports it.
_AIRFLOW_TEST_ENV = {
    "AIRFLOW_HOME": str(AIRFLOW_TEST_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_TEST_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(AIRFLOW_TEST_HOME / "logs"),
}
for _key, _value in _AIRFLOW_TEST_ENV.items():
    os.environ.setdefault(_key, _value)
AIRFLOW_TEST_HOME.mkdir(parents=True, exist_ok=True)

# Fixtures that start or reach a server (`make services`' FerretDB, mongo-java-server, PostgreSQL
# and moto; a test's own FerretDB, PostgreSQL, SMTP, Slack, redis/Celery, Airflow or Chromium
# processes). A test using any of them, directly or through another fixture, is marked `services`.
SERVICE_FIXTURES = frozenset(
    {
        "mongo_uri",
        "mjs_uri",
        "pg_uri",
        "cdr_db",  # FerretDB or mongo-java-server, chosen per parameter
        "smtp_server",
        "ferret",
        "pg_cluster",
        "slack_server",
        "metadata_cluster",
        "celery_stack",
        "airflow_stack",
        "report_stack",
        "browser",
        "real_mongo",
        "mssql_engine",
        "restricted",  # tests/security/test_least_privilege.py: a PostgreSQL role with the report grants
    }
)
# Fixtures parametrized over a file (no server) and a server: the parameter that needs the server.
_SERVER_PARAMS = {"sql_engine": "postgres", "fresh_sink": "postgres", "sink": "postgres", "storage": "s3"}
# Tests parametrized with the name of the fixture to fetch (request.getfixturevalue(server)).
_SERVER_FIXTURE_NAMES = SERVICE_FIXTURES | {
    "mongo_client",
    "mongo_db",
    "mjs_client",
    "mjs_db",
    "pg_schema",
    "pg_engine",
}

# .ci/run's service-free run of the unit selection (see the module docstring).
NO_SERVICES = os.environ.get("CDR_TEST_NO_SERVICES") == "1"
_CLOSED = "127.0.0.1:1"  # tcpmux: nothing listens there, and the guard below refuses it anyway
_NO_SERVICE_ENV = {
    "CI": "true",
    "CDR_TEST_MONGO_URI": f"mongodb://{_CLOSED}/",
    "CDR_TEST_MJS_URI": f"mongodb://{_CLOSED}/",
    "CDR_TEST_PG_URI": f"postgresql://cdr:none@{_CLOSED}/cdr_test",
    "CDR_TEST_MSSQL_URI": f"mssql+pymssql://sa:none@{_CLOSED}/master",
    "CDR_TEST_S3_ENDPOINT": f"http://{_CLOSED}",
}


def _refuse_tcp() -> None:
    """Every TCP connection of this process is refused, as on a machine where no server runs."""
    inet = (socket.AF_INET, socket.AF_INET6)
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    # `self` is a socket.socket; typed Any because the methods replaced are _socket.socket's (C base class).
    def connect(self: Any, address: Any) -> None:
        if self.family in inet:
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"CDR_TEST_NO_SERVICES=1: no server at {address!r}")
        real_connect(self, address)

    def connect_ex(self: Any, address: Any) -> int:
        return errno.ECONNREFUSED if self.family in inet else real_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]  # the guard replaces the method on purpose
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]  # same


if NO_SERVICES:
    os.environ.update(_NO_SERVICE_ENV)
    _refuse_tcp()


def needs_service(fixturenames: Iterable[str], params: dict[str, object]) -> bool:
    """Whether a test with these fixtures (closure) and parameters needs a server."""
    names = set(fixturenames)
    return (
        bool(names & SERVICE_FIXTURES)
        or any(name in names and params.get(name) == server for name, server in _SERVER_PARAMS.items())
        or any(isinstance(value, str) and value in _SERVER_FIXTURE_NAMES for value in params.values())
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if needs_service(getattr(item, "fixturenames", ()), callspec.params if callspec else {}):
            item.add_marker(pytest.mark.services)


def _wire_server_uri(variable: str, what: str) -> str:
    """A MongoDB-wire server of `make services` that answers a ping (skip locally, fail in CI)."""
    uri = require_service(variable, f"MongoDB-wire server ({what})")
    import pymongo

    def ping() -> None:
        with pymongo.MongoClient[dict[str, Any]](uri, serverSelectionTimeoutMS=3000) as client:
            client.admin.command("ping")

    ping_or_fail(ping, f"{what} at {uri}")
    return uri


def _client(uri: str):
    import pymongo

    client = pymongo.MongoClient[dict[str, Any]](uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    yield client
    client.close()


def _fresh_database(client):
    """A fresh, uniquely named database, dropped afterwards."""
    name = f"cdrtest_{uuid.uuid4().hex[:12]}"
    yield client[name]
    client.drop_database(name)


@pytest.fixture(scope="session")
def mongo_uri() -> str:
    """FerretDB: the MongoDB-wire server whose every query decodes the whole collection."""
    return _wire_server_uri("CDR_TEST_MONGO_URI", "FerretDB")


@pytest.fixture(scope="session")
def mongo_client(mongo_uri):
    yield from _client(mongo_uri)


@pytest.fixture
def mongo_db(mongo_client):
    yield from _fresh_database(mongo_client)


@pytest.fixture(scope="session")
def mjs_uri() -> str:
    """mongo-java-server (in memory, reports MongoDB 6.0): runs the aggregation pipeline FerretDB cannot."""
    return _wire_server_uri("CDR_TEST_MJS_URI", "mongo-java-server")


@pytest.fixture(scope="session")
def mjs_client(mjs_uri):
    yield from _client(mjs_uri)


@pytest.fixture
def mjs_db(mjs_client):
    yield from _fresh_database(mjs_client)


@pytest.fixture(scope="session")
def pg_uri() -> str:
    uri = require_service("CDR_TEST_PG_URI", "PostgreSQL server")
    import sqlalchemy as sa

    def ping() -> None:
        engine = sa.create_engine(_sa_pg_url(uri))
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()

    ping_or_fail(ping, "PostgreSQL")
    return uri


def _sa_pg_url(uri: str) -> str:
    # psycopg 3 is the driver the postgres provider uses.
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def pg_schema(pg_uri):
    """A fresh schema in the test database; yields (sqlalchemy_url, schema), dropped afterwards."""
    import sqlalchemy as sa

    schema = f"cdrtest_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(_sa_pg_url(pg_uri))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield _sa_pg_url(pg_uri), schema
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def pg_engine(pg_schema):
    import sqlalchemy as sa

    url, schema = pg_schema
    engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path):
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'reports.db'}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def sql_engine(request):
    """The report sink, once per supported real SQL server."""
    return request.getfixturevalue(f"{'pg' if request.param == 'postgres' else 'sqlite'}_engine")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (SQLite) for dag.test() and the CLI."""
    import subprocess
    import sys

    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy(), timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return AIRFLOW_TEST_HOME


# Every extract strategy on every MongoDB-wire server that can run it (README: "Which strategy runs
# where"). FerretDB cannot run `pushdown` ($facet, multi-accumulator $group): see test_extract_strategies.
STRATEGY_SERVERS = [("ferretdb", "stream"), ("mongo-java-server", "stream"), ("mongo-java-server", "pushdown")]


@pytest.fixture(params=STRATEGY_SERVERS, ids=[f"{server}-{strategy}" for server, strategy in STRATEGY_SERVERS])
def cdr_db(request):
    """(a fresh database on the server, the strategy to extract with), once per supported pair."""
    from types import SimpleNamespace

    server, strategy = request.param
    db = request.getfixturevalue("mongo_db" if server == "ferretdb" else "mjs_db")
    return SimpleNamespace(
        db=db, server=server, strategy=strategy, settings=lambda **kw: Settings(extract_strategy=strategy, **kw)
    )


@pytest.fixture
def smtp_server():
    """A real SMTP server on a free loopback port (alerts, report e-mails), collecting what it receives."""
    from tests.support.processes import running_smtp_sink

    with running_smtp_sink() as sink:
        yield sink
