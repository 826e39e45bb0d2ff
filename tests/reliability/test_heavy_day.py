"""Heavy days stay light (issue 22, point 5): a day of 100,000 operators through Airflow.

Before: a day of 100,000 operators stored 27.5 MB of XCom (every operator a JSON object, in each
extract slice and again in the report) and wrote 27.5 MB of log per run, the return values
printed in full by Airflow. Now the per-operator columns cross XCom packed (pipeline/columns.py)
and the tasks log counts and a bounded sample (integration/tasks.py), with Airflow's own
"Returned value was" line off for every task (task_policy.py).

The run is the daily report DAG with dag.test() in a fresh process, on the real FerretDB
(cdr_reports_dev.heavy_day.run_daily_report, shared with bench/heavy_day.py). The assertions are
bounds on sizes, which do not depend on the machine; the peak memory and the wall time are
recorded as measurements only (docs/benchmarks.md reports them).
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest

from cdr_reports.pipeline.periods import period_containing
from cdr_reports_dev.heavy_day import expected_row, expected_totals, run_daily_report, seed_heavy_day

REPO = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 27)
TZ = "Europe/Istanbul"
OPERATORS = 100_000
SLICES = 2
# Packed, an operator costs ~3.3 bytes of XCom per slice and in the report (measured at 100,000);
# as one JSON object each it cost 43 per slice and 189 in the report. The bound leaves room for
# longer ids, and is far below what a per-operator JSON object costs.
XCOM_BYTES_PER_OPERATOR = 12
# The whole run's log (Airflow's lines included) was 39 kB at 100,000 operators, as at 2,000; it
# was 27.5 MB before. The bound is what stays readable, whatever the number of operators.
LOG_BYTES = 256 * 1024
LONGEST_LOG_LINE = 2_000


@pytest.fixture(scope="module")
def heavy_run(tmp_path_factory, mongo_uri):
    import pymongo

    period = period_containing("daily", DAY, TZ)
    database = f"cdr_heavy_{uuid.uuid4().hex[:10]}"
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    try:
        client.drop_database(database)
        seed_heavy_day(client[database]["CdrRecords"], period.start_utc, period.end_utc, OPERATORS)
        home = tmp_path_factory.mktemp("heavy_day")
        yield run_daily_report(
            home / "airflow", DAY, mongo_uri, database, {"CDR_TIMEZONE": TZ, "CDR_EXTRACT_SLICES": str(SLICES)}
        )
    finally:
        client.drop_database(database)
        client.close()


def test_the_report_of_a_heavy_day_is_exact(heavy_run):
    assert heavy_run["stored"] == expected_totals(OPERATORS)
    expected = {row["operator_id"]: row for row in map(expected_row, range(20))}
    sample = [
        dict(zip(("operator_id", "total_calls", "answered_calls", "total_duration_seconds"), r, strict=True))
        for r in heavy_run["stored_sample"]
    ]
    assert [r["operator_id"] for r in sample] == ["1000001", "1000003", "1000005", "1000007", "1000009"]
    assert sample == [expected[r["operator_id"]] for r in sample]


def test_xcom_stays_a_few_bytes_per_operator(heavy_run, record_property):
    xcom = heavy_run["xcom_bytes"]
    record_property("xcom_bytes", json.dumps(xcom))
    assert xcom["extract"] < XCOM_BYTES_PER_OPERATOR * OPERATORS * SLICES, xcom
    assert xcom["aggregate"] < XCOM_BYTES_PER_OPERATOR * OPERATORS, xcom
    # The other tasks return summaries whose size does not depend on the operators.
    assert sum(size for task, size in xcom.items() if task not in ("extract", "aggregate")) < 10_000, xcom


def test_the_log_of_a_heavy_day_is_bounded(heavy_run, record_property):
    record_property("log_bytes", heavy_run["log_bytes"]["total"])
    assert heavy_run["log_bytes"]["total"] < LOG_BYTES, heavy_run["log_bytes"]
    assert heavy_run["longest_log_line"] < LONGEST_LOG_LINE
    with open(heavy_run["log_path"], encoding="utf-8", errors="replace") as handle:
        log = handle.read()
    assert "Returned value was" not in log
    # Counts and a bounded sample: each extract and the aggregate name 3 operators, no more.
    assert log.count("top 3 of 100,000 operators by calls") == SLICES + 1
    assert log.count("'OP-") <= 3 * (SLICES + 1)
    assert "valid=200000" in log


def test_peak_memory_is_measured(heavy_run, record_property):
    """A measurement, not a bound (the machine decides): recorded for the test report."""
    peak = heavy_run["peak_rss_bytes"]
    record_property("peak_rss_mib", round(peak / 2**20, 1))
    record_property(
        "task_peak_rss_mib", json.dumps({t: v["peak_rss_bytes"] >> 20 for t, v in heavy_run["tasks"].items()})
    )
    record_property("wall_s", heavy_run["wall_s"])
    assert peak > 0 and set(heavy_run["tasks"]) >= {"plan", "extract[0]", "extract[1]", "aggregate", "load"}


def test_no_task_of_any_dag_prints_its_return_value():
    """Airflow logs a task's whole return value unless told not to: every task of every DAG file is told.

    A mapped task (extract) gets the setting when Airflow unmaps it at run time; the heavy run's
    log above shows that no task printed its return value.
    """
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    assert {"cdr_daily_report", "cdr_weekly_report", "cdr_monthly_report"} <= set(bag.dags)
    tasks = [task for dag in bag.dags.values() for task in dag.tasks if not hasattr(task, "expand_input")]
    printing = [f"{t.dag_id}.{t.task_id}" for t in tasks if getattr(t, "show_return_value_in_logs", False)]
    assert printing == []
    python_tasks = [t for t in tasks if hasattr(t, "show_return_value_in_logs")]
    assert {"plan", "aggregate", "load"} <= {t.task_id for t in python_tasks}
