"""Helpers of the reliability tests: servers they may stop, kill and restart, and Airflow run helpers.

The shared FerretDB (27027) and PostgreSQL (54329) must stay up for the other suites, so fault
tests run their OWN FerretDB process (same binary) and their OWN PostgreSQL cluster
(initdb/pg_ctl, password authentication) on free loopback ports, in temporary directories.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from tests.support.services import free_port, port_open, skip_or_fail, wait_for

FERRETDB_VERSION = "v1.24.2"


def missing_dependency(reason: str) -> None:
    skip_or_fail(reason)


# --------------------------------------------------------------------------- FerretDB


def ferretdb_binary() -> Path | None:
    explicit = os.environ.get("CDR_FERRETDB_BIN")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("CDR_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cdr-reports"
    )
    path = Path(cache) / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb"
    return path if path.exists() else None


@dataclass
class FerretServer:
    """One FerretDB process on its own port and SQLite directory; stop/kill/start at will."""

    binary: Path
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def conn_uri(self, database: str) -> str:
        """An Airflow connection URI for MongoHook (scheme mongo://)."""
        return f"mongo://127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        log = open(self.data_dir.parent / "ferretdb.log", "ab")  # noqa: SIM115 - the server process keeps it
        self.process = process = subprocess.Popen(
            [str(self.binary), "-listen-addr", f"127.0.0.1:{self.port}", "-sqlite-dir", str(self.data_dir)],
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_for(lambda: port_open(self.port) or process.poll() is not None, 20, "FerretDB listening")
        assert process.poll() is None, f"FerretDB exited with {process.returncode}"

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, like a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        wait_for(lambda: not port_open(self.port), 5, "FerretDB port closed")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


# --------------------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


@dataclass
class PgCluster:
    """A private PostgreSQL cluster with password (scram) authentication over TCP."""

    bindir: Path
    root: Path
    port: int = field(default_factory=free_port)
    owner_password: str = "rel-owner-secret"
    database: str = "reports"

    @property
    def data_dir(self) -> Path:
        return self.root / "pgdata"

    def _run(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None):
        command = list(args)
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=timeout, input=input)

    def initdb(self) -> None:
        self.root.chmod(0o755)
        self.data_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        )

    def start(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=off",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    @property
    def running(self) -> bool:
        return port_open(self.port)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the local socket (trust)."""
        result = self._run(
            str(self.bindir / "psql"),
            "-h",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-qtA",
            input=sql,
        )
        return result.stdout

    def url(self, user: str = "owner", password: str | None = None, database: str | None = None) -> str:
        password = self.owner_password if password is None else password
        return f"postgresql+psycopg://{user}:{password}@127.0.0.1:{self.port}/{database or self.database}"


# --------------------------------------------------------------------------- SMTP


@dataclass
class SmtpSink:
    host: str
    port: int
    messages: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list:
        with self.lock:
            return list(self.messages)


@contextlib.contextmanager
def running_smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on a free loopback port, collecting what it receives."""
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller

    sink = SmtpSink(host="127.0.0.1", port=free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            message = message_from_bytes(envelope.original_content, policy=policy.default)
            with sink.lock:
                sink.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "message": message})
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def mail_text(message: EmailMessage) -> str:
    """The readable text of a received e-mail: its HTML (or plain) body without tags, entities decoded,
    white space folded into single spaces."""
    import html
    import re

    part = message.get_body(preferencelist=("html", "plain"))
    assert part is not None, "an e-mail without an HTML or plain body"
    body = part.get_content()
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def smtp_connection_uri(sink: SmtpSink, sender: str = "cdr-alerts@example.org") -> str:
    """An Airflow SMTP connection (JSON form: plain SMTP, no TLS, no login) to the sink."""
    import json

    extra = {"disable_tls": True, "disable_ssl": True, "from_email": sender, "timeout": 10, "retry_limit": 1}
    return json.dumps({"conn_type": "smtp", "host": sink.host, "port": sink.port, "extra": extra})


@dataclass
class SlackSink:
    """A local stand-in for the Slack Web API: records every call, answers ok."""

    base_url: str
    calls: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list:
        with self.lock:
            return list(self.calls)


def slack_connection_uri(sink: SlackSink, token: str = "xoxb-test-token") -> str:
    import json

    return json.dumps({"conn_type": "slack", "password": token, "extra": {"base_url": sink.base_url}})


# --------------------------------------------------------------------------- Airflow runs


FAST_RETRIES = {
    "CDR_RETRY_DELAY_SECONDS": "1",
    "CDR_MAX_RETRY_DELAY_SECONDS": "2",
    "CDR_MONGO_TIMEOUT_MS": "2000",
}


def build_dag(report_type: str = "daily"):
    """The report DAG exactly as the DAG file builds it, from the current environment."""
    from cdr_reports.integration.dag_factory import build_report_dag
    from cdr_reports.pipeline.config import load_settings

    return build_report_dag(report_type, load_settings())


def task_states(dag_run) -> dict[str, tuple[str, int]]:
    """{task_id[map_index]: (state, try_number)} of a finished dag.test() run, from the metadata DB."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): (str(ti.state), ti.try_number)
            for ti in rows
        }


def run_output(capfd, caplog) -> str:
    """Everything a dag.test() run logged. Where task logs go (stdout through structlog, or
    pytest's log capture) depends on what earlier runs in this process configured: read both."""
    import logging

    formatter = logging.Formatter()
    parts = ["".join(capfd.readouterr())]
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)
