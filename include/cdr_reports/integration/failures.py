"""Permanent errors fail a task at once; transient ones are left to Airflow's retries."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from cdr_reports.pipeline.errors import PermanentError


@contextlib.contextmanager
def fail_fast(what: str) -> Iterator[None]:
    """Turn permanent errors into AirflowFailException (no retry); let transient ones retry."""
    try:
        yield
    except PermanentError as exc:
        raise AirflowFailException(f"{what}: {exc}") from exc
    except AirflowNotFoundException as exc:
        raise AirflowFailException(f"{what}: {exc} (create the Airflow connection, see the README)") from exc
    except Exception as exc:
        # A hook rejecting its connection (e.g. MongoHook: "conn_type must be 'mongo'").
        if any(cls.__name__ == "AirflowConfigException" for cls in type(exc).__mro__):
            raise AirflowFailException(f"{what}: {exc}") from exc
        raise
