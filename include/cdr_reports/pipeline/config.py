"""Settings of the report pipeline, read from environment variables (all optional).

Defaults reproduce the original Hangfire system. Reading settings touches no network, no
Airflow Variable and no Connection, so DAG files can call `load_settings()` while parsing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any

from cdr_reports.pipeline import report_types
from cdr_reports.pipeline.errors import PermanentError
from cdr_reports.pipeline.periods import PeriodError, load_zone
from cdr_reports.pipeline.report_types import REPORTS

DEFAULT_GLOBAL_FILTER: dict[str, Any] = {"IsDeleted": {"$ne": True}}

# A call longer than the longest report period cannot be real: such durations (and NaN or
# infinite ones) are rejected and counted instead of being summed.
DEFAULT_MAX_CALL_DURATION_SECONDS = 31 * 24 * 3600

# The first local day any report may cover: the DAGs' start_date, and the lower bound of every
# run's period (a report_date or a backfill before it fails at once instead of storing an
# empty report for a time the source never held).
DEFAULT_EARLIEST_REPORT_DATE = date(2026, 1, 1)

# Data-quality alarms (quality/; the README reasons the defaults). A week of daily reports is
# the history (one of each weekday, so the median is robust to a weekend or a holiday); an
# operator is flagged below half of its median; operators expecting fewer calls than
# DEFAULT_VOLUME_MIN_EXPECTED_CALLS are too small to judge (Poisson noise).
DEFAULT_VOLUME_CHECK_HISTORY = 7
DEFAULT_VOLUME_DROP_THRESHOLD = 0.5
DEFAULT_VOLUME_MIN_EXPECTED_CALLS = 20
DEFAULT_LATE_DATA_LOOKBACK_DAYS = 2
LATE_DATA_ACTIONS = ("rereport", "alert")
ROLLUP_MODES = ("auto", "off")  # rollup.py


class ConfigError(PermanentError, ValueError):
    """A setting has a value the pipeline cannot use (a permanent error: retrying cannot help)."""


@dataclass(frozen=True)
class DueTimes:
    """Local wall-clock hour at which each report is due after its period ends.

    One field per report type (`ReportType.due_hour_field`), default `ReportType.default_due_hour`.
    """

    daily_hour: int = REPORTS["daily"].default_due_hour
    weekly_hour: int = REPORTS["weekly"].default_due_hour
    monthly_hour: int = REPORTS["monthly"].default_due_hour

    def hour_for(self, report_type: str) -> int:
        """The due hour of `report_type` (its CDR_<TYPE>_DUE_HOUR setting)."""
        hour: int = getattr(self, report_types.of(report_type).due_hour_field)
        return hour


@dataclass(frozen=True)
class Settings:
    time_zone: str = "Europe/Istanbul"
    mongo_conn_id: str = "cdr_mongo"
    mongo_database: str | None = None  # None: the connection's schema
    collection: str = "CdrRecords"
    sql_conn_id: str = "cdr_reports_db"
    sql_schema: str | None = None
    global_filter: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_GLOBAL_FILTER))
    extract_slices: int = 1
    # Per report type (`ReportType.slices_field`); None: `extract_slices`. A month holds ~31 days of
    # CDRs, so a monthly slice of the same count is ~31x a daily one (see slices_for, docs/scale-out.md).
    extract_slices_daily: int | None = None
    extract_slices_weekly: int | None = None
    extract_slices_monthly: int | None = None
    extract_strategy: str = "auto"  # auto | pushdown | stream (extract.py)
    max_call_duration_seconds: float = DEFAULT_MAX_CALL_DURATION_SECONDS
    mongo_timeout_ms: int = 10_000
    # A slice is ONE query (pushdown: the server answers after the whole window; stream: one
    # getMore at a time), so the socket waits longer than a connect. None: half the task's timeout.
    mongo_query_timeout_seconds: int | None = None
    week_start: int = 0  # Monday
    earliest_report_date: date = DEFAULT_EARLIEST_REPORT_DATE
    due: DueTimes = field(default_factory=DueTimes)
    # Airflow run policy (see the README for how these match the original system).
    owner: str = "cdr-reports"
    catchup: bool = False
    retries: int = 3
    retry_delay_seconds: int = 60
    max_retry_delay_seconds: int = 600
    execution_timeout_minutes: int = 60
    dagrun_timeout_hours: int = 6
    # Reliability (docs/reliability.md).
    report_retention_days: int | None = None  # None: keep reports forever
    # Archive before purge (pipeline/archive.py): where expiring reports go as Parquet before retention
    # deletes them (None: deleted without archive, as before); its Airflow connection; refuse to delete
    # anything while no archive is configured.
    archive_url: str | None = None
    archive_conn_id: str | None = None
    archive_required: bool = False
    alert_emails: tuple[str, ...] = ()
    smtp_conn_id: str = "smtp_default"
    slack_conn_id: str | None = None
    slack_channel: str | None = None
    daily_deadline_local_time: str | None = None  # "HH:MM" local on the day after the period; None: no alert
    # Report delivery by e-mail after each successful load (empty: off), per report type
    # (`ReportType.emails_field`; read through `emails_for`).
    report_emails_daily: tuple[str, ...] = ()
    report_emails_weekly: tuple[str, ...] = ()
    report_emails_monthly: tuple[str, ...] = ()
    # Data quality (quality/): volume-drop alarm after each load, late-data recount of past days.
    volume_check_history: int = DEFAULT_VOLUME_CHECK_HISTORY  # 0: no volume check
    volume_drop_threshold: float = DEFAULT_VOLUME_DROP_THRESHOLD
    volume_min_expected_calls: int = DEFAULT_VOLUME_MIN_EXPECTED_CALLS
    late_data_lookback_days: int = DEFAULT_LATE_DATA_LOOKBACK_DAYS  # 0: no late-data check
    late_data_action: str = "rereport"  # rereport | alert
    # Settings refused by load_settings(defer=...): (variable, message). The DAG was built with their
    # defaults, and every task of it fails at once naming them (task_policy.RefuseInvalidSettings).
    invalid_settings: tuple[tuple[str, str], ...] = ()
    # Weekly/monthly reports from the stored daily reports (rollup.py): auto | off.
    rollup: str = "auto"

    def slices_for(self, report_type: str) -> int:
        """Time slices (one extract task each) of a `report_type` period."""
        own: int | None = getattr(self, report_types.of(report_type).slices_field)
        return self.extract_slices if own is None else own

    def emails_for(self, report_type: str) -> tuple[str, ...]:
        """The subscribers of `report_type` reports (CDR_REPORT_EMAILS_<TYPE>; empty: no delivery)."""
        emails: tuple[str, ...] = getattr(self, report_types.of(report_type).emails_field)
        return emails


# extract.py: `auto` asks the server (buildInfo) and picks `stream` for FerretDB, `pushdown` otherwise.
EXTRACT_STRATEGIES = ("auto", "pushdown", "stream")

WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")


def _int(var: str, raw: str, low: int, high: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{var}={raw!r} must be {bound}")
    return value


def _bool(var: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{var}={raw!r} is not a boolean (true/false)")


def _fraction(var: str, raw: str) -> float:
    """A number in (0, 1]: a share of an expected value."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a number") from None
    if not 0 < value <= 1:  # NaN fails too
        raise ConfigError(f"{var}={raw!r} must be a fraction > 0 and <= 1 (e.g. 0.5)")
    return value


def _weekday(var: str, raw: str) -> int:
    text = raw.strip().upper()
    if text in WEEKDAYS:
        return WEEKDAYS.index(text)
    return _int(var, raw, 0, 6)


def _emails(var: str, raw: str) -> tuple[str, ...]:
    addresses = tuple(part for part in re.split(r"[,;\s]+", raw) if part)
    for address in addresses:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
            raise ConfigError(f"{var}: {address!r} is not an email address")
    return addresses


def _date(var: str, raw: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a date (YYYY-MM-DD)") from None


def _local_time(var: str, raw: str) -> str:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", raw.strip())
    if not match:
        raise ConfigError(f"{var}={raw!r} is not a local time HH:MM (00:00 .. 23:59)")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def parse_global_filter(raw: str | Mapping[str, Any], source: str = "CDR_GLOBAL_FILTER") -> dict[str, Any]:
    """Parse and check a MongoDB query document (MongoDB Extended JSON allowed in strings)."""
    if isinstance(raw, Mapping):
        parsed: Any = dict(raw)
    else:
        from bson import json_util  # pymongo's; lets filters carry dates ({"$date": ...})

        try:
            parsed = json_util.loads(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{source} must be a JSON object (a MongoDB query document), got {type(parsed).__name__}")
    _refuse_javascript(parsed, source)
    _check_query_document(parsed, source)
    return parsed


# Operators a query document may use at its top level; anything else starting with "$"
# is a typo that MongoDB would reject at run time, so reject it while parsing instead.
_TOP_LEVEL_OPERATORS = {"$and", "$or", "$nor", "$expr", "$comment", "$jsonSchema", "$text"}
# Operators that run JavaScript on the MongoDB server ($where in a query, $function and $accumulator
# inside $expr): a filter is configuration, not code, so they are refused wherever they appear.
JAVASCRIPT_OPERATORS = ("$where", "$function", "$accumulator")


def _refuse_javascript(value: Any, source: str) -> None:
    from bson.code import Code

    if isinstance(value, Code):
        raise ConfigError(
            f"{source}: JavaScript code ({{'$code': ...}}) is refused: the filter must not run code on the server"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in JAVASCRIPT_OPERATORS:
                raise ConfigError(
                    f"{source}: {key} runs JavaScript on the MongoDB server and is refused; "
                    "express the condition with query operators"
                )
            _refuse_javascript(item, source)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_javascript(item, source)


def _check_query_document(query: Mapping[str, Any], source: str) -> None:
    for key, value in query.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{source}: empty or non-string field name {key!r}")
        if key.startswith("$"):
            if key not in _TOP_LEVEL_OPERATORS:
                raise ConfigError(f"{source}: unknown top-level operator {key!r}")
            if key in ("$and", "$or", "$nor"):
                if not isinstance(value, list) or not value:
                    raise ConfigError(f"{source}: {key} needs a non-empty array of query documents")
                for sub in value:
                    if not isinstance(sub, dict):
                        raise ConfigError(f"{source}: every item of {key} must be a query document")
                    _check_query_document(sub, source)


def _text(var: str, raw: str) -> str:
    return raw.strip()


def _zone(var: str, raw: str) -> str:
    try:
        load_zone(raw.strip())
    except PeriodError as exc:
        raise ConfigError(f"{var}: {exc}") from None
    return raw.strip()


def _int_in(low: int, high: int | None = None) -> Callable[[str, str], int]:
    return lambda var, raw: _int(var, raw, low, high)


def _choice(options: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(var: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ConfigError(f"{var}={raw!r} must be one of {', '.join(options)}")
        return value

    return parse


def _filter(var: str, raw: str) -> dict[str, Any]:
    return parse_global_filter(raw, source=var)


def _archive_url(var: str, raw: str) -> str:
    """An fsspec URL with its scheme (file:///var/lib/cdr-archive, s3://bucket/prefix): no relative paths."""
    url = raw.strip().rstrip("/")
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*://.+", url):
        raise ConfigError(
            f"{var}={raw!r} is not a URL with a scheme (e.g. file:///var/lib/cdr-archive, s3://bucket/prefix)"
        )
    if url.startswith("file://") and not url.startswith("file:///"):
        raise ConfigError(f"{var}={raw!r}: a file URL needs an absolute path (file:///var/lib/cdr-archive)")
    return url


# Environment variable -> (Settings field, parser): the one table of settings, from which
# load_settings works and against which the README, .env.example and the tests are checked.
SETTINGS_TABLE: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "CDR_TIMEZONE": ("time_zone", _zone),
    "CDR_MONGO_CONN_ID": ("mongo_conn_id", _text),
    "CDR_MONGO_DATABASE": ("mongo_database", _text),
    "CDR_MONGO_COLLECTION": ("collection", _text),
    "CDR_SQL_CONN_ID": ("sql_conn_id", _text),
    "CDR_SQL_SCHEMA": ("sql_schema", _text),
    "CDR_GLOBAL_FILTER": ("global_filter", _filter),
    "CDR_EXTRACT_SLICES": ("extract_slices", _int_in(1, 1000)),
    **{row.slices_setting: (row.slices_field, _int_in(1, 1000)) for row in REPORTS.values()},
    "CDR_EXTRACT_STRATEGY": ("extract_strategy", _choice(EXTRACT_STRATEGIES)),
    "CDR_MAX_CALL_DURATION_SECONDS": ("max_call_duration_seconds", _int_in(1)),
    "CDR_MONGO_TIMEOUT_MS": ("mongo_timeout_ms", _int_in(100)),
    "CDR_MONGO_QUERY_TIMEOUT_SECONDS": ("mongo_query_timeout_seconds", _int_in(1)),
    "CDR_WEEK_START": ("week_start", _weekday),
    "CDR_EARLIEST_REPORT_DATE": ("earliest_report_date", _date),
    **{row.due_hour_setting: ("due." + row.due_hour_field, _int_in(0, 23)) for row in REPORTS.values()},
    "CDR_OWNER": ("owner", _text),
    "CDR_CATCHUP": ("catchup", _bool),
    "CDR_RETRIES": ("retries", _int_in(0)),
    "CDR_RETRY_DELAY_SECONDS": ("retry_delay_seconds", _int_in(1)),
    "CDR_MAX_RETRY_DELAY_SECONDS": ("max_retry_delay_seconds", _int_in(1)),
    "CDR_EXECUTION_TIMEOUT_MINUTES": ("execution_timeout_minutes", _int_in(1)),
    "CDR_DAGRUN_TIMEOUT_HOURS": ("dagrun_timeout_hours", _int_in(1)),
    "CDR_REPORT_RETENTION_DAYS": ("report_retention_days", _int_in(1)),
    "CDR_ARCHIVE_URL": ("archive_url", _archive_url),
    "CDR_ARCHIVE_CONN_ID": ("archive_conn_id", _text),
    "CDR_ARCHIVE_REQUIRED": ("archive_required", _bool),
    "CDR_ALERT_EMAILS": ("alert_emails", _emails),
    "CDR_SMTP_CONN_ID": ("smtp_conn_id", _text),
    "CDR_SLACK_CONN_ID": ("slack_conn_id", _text),
    "CDR_SLACK_CHANNEL": ("slack_channel", _text),
    "CDR_DAILY_DEADLINE_LOCAL_TIME": ("daily_deadline_local_time", _local_time),
    **{row.emails_setting: (row.emails_field, _emails) for row in REPORTS.values()},
    "CDR_VOLUME_CHECK_HISTORY": ("volume_check_history", _int_in(0, 366)),
    "CDR_VOLUME_DROP_THRESHOLD": ("volume_drop_threshold", _fraction),
    "CDR_VOLUME_MIN_EXPECTED_CALLS": ("volume_min_expected_calls", _int_in(0)),
    "CDR_LATE_DATA_LOOKBACK_DAYS": ("late_data_lookback_days", _int_in(0, 31)),
    "CDR_LATE_DATA_ACTION": ("late_data_action", _choice(LATE_DATA_ACTIONS)),
    "CDR_ROLLUP": ("rollup", _choice(ROLLUP_MODES)),
}

# Environment variable -> Settings field (derived; what the README and .env.example tests read).
ENV_VARS: dict[str, str] = {var: name for var, (name, _) in SETTINGS_TABLE.items()}

# Which DAG reads which settings (load_settings(defer=..., ignore=...) in dags/*.py): a bad value
# fails the runs that use it, never the DAG files that do not (docs/reliability.md).
# Read only inside tasks, never to build a DAG: a bad value is deferred to the runs.
RUN_TIME_SETTINGS = frozenset(
    {
        "CDR_GLOBAL_FILTER",
        "CDR_EXTRACT_SLICES",
        *(row.slices_setting for row in REPORTS.values()),
        "CDR_EXTRACT_STRATEGY",
        "CDR_MAX_CALL_DURATION_SECONDS",
        "CDR_MONGO_TIMEOUT_MS",
        "CDR_MONGO_QUERY_TIMEOUT_SECONDS",
        "CDR_VOLUME_DROP_THRESHOLD",
        "CDR_VOLUME_MIN_EXPECTED_CALLS",
        "CDR_LATE_DATA_ACTION",
    }
)
# Read by the report DAGs alone.
REPORT_ONLY_SETTINGS = frozenset(
    {
        "CDR_EXTRACT_SLICES",
        *(row.slices_setting for row in REPORTS.values()),
        "CDR_EXTRACT_STRATEGY",
        "CDR_MAX_CALL_DURATION_SECONDS",
        "CDR_WEEK_START",
        *(row.due_hour_setting for row in REPORTS.values()),
        "CDR_CATCHUP",
        "CDR_DAGRUN_TIMEOUT_HOURS",
        "CDR_DAILY_DEADLINE_LOCAL_TIME",
        *(row.emails_setting for row in REPORTS.values()),
        "CDR_VOLUME_CHECK_HISTORY",
        "CDR_VOLUME_DROP_THRESHOLD",
        "CDR_VOLUME_MIN_EXPECTED_CALLS",
        "CDR_LATE_DATA_LOOKBACK_DAYS",
        "CDR_LATE_DATA_ACTION",
        "CDR_ROLLUP",
    }
)
# Read by the retention DAG alone.
RETENTION_ONLY_SETTINGS = frozenset(
    {"CDR_REPORT_RETENTION_DAYS", "CDR_ARCHIVE_URL", "CDR_ARCHIVE_CONN_ID", "CDR_ARCHIVE_REQUIRED"}
)
# Read by the DAGs that query MongoDB (the reports and the source audit), not by retention.
SOURCE_SETTINGS = frozenset(
    {
        "CDR_GLOBAL_FILTER",
        "CDR_MONGO_CONN_ID",
        "CDR_MONGO_DATABASE",
        "CDR_MONGO_COLLECTION",
        "CDR_MONGO_TIMEOUT_MS",
        "CDR_MONGO_QUERY_TIMEOUT_SECONDS",
        "CDR_EARLIEST_REPORT_DATE",
    }
)


def load_settings(
    environ: Mapping[str, str] | None = None, *, defer: Collection[str] = (), ignore: Collection[str] = ()
) -> Settings:
    """Build Settings from the environment; raises ConfigError naming the bad variable.

    A DAG file passes `ignore`: variables its DAG never reads (a bad value there must not take it
    down), and `defer`: variables only its tasks read. A bad deferred value is replaced by the
    default and listed in `invalid_settings`, so the DAG still imports and each of its runs fails
    at once naming the variable (docs/reliability.md, "A bad setting").
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    due: dict[str, int] = {}
    invalid: list[tuple[str, str]] = []
    for var, (name, parse) in SETTINGS_TABLE.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue  # blank means default
        try:
            value = parse(var, raw)
        except ConfigError as exc:
            if var in ignore:
                continue
            if var not in defer:
                raise
            invalid.append((var, str(exc)))
            continue
        if name.startswith("due."):
            due[name.removeprefix("due.")] = value
        else:
            values[name] = value
    if due:
        values["due"] = DueTimes(**due)
    settings = Settings(**values)
    for problem in _problems_together(settings):
        named = set(re.findall(r"CDR_[A-Z0-9_]+", str(problem)))
        if named and named <= set(ignore):
            continue
        if not named & set(defer):
            raise problem
        invalid.append((sorted(named & set(defer))[0], str(problem)))
    return replace(settings, invalid_settings=tuple(invalid)) if invalid else settings


def _check_together(settings: Settings) -> None:
    """Rules that involve several settings: raises the first one broken."""
    for problem in _problems_together(settings):
        raise problem


def _problems_together(settings: Settings) -> Iterator[ConfigError]:
    """Each rule involving several settings that `settings` breaks, naming every variable involved."""
    if settings.slack_conn_id and not settings.slack_channel:
        yield ConfigError("CDR_SLACK_CHANNEL must name the channel (e.g. #cdr-alerts) when CDR_SLACK_CONN_ID is set")
    if settings.daily_deadline_local_time is not None:
        hour, minute = map(int, settings.daily_deadline_local_time.split(":"))
        if (hour, minute) <= (settings.due.daily_hour, 0):
            yield ConfigError(
                f"CDR_DAILY_DEADLINE_LOCAL_TIME={settings.daily_deadline_local_time} must be later than the daily "
                f"report's due time {settings.due.daily_hour:02d}:00 (CDR_DAILY_DUE_HOUR)"
            )
    if settings.mongo_query_timeout_seconds is not None and (
        settings.mongo_query_timeout_seconds >= settings.execution_timeout_minutes * 60
    ):
        yield ConfigError(
            f"CDR_MONGO_QUERY_TIMEOUT_SECONDS={settings.mongo_query_timeout_seconds} must be shorter than the task's "
            f"CDR_EXECUTION_TIMEOUT_MINUTES ({settings.execution_timeout_minutes} min), so a stuck query fails a try "
            "that can be retried"
        )
    if settings.max_retry_delay_seconds < settings.retry_delay_seconds:
        yield ConfigError(
            "CDR_MAX_RETRY_DELAY_SECONDS must be >= CDR_RETRY_DELAY_SECONDS "
            f"({settings.max_retry_delay_seconds} < {settings.retry_delay_seconds})"
        )


def query_timeout_seconds(settings: Settings) -> int:
    """The socket timeout of an extract query: the setting, else half the task's execution timeout."""
    return settings.mongo_query_timeout_seconds or settings.execution_timeout_minutes * 30


def settings_as_json(settings: Settings) -> str:
    """A log-friendly dump (no secrets live in Settings: connections hold them)."""
    return json.dumps(asdict(settings), default=str, sort_keys=True)
