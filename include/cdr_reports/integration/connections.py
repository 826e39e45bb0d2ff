"""The two Airflow connections a report uses: MongoDB (source) and SQL (sink), through their hooks.

Called inside tasks only: the provider hooks are imported lazily so DAG parsing stays cheap.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from airflow.sdk import BaseHook

from cdr_reports.pipeline.config import Settings, query_timeout_seconds
from cdr_reports.pipeline.errors import PermanentError


def mongo_collection(settings: Settings) -> Any:
    """The CDR collection through MongoHook (connection `settings.mongo_conn_id`)."""
    from airflow.providers.mongo.hooks.mongo import MongoHook

    hook = MongoHook(mongo_conn_id=settings.mongo_conn_id)
    # Fail a try in seconds when the server is down, not after pymongo's 30 s default; but give
    # each read of the one query per slice as long as a large window needs (a 10 s socket timeout
    # failed every slice of a 100k-CDR day on FerretDB, and would fail a 10M-CDR day on MongoDB).
    for option in ("serverSelectionTimeoutMS", "connectTimeoutMS"):
        hook.extras.setdefault(option, settings.mongo_timeout_ms)
    hook.extras.setdefault("socketTimeoutMS", query_timeout_seconds(settings) * 1000)
    database = settings.mongo_database or hook.connection.schema
    if not database:
        raise PermanentError(
            f"connection {settings.mongo_conn_id!r} names no database (its schema) and CDR_MONGO_DATABASE is unset"
        )
    return hook.get_conn()[database][settings.collection]


# A statement of ours (a load's delete or insert of one period, a findings write, a read) takes
# seconds even at 100,000 operators; one still waiting after this is talking to a hung server (a
# stopped process, a frozen VM: its kernel keeps the TCP connection alive, so no socket timeout
# fires). The watchdog then breaks the connection: the try fails with a transient error and
# Airflow retries, instead of waiting for the task's execution timeout (docs/reliability.md).
SQL_STATEMENT_WATCHDOG_SECONDS = 300.0
log = logging.getLogger(__name__)


def sql_engine(settings: Settings) -> Any:
    """A SQLAlchemy engine from the `settings.sql_conn_id` connection's own hook, with the statement watchdog."""
    connection = BaseHook.get_connection(settings.sql_conn_id)
    hook = connection.get_hook()
    if not hasattr(hook, "get_sqlalchemy_engine"):
        raise PermanentError(f"connection {settings.sql_conn_id!r} (type {connection.conn_type}) is not a SQL database")
    engine = hook.get_sqlalchemy_engine()
    watch_statements(engine, SQL_STATEMENT_WATCHDOG_SECONDS)
    return engine


def watch_statements(engine: Any, seconds: float) -> None:
    """Break the connection of any statement still running after `seconds` (a hung server).

    Network sinks: the socket is shut down under the waiting driver, which raises a connection
    error (SQLAlchemy invalidates the connection; errors.py: transient). SQLite: interrupted.
    """
    import sqlalchemy as sa

    timers: dict[int, threading.Timer] = {}

    def stop(conn: Any) -> None:
        timer = timers.pop(id(conn), None)
        if timer is not None:
            timer.cancel()

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        stop(conn)
        timer = threading.Timer(seconds, _break_connection, (conn.connection.dbapi_connection, statement, seconds))
        timer.daemon = True
        timers[id(conn)] = timer
        timer.start()

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        stop(conn)

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    sa.event.listen(engine, "handle_error", lambda context: stop(context.connection))


def _break_connection(dbapi_connection: Any, statement: str, seconds: float) -> None:
    log.error(
        "SQL statement still running after %g s, breaking its connection (hung server?): %s",
        seconds,
        statement.split("\n")[0][:200],
    )
    if hasattr(dbapi_connection, "interrupt"):  # sqlite3
        dbapi_connection.interrupt()
        return
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return  # a driver without a socket we can reach: the task's execution timeout remains the bound
    duplicate = socket.socket(fileno=os.dup(fileno()))
    try:
        duplicate.shutdown(socket.SHUT_RDWR)  # wakes the driver blocked on the socket
    except OSError:
        pass
    finally:
        duplicate.close()
