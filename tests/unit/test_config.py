from __future__ import annotations

import pytest

from cdr_reports.pipeline.config import (
    DEFAULT_GLOBAL_FILTER,
    ENV_VARS,
    ConfigError,
    Settings,
    load_settings,
    parse_global_filter,
)
from cdr_reports.pipeline.errors import PermanentError


def test_defaults_match_the_original_system():
    s = load_settings({})
    assert s.time_zone == "Europe/Istanbul"
    assert (s.due.daily_hour, s.due.weekly_hour, s.due.monthly_hour) == (2, 3, 4)
    assert s.week_start == 0
    assert s.global_filter == {"IsDeleted": {"$ne": True}} == DEFAULT_GLOBAL_FILTER
    assert (s.mongo_conn_id, s.sql_conn_id, s.collection) == ("cdr_mongo", "cdr_reports_db", "CdrRecords")
    assert s.extract_slices == 1
    # New, not in the original system: weekly and monthly reports roll the stored daily reports up.
    assert s.rollup == "auto"


def test_every_variable_overrides_its_setting():
    env = {
        "CDR_TIMEZONE": "Europe/Berlin",
        "CDR_MONGO_CONN_ID": "m",
        "CDR_MONGO_DATABASE": "db",
        "CDR_MONGO_COLLECTION": "Calls",
        "CDR_SQL_CONN_ID": "s",
        "CDR_SQL_SCHEMA": "reports",
        "CDR_GLOBAL_FILTER": '{"Tenant": "x", "At": {"$gte": {"$date": "2020-01-01T00:00:00Z"}}}',
        "CDR_EXTRACT_SLICES": "4",
        "CDR_EXTRACT_SLICES_DAILY": "2",
        "CDR_EXTRACT_SLICES_WEEKLY": "7",
        "CDR_EXTRACT_SLICES_MONTHLY": "31",
        "CDR_EXTRACT_STRATEGY": "Stream",
        "CDR_MAX_CALL_DURATION_SECONDS": "7200",
        "CDR_MONGO_TIMEOUT_MS": "2500",
        "CDR_MONGO_QUERY_TIMEOUT_SECONDS": "600",
        "CDR_WEEK_START": "sunday",
        "CDR_EARLIEST_REPORT_DATE": "2025-06-01",
        "CDR_DAILY_DUE_HOUR": "5",
        "CDR_WEEKLY_DUE_HOUR": "6",
        "CDR_MONTHLY_DUE_HOUR": "7",
        "CDR_OWNER": "team",
        "CDR_CATCHUP": "true",
        "CDR_RETRIES": "5",
        "CDR_RETRY_DELAY_SECONDS": "30",
        "CDR_MAX_RETRY_DELAY_SECONDS": "900",
        "CDR_EXECUTION_TIMEOUT_MINUTES": "15",
        "CDR_DAGRUN_TIMEOUT_HOURS": "2",
        "CDR_REPORT_RETENTION_DAYS": "400",
        "CDR_ARCHIVE_URL": " s3://cdr-archive/reports/ ",
        "CDR_ARCHIVE_CONN_ID": "archive_s3",
        "CDR_ARCHIVE_REQUIRED": "yes",
        "CDR_ALERT_EMAILS": "ops@example.org, noc@example.net",
        "CDR_SMTP_CONN_ID": "mail",
        "CDR_SLACK_CONN_ID": "chat",
        "CDR_SLACK_CHANNEL": "#cdr-alerts",
        "CDR_DAILY_DEADLINE_LOCAL_TIME": "7:30",
        "CDR_REPORT_EMAILS_DAILY": "finance@example.org",
        "CDR_REPORT_EMAILS_WEEKLY": "ops@example.org; noc@example.net",
        "CDR_REPORT_EMAILS_MONTHLY": "cfo@example.org",
        "CDR_VOLUME_CHECK_HISTORY": "14",
        "CDR_VOLUME_DROP_THRESHOLD": "0.25",
        "CDR_VOLUME_MIN_EXPECTED_CALLS": "0",
        "CDR_LATE_DATA_LOOKBACK_DAYS": "0",
        "CDR_LATE_DATA_ACTION": "Alert",
        "CDR_ROLLUP": "OFF",
    }
    assert set(env) == set(ENV_VARS)  # the test covers the whole table
    s = load_settings(env)
    assert s.time_zone == "Europe/Berlin" and s.mongo_database == "db" and s.collection == "Calls"
    assert s.global_filter["Tenant"] == "x" and s.global_filter["At"]["$gte"].year == 2020
    assert (s.extract_slices, s.max_call_duration_seconds, s.mongo_timeout_ms, s.week_start) == (4, 7200, 2500, 6)
    assert (s.extract_slices_daily, s.extract_slices_weekly, s.extract_slices_monthly) == (2, 7, 31)
    assert s.mongo_query_timeout_seconds == 600
    assert s.earliest_report_date.isoformat() == "2025-06-01"
    assert s.rollup == "off"
    assert (s.due.daily_hour, s.due.weekly_hour, s.due.monthly_hour) == (5, 6, 7)
    assert (s.owner, s.catchup, s.retries, s.retry_delay_seconds, s.max_retry_delay_seconds) == (
        "team",
        True,
        5,
        30,
        900,
    )
    assert (s.execution_timeout_minutes, s.dagrun_timeout_hours, s.sql_schema, s.sql_conn_id) == (15, 2, "reports", "s")
    assert (s.report_retention_days, s.alert_emails) == (400, ("ops@example.org", "noc@example.net"))
    assert (s.archive_url, s.archive_conn_id, s.archive_required) == ("s3://cdr-archive/reports", "archive_s3", True)
    assert (s.smtp_conn_id, s.slack_conn_id, s.slack_channel, s.daily_deadline_local_time) == (
        "mail",
        "chat",
        "#cdr-alerts",
        "07:30",
    )
    assert (s.report_emails_daily, s.report_emails_weekly, s.report_emails_monthly) == (
        ("finance@example.org",),
        ("ops@example.org", "noc@example.net"),
        ("cfo@example.org",),
    )
    assert s.extract_strategy == "stream"
    assert (s.volume_check_history, s.volume_drop_threshold, s.volume_min_expected_calls) == (14, 0.25, 0)
    assert (s.late_data_lookback_days, s.late_data_action) == (0, "alert")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"daily": 1, "weekly": 1, "monthly": 1}),
        ({"CDR_EXTRACT_SLICES": "4"}, {"daily": 4, "weekly": 4, "monthly": 4}),
        ({"CDR_EXTRACT_SLICES_MONTHLY": "31"}, {"daily": 1, "weekly": 1, "monthly": 31}),
        (
            {"CDR_EXTRACT_SLICES": "4", "CDR_EXTRACT_SLICES_WEEKLY": "7", "CDR_EXTRACT_SLICES_DAILY": " "},
            {"daily": 4, "weekly": 7, "monthly": 4},
        ),
    ],
)
def test_slice_count_per_report_type_falls_back_to_the_common_one(env, expected):
    s = load_settings(env)
    assert {kind: s.slices_for(kind) for kind in expected} == expected


@pytest.mark.parametrize("raw", ["0", "1001", "many"])
def test_a_bad_per_type_slice_count_names_its_variable(raw):
    with pytest.raises(ConfigError, match=f"CDR_EXTRACT_SLICES_MONTHLY={raw!r}"):
        load_settings({"CDR_EXTRACT_SLICES_MONTHLY": raw})


def test_data_quality_defaults():
    s = load_settings({})
    assert (s.volume_check_history, s.volume_drop_threshold, s.volume_min_expected_calls) == (7, 0.5, 20)
    assert (s.late_data_lookback_days, s.late_data_action) == (2, "rereport")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CDR_TIMEZONE": "Mars/Olympus"}, "CDR_TIMEZONE"),
        ({"CDR_GLOBAL_FILTER": "{not json"}, "CDR_GLOBAL_FILTER is not valid JSON"),
        ({"CDR_GLOBAL_FILTER": "[1, 2]"}, "must be a JSON object"),
        ({"CDR_GLOBAL_FILTER": '{"$bogus": 1}'}, "unknown top-level operator '$bogus'"),
        ({"CDR_GLOBAL_FILTER": '{"$and": []}'}, "$and needs a non-empty array"),
        ({"CDR_EXTRACT_SLICES": "0"}, "CDR_EXTRACT_SLICES='0' must be between 1 and 1000"),
        ({"CDR_EXTRACT_SLICES": "two"}, "not a whole number"),
        ({"CDR_DAILY_DUE_HOUR": "24"}, "CDR_DAILY_DUE_HOUR"),
        ({"CDR_CATCHUP": "maybe"}, "not a boolean"),
        ({"CDR_WEEK_START": "Caturday"}, "CDR_WEEK_START"),
        ({"CDR_EARLIEST_REPORT_DATE": "2026-13-01"}, "CDR_EARLIEST_REPORT_DATE='2026-13-01' is not a date"),
        (
            {"CDR_RETRY_DELAY_SECONDS": "600", "CDR_MAX_RETRY_DELAY_SECONDS": "60"},
            "CDR_MAX_RETRY_DELAY_SECONDS must be >=",
        ),
        ({"CDR_VOLUME_CHECK_HISTORY": "-1"}, "CDR_VOLUME_CHECK_HISTORY='-1' must be between 0 and 366"),
        ({"CDR_VOLUME_DROP_THRESHOLD": "50%"}, "CDR_VOLUME_DROP_THRESHOLD='50%' is not a number"),
        ({"CDR_VOLUME_DROP_THRESHOLD": "0"}, "must be a fraction > 0 and <= 1"),
        ({"CDR_VOLUME_DROP_THRESHOLD": "nan"}, "must be a fraction > 0 and <= 1"),
        ({"CDR_VOLUME_MIN_EXPECTED_CALLS": "-5"}, "CDR_VOLUME_MIN_EXPECTED_CALLS='-5' must be >= 0"),
        ({"CDR_LATE_DATA_LOOKBACK_DAYS": "32"}, "CDR_LATE_DATA_LOOKBACK_DAYS='32' must be between 0 and 31"),
        ({"CDR_LATE_DATA_ACTION": "fix"}, "CDR_LATE_DATA_ACTION='fix' must be one of rereport, alert"),
        (
            {"CDR_ARCHIVE_URL": "/var/lib/cdr-archive"},
            "CDR_ARCHIVE_URL='/var/lib/cdr-archive' is not a URL with a scheme",
        ),
        ({"CDR_ARCHIVE_URL": "file://relative/dir"}, "a file URL needs an absolute path"),
        ({"CDR_ARCHIVE_REQUIRED": "sure"}, "CDR_ARCHIVE_REQUIRED='sure' is not a boolean"),
    ],
)
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert needle in str(caught.value)
    assert isinstance(caught.value, PermanentError)


def test_blank_values_mean_default():
    assert load_settings({"CDR_TIMEZONE": "  ", "CDR_RETRIES": ""}) == Settings()


def test_filter_from_mapping_is_checked_too():
    assert parse_global_filter({"$or": [{"a": 1}, {"b": 2}]}) == {"$or": [{"a": 1}, {"b": 2}]}
    with pytest.raises(ConfigError):
        parse_global_filter({"$or": [1]})


def test_query_timeout_defaults_to_half_the_task_timeout():
    from cdr_reports.pipeline.config import query_timeout_seconds

    assert query_timeout_seconds(load_settings({})) == 1800
    assert query_timeout_seconds(load_settings({"CDR_EXECUTION_TIMEOUT_MINUTES": "15"})) == 450


def test_query_timeout_must_leave_room_for_a_retry():
    with pytest.raises(ConfigError, match="CDR_MONGO_QUERY_TIMEOUT_SECONDS=3600 must be shorter"):
        load_settings({"CDR_MONGO_QUERY_TIMEOUT_SECONDS": "3600"})
    assert load_settings({"CDR_MONGO_QUERY_TIMEOUT_SECONDS": "3599"}).mongo_query_timeout_seconds == 3599


def test_deferred_bad_settings_become_defaults_listed_as_invalid():
    from cdr_reports.pipeline.config import RUN_TIME_SETTINGS

    env = {"CDR_GLOBAL_FILTER": '{"$where": "1"}', "CDR_MONGO_QUERY_TIMEOUT_SECONDS": "3600", "CDR_RETRIES": "5"}
    s = load_settings(env, defer=RUN_TIME_SETTINGS)
    assert s.global_filter == Settings().global_filter and s.retries == 5
    assert [var for var, _ in s.invalid_settings] == ["CDR_GLOBAL_FILTER", "CDR_MONGO_QUERY_TIMEOUT_SECONDS"]
    assert "$where runs JavaScript" in s.invalid_settings[0][1]
    assert "must be shorter than the task's CDR_EXECUTION_TIMEOUT_MINUTES" in s.invalid_settings[1][1]
    with pytest.raises(ConfigError, match=r"\$where"):
        load_settings(env)  # without defer: at once


def test_ignored_bad_settings_are_dropped_and_others_still_raise():
    env = {"CDR_DAILY_DEADLINE_LOCAL_TIME": "01:00", "CDR_LATE_DATA_ACTION": "shout"}
    ignore = {"CDR_DAILY_DEADLINE_LOCAL_TIME", "CDR_DAILY_DUE_HOUR", "CDR_LATE_DATA_ACTION"}
    s = load_settings(env, ignore=ignore)
    assert s.late_data_action == Settings().late_data_action and s.invalid_settings == ()
    with pytest.raises(ConfigError, match="CDR_LATE_DATA_ACTION"):
        load_settings(env, ignore={"CDR_DAILY_DEADLINE_LOCAL_TIME", "CDR_DAILY_DUE_HOUR"})


def test_setting_scopes_name_only_real_settings():
    from cdr_reports.pipeline import config

    scopes = (
        config.RUN_TIME_SETTINGS,
        config.REPORT_ONLY_SETTINGS,
        config.RETENTION_ONLY_SETTINGS,
        config.SOURCE_SETTINGS,
    )
    for scope in scopes:
        assert scope <= set(config.SETTINGS_TABLE), scope - set(config.SETTINGS_TABLE)
    assert not config.REPORT_ONLY_SETTINGS & config.RETENTION_ONLY_SETTINGS
