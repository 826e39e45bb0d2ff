"""Shared fixtures: real servers only (FerretDB for MongoDB, PostgreSQL, SQLite files).

Server URIs come from the environment (CDR_TEST_MONGO_URI, CDR_TEST_PG_URI) or from the
.services/env file that `make services` writes. Under CI=true a missing server fails the
run; locally the tests skip with a loud reason.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

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


def _wire_server_uri(variable: str, what: str) -> str:
    """A MongoDB-wire server of `make services` that answers a ping (skip locally, fail in CI)."""
    uri = require_service(variable, f"MongoDB-wire server ({what})")
    import pymongo

    def ping() -> None:
        with pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000) as client:
            client.admin.command("ping")

    ping_or_fail(ping, f"{what} at {uri}")
    return uri


def _client(uri: str):
    import pymongo

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, tz_aware=True)
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
