"""Process-control fixtures of the reliability tests (helpers live in relsupport.py).

Under CI=true a missing binary fails the run (the conftest.require_service pattern).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from tests.support.processes import (
    FAST_RETRIES,
    FerretServer,
    PgCluster,
    SlackSink,
    ferretdb_binary,
    free_port,
    missing_dependency,
    pg_bindir,
)


@pytest.fixture
def ferret(tmp_path):
    """Our own FerretDB (not the shared one), started; stopped at the end whatever happened."""
    binary = ferretdb_binary()
    if binary is None:
        missing_dependency("the FerretDB binary is not built (run `bash scripts/services.sh build-ferretdb`)")
    server = FerretServer(binary=binary, data_dir=tmp_path / "ferretdb-data")
    server.data_dir.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ferret_client(ferret):
    import pymongo

    client = pymongo.MongoClient(ferret.uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def pg_cluster():
    """A private PostgreSQL cluster these tests may stop and restart (shared PG stays untouched)."""
    bindir = pg_bindir()
    if bindir is None:
        missing_dependency("PostgreSQL server binaries (pg_ctl, initdb) are not installed")
    root = Path(tempfile.mkdtemp(prefix="cdr-reliability-pg-"))
    cluster = PgCluster(bindir=bindir, root=root)
    try:
        cluster.initdb()
        cluster.start()
        cluster.psql(
            f"CREATE ROLE owner LOGIN PASSWORD '{cluster.owner_password}';\n"
            f"CREATE DATABASE {cluster.database} OWNER owner;\n"
        )
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_pg(pg_cluster):
    """The private cluster, running, and a fresh schema in it; yields (cluster, schema, engine)."""
    import sqlalchemy as sa

    if not pg_cluster.running:
        pg_cluster.start()
    schema = f"rel_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(pg_cluster.url(), connect_args={"options": f"-csearch_path={schema}"})
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield pg_cluster, schema, engine
    engine.dispose()
    if not pg_cluster.running:
        pg_cluster.start()
    pg_cluster.psql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE;', database=pg_cluster.database)


@pytest.fixture
def slack_server():
    """A local HTTP server answering the Slack Web API like Slack does (ok: true)."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    port = free_port()
    sink = SlackSink(base_url=f"http://127.0.0.1:{port}/api/")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            with sink.lock:
                sink.calls.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            answer = json.dumps({"ok": True, "channel": "C0CDR", "ts": "1764300000.000100"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sink
    server.shutdown()
    server.server_close()


@pytest.fixture
def dag_env(monkeypatch, airflow_db):
    """Set CDR_* settings and Airflow connections (AIRFLOW_CONN_*) for a dag.test() run.

    dag.test() re-parses the dags folder with os.environ to store the DAG, so settings must be
    in the environment (not only passed to build_report_dag) for both copies to agree.
    """
    for key in list(os.environ):
        if key.startswith("CDR_") and not key.startswith("CDR_TEST_"):
            monkeypatch.delenv(key)

    def apply(settings: dict[str, str] | None = None, connections: dict[str, str] | None = None) -> None:
        for key, value in {**FAST_RETRIES, **(settings or {})}.items():
            monkeypatch.setenv(key, value)
        for conn_id, uri in (connections or {}).items():
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri)

    return apply
