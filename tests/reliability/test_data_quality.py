"""Data-quality alarms end to end: the daily DAG on FerretDB + PostgreSQL, alerts through a real SMTP server.

Seeded history (seven reported days of stable traffic per operator, stored by the pipeline
itself), then `dag.test()` of the daily report for the next day with one anomaly each:
- an operator's calls drop below half of its median   -> one `drop` row, one e-mail;
- an operator has no calls                           -> one `vanished` row, one e-mail;
- an operator never seen before                       -> one `new` row, one e-mail;
- all three at once                                   -> three rows, ONE e-mail listing them;
- CDRs inserted for a day after it was reported       -> one `late_data` row, one e-mail, and the
  day re-reported (`CDR_LATE_DATA_ACTION=rereport`) or left as stored (`alert`).
Every day also holds documents with unstorable operator ids (NUL, control characters) and an
array start straddling the days: the PostgreSQL load must not be blocked by them, nor count them.
The source audit DAG stores its count and alerts only when the count grew.
"""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from bson import ObjectId, Timestamp

from cdr_reports.integration.source_audit import DAG_ID as AUDIT_DAG_ID
from cdr_reports.integration.source_audit import build_source_audit_dag
from cdr_reports.pipeline.audit import read_audits
from cdr_reports.pipeline.config import Settings, load_settings
from cdr_reports.pipeline.load import read_report
from cdr_reports.pipeline.periods import ReportPeriod
from cdr_reports.pipeline.quality.checks import check_volume
from cdr_reports.pipeline.quality.store import read_findings
from cdr_reports.pipeline.runner import run_report
from cdr_reports.pipeline.validity import unplaceable_query
from tests.support.findings import calls
from tests.support.findings import mails as _mails
from tests.support.processes import build_dag, smtp_connection_uri, task_states
from tests.support.reference import expected_report
from tests.support.reports import DAY, assert_stored_equals_reference

RECIPIENT = "noc@example.org"
HISTORY = [DAY]
for _ in range(7):
    HISTORY.insert(0, HISTORY[0].previous())
PREVIOUS_DAYS, CURRENT = HISTORY[:-1], HISTORY[-1]  # 2026-11-20 .. 26, and 2026-11-27
STABLE = {"STEADY": 60, "A": 50, "B": 40}


def junk(period: ReportPeriod) -> list[dict]:
    """Documents that must neither block a PostgreSQL load nor be counted as calls."""
    mid = period.start_utc + (period.end_utc - period.start_utc) / 2
    day = period.end_utc - period.start_utc
    return [
        {"Operator": {"Id": "a\x00b"}, "DateTime": {"Start": mid}, "Duration": 5},  # NUL: PostgreSQL refuses it
        {"Operator": {"Id": "nul\x00"}, "DateTime": {"Start": mid, "Connect": mid}, "Duration": 7},
        {"Operator": {"Id": "tab\tid"}, "DateTime": {"Start": mid}, "Duration": 5},
        {"Operator": {"Id": "A"}, "DateTime": {"Start": [mid - 3 * day, mid + 3 * day]}, "Duration": 5},  # straddles
    ]


def day_docs(period: ReportPeriod, volumes: dict) -> list[dict]:
    return [doc for operator, count in volumes.items() for doc in calls(period, operator, count)] + junk(period)


@pytest.fixture
def quality_env(dag_env, smtp_server, mongo_uri, mongo_db, pg_uri, pg_schema, pg_engine):
    """Seven reported days of stable traffic in FerretDB/PostgreSQL; connections, SMTP alerts; returns helpers."""
    _, schema = pg_schema

    def apply(settings: dict[str, str] | None = None) -> None:
        dag_env(
            {"CDR_SQL_SCHEMA": schema, "CDR_ALERT_EMAILS": RECIPIENT, **(settings or {})},
            {
                "cdr_mongo": f"mongo://{urlsplit(mongo_uri).netloc}/{mongo_db.name}",
                "cdr_reports_db": pg_uri,
                "smtp_default": smtp_connection_uri(smtp_server),
            },
        )

    seeded: list[dict] = []
    for period in PREVIOUS_DAYS:
        docs = day_docs(period, STABLE)
        mongo_db.CdrRecords.insert_many([dict(d) for d in docs])
        seeded += docs
    for period in PREVIOUS_DAYS:
        run_report(
            mongo_db.CdrRecords, pg_engine, period, Settings(sql_schema=schema), dag_run_id=f"seed-{period.start_date}"
        )
    return type(
        "QualityEnv",
        (),
        {
            "apply": staticmethod(apply),
            "schema": schema,
            "engine": pg_engine,
            "db": mongo_db,
            "smtp": smtp_server,
            "seeded": seeded,
        },
    )


def _run_current_day(env, current_volumes: dict):
    docs = day_docs(CURRENT, current_volumes)
    env.db.CdrRecords.insert_many([dict(d) for d in docs])
    run = build_dag("daily").test(run_conf={"report_date": CURRENT.start_date.isoformat()})
    states = task_states(run)
    assert str(run.state) == "success", states
    assert {task: state for task, (state, _) in states.items()} == {
        "plan": "success", "extract[0]": "success", "aggregate": "success", "load": "success",
        "check_volume": "success", "check_late_data": "success", "rebuild_rollups": "success",
        "trigger_rebuilds": "skipped",  # no stored week or month to rebuild: mapped over nothing
    }  # fmt: skip
    # The report of the day is stored on PostgreSQL despite the NUL ids, and counts exactly the reference.
    expected = expected_report(docs, CURRENT.start_utc, CURRENT.end_utc)
    assert expected["rejected"] == 3  # the two NUL ids and the tab; the array start is in no day
    stored = read_report(env.engine, "daily", CURRENT.start_date, schema=env.schema)
    assert stored is not None and stored["run"]["dag_run_id"] == run.run_id
    assert (stored["run"]["source_records"], stored["run"]["rejected_records"]) == (expected["source"], 3)
    assert {row["operator_id"]: row["total_calls"] for row in stored["rows"]} == {
        key: row["total_calls"] for key, row in expected["rows"].items()
    }
    return run


SCENARIOS = {
    "drop": ({**STABLE, "A": 10}, {("A", "drop", 50.0, 10)}),
    "vanished": ({"STEADY": 60, "A": 50}, {("B", "vanished", 40.0, 0)}),
    "new": ({**STABLE, "NEWOP": 25}, {("NEWOP", "new", None, 25)}),
    "all at once": (
        {"STEADY": 60, "A": 10, "NEWOP": 25},
        {("A", "drop", 50.0, 10), ("B", "vanished", 40.0, 0), ("NEWOP", "new", None, 25)},
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_volume_anomaly_gives_one_row_per_operator_and_one_alert(quality_env, scenario):
    volumes, want = SCENARIOS[scenario]
    quality_env.apply()

    run = _run_current_day(quality_env, volumes)

    rows = read_findings(quality_env.engine, schema=quality_env.schema)
    assert {(r["operator_id"], r["verdict"], r["expected"], r["actual"]) for r in rows} == want
    assert len(rows) == len(want)
    assert {(r["report_type"], r["period_start"], r["dag_run_id"]) for r in rows} == {
        ("daily", CURRENT.start_date, run.run_id)
    }
    mails = _mails(quality_env.smtp)
    assert len(mails) == 1, [subject for subject, _ in mails]
    subject, body = mails[0]
    print(f"\n{subject}\n{body}")
    assert subject.startswith("[cdr-reports] VOLUME cdr_daily_report (daily 2026-11-27): ")
    assert f"Run: {run.run_id}" in body
    for operator, verdict, _, _ in want:
        assert f"{verdict.upper()} daily 2026-11-27 operator '{operator}'" in body
        assert f"1 {verdict}" in subject
    assert "STEADY" not in body

    # Checking the same report again replaces its findings: never a duplicate row.
    settings = Settings(sql_schema=quality_env.schema)
    again = check_volume(quality_env.engine, "daily", CURRENT.start_date, settings, "manual-recheck")
    assert {(f.operator_id, f.verdict, f.expected, f.actual) for f in again} == want
    rows = read_findings(quality_env.engine, schema=quality_env.schema)
    assert len(rows) == len(want) and {r["dag_run_id"] for r in rows} == {"manual-recheck"}


def test_stable_traffic_stores_no_finding_and_sends_nothing(quality_env):
    quality_env.apply()
    _run_current_day(quality_env, STABLE)
    assert read_findings(quality_env.engine, schema=quality_env.schema) == []
    assert quality_env.smtp.received() == []


@pytest.mark.parametrize("action", ["rereport", "alert"])
def test_late_cdrs_give_one_late_data_row_and_one_alert(quality_env, action):
    yesterday = PREVIOUS_DAYS[-1]
    before = read_report(quality_env.engine, "daily", yesterday.start_date, schema=quality_env.schema)
    # Late: CDRs of yesterday inserted after yesterday was reported (a new operator among them).
    late = calls(yesterday, "A", 4, tag="late") + calls(yesterday, "LATE-OP", 3, tag="late")
    quality_env.db.CdrRecords.insert_many([dict(d) for d in late])
    quality_env.apply({"CDR_LATE_DATA_ACTION": action})

    run = _run_current_day(quality_env, STABLE)

    rows = read_findings(quality_env.engine, schema=quality_env.schema)
    assert len(rows) == 1, rows
    row = rows[0]
    stored_source = before["run"]["source_records"]
    assert (row["report_type"], row["period_start"], row["operator_id"], row["verdict"]) == (
        "daily",
        yesterday.start_date,
        "",
        "late_data",
    )
    assert (row["expected"], row["actual"], row["dag_run_id"]) == (stored_source, stored_source + 7, run.run_id)
    after = read_report(quality_env.engine, "daily", yesterday.start_date, schema=quality_env.schema)
    if action == "rereport":
        assert "re-reported" in row["detail"]
        everything = quality_env.seeded + late
        assert_stored_equals_reference(
            quality_env.engine, expected_report(everything, yesterday.start_utc, yesterday.end_utc), period=yesterday
        )
        assert after["run"]["dag_run_id"] == run.run_id
        assert after["run"]["source_records"] == stored_source + 7
        totals = {r["operator_id"]: r["total_calls"] for r in after["rows"]}
        assert totals == {**STABLE, "A": 54, "LATE-OP": 3}
    else:
        assert "not re-reported" in row["detail"]
        assert after == before  # the stored report is left as it was
    mails = _mails(quality_env.smtp)
    assert len(mails) == 1, [subject for subject, _ in mails]
    subject, body = mails[0]
    print(f"\n{subject}\n{body}")
    assert subject.startswith("[cdr-reports] LATE DATA cdr_daily_report: source count changed for 2026-11-26")
    assert f"LATE_DATA daily 2026-11-26 whole period: source CDRs {stored_source} when reported" in body
    assert f"{stored_source + 7} now (+7)" in body


# --------------------------------------------------------------------------- source audit


def test_source_audit_dag_stores_the_count_and_alerts_only_when_it_grows(quality_env):
    mid = CURRENT.start_utc + timedelta(hours=12)
    unplaceable = [
        {"Operator": {"Id": 1}, "Duration": 5},  # no DateTime
        {"Operator": {"Id": 1}, "DateTime": {"Connect": mid}, "Duration": 5},  # no Start
        {"Operator": {"Id": 1}, "DateTime": {"Start": None}, "Duration": 5},
        {"Operator": {"Id": 1}, "DateTime": {"Start": mid.isoformat()}, "Duration": 5},  # ISO string
        {"Operator": {"Id": 1}, "DateTime": {"Start": int(mid.timestamp())}, "Duration": 5},  # epoch seconds
        {
            "Operator": {"Id": 1},
            "DateTime": {"Start": Timestamp(int(mid.timestamp()), 1)},
            "Duration": 5,
        },  # BSON timestamp
        {"Operator": {"Id": 1}, "DateTime": [{"Start": mid}], "Duration": 5},  # DateTime an array
    ]
    deleted = {
        "Operator": {"Id": 1},
        "DateTime": {"Start": "yesterday"},
        "IsDeleted": True,
    }  # the global filter drops it
    quality_env.db.CdrRecords.insert_many([dict(d) for d in [*unplaceable, deleted]])
    expected = len(unplaceable) + len(PREVIOUS_DAYS)  # + one straddling array start per seeded day
    quality_env.apply()

    def audit_run():
        run = build_source_audit_dag(load_settings()).test()
        assert str(run.state) == "success" and task_states(run) == {"audit": ("success", 1)}
        return run

    first = audit_run()
    [row] = read_audits(quality_env.engine, schema=quality_env.schema)
    assert (row["dag_run_id"], row["unplaceable_records"], row["previous_records"]) == (first.run_id, expected, None)
    samples = [ObjectId(value["$oid"]) for value in json.loads(row["sample_ids"])]
    assert len(samples) == 5
    # Every sample is a CDR the audit is about (and passes the global filter).
    assert (
        quality_env.db.CdrRecords.count_documents(
            {"$and": [{"_id": {"$in": samples}}, unplaceable_query(), {"IsDeleted": {"$ne": True}}]}
        )
        == 5
    )
    mails = _mails(quality_env.smtp)
    assert len(mails) == 1
    subject, body = mails[0]
    print(f"\n{subject}\n{body}")
    assert subject == f"[cdr-reports] SOURCE AUDIT {expected} CDRs in no period (previous audit: none)"
    assert f"DAG: {AUDIT_DAG_ID}" in body and f"Run: {first.run_id}" in body

    second = audit_run()  # nothing new: stored, not alerted
    assert [
        (r["dag_run_id"], r["unplaceable_records"], r["previous_records"])
        for r in read_audits(quality_env.engine, schema=quality_env.schema)
    ] == [(first.run_id, expected, None), (second.run_id, expected, expected)]
    assert len(quality_env.smtp.received()) == 1

    quality_env.db.CdrRecords.insert_one({"Operator": {"Id": 2}, "DateTime": {"Start": "2026-11-28"}, "Duration": 1})
    third = audit_run()  # one more: alerted
    assert read_audits(quality_env.engine, schema=quality_env.schema)[-1]["unplaceable_records"] == expected + 1
    mails = _mails(quality_env.smtp)
    assert len(mails) == 2
    assert mails[1][0] == f"[cdr-reports] SOURCE AUDIT {expected + 1} CDRs in no period (previous audit: {expected})"
    assert f"Run: {third.run_id}" in mails[1][1]
