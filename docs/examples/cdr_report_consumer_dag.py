"""A downstream DAG that runs each time a daily CDR report is stored (docs/report-view.md).

The report DAG's `load` task declares the Asset `report_asset("daily")` as its outlet and emits
one event per stored report; its extra carries the period and the counts. tests/ui runs this
very file under a real scheduler.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from cdr_reports.integration.report_assets import report_asset

DAILY_REPORT = report_asset("daily")  # Asset(name="cdr_daily_report_table", uri="x-cdr-reports://reports/daily")

with DAG(
    dag_id="cdr_daily_report_consumer",
    schedule=[DAILY_REPORT],
    start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Istanbul"),
    catchup=False,
    tags=["cdr", "example"],
):

    @task
    def publish(**context) -> list[dict]:
        """Read what was stored from the triggering events (one per report since the last run)."""
        events = context["triggering_asset_events"][DAILY_REPORT]
        for event in events:
            extra = event.extra
            print(
                f"daily report {extra['period_start']}: {extra['operators']} operators, "
                f"{extra['valid_records']} valid / {extra['rejected_records']} rejected CDRs (run {extra['dag_run_id']})"
            )
        return [dict(event.extra) for event in events]

    publish()
