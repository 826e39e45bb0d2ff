"""The two data-quality checks, run against the servers: volume (after each load) and late data.

`check_volume` reads the stored reports (store), judges them (rules.volume_findings) and stores
the findings. `check_late_data` re-counts past days in MongoDB and, with
`CDR_LATE_DATA_ACTION=rereport`, runs a changed day's report again through `runner.run_report`:
this module sits above `runner` (import-linter's pipeline layers), so the re-report reuses the
whole pipeline without a layer inversion.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.errors import PermanentError, classify_mongo_error, classify_sql_error
from cdr_reports.pipeline.extract import ScopedCollection
from cdr_reports.pipeline.periods import ReportPeriod
from cdr_reports.pipeline.quality.rules import (
    LATE_DATA,
    REREPORT_FINISHED,
    REREPORT_PENDING,
    VOLUME_VERDICTS,
    WHOLE_PERIOD,
    Finding,
    Recount,
    finding_lines,
    volume_findings,
)
from cdr_reports.pipeline.quality.store import (
    operator_calls,
    pending_rereport,
    previous_periods,
    replace_findings,
    stored_run,
)
from cdr_reports.pipeline.runner import run_report

log = logging.getLogger(__name__)


def check_volume(
    engine: sa.engine.Engine,
    report_type: str,
    period_start: date,
    settings: Settings,
    dag_run_id: str,
    checked_at: datetime | None = None,
) -> list[Finding]:
    """Judge the stored report of (report_type, period_start) against its previous reports; store the findings."""
    what = f"reading the {report_type} reports before {period_start.isoformat()}"
    try:
        if stored_run(engine, report_type, period_start, settings.sql_schema) is None:
            raise PermanentError(f"no stored {report_type} report of {period_start.isoformat()} to check")
        previous = previous_periods(
            engine, report_type, period_start, settings.volume_check_history, settings.sql_schema
        )
        calls = operator_calls(engine, report_type, [period_start, *previous], settings.sql_schema)
    except PermanentError:
        raise
    except Exception as exc:
        raise classify_sql_error(exc, what) from exc
    findings = volume_findings(
        report_type,
        period_start,
        calls[period_start],
        [calls[start] for start in previous],
        threshold=settings.volume_drop_threshold,
        min_expected=settings.volume_min_expected_calls,
    )
    replace_findings(
        engine, report_type, period_start, VOLUME_VERDICTS, findings, dag_run_id,
        checked_at or datetime.now(UTC), settings.sql_schema,
    )  # fmt: skip
    log.info(
        "volume check of the %s report %s against %d previous report(s): %d finding(s)%s",
        report_type, period_start, len(previous), len(findings),
        "".join(f"\n  {line}" for line in finding_lines(findings)),
    )  # fmt: skip
    return findings


def check_late_data(
    collection: Any,
    engine: sa.engine.Engine,
    period: ReportPeriod,
    settings: Settings,
    dag_run_id: str,
    checked_at: datetime | None = None,
) -> tuple[list[Finding], list[Recount]]:
    """Re-count the `CDR_LATE_DATA_LOOKBACK_DAYS` periods before `period`; act on changed counts.

    One `$match` + `$count` per period (the window and the global filter, exactly what
    `source_records` counted). A changed count is stored as a `late_data` finding; with
    `CDR_LATE_DATA_ACTION=rereport` the period's report is run again first (same idempotent
    load, written by `dag_run_id`). Periods never reported, or before `CDR_EARLIEST_REPORT_DATE`,
    are skipped.
    """
    when = checked_at or datetime.now(UTC)
    findings: list[Finding] = []
    recounts: list[Recount] = []
    past = period
    for _ in range(settings.late_data_lookback_days):
        past = past.previous()
        if past.start_date < settings.earliest_report_date:
            continue
        stored = stored_run(engine, past.report_type, past.start_date, settings.sql_schema)
        if stored is None:
            log.info("late data: no stored %s report of %s, nothing to compare", past.report_type, past.start_date)
            recounts.append(Recount(past.start_date, None, None))
            continue
        scoped = ScopedCollection(collection, settings.global_filter, past.start_utc, past.end_utc)
        try:
            now = scoped.count()
        except Exception as exc:
            raise classify_mongo_error(exc, f"re-counting the CDRs of {past.label()}") from exc
        before = int(stored["source_records"])
        recounts.append(Recount(past.start_date, before, now, stored["dag_run_id"]))
        pending = pending_rereport(engine, past.report_type, past.start_date, settings.sql_schema)
        if now == before:
            if pending is not None:
                # An earlier try recorded the finding and re-reported, then died before marking it done.
                finding = replace(pending, detail=pending.detail.removeprefix(REREPORT_PENDING) + REREPORT_FINISHED)
                replace_findings(
                    engine, past.report_type, past.start_date, (LATE_DATA,), [finding], dag_run_id, when,
                    settings.sql_schema,
                )  # fmt: skip
                log.warning("late data: %s", finding.line())
                findings.append(finding)
                continue
            log.info("late data: %s still has %d source CDRs (stored by %s)", past.label(), now, stored["dag_run_id"])
            continue
        change = f"{now - before:+d}"
        detail = f"source CDRs {before} when reported (run {stored['dag_run_id']}), {now} now ({change})"
        if settings.late_data_action == "rereport":
            # Durable before the re-report commits: a kill between the two leaves the finding
            # (pending), and the retry, finding the day equal, marks it done and alerts it.
            replace_findings(
                engine, past.report_type, past.start_date, (LATE_DATA,),
                [Finding(past.report_type, past.start_date, WHOLE_PERIOD, LATE_DATA, float(before), now,
                         REREPORT_PENDING + detail)],
                dag_run_id, when, settings.sql_schema,
            )  # fmt: skip
            report = run_report(collection, engine, past, settings, dag_run_id=dag_run_id)
            detail += (
                f"; re-reported: source {report.source_records}, valid {stored['valid_records']} -> "
                f"{report.valid_records}, rejected {stored['rejected_records']} -> {report.rejected_records}, "
                f"operators {stored['operators']} -> {report.operators}"
            )
        else:
            detail += "; not re-reported (CDR_LATE_DATA_ACTION=alert): re-run the period to include them"
        finding = Finding(past.report_type, past.start_date, WHOLE_PERIOD, LATE_DATA, float(before), now, detail)
        replace_findings(
            engine, past.report_type, past.start_date, (LATE_DATA,), [finding], dag_run_id, when, settings.sql_schema
        )
        log.warning("late data: %s", finding.line())
        findings.append(finding)
    return findings, recounts
