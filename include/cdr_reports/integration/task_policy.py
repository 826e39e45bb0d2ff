"""One retry, timeout and alert policy for every task of the package's DAGs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from cdr_reports.integration.alerts import FailureAlert
from cdr_reports.pipeline.config import Settings


class RefuseInvalidSettings:
    """`pre_execute` of every task of a DAG built despite refused settings (config.load_settings(defer=)).

    The DAG file still imports (other DAGs and this DAG's page stay usable), and each try fails at
    once, before doing anything, with the settings' own messages: no retry, the failure alert names
    the variable to fix.
    """

    def __init__(self, invalid: tuple[tuple[str, str], ...]):
        self.invalid = invalid

    def __call__(self, context: Any) -> None:
        names = ", ".join(var for var, _ in self.invalid)
        raise AirflowFailException(
            f"refused setting(s) {names}: "
            + "; ".join(message for _, message in self.invalid)
            + " (fix the environment of the Airflow components; the DAG was built with the default only to report this)"
        )

    def __repr__(self) -> str:
        return f"RefuseInvalidSettings({[var for var, _ in self.invalid]})"


def task_default_args(settings: Settings, report_type: str | None = None) -> dict[str, Any]:
    """Retry, timeout and alert policy shared by every task of the package's DAGs."""
    refuse = {"pre_execute": RefuseInvalidSettings(settings.invalid_settings)} if settings.invalid_settings else {}
    return {
        **refuse,
        "owner": settings.owner,
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=settings.max_retry_delay_seconds),
        "execution_timeout": timedelta(minutes=settings.execution_timeout_minutes),
        # Runs once a task has failed for good (not on retries): e-mail / Slack, see alerts.py.
        "on_failure_callback": FailureAlert(settings, report_type),
        # Return values can hold a whole report: the tasks log a bounded summary instead (tasks.py).
        "show_return_value_in_logs": False,
    }
