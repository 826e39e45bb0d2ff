"""The benchmark suite runs end to end and measures what it claims (timings are never judged).

`bench/run.py --quick` runs every measurement on tiny data against real servers (its own FerretDB
and mongo-java-server processes, built by `make services`, and the PostgreSQL of `make services`).
The assertions check counts, agreement of ours with the fetch-all baseline, exact round trips per
slice and the plausibility of every number; speed ratios belong to docs/benchmarks.md only.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from cdr_reports.pipeline.periods import period_containing
from tests.support.reference import edge_case_documents, expected_report, random_documents

# Every test here reads FerretDB, mongo-java-server and PostgreSQL (the fixtures mark them too).
pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from baseline import original_approach  # noqa: E402

MIB = 2**20
QUICK_SIZES = ["2000", "6000"]
OPERATORS = 12  # cdr_reports_dev.synthetic default


def test_original_approach_computes_the_report_contract(mongo_db):
    """The baseline is only a fair comparison if it produces the same report as the contract."""
    day = period_containing("daily", date(2026, 11, 27), "Europe/Istanbul")
    docs = edge_case_documents(day.start_utc, day.end_utc) + random_documents(
        random.Random(7), 400, day.start_utc, day.end_utc
    )
    mongo_db.CdrRecords.insert_many([dict(d) for d in docs])
    got = original_approach(mongo_db.CdrRecords, day.start_utc, day.end_utc)
    want = expected_report(docs, day.start_utc, day.end_utc)
    assert (got["source_records"], got["valid_records"], got["rejected_records"]) == (
        want["source"],
        want["valid"],
        want["rejected"],
    )
    assert set(got["rows"]) == set(want["rows"])
    for key, row in want["rows"].items():
        assert got["rows"][key]["total_calls"] == row["total_calls"], key
        assert got["rows"][key]["answered_calls"] == row["answered_calls"], key
        assert abs(got["rows"][key]["total_duration_seconds"] - row["total_duration_seconds"]) <= 1, key


@pytest.fixture(scope="module")
def quick_run(mongo_uri, mjs_uri, pg_uri, tmp_path_factory):
    # The servers of `make services` must be up: the bench starts its own from the same builds.
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "CDR_TEST_PG_URI": pg_uri}
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-6000:]
    return json.loads((out / "benchmarks.json").read_text()), (out / "benchmarks.md").read_text(), out


def _check_pair(entry: dict, size: str) -> None:
    """What holds for ours vs fetch-all on any server."""
    ours, base = entry["ours"], entry["baseline"]
    live = entry["seed"]["live"]
    assert entry["seed"]["inserted"] == int(size)
    assert entry["results_agree"], entry["agreement"]
    assert ours["records"] == base["records"] == live  # every live record of the period, nothing else
    # Fetch-all receives every live record in one find and its getMores.
    assert base["wire_documents"] == live and base["queries"] == 1 and set(base["commands"]) <= {"find", "getMore"}
    assert ours["wire_documents_stable"] and base["wire_documents_stable"]
    assert 0 < ours["wire_bytes"] < base["wire_bytes"]
    for approach in (ours, base):
        for key in ("seconds", "client_cpu_seconds", "client_peak_rss_bytes", "server_cpu_seconds"):
            s = approach[key]
            assert 0 <= s["min"] <= s["median"] <= s["max"], key
        assert approach["seconds"]["min"] > 0
        assert 20 * MIB < approach["client_peak_rss_bytes"]["min"] < 2048 * MIB
        assert approach["server_peak_reset"]  # clear_refs reset the server's VmHWM before each run
        assert approach["server_peak_rss_bytes"]["min"] > 0
    for key in ("wall", "server_cpu"):
        assert entry["ratios"][key]["median"] > 0


def test_ferretdb_auto_streams_and_agrees_with_fetch_all(quick_run):
    data, _, _ = quick_run
    fer = data["ferretdb"]
    assert sorted(fer["sizes"], key=int) == QUICK_SIZES
    for size, entry in fer["sizes"].items():
        _check_pair(entry, size)
        ours, base = entry["ours"], entry["baseline"]
        assert ours["strategy"] == ["stream"]  # auto picked stream on FerretDB
        # One find continued by getMores, plus auto's buildInfo; no count, no aggregate.
        batches = math.ceil(ours["records"] / ours["stream_batch_size"])
        assert ours["commands"] == {"buildInfo": 1, "find": 1, **({"getMore": batches - 1} if batches > 1 else {})}, (
            size
        )
        assert ours["wire_documents"] == base["wire_documents"]  # stream reads every record, projected
        # FerretDB decodes every document for either query: its CPU time is measured, never zero.
        assert ours["server_cpu_seconds"]["median"] > 0 and base["server_cpu_seconds"]["median"] > 0
    idle = fer["idle_worker"]
    assert 20 * MIB < idle["peak_rss_bytes"]["median"] < 512 * MIB
    stages = idle["rss_stages"]
    assert stages["interpreter"] < stages["pymongo"] <= stages["pipeline"] <= stages["connected"] * 1.01


def test_mongo_java_server_pushdown_returns_one_document(quick_run):
    data, _, _ = quick_run
    mjs = data["mjs"]
    assert sorted(mjs["sizes"], key=int) == QUICK_SIZES
    for size, entry in mjs["sizes"].items():
        _check_pair(entry, size)
        ours = entry["ours"]
        assert ours["strategy"] == ["pushdown"]
        # One aggregation, one $facet document back, whatever the number of calls.
        assert ours["commands"] == {"aggregate": 1} and ours["wire_documents"] == 1, size
    assert mjs["sizes"]["2000"]["ours"]["wire_bytes"] == mjs["sizes"]["6000"]["ours"]["wire_bytes"]


def test_round_trips_are_exactly_one_query_per_slice(quick_run):
    data, _, _ = quick_run
    trips = data["ferretdb"]["round_trips"] + data["mjs"]["round_trips"]
    seen = {(t["server"], t["strategy"], t["slices"]) for t in trips}
    assert seen == {
        (server, strategy, slices)
        for server, strategy in (
            ("ferretdb", "stream"),
            ("mongo-java-server", "pushdown"),
            ("mongo-java-server", "stream"),
        )
        for slices in (1, 4)
    }
    for t in trips:
        query = "aggregate" if t["strategy"] == "pushdown" else "find"
        assert t["commands"][query] == t["slices"] and t["queries_per_slice"] == 1, t
        assert t["other_queries"] == 0, t
        # Besides its queries a slice may only continue its cursor (stream) or ask which strategy suits (auto).
        assert set(t["commands"]) <= {query, "getMore", "buildInfo"}, t
        assert t["commands"].get("buildInfo", 0) <= (t["slices"] if t["requested"] == "auto" else 0), t
        assert t["records"] == t["seeded_live"], t
        if t["strategy"] == "pushdown":
            assert t["get_mores"] == 0, t
        elif t["slices"] == 1:
            # One cursor over every record of the day, in batches of `batch`.
            assert t["get_mores"] == math.ceil(t["records"] / t["batch_size"]) - 1, t
    assert any(t["get_mores"] > 0 for t in trips), "the round-trip day must be big enough to need getMores"


def test_dag_test_ran_the_daily_report_and_its_no_op_twin(quick_run):
    data, _, _ = quick_run
    dag = data["dag_test"]
    from cdr_reports_dev.demo.seeding import DEMO_CALLS_PER_DAY

    assert dag["calls"] == DEMO_CALLS_PER_DAY == dag["seed"]["inserted"]
    assert dag["report_s"]["median"] > 0 and dag["noop_s"]["median"] > 0 and dag["ratio_report_over_noop"]["median"] > 0
    assert dag["pipeline_without_airflow_s"]["median"] > 0
    # The report the DAG stored: every live seeded CDR of the day, all operators, by the stream strategy.
    assert dag["stored_run_rows"] == [[dag["seed"]["live"], OPERATORS, "stream"]]
    # Same shape: the same tasks succeeded in both DAGs' last runs, the mapped extract once per slice.
    report, noop = dag["task_instances"]["cdr_daily_report"], dag["task_instances"]["bench_noop"]
    assert report == noop
    assert {"plan", "extract", "aggregate", "load"} <= set(report) and report["extract"] == dag["slices"]


def test_parse_time_and_load_throughput(quick_run):
    data, _, _ = quick_run
    files = data["parse_time"]["files"]
    ours, empty = files["dags/cdr_report_dags.py"], files["(empty one-task DAG)"]
    assert ours["dags"] == ["cdr_daily_report", "cdr_monthly_report", "cdr_weekly_report"]
    assert empty["dags"] == ["bench_empty"] and empty["parse_ratio_vs_empty"] == 1.0
    for entry in (ours, empty):
        assert 0 < entry["parse_s"]["median"] < entry["total_s"]["median"]
    load = data["load_throughput"]
    for sink in ("postgresql", "sqlite"):
        assert load[sink]["stored_rows"] == 10_000 * (load["runs"] + 1)  # warm-up + timed loads
        assert load[sink]["rows_per_second"]["median"] > 0


def test_the_rolled_up_month_reads_no_cdr_and_equals_the_direct_extract(quick_run):
    data, _, _ = quick_run
    rollup = data["rollup"]
    assert set(rollup["servers"]) == {"FerretDB", "mongo-java-server"}
    # The same month on both servers (the seeding time differs, the documents do not).
    seeded = {name: {k: v for k, v in seed.items() if k != "seconds"} for name, seed in rollup["seed"].items()}
    assert seeded["FerretDB"] == seeded["mongo-java-server"]
    assert seeded["FerretDB"]["inserted"] == rollup["calls_per_day"] * 30  # November: 30 local days
    assert 0 < seeded["FerretDB"]["live"] <= seeded["FerretDB"]["inserted"]
    for name, entry in rollup["servers"].items():
        assert entry["agree"], name  # direct, rolled-up and mixed months: the same report
        assert entry["methods"] == {
            "direct": ["extract"], "rollup": ["rollup"], "mixed": ["mixed"], "mixed_days_extracted": [1],
        }, name  # fmt: skip
        # No query reaches the server for a rolled-up month; the direct month reads every CDR.
        assert not {"find", "aggregate", "getMore", "count"} & set(entry["commands"]["rollup"]), name
        assert entry["wire_documents"]["rollup"]["max"] == 0
        assert entry["server_cpu_seconds"]["direct"]["median"] > 0
        assert entry["wire_documents"]["mixed"] == entry["wire_documents"]["one_day"], name


def test_markdown_states_every_target_and_explains_each_miss(quick_run):
    data, markdown, out = quick_run
    machine = data["meta"]["machine"]
    assert machine["nproc"] >= 1 and machine["ram_gib"] > 0 and machine["postgresql"] and "mongo_java_server" in machine
    assert "python bench/run.py --quick" in markdown
    for heading in (
        "## Targets",
        "## Machine and method",
        "## 1. ",
        "## 2. ",
        "## 3. ",
        "## 4. ",
        "## 5. ",
        "## 6. ",
        "## 7. ",
    ):
        assert heading in markdown, heading
    table = [
        line for line in markdown.split("## Targets", 1)[1].split("\n## ", 1)[0].splitlines() if line.startswith("| ")
    ]
    rows = table[1:]  # after the header row
    # 2 ratios x 2 sizes, client RSS x 2 sizes + flatness, 6 round-trip checks, dag.test, roll-up x 2 servers.
    assert len(rows) == 4 + 3 + 6 + 1 + 2, rows
    verdicts = [row.rsplit("|", 2)[-2].strip() for row in rows]
    assert all(v == "met" or v.startswith("**missed** by ") for v in verdicts), verdicts
    if any(v != "met" for v in verdicts):
        assert "### Why the missed targets were missed" in markdown
    # The page is a pure function of the JSON: re-rendering reproduces it.
    rendered = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--render-only", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert (out / "benchmarks.md").read_text() == markdown


def test_heavy_day_section_measures_a_correct_run(quick_run):
    """bench/heavy_day.py inside the suite: the stored report is exact, XCom is packed, the log bounded."""
    data, markdown, _ = quick_run
    heavy = data["heavy_day"]
    after = heavy["runs"]["after"]
    assert after["stored"] == heavy["expected"] and heavy["expected"]["operators"] == heavy["operators"] == 2_000
    assert after["xcom_bytes"]["aggregate"] < 12 * heavy["operators"]
    assert after["xcom_bytes"]["extract"] < 12 * heavy["operators"] * heavy["slices"]
    assert after["log_bytes"]["total"] < 256 * 1024 and after["peak_rss_bytes"] > 0
    assert {"extract[0]", "aggregate", "load"} <= set(after["tasks"])
    assert "before" not in heavy["runs"]  # --quick measures the current code only
    assert "## Heavy day: 2,000 operators in one day" in markdown
