"""The benchmark suite runs end to end and measures what it claims (timings are not judged).

`bench/run.py --quick` runs all six measurements on tiny data against the real servers; the
assertions check counts, agreement and plausibility, never speed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from cdr_reports.pipeline.periods import period_containing
from tests.support.reference import edge_case_documents, expected_report, random_documents

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from baseline import original_approach  # noqa: E402

MIB = 2**20
REPORT_DAGS = ["cdr_daily_report", "cdr_monthly_report", "cdr_weekly_report"]


def test_original_approach_computes_the_report_contract(mongo_db):
    """The baseline is only a fair comparison if it produces the same report as the product."""
    day = period_containing("daily", date(2026, 11, 27), "Europe/Istanbul")
    docs = edge_case_documents(day.start_utc, day.end_utc) + random_documents(random.Random(7), 400, day.start_utc, day.end_utc)
    mongo_db.CdrRecords.insert_many([dict(d) for d in docs])
    got = original_approach(mongo_db.CdrRecords, day.start_utc, day.end_utc)
    want = expected_report(docs, day.start_utc, day.end_utc)
    assert (got["source_records"], got["valid_records"], got["rejected_records"]) == (want["source"], want["valid"], want["rejected"])
    assert set(got["rows"]) == set(want["rows"])
    for key, row in want["rows"].items():
        assert got["rows"][key]["total_calls"] == row["total_calls"], key
        assert got["rows"][key]["answered_calls"] == row["answered_calls"], key
        assert abs(got["rows"][key]["total_duration_seconds"] - row["total_duration_seconds"]) <= 1, key


@pytest.fixture(scope="module")
def quick_run(mongo_uri, pg_uri, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "CDR_TEST_MONGO_URI": mongo_uri, "CDR_TEST_PG_URI": pg_uri}
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((out / "benchmarks.json").read_text()), (out / "benchmarks.md").read_text()


def test_wire_documents_do_not_grow_with_calls(quick_run):
    data, _ = quick_run
    sizes = data["extract"]["sizes"]
    assert sorted(sizes, key=int) == ["300", "900"]
    for size, entry in sizes.items():
        ours, original = entry["ours"], entry["original"]
        assert entry["results_agree"], entry["agreement"]
        # 2 counts (1 document each) + 3 $group queries (1 document per operator, 12 operators).
        assert ours["queries"] == 5 and ours["wire_documents"] == 2 + 3 * 12, size
        assert ours["wire_documents_stable"] and original["wire_documents_stable"]
        # The original fetches every live record of the period: the seeded ones minus the deleted.
        assert original["queries"] == 1
        assert original["wire_documents"] == original["records"] == entry["seed"]["inserted"] - entry["seed"]["deleted"]
        assert ours["records"] == original["records"]
        assert 0 < ours["wire_bytes"] < original["wire_bytes"]
        assert entry["seed"]["inserted"] == int(size)


def test_peak_rss_and_wall_time_are_measured(quick_run):
    data, _ = quick_run
    idle = data["extract"]["idle_worker"]["peak_rss_bytes"]["median"]
    assert 20 * MIB < idle < 1024 * MIB  # a Python worker with pymongo imported
    for entry in data["extract"]["sizes"].values():
        for approach in ("ours", "original"):
            rss = entry[approach]["peak_rss_bytes"]
            assert idle * 0.9 < rss["min"] <= rss["median"] <= rss["max"] < 2048 * MIB
            seconds = entry[approach]["seconds"]
            assert 0 < seconds["min"] <= seconds["median"] <= seconds["max"]
            assert 0 < entry[approach]["seconds_per_query"]["median"] <= seconds["max"]
        assert entry["wall_ratio_ours_over_original"]["median"] > 0


def test_parse_time_covers_the_report_dag_file_and_an_empty_dag(quick_run):
    data, _ = quick_run
    files = data["parse_time"]["files"]
    ours, empty = files["dags/cdr_report_dags.py"], files["(empty one-task DAG)"]
    assert ours["dags"] == REPORT_DAGS and empty["dags"] == ["bench_empty"]
    for entry in (ours, empty):
        assert 0 < entry["parse_s"]["median"] < entry["total_s"]["median"]
        assert entry["airflow_sdk_import_s"]["median"] > 0
    assert ours["parse_ratio_vs_empty"] > 0 and ours["total_ratio_vs_empty"] > 0
    assert empty["parse_ratio_vs_empty"] == 1.0


def test_dag_test_ran_the_daily_report_and_the_noop_dag(quick_run):
    data, _ = quick_run
    dag = data["dag_test"]
    assert dag["report_s"]["median"] > 0 and dag["noop_s"]["median"] > 0
    assert dag["pipeline_without_airflow_s"]["median"] > 0
    # The report the DAG stored: every live seeded CDR of the day, 12 operators, one row per period.
    assert dag["stored_run_rows"] == [[dag["seed"]["inserted"] - dag["seed"]["deleted"], 12]]


def test_load_throughput_for_both_sinks(quick_run):
    data, _ = quick_run
    load = data["load_throughput"]
    for sink in ("postgresql", "sqlite"):
        assert load[sink]["stored_rows"] == 10_000 * (load["runs"] + 1)  # warm-up + timed loads
        assert load[sink]["rows_per_second"]["median"] > 0


def test_markdown_has_the_machine_and_every_measurement(quick_run):
    data, markdown = quick_run
    machine = data["meta"]["machine"]
    assert machine["nproc"] >= 1 and machine["ram_gib"] > 0 and machine["postgresql"]
    assert "python bench/run.py --quick" in markdown
    for heading in ("## Headlines", "## Machine", "## 1. ", "## 2. ", "## 3. ", "## 4. ", "## 5. ", "## 6. "):
        assert heading in markdown
