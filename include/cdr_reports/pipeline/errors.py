"""Which failures are worth a retry.

Transient failures (a server down or slow, a network error, a deadlock) propagate as they are
so that Airflow retries them with exponential backoff. Permanent ones (bad configuration,
authentication, missing database or rights, malformed queries) become `PermanentError`, which
the Airflow task layer turns into `AirflowFailException`: retrying cannot help, so fail fast.
"""

from __future__ import annotations


class PermanentError(Exception):
    """A failure that no retry can fix; the message names the setting or object at fault."""


class InvariantError(RuntimeError):
    """Report numbers do not reconcile (e.g. data changed between queries): retried."""


# MongoDB server error codes that mean "try again later"
# (https://www.mongodb.com/docs/manual/reference/error-codes/).
_MONGO_TRANSIENT_CODES = {
    6,  # HostUnreachable
    7,  # HostNotFound
    50,  # MaxTimeMSExpired
    89,  # NetworkTimeout
    91,  # ShutdownInProgress
    112,  # WriteConflict
    189,  # PrimarySteppedDown
    202,  # NetworkInterfaceExceededTimeLimit
    262,  # ExceededTimeLimit
    9001,  # SocketException
    10107,  # NotWritablePrimary
    11600,  # InterruptedAtShutdown
    11602,  # InterruptedDueToReplStateChange
    13435,  # NotPrimaryNoSecondaryOk
    13436,  # NotPrimaryOrSecondary
}


def classify_mongo_error(exc: BaseException, what: str) -> BaseException:
    """Return the exception to raise for a pymongo failure: itself, or a PermanentError."""
    from pymongo import errors as mongo_errors

    if isinstance(exc, (mongo_errors.ConnectionFailure, mongo_errors.ExecutionTimeout, mongo_errors.WTimeoutError)):
        return exc  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, ...
    if isinstance(exc, mongo_errors.OperationFailure):
        labels = ("RetryableError", "TransientTransactionError", "RetryableWriteError")
        if exc.code in _MONGO_TRANSIENT_CODES or any(exc.has_error_label(label) for label in labels):
            return exc
        return PermanentError(f"{what}: MongoDB refused the operation (code {exc.code}): {_first_line(exc)}")
    if isinstance(exc, (mongo_errors.ConfigurationError, mongo_errors.InvalidURI, mongo_errors.InvalidName)):
        return PermanentError(f"{what}: invalid MongoDB configuration: {_first_line(exc)}")
    return exc


# SQLSTATE classes (PostgreSQL, and any DB-API driver that reports them).
_SQLSTATE_PERMANENT_CLASSES = {"28", "42", "3D", "3F", "22", "23", "0A", "44"}
_SQLSTATE_TRANSIENT_CLASSES = {"08", "40", "53", "57", "58", "55"}
# SQL Server error numbers (pymssql puts them first in exc.orig.args[0]).
_MSSQL_PERMANENT = {18456, 4060, 262, 229, 230, 208, 2714, 102, 15151, 916, 18452}
_MSSQL_TRANSIENT = {1205, 1222, 40613, 40197, 40501, 10053, 10054, 10060, 20009, 20003, 20006, 233, 64}
# A table or column that is, or is not, there against the recorded schema revision (SQLite messages;
# PostgreSQL and SQL Server report codes classified above): permanent, see migrations.heal.
_SCHEMA_MISMATCH = ("already exists", "duplicate column", "no such table", "no such column", "has no column named")
# PostgreSQL refusing a login (FATAL at connect time, reported by libpq without a SQLSTATE).
_PG_LOGIN_REFUSED = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # role or database
    "permission denied for database",
    "is not permitted to log in",
)


def classify_sql_error(exc: BaseException, what: str) -> BaseException:
    """Return the exception to raise for a SQLAlchemy/DB-API failure: itself, or a PermanentError."""
    import sqlalchemy.exc as sa_exc

    if not isinstance(exc, sa_exc.SQLAlchemyError):
        return exc
    if isinstance(exc, (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, sa_exc.CompileError)):
        return PermanentError(f"{what}: invalid SQL connection or statement: {_first_line(exc)}")
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return exc
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if sqlstate:
            if sqlstate[:2] in _SQLSTATE_TRANSIENT_CLASSES:
                return exc
            if sqlstate[:2] in _SQLSTATE_PERMANENT_CLASSES:
                return PermanentError(f"{what}: the database refused it (SQLSTATE {sqlstate}): {_first_line(orig)}")
        number = _mssql_number(orig)
        if number is not None:
            if number in _MSSQL_TRANSIENT:
                return exc
            if number in _MSSQL_PERMANENT:
                return PermanentError(f"{what}: SQL Server refused it (error {number}): {_first_line(orig)}")
        by_message = _classify_by_message(exc, orig, what)
        if by_message is not None:
            return by_message
        if isinstance(exc, (sa_exc.ProgrammingError, sa_exc.DataError, sa_exc.NotSupportedError)):
            return PermanentError(f"{what}: {_first_line(orig)}")
    return exc


def _classify_by_message(exc: BaseException, orig: object, what: str) -> BaseException | None:
    """Errors that drivers report without a code (SQLite, libpq at connect time); None: undecided."""
    message = str(orig).lower()
    if "database is locked" in message or "disk i/o error" in message:
        return exc  # SQLite: another writer holds the lock
    if "unable to open database file" in message or "readonly database" in message:
        return PermanentError(f"{what}: {_first_line(orig)}")
    if any(text in message for text in _SCHEMA_MISMATCH):
        # SQLite reports these without a code: a retry meets the same schema, so fail at once.
        return PermanentError(f"{what}: the report tables do not match the schema revision: {_first_line(orig)}")
    if "fatal:" in message and any(reason in message for reason in _PG_LOGIN_REFUSED):
        # PostgreSQL refusing the login: libpq reports it without a SQLSTATE.
        return PermanentError(f"{what}: the database refused the login: {_first_line(orig)}")
    return None


def _mssql_number(orig: object) -> int | None:
    args = getattr(orig, "args", None)
    if args and isinstance(args[0], tuple) and args[0] and isinstance(args[0][0], int):
        return args[0][0]
    number = getattr(orig, "number", None)
    return number if isinstance(number, int) else None


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
