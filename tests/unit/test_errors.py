"""Which failures are retried and which fail fast."""

from __future__ import annotations

import pytest
import sqlalchemy.exc as sa_exc
from pymongo import errors as mongo_errors

from cdr_reports.pipeline.errors import PermanentError, classify_mongo_error, classify_sql_error


@pytest.mark.parametrize(
    "exc",
    [
        mongo_errors.ServerSelectionTimeoutError("no servers"),
        mongo_errors.AutoReconnect("connection closed"),
        mongo_errors.NetworkTimeout("timed out"),
        mongo_errors.ExecutionTimeout("operation exceeded time limit", code=50),
        mongo_errors.OperationFailure("not primary", code=10107),
        mongo_errors.OperationFailure("interrupted", code=11600),
    ],
)
def test_transient_mongo_errors_are_retried(exc):
    assert classify_mongo_error(exc, "x") is exc


@pytest.mark.parametrize(
    "exc",
    [
        mongo_errors.OperationFailure("Authentication failed.", code=18),
        mongo_errors.OperationFailure("not authorized on cdr to execute command", code=13),
        mongo_errors.OperationFailure("unknown operator: $bogus", code=2),
        mongo_errors.ConfigurationError("bad option"),
        mongo_errors.InvalidURI("bad uri"),
    ],
)
def test_permanent_mongo_errors_fail_fast(exc):
    result = classify_mongo_error(exc, "extracting")
    assert isinstance(result, PermanentError)
    assert str(result).startswith("extracting: ")


class _PgError(Exception):
    def __init__(self, message, sqlstate):
        super().__init__(message)
        self.sqlstate = sqlstate


class _MssqlError(Exception):
    pass


def _dbapi(orig, cls=sa_exc.OperationalError):
    return cls("stmt", {}, orig)


@pytest.mark.parametrize(
    ("orig", "permanent"),
    [
        (_PgError('password authentication failed for user "x"', "28P01"), True),
        (_PgError('database "nope" does not exist', "3D000"), True),
        (_PgError("permission denied for schema public", "42501"), True),
        (_PgError("terminating connection due to administrator command", "57P01"), False),
        (_PgError("could not connect to server", "08006"), False),
        (_PgError("deadlock detected", "40P01"), False),
        (_MssqlError((18456, b"Login failed for user 'sa'.")), True),
        (_MssqlError((262, b"CREATE TABLE permission denied in database 'cdr'.")), True),
        (_MssqlError((1205, b"Transaction was deadlocked")), False),
        (_MssqlError((20009, b"Unable to connect: Adaptive Server is unavailable")), False),
        (Exception("database is locked"), False),
        (Exception("unable to open database file"), True),
        # SQLite's schema mismatches carry no code: never an endless transient retry.
        (Exception("table cdr_operator_report already exists"), True),
        (Exception("duplicate column name: total_duration_ms"), True),
        (Exception("no such table: cdr_report_run"), True),
        (Exception("database or disk is full"), False),
    ],
)
def test_sql_errors(orig, permanent):
    exc = _dbapi(orig)
    result = classify_sql_error(exc, "loading")
    assert isinstance(result, PermanentError) is permanent
    if not permanent:
        assert result is exc


def test_non_sql_errors_pass_through():
    exc = ValueError("x")
    assert classify_sql_error(exc, "loading") is exc and classify_mongo_error(exc, "x") is exc
