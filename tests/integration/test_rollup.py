"""Weekly and monthly reports rolled up from stored daily reports equal a direct extract, row for row.

Real MongoDB-wire servers (FerretDB with `stream`, mongo-java-server with `pushdown`) and real
SQL sinks (SQLite, PostgreSQL).
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from cdr_reports.pipeline.aggregate import build_report
from cdr_reports.pipeline.load import load_report, read_report
from cdr_reports.pipeline.periods import local_midnight_utc, period_containing
from cdr_reports.pipeline.rollup import StaleRollupError, period_days, rules_fingerprint
from cdr_reports.pipeline.runner import extract_period, run_report
from cdr_reports.pipeline.schema import report_tables
from tests.support.reference import expected_report, random_documents
from tests.support.reports import store_daily_reports

TZ = "Europe/Istanbul"
WEEK = period_containing("weekly", date(2026, 11, 23), TZ)
# Turkey's last DST change: 2016-03-27 was a 23-hour local day (clocks 03:00 -> 04:00).
DST_MONTH = period_containing("monthly", date(2016, 3, 1), TZ)


def _documents(period, per_day: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    docs = random_documents(rng, per_day * len(period_days(period)), period.start_utc, period.end_utc)
    for i, day in enumerate(period_days(period)):
        midnight = local_midnight_utc(day, TZ)
        # CDRs exactly at local midnight (the first instant of a day), durations landing on half
        # seconds, fractional milliseconds, and an operator present on some days only.
        docs += [
            {"Operator": {"Id": "edge"}, "DateTime": {"Start": midnight, "Connect": midnight}, "Duration": 0.5},
            {"Operator": {"Id": "edge"}, "DateTime": {"Start": midnight - timedelta(milliseconds=1)}, "Duration": 1.5},
            {"Operator": {"Id": "half"}, "DateTime": {"Start": midnight + timedelta(hours=3)}, "Duration": 2.0005},
            {"Operator": {"Id": "half"}, "DateTime": {"Start": midnight + timedelta(hours=5)}, "Duration": 0.1},
        ]
        if i % 3 == 0:
            docs.append({"Operator": {"Id": f"sometimes-{i % 2}"}, "DateTime": {"Start": midnight}, "Duration": 7.25})
    return docs


def _comparable(report):
    return (
        report.source_records,
        report.valid_records,
        report.rejected_records,
        [(r.operator_id, r.total_calls, r.answered_calls, r.total_duration_seconds, r.answer_ratio,
          r.avg_answered_duration_seconds, r.total_duration_ms) for r in report.rows],
    )  # fmt: skip


@pytest.mark.parametrize("period", [WEEK, DST_MONTH], ids=["week", "dst-month"])
def test_rollup_equals_a_direct_extract(cdr_db, sql_engine, period):
    docs = _documents(period, 30, seed=period.start_date.toordinal())
    cdr_db.db.CdrRecords.insert_many(docs)
    settings = cdr_db.settings()
    collection = cdr_db.db.CdrRecords
    store_daily_reports(collection, sql_engine, period, settings)

    rolled = run_report(collection, sql_engine, period, settings, "rollup")
    direct = build_report(period, extract_period(collection, period, settings), dag_run_id="direct")

    assert (rolled.method, rolled.days_extracted) == ("rollup", 0)
    assert (direct.method, direct.days_extracted) == ("extract", len(period_days(period)))
    assert _comparable(rolled) == _comparable(direct)
    expected = expected_report(docs, period.start_utc, period.end_utc)
    assert (rolled.source_records, rolled.valid_records) == (expected["source"], expected["valid"])
    assert {r.operator_id: r.total_duration_seconds for r in rolled.rows} == {
        key: row["total_duration_seconds"] for key, row in expected["rows"].items()
    }
    stored = read_report(sql_engine, period.report_type, period.start_date)
    assert stored is not None
    assert (stored["run"]["method"], stored["run"]["days_extracted"]) == ("rollup", 0)
    assert stored["run"]["rules_fingerprint"] == rules_fingerprint(settings)
    assert stored["run"]["rollup_inputs_sha256"] == rolled.rollup_inputs_sha256


def test_mixed_week_extracts_missing_and_foreign_days_only(cdr_db, sql_engine):
    docs = _documents(WEEK, 25, seed=7)
    cdr_db.db.CdrRecords.insert_many(docs)
    settings = cdr_db.settings()
    collection = cdr_db.db.CdrRecords
    days = period_days(WEEK)
    store_daily_reports(collection, sql_engine, WEEK, settings, skip={days[1], days[4]})
    # A day computed under another global filter does not qualify.
    other = replace(settings, global_filter={"IsDeleted": {"$ne": True}, "Operator.Id": {"$ne": 7}})
    run_report(collection, sql_engine, period_containing("daily", days[6], TZ), other, "other-rules")

    mixed = run_report(collection, sql_engine, WEEK, settings, "mixed")
    direct = build_report(WEEK, extract_period(collection, WEEK, settings), dag_run_id="direct")
    assert (mixed.method, mixed.days_extracted) == ("mixed", 3)
    assert sorted(mixed.rollup_inputs or {}) == [d.isoformat() for d in days if d not in (days[1], days[4], days[6])]
    assert _comparable(mixed) == _comparable(direct)

    off = run_report(collection, sql_engine, WEEK, replace(settings, rollup="off"), "off")
    assert (off.method, off.days_extracted) == ("extract", 7)
    assert _comparable(off) == _comparable(direct)


def test_reports_of_earlier_releases_are_never_rolled_up(cdr_db, sql_engine):
    cdr_db.db.CdrRecords.insert_many(_documents(WEEK, 10, seed=3))
    settings = cdr_db.settings()
    collection = cdr_db.db.CdrRecords
    store_daily_reports(collection, sql_engine, WEEK, settings)
    run = report_tables().run
    with sql_engine.begin() as conn:  # what release 0.4 stored: no fingerprint, no method
        conn.execute(
            sa.update(run)
            .where(run.c.report_type == "daily", run.c.period_start == WEEK.start_date)
            .values(rules_fingerprint=None, method=None)
        )
    report = run_report(collection, sql_engine, WEEK, settings, "after-upgrade")
    assert (report.method, report.days_extracted) == ("mixed", 1)


def test_a_stale_rollup_is_refused_and_built_again(cdr_db, sql_engine):
    cdr_db.db.CdrRecords.insert_many(_documents(WEEK, 10, seed=11))
    settings = cdr_db.settings()
    collection = cdr_db.db.CdrRecords
    store_daily_reports(collection, sql_engine, WEEK, settings)
    first = run_report(collection, sql_engine, WEEK, settings, "week-1")
    # A late CDR, and its day re-reported, after the roll-up read the days but before it is stored:
    day = period_days(WEEK)[2]
    cdr_db.db.CdrRecords.insert_one(
        {
            "Operator": {"Id": "late"},
            "DateTime": {"Start": local_midnight_utc(day, TZ) + timedelta(hours=1)},
            "Duration": 9,
        }
    )
    run_report(collection, sql_engine, period_containing("daily", day, TZ), settings, "late-rereport")
    with pytest.raises(StaleRollupError, match=day.isoformat()):
        load_report(sql_engine, replace(first, generated_at=datetime.now(UTC), dag_run_id="stale"))
    assert read_report(sql_engine, "weekly", WEEK.start_date)["run"]["dag_run_id"] == "week-1"
    again = run_report(collection, sql_engine, WEEK, settings, "week-2")
    assert {r.operator_id for r in again.rows} - {r.operator_id for r in first.rows} == {"late"}
    assert again.source_records == first.source_records + 1


def test_a_corrected_day_makes_its_stored_week_and_month_stale_until_rebuilt(cdr_db, sql_engine):
    from cdr_reports.integration.rollup_tasks import rebuild_run_id
    from cdr_reports.pipeline.runner import stale_rollups

    cdr_db.db.CdrRecords.insert_many(_documents(WEEK, 10, seed=5))
    settings = cdr_db.settings()
    collection = cdr_db.db.CdrRecords
    store_daily_reports(collection, sql_engine, WEEK, settings)
    before = run_report(collection, sql_engine, WEEK, settings, "week")
    day = period_days(WEEK)[3]
    assert stale_rollups(sql_engine, [day], settings) == []  # the month is not stored: nothing to rebuild

    # A late CDR re-reported (as check_late_data or a manual re-run does): the stored week is stale.
    cdr_db.db.CdrRecords.insert_one(
        {"Operator": {"Id": "late"}, "DateTime": {"Start": local_midnight_utc(day, TZ)}, "Duration": 4.5}
    )
    run_report(collection, sql_engine, period_containing("daily", day, TZ), settings, "rereport")
    [stale] = stale_rollups(sql_engine, [day], settings)
    assert (stale.period, day.isoformat() in stale.reason) == (WEEK, True)
    assert stale.inputs_sha256 not in (None, before.rollup_inputs_sha256)
    assert stale_rollups(sql_engine, [day], replace(settings, rollup="off")) == []
    # The daily DAG's trigger_rebuilds run id names the period and this state of its days: the same
    # correction seen again never starts a second run, a newer one starts a new run.
    assert stale_rollups(sql_engine, [day], settings) == [stale]
    run_id = rebuild_run_id(stale.period.start_date, stale.inputs_sha256)
    assert run_id.startswith(f"rebuild__{WEEK.start_date.isoformat()}__") and len(run_id) == 37
    cdr_db.db.CdrRecords.insert_one(
        {"Operator": {"Id": "late"}, "DateTime": {"Start": local_midnight_utc(day, TZ)}, "Duration": 1.0}
    )
    run_report(collection, sql_engine, period_containing("daily", day, TZ), settings, "rereport-2")
    [newer] = stale_rollups(sql_engine, [day], settings)
    assert rebuild_run_id(newer.period.start_date, newer.inputs_sha256) != run_id

    rebuilt = run_report(collection, sql_engine, newer.period, settings, "rebuild")
    assert rebuilt.source_records == before.source_records + 2
    assert {r.operator_id: r.total_duration_seconds for r in rebuilt.rows}["late"] == 6  # 5.5 s, halves up
    direct = build_report(WEEK, extract_period(collection, WEEK, settings), dag_run_id="direct")
    assert _comparable(rebuilt) == _comparable(direct)
    assert stale_rollups(sql_engine, [day], settings) == []


def test_a_week_read_from_the_cdrs_is_stale_only_when_a_day_is_stored_after_it(cdr_db, sql_engine):
    from cdr_reports.pipeline.runner import stale_rollups

    cdr_db.db.CdrRecords.insert_many(_documents(WEEK, 5, seed=8))
    settings = cdr_db.settings()
    collection = cdr_db.db.CdrRecords
    store_daily_reports(collection, sql_engine, WEEK, settings)
    extracted = run_report(collection, sql_engine, WEEK, replace(settings, rollup="off"), "week-direct")
    assert (extracted.method, extracted.rollup_inputs_sha256) == ("extract", None)
    days = period_days(WEEK)
    # Its days all qualify now, but none changed since it was read: equal numbers, nothing to rebuild.
    assert stale_rollups(sql_engine, days, settings) == []
    run_report(collection, sql_engine, period_containing("daily", days[6], TZ), settings, "re-run")
    [stale] = stale_rollups(sql_engine, days, settings)
    assert stale.period == WEEK and days[6].isoformat() in stale.reason


def test_a_daily_load_waits_for_a_weekly_load_that_checked_its_inputs_then_the_week_is_stale(mongo_db, pg_engine):
    """The interleaving the share lock exists for (PostgreSQL; SQLite serialises whole writers).

    1. The weekly roll-up has read its days and its load has checked them (share-locking the
       daily run rows) but not committed; 2. a re-report of one of those days reaches its load,
       whose DELETE of the run row must wait; 3. the week commits, then the day. The week is
       then older than its day, and stale_rollups says so (the daily DAG triggers its rebuild);
       nothing ever stores a week computed from daily numbers older than those stored.
    """
    import threading

    from cdr_reports.pipeline import load as load_module
    from cdr_reports.pipeline.config import Settings
    from cdr_reports.pipeline.runner import count_window, plan_report_windows, stale_rollups

    mongo_db.CdrRecords.insert_many(_documents(WEEK, 8, seed=13))
    settings = Settings()
    collection = mongo_db.CdrRecords
    store_daily_reports(collection, pg_engine, WEEK, settings)
    fingerprint = rules_fingerprint(settings)
    windows = plan_report_windows(pg_engine, WEEK, settings, fingerprint)
    assert [w["method"] for w in windows] == ["rollup"]
    week_report = build_report(
        WEEK, [count_window(lambda: collection, pg_engine, w, settings) for w in windows],
        dag_run_id="week", rules_fingerprint=fingerprint,
    )  # fmt: skip

    checked, proceed = threading.Event(), threading.Event()
    real_check = load_module.check_inputs

    def check_then_wait(conn, report, *args, **kwargs):
        real_check(conn, report, *args, **kwargs)
        if report.report_type == "weekly":
            checked.set()
            assert proceed.wait(60), "the test never released the weekly load"

    errors: list[BaseException] = []

    def in_thread(target):
        def run():
            try:
                target()
            except BaseException as exc:  # collected, asserted empty in the test thread
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    day = period_days(WEEK)[2]
    load_module.check_inputs = check_then_wait
    try:
        weekly = in_thread(lambda: load_report(pg_engine, week_report))
        assert checked.wait(60), errors
        collection.insert_one(
            {"Operator": {"Id": "late"}, "DateTime": {"Start": local_midnight_utc(day, TZ)}, "Duration": 9.5}
        )
        daily = in_thread(
            lambda: run_report(collection, pg_engine, period_containing("daily", day, TZ), settings, "rereport")
        )

        def daily_waits_on_a_lock() -> bool:
            with pg_engine.connect() as conn:
                waiting = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query ILIKE 'DELETE FROM%cdr_report_run%' AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            return waiting == 1

        for _ in range(600):
            if daily_waits_on_a_lock() or not daily.is_alive():
                break
            threading.Event().wait(0.1)
        assert daily.is_alive() and daily_waits_on_a_lock(), errors  # blocked by the week's share lock
        proceed.set()
        weekly.join(60)
        daily.join(60)
    finally:
        load_module.check_inputs = real_check
        proceed.set()
    assert errors == [] and not weekly.is_alive() and not daily.is_alive()

    stored_week = read_report(pg_engine, "weekly", WEEK.start_date)
    stored_day = read_report(pg_engine, "daily", day)
    assert stored_week["run"]["dag_run_id"] == "week" and stored_day["run"]["dag_run_id"] == "rereport"
    assert "late" not in {row["operator_id"] for row in stored_week["rows"]}  # committed first, from the old day
    [stale] = stale_rollups(pg_engine, [day], settings)
    assert stale.period == WEEK and day.isoformat() in stale.reason
    rebuilt = run_report(collection, pg_engine, WEEK, settings, "rebuild")
    direct = build_report(WEEK, extract_period(collection, WEEK, settings), dag_run_id="direct")
    assert _comparable(rebuilt) == _comparable(direct)
    assert stale_rollups(pg_engine, [day], settings) == []
