"""Alerts: a task that finally fails, or a daily report late past its deadline, notifies people.

Channels come from the settings (environment, read while parsing the DAG files):

* e-mail through the SMTP provider's ``SmtpNotifier``: ``CDR_ALERT_EMAILS`` (recipients) and the
  SMTP connection ``CDR_SMTP_CONN_ID`` (default ``smtp_default``; its extra ``from_email``, or
  ``[email] from_email``, is the sender);
* Slack through the Slack provider's ``SlackNotifier``: connection ``CDR_SLACK_CONN_ID`` (a Slack
  API token) and channel ``CDR_SLACK_CHANNEL``.

With no channel configured the callbacks only log ``no alert channel configured``. A channel that
fails to send is logged and does not stop the others; an alert never changes the task's outcome.

``on_failure_callback`` runs in the task's process once the task has *finally* failed (not on the
retries before), so one failing run sends one alert per failed task. The deadline alert is an
Airflow Deadline Alert (experimental since Airflow 3.1) whose callback the triggerer runs.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from cdr_reports.integration.rollup_tasks import rebuild_reason
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.periods import period_containing_instant
from cdr_reports.pipeline.plan import resolve_period

log = logging.getLogger(__name__)

NO_CHANNEL = "no alert channel configured"
_MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class AlertChannels:
    """Where alerts go; plain values so they serialize into a Deadline Alert's callback kwargs."""

    emails: tuple[str, ...] = ()
    smtp_conn_id: str = "smtp_default"
    slack_conn_id: str | None = None
    slack_channel: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertChannels:
        return cls(tuple(settings.alert_emails), settings.smtp_conn_id, settings.slack_conn_id, settings.slack_channel)

    def to_kwargs(self) -> dict[str, Any]:
        return {
            "emails": list(self.emails),
            "smtp_conn_id": self.smtp_conn_id,
            "slack_conn_id": self.slack_conn_id,
            "slack_channel": self.slack_channel,
        }

    @classmethod
    def from_kwargs(cls, data: Mapping[str, Any]) -> AlertChannels:
        return cls(
            tuple(data.get("emails") or ()),
            data.get("smtp_conn_id") or "smtp_default",
            data.get("slack_conn_id"),
            data.get("slack_channel"),
        )

    @property
    def names(self) -> list[str]:
        return (["email"] if self.emails else []) + (["slack"] if self.slack_conn_id else [])


@dataclass(frozen=True)
class AlertMessage:
    subject: str
    text: str

    @property
    def html(self) -> str:
        return f"<pre>{html.escape(self.text)}</pre>"


def notifiers(channels: AlertChannels) -> list[tuple[str, Any]]:
    """One Airflow notifier per configured channel.

    The texts are passed through the template context (``cdr_alert``), never as templates: an
    error message containing ``{{`` must not be rendered by Jinja.
    """
    result: list[tuple[str, Any]] = []
    if channels.emails:
        from airflow.providers.common.compat.sdk import conf
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        result.append(
            (
                "email",
                SmtpNotifier(
                    to=list(channels.emails),
                    from_email=conf.get("email", "from_email", fallback=None) or None,
                    smtp_conn_id=channels.smtp_conn_id,
                    subject="{{ cdr_alert.subject }}",
                    html_content="{{ cdr_alert.html }}",
                ),
            )
        )
    if channels.slack_conn_id:
        from airflow.providers.slack.notifications.slack import SlackNotifier

        result.append(
            (
                "slack",
                SlackNotifier(
                    slack_conn_id=channels.slack_conn_id,
                    channel=channels.slack_channel or "",
                    text="{{ cdr_alert.text }}",
                    username="cdr-reports",
                ),
            )
        )
    return result


def _alert_context(context: Mapping[str, Any], message: AlertMessage) -> dict[str, Any]:
    alert = {"subject": message.subject, "text": message.text, "html": message.html}
    return {**dict(context), "cdr_alert": alert}


def send(channels: AlertChannels, message: AlertMessage, context: Mapping[str, Any] | None = None) -> list[str]:
    """Send `message` on every configured channel (synchronously); returns the channels that sent it."""
    sent: list[str] = []
    senders = notifiers(channels)
    if not senders:
        log.warning("%s (set CDR_ALERT_EMAILS or CDR_SLACK_CONN_ID): %s", NO_CHANNEL, message.subject)
        return sent
    for name, notifier in senders:
        try:
            notifier(_alert_context(context or {}, message))
        except Exception:
            log.exception("alert via %s failed: %s", name, message.subject)
        else:
            sent.append(name)
            log.info("alert sent via %s: %s", name, message.subject)
    return sent


async def asend(channels: AlertChannels, message: AlertMessage, context: Mapping[str, Any] | None = None) -> list[str]:
    """`send` for the triggerer (async notifiers)."""
    sent: list[str] = []
    senders = notifiers(channels)
    if not senders:
        log.warning("%s (set CDR_ALERT_EMAILS or CDR_SLACK_CONN_ID): %s", NO_CHANNEL, message.subject)
        return sent
    for name, notifier in senders:
        notifier.context = _alert_context(context or {}, message)
        try:
            await notifier
        except Exception:
            log.exception("alert via %s failed: %s", name, message.subject)
        else:
            sent.append(name)
            log.info("alert sent via %s: %s", name, message.subject)
    return sent


# --------------------------------------------------------------------------- task failures


def _error_text(error: Any) -> str:
    if error is None:
        return "unknown (no exception recorded)"
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS] + " [...]"


def _period_text(context: Mapping[str, Any], report_type: str | None, settings: Settings) -> str:
    """The reported period, worked out like the `plan` task does; never raises."""
    if report_type is None:
        return "n/a"
    try:
        dag_run = context.get("dag_run")
        params = context.get("params") or {}
        period = resolve_period(
            report_type,
            settings,
            params.get("report_date"),
            getattr(dag_run, "data_interval_start", None) or context.get("data_interval_start"),
            getattr(dag_run, "run_after", None),
        )
    except Exception as exc:  # noqa: BLE001 - the alert must go out even if the period is unknowable
        return f"unknown ({exc})"
    return f"{period.label()} ({period.start_date} .. {period.end_date} exclusive, {period.tz_name})"


def failure_message(context: Mapping[str, Any], report_type: str | None, settings: Settings) -> AlertMessage:
    """Subject and text of a task-failure alert: DAG, run, task, period, rebuild reason, try number and error."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    map_index = getattr(ti, "map_index", -1)
    task = task_id if map_index is None or map_index < 0 else f"{task_id} [map index {map_index}]"
    try_number = getattr(ti, "try_number", None)
    max_tries = getattr(ti, "max_tries", None)
    tries = f"{try_number}" + (f" of {max_tries + 1}" if isinstance(max_tries, int) else "")
    period = _period_text(context, report_type, settings)
    error = _error_text(context.get("exception"))
    run_id = context.get("run_id") or getattr(ti, "run_id", "?")
    lines = [
        f"DAG: {dag_id}",
        f"Run: {run_id}",
        f"Task: {task}",
        f"Period: {period}",
        f"Try: {tries}",
        f"Error: {error}",
    ]
    # A run started by the daily DAG's trigger_rebuilds (rollup_tasks.py) says what it was rebuilding.
    # (Whether the stored week changed depends on the task: a load is one transaction, so a failure up
    # to and in `load` leaves the previous numbers; a check failing after it does not undo them.)
    reason = rebuild_reason(context)
    if reason:
        lines.insert(4, f"Rebuild: {reason}")
    log_url = getattr(ti, "log_url", None)
    if log_url:
        lines.append(f"Log: {log_url}")
    what = "FAILED rebuild" if reason else "FAILED"
    subject = f"[cdr-reports] {what} {dag_id}.{task_id} ({period.split(' (')[0]}), try {try_number}"
    return AlertMessage(subject=subject, text="\n".join(lines))


class FailureAlert:
    """The `on_failure_callback` of every CDR task: alerts on the configured channels."""

    def __init__(self, settings: Settings, report_type: str | None = None):
        self.settings = settings
        self.report_type = report_type
        self.channels = AlertChannels.from_settings(settings)

    def __call__(self, context: Mapping[str, Any]) -> list[str]:
        message = failure_message(context, self.report_type, self.settings)
        log.error("task failed for good, alerting: %s", message.subject)
        return send(self.channels, message, context)

    def __repr__(self) -> str:
        return f"FailureAlert(report_type={self.report_type!r}, channels={self.channels.names or NO_CHANNEL!r})"


# --------------------------------------------------------------------------- daily deadline


def deadline_interval(local_time: str) -> timedelta:
    """From a daily run's logical date (local midnight starting the reported day) to ``local_time``
    on the next day. Exact except on DST-change days, where the deadline moves by the DST shift."""
    hour, minute = map(int, local_time.split(":"))
    return timedelta(days=1, hours=hour, minutes=minute)


def daily_deadline_alert(settings: Settings) -> Any:
    """The Deadline Alert of the daily DAG, or None when CDR_DAILY_DEADLINE_LOCAL_TIME is unset."""
    if settings.daily_deadline_local_time is None:
        return None
    return DeadlineAlert(
        # Scheduled runs: the logical date is the reported day's local midnight (the timetable's
        # data interval start), so logical date + 1 day + HH:MM is HH:MM local the day after.
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=deadline_interval(settings.daily_deadline_local_time),
        callback=AsyncCallback(
            deadline_missed,
            kwargs={
                "report_type": "daily",
                "deadline_local_time": settings.daily_deadline_local_time,
                "time_zone": settings.time_zone,
                "channels": AlertChannels.from_settings(settings).to_kwargs(),
            },
        ),
        name="cdr_daily_report_deadline",
    )


def deadline_message(
    context: Mapping[str, Any] | None, report_type: str, deadline_local_time: str, time_zone: str
) -> AlertMessage:
    context = context or {}
    dag_run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id = dag_run.get("dag_id", "?")
    period = "?"
    start = dag_run.get("data_interval_start")
    if start:
        try:
            instant = (
                start if isinstance(start, datetime) else datetime.fromisoformat(str(start).replace("Z", "+00:00"))
            )
            period = period_containing_instant(report_type, instant, time_zone).label()
        except Exception as exc:  # noqa: BLE001 - still alert
            period = f"unknown ({exc})"
    lines = [
        f"DAG: {dag_id}",
        f"Run: {dag_run.get('dag_run_id') or dag_run.get('run_id', '?')}",
        f"Period: {period}",
        f"Deadline: {deadline_local_time} {time_zone} ({deadline.get('deadline_time', '?')})",
        f"State: {dag_run.get('state', '?')}",
    ]
    subject = f"[cdr-reports] LATE {dag_id} ({period}) missed its {deadline_local_time} {time_zone} deadline"
    return AlertMessage(subject=subject, text="\n".join(lines))


async def deadline_missed(
    context: Mapping[str, Any] | None = None,
    *,
    report_type: str = "daily",
    deadline_local_time: str = "?",
    time_zone: str = "UTC",
    channels: Mapping[str, Any] | None = None,
) -> list[str]:
    """Deadline Alert callback (run by the triggerer when a daily run is not done in time)."""
    message = deadline_message(context, report_type, deadline_local_time, time_zone)
    log.error("deadline missed, alerting: %s", message.subject)
    return await asend(AlertChannels.from_kwargs(channels or {}), message, context)
