"""One retry, timeout and alert policy for every task of the package's DAGs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cdr_reports.integration.alerts import FailureAlert
from cdr_reports.pipeline.config import Settings


def task_default_args(settings: Settings, report_type: str | None = None) -> dict[str, Any]:
    """Retry, timeout and alert policy shared by every task of the package's DAGs."""
    return {
        "owner": settings.owner,
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=settings.max_retry_delay_seconds),
        "execution_timeout": timedelta(minutes=settings.execution_timeout_minutes),
        # Runs once a task has failed for good (not on retries): e-mail / Slack, see alerts.py.
        "on_failure_callback": FailureAlert(settings, report_type),
    }
