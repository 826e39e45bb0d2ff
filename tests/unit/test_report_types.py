"""The report-type table (pipeline/report_types.py) and the code that reads it agree."""

from __future__ import annotations

import ast
import dataclasses
import re
from datetime import timedelta
from pathlib import Path
from typing import get_args

import pytest

from cdr_reports.integration.dag_docs import dag_doc, due_after
from cdr_reports.integration.dag_factory import DAG_IDS
from cdr_reports.integration.security import REPORT_DAG_IDS
from cdr_reports.pipeline import config, report_types
from cdr_reports.pipeline.config import DueTimes, Settings, load_settings
from cdr_reports.pipeline.periods import REPORT_TYPES as PERIOD_REPORT_TYPES
from cdr_reports.pipeline.report_types import REPORT_TYPES, REPORTS, ReportTypeName

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "cdr_report_dags.py"


def test_the_three_types_in_reporting_order():
    assert REPORT_TYPES == ("daily", "weekly", "monthly") == get_args(ReportTypeName) == tuple(REPORTS)
    assert PERIOD_REPORT_TYPES is REPORT_TYPES


def test_ids_and_names_of_each_row():
    daily = report_types.of("daily")
    assert (daily.dag_id, daily.asset_name, daily.asset_uri, daily.label) == (
        "cdr_daily_report",
        "cdr_daily_report_table",
        "x-cdr-reports://reports/daily",
        "Daily",
    )
    assert [row.dag_id for row in REPORTS.values()] == ["cdr_daily_report", "cdr_weekly_report", "cdr_monthly_report"]
    for field in ("dag_id", "asset_name", "asset_uri", "label", "period", "cadence"):
        values = [getattr(row, field) for row in REPORTS.values()]
        assert len(set(values)) == len(values), f"{field} must differ between report types"


@pytest.mark.parametrize("bad", ["hourly", "Daily", "", None, 1])
def test_unknown_type_is_refused_naming_the_known_ones(bad):
    with pytest.raises(ValueError, match=r"unknown report type .*: expected one of daily, weekly, monthly"):
        report_types.of(bad)


def test_modules_read_their_ids_from_the_table():
    assert DAG_IDS == {"daily": "cdr_daily_report", "weekly": "cdr_weekly_report", "monthly": "cdr_monthly_report"}
    assert tuple(DAG_IDS.values()) == REPORT_DAG_IDS


def test_settings_of_each_row_are_settings_fields_and_environment_variables():
    settings_fields = {f.name: f for f in dataclasses.fields(Settings)}
    due_fields = {f.name: f for f in dataclasses.fields(DueTimes)}
    for row in REPORTS.values():
        assert config.SETTINGS_TABLE[row.slices_setting][0] == row.slices_field
        assert config.SETTINGS_TABLE[row.emails_setting][0] == row.emails_field
        assert config.SETTINGS_TABLE[row.due_hour_setting][0] == f"due.{row.due_hour_field}"
        assert settings_fields[row.slices_field].default is None
        assert settings_fields[row.emails_field].default == ()
        assert due_fields[row.due_hour_field].default == row.default_due_hour
        assert row.slices_setting in config.RUN_TIME_SETTINGS
        assert {row.slices_setting, row.emails_setting, row.due_hour_setting} <= config.REPORT_ONLY_SETTINGS
    assert [f.name for f in dataclasses.fields(DueTimes)] == [row.due_hour_field for row in REPORTS.values()]


def test_per_type_settings_are_read_through_the_table():
    env = {
        "CDR_EXTRACT_SLICES": "2",
        "CDR_EXTRACT_SLICES_MONTHLY": "31",
        "CDR_REPORT_EMAILS_WEEKLY": "noc@example.com",
        "CDR_WEEKLY_DUE_HOUR": "7",
    }
    settings = load_settings(env)
    assert [settings.slices_for(t) for t in REPORT_TYPES] == [2, 2, 31]
    assert [settings.emails_for(t) for t in REPORT_TYPES] == [(), ("noc@example.com",), ()]
    assert [settings.due.hour_for(t) for t in REPORT_TYPES] == [2, 7, 4]
    assert [due_after(t, settings) for t in REPORT_TYPES] == [timedelta(hours=h) for h in (2, 7, 4)]
    with pytest.raises(ValueError, match="unknown report type 'hourly'"):
        settings.slices_for("hourly")


def test_dag_doc_heading_and_period_come_from_the_row():
    settings = Settings()
    for row in REPORTS.values():
        doc = dag_doc(row.name, settings, row.dag_id)
        assert f"# {row.label} CDR report" in doc
        assert f"**{row.period}**" in doc


def test_the_dag_file_shows_ids_and_schedules_that_match_the_table():
    """dags/cdr_report_dags.py spells ids and schedules out for a reader; they must be the table's."""
    source = DAG_FILE.read_text()
    tree = ast.parse(source)
    calls = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            call = node.value
            if isinstance(call.func, ast.Name) and call.func.id == "build_report_dag":
                report_type = ast.literal_eval(call.args[0])
                keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg == "dag_id"}
                target = node.targets[0]
                assert isinstance(target, ast.Name)
                calls[report_type] = (target.id, keywords["dag_id"])
    assert calls == {row.name: (row.dag_id, row.dag_id) for row in REPORTS.values()}
    doc = ast.get_docstring(tree) or ""
    for row in REPORTS.values():
        schedule = (
            rf"{row.dag_id}\s+{re.escape(row.cadence)} at {row.default_due_hour:02d}:00 \({row.due_hour_setting}\)"
        )
        assert re.search(schedule + rf"\n\s+reports {re.escape(row.period)}\n", doc), (
            f"the DAG file's docstring does not show {row.dag_id}'s schedule as report_types.py declares it"
        )
