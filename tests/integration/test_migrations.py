"""Schema migrations on real SQL servers: a release-0.1 deployment upgrades and loses nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cdr_reports.pipeline import migrations
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.load import load_report, read_report
from cdr_reports.pipeline.periods import period_containing
from cdr_reports.pipeline.rollup import qualifying_days, rules_fingerprint
from cdr_reports.pipeline.schema import build_metadata
from tests.support.reports import TZ, make_report

OLD_ROW = {
    "report_type": "daily",
    "period_start": date(2026, 10, 1),
    "operator_id": "op-old",
    "period_end": date(2026, 10, 2),
    "total_calls": 7,
    "answered_calls": 3,
    "total_duration_seconds": 120,
    "answer_ratio": 3 / 7,
    "avg_answered_duration_seconds": 40.0,
    "generated_at": datetime(2026, 10, 2, 0, 5),
    "dag_run_id": "release-0.1-run",
}
OLD_RUN = {
    "report_type": "daily",
    "period_start": date(2026, 10, 1),
    "period_end": date(2026, 10, 2),
    "time_zone": "Europe/Istanbul",
    "source_records": 8,
    "valid_records": 7,
    "rejected_records": 1,
    "operators": 1,
    "generated_at": datetime(2026, 10, 2, 0, 5),
    "dag_run_id": "release-0.1-run",
}


def _release_01_tables(engine: sa.engine.Engine) -> None:
    """What release 0.1 left behind: its two tables with data, and no version table."""
    migrations.upgrade(engine, target=migrations.FIRST_REVISION)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {migrations.VERSION_TABLE}"))
        meta = sa.MetaData()
        meta.reflect(conn, only=["cdr_operator_report", "cdr_report_run"])
        assert "extract_strategy" not in meta.tables["cdr_report_run"].c
        conn.execute(meta.tables["cdr_operator_report"].insert(), OLD_ROW)
        conn.execute(meta.tables["cdr_report_run"].insert(), OLD_RUN)


def _differences(engine: sa.engine.Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, build_metadata())
    return [d for d in diffs if not (d[0] == "remove_table" and d[1].name == migrations.VERSION_TABLE)]


def test_a_release_01_deployment_is_upgraded_by_the_next_load(sql_engine):
    _release_01_tables(sql_engine)
    report = make_report("release-0.2", range(2), 5, period=period_containing("daily", date(2026, 10, 2), TZ))
    fingerprint = rules_fingerprint(Settings())
    load_report(sql_engine, replace(report, rules_fingerprint=fingerprint, method="extract", days_extracted=1))
    with sql_engine.connect() as conn:
        assert migrations.current_revision(conn) == migrations.head_revision()
    old = read_report(sql_engine, "daily", date(2026, 10, 1))
    assert old is not None
    assert old["run"]["source_records"] == 8 and old["run"]["extract_strategy"] is None
    assert [(r["operator_id"], r["total_calls"], r["dag_run_id"]) for r in old["rows"]] == [
        ("op-old", 7, "release-0.1-run")
    ]
    new = read_report(sql_engine, "daily", date(2026, 10, 2))
    assert [(r["operator_id"], r["total_calls"]) for r in new["rows"]] == [("op-000", 5), ("op-001", 6)]
    assert _differences(sql_engine) == []
    # The old day keeps no fingerprint and no exact durations, so a roll-up never uses it: its week
    # or month extracts it from the CDRs (with or without a fingerprint asked for).
    assert (old["run"]["rules_fingerprint"], old["run"]["method"], old["rows"][0]["total_duration_ms"]) == (None,) * 3
    week = period_containing("weekly", date(2026, 10, 1), TZ)
    assert list(qualifying_days(sql_engine, week, fingerprint)) == ["2026-10-02"]  # the new day only


def test_upgrade_from_empty_gives_exactly_the_declared_schema(sql_engine):
    before, after = migrations.upgrade(sql_engine)
    assert (before, after) == (None, migrations.head_revision())
    assert _differences(sql_engine) == []
    assert migrations.upgrade(sql_engine) == (after, after)  # idempotent


def test_ensure_schema_runs_no_ddl_at_head(sql_engine):
    migrations.upgrade(sql_engine)
    statements: list[str] = []
    sa.event.listen(sql_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert migrations.ensure_schema(sql_engine) == migrations.head_revision()
    assert statements and not [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER", "DROP"))]


def test_cli_upgrade_and_current(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert migrations.main(["upgrade", "--url", url]) == 0
    assert f"(empty) -> {migrations.head_revision()}" in capsys.readouterr().out
    assert migrations.main(["current", "--url", url]) == 0
    assert f"report schema: {migrations.head_revision()} (head" in capsys.readouterr().out
