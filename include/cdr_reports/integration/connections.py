"""The two Airflow connections a report uses: MongoDB (source) and SQL (sink), through their hooks.

Called inside tasks only: the provider hooks are imported lazily so DAG parsing stays cheap.
"""

from __future__ import annotations

from typing import Any

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


def sql_engine(settings: Settings) -> Any:
    """A SQLAlchemy engine from the `settings.sql_conn_id` connection's own hook."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(settings.sql_conn_id)
    hook = connection.get_hook()
    if not hasattr(hook, "get_sqlalchemy_engine"):
        raise PermanentError(f"connection {settings.sql_conn_id!r} (type {connection.conn_type}) is not a SQL database")
    return hook.get_sqlalchemy_engine()
