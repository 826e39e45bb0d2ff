#!/usr/bin/env python
"""Heavy-day scenario (issue 22, point 5): a daily report of 100,000 operators through Airflow.

What it measures, for the current code and for an earlier revision ("before"), on the same
seeded day: the XCom bytes each task stored, the bytes of log the run wrote (every task's log and
Airflow's own lines, at the default INFO level), the peak RSS (VmHWM) of the process that ran the
whole DAG with `dag.test()` and of each task in it, and the wall time of the run. The stored report
is checked against the totals the generator implies, so a run that reports wrong numbers fails
the scenario instead of being measured.

The day (devtools/cdr_reports_dev/heavy_day.py): `--operators` operators with
`--calls-per-operator` calls each, spread so that every one of the `--slices` extract slices
sees every operator, the worst case for partial counts. Each measured revision gets a fresh
Airflow home, a fresh SQLite report database and a fresh process. "Before" runs the package, DAG
file and plugins of a git revision (`git archive`, read-only: the working tree is not touched)
first on PYTHONPATH; when that revision is not in the clone (a shallow CI checkout) it is skipped
and the reason recorded.

    python bench/heavy_day.py --mongo-uri mongodb://127.0.0.1:27027/ --out /tmp/heavy.json
    python bench/run.py --only heavy_day --out <folder>     # as a section of the suite
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DAY = date(2026, 11, 27)
TZ = "Europe/Istanbul"
OPERATORS = 100_000
CALLS_PER_OPERATOR = 2
SLICES = 2
# "Before": the commit the work on issue 22 point 5 (packed XCom, bounded task logs) started from.
BEFORE_REV = "8b16bbf"
# The aim for peak memory at 100,000 operators.
TARGET_PEAK_MIB = 300


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] heavy day: {message}", file=sys.stderr, flush=True)


def export_revision(rev: str, target: Path) -> Path:
    """include/, dags/ and plugins/ of `rev`, extracted read-only into `target`."""
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", rev, "include", "dags", "plugins"], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def bench_heavy_day(
    mongo_uri: str,
    operators: int = OPERATORS,
    calls_per_operator: int = CALLS_PER_OPERATOR,
    slices: int = SLICES,
    before: str | None = BEFORE_REV,
    after_code: Path | None = None,
) -> dict[str, Any]:
    """Seed the heavy day, run it with the current code (and `before`), drop it; the figures."""
    import pymongo

    from cdr_reports.pipeline.periods import period_containing
    from cdr_reports_dev.heavy_day import expected_totals, run_daily_report, seed_heavy_day

    period = period_containing("daily", DAY, TZ)
    database = f"cdrbench_heavy_{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix="cdrbench_heavy_"))
    settings = {"CDR_TIMEZONE": TZ, "CDR_EXTRACT_SLICES": str(slices)}
    expected = expected_totals(operators, calls_per_operator)
    client: Any = pymongo.MongoClient(mongo_uri, tz_aware=True)
    runs: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    try:
        began = time.perf_counter()
        inserted = seed_heavy_day(
            client[database]["CdrRecords"], period.start_utc, period.end_utc, operators, calls_per_operator
        )
        _log(f"seeded {inserted:,} CDRs of {operators:,} operators in {time.perf_counter() - began:.0f} s")
        for label, rev in (("after", None), ("before", before)):
            code = after_code if label == "after" else None
            if label == "before":
                if not rev:
                    continue
                try:
                    code = export_revision(rev, root / "before-code")
                except subprocess.CalledProcessError as exc:
                    skipped[label] = f"revision {rev} not available: {exc.stderr.decode(errors='replace').strip()}"
                    _log(f"before: skipped ({skipped[label]})")
                    continue
            _log(f"{label}: dag.test() of the daily report ({rev or code or 'working tree'})")
            try:
                result = run_daily_report(root / label, DAY, mongo_uri, database, settings, code=code, repo=REPO)
            except RuntimeError as exc:
                if label == "after":
                    raise
                # An old revision that cannot run here is no reason to lose the current figures.
                skipped[label] = f"revision {rev} failed to run: {str(exc).splitlines()[0]}"
                _log(f"before: skipped ({skipped[label]})")
                continue
            got = {k: result["stored"][k] for k in expected}
            if got != expected:
                raise RuntimeError(f"heavy day ({label}) stored {got}, the generator implies {expected}")
            result["revision"] = rev or (str(code) if code else "working tree")
            result.pop("log_path", None)
            runs[label] = result
            _log(
                f"{label}: {result['wall_s']:.1f} s, peak RSS {result['peak_rss_bytes'] / 2**20:.0f} MiB, "
                f"XCom {sum(result['xcom_bytes'].values()):,} bytes, log {result['log_bytes']['total']:,} bytes"
            )
    finally:
        client.drop_database(database)
        client.close()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "operators": operators,
        "calls_per_operator": calls_per_operator,
        "cdrs": inserted,
        "slices": slices,
        "day": DAY.isoformat(),
        "time_zone": TZ,
        "target_peak_mib": TARGET_PEAK_MIB,
        "expected": expected,
        "runs": runs,
        "skipped": skipped,
    }


# --------------------------------------------------------------------------- docs/benchmarks.md


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def _kb(value: float) -> str:
    return f"{value / 1e6:,.1f} MB" if value >= 1e6 else f"{value / 1e3:,.1f} kB"


def _task_peak(tasks: dict[str, dict[str, int]], task: str) -> str:
    """Peak RSS and growth of a task; of a mapped one (extract[0], extract[1], ...), its largest instance."""
    instances = [v for k, v in tasks.items() if k == task or k.startswith(task + "[")]
    if not instances:
        return "n/a"
    top = max(instances, key=lambda v: (v["peak_rss_bytes"], v["growth_bytes"]))
    grown = max(v["growth_bytes"] for v in instances)
    return f"{_mib(top['peak_rss_bytes'])} (+{_mib(grown)})"


def markdown_section(heavy: dict[str, Any]) -> list[str]:
    """The "Heavy day" section of docs/benchmarks.md (bench/report.py), every sentence from the figures."""
    if "error" in heavy:
        return ["## Heavy day", "", f"The heavy-day scenario failed: `{heavy['error']}`.", ""]
    runs = heavy["runs"]
    labels = [label for label in ("before", "after") if label in runs]
    n = heavy["operators"]
    lines = [
        "## Heavy day: 100,000 operators in one day" if n == OPERATORS else f"## Heavy day: {n:,} operators in one day",
        "",
        (
            f"The daily report of one day with {n:,} operators ({heavy['cdrs']:,} CDRs, {heavy['calls_per_operator']} "
            f"calls per operator spread so that each of the {heavy['slices']} extract slices sees every operator), "
            "run with `dag.test()` in a fresh process with a fresh Airflow home (`bench/heavy_day.py`, data from "
            "`cdr_reports_dev.heavy_day`). The stored report matched the generator's totals in every run. "
            "XCom is what each task stored as its return value (read back from the metadata DB); log is everything the "
            "run wrote at Airflow's default INFO level; peak RSS is the VmHWM of the process, which runs every task, "
            "so it bounds each task's own peak (per task below: VmHWM reset when the task starts; extract: its largest "
            "slice)."
        ),
        "",
        "| | " + " | ".join(f"{label} ({runs[label]['revision']})" for label in labels) + " |",
        "|---|" + "---|" * len(labels),
    ]

    def row(name: str, value: Any) -> str:
        return f"| {name} | " + " | ".join(value(runs[label]) for label in labels) + " |"

    lines += [
        row("XCom, extract (all slices)", lambda r: _kb(r["xcom_bytes"].get("extract", 0))),
        row("XCom, aggregate", lambda r: _kb(r["xcom_bytes"].get("aggregate", 0))),
        row("XCom, whole run", lambda r: _kb(sum(r["xcom_bytes"].values()))),
        row(
            "XCom bytes per operator (extract + aggregate)",
            lambda r: f"{(r['xcom_bytes'].get('extract', 0) + r['xcom_bytes'].get('aggregate', 0)) / n:,.1f}",
        ),
        row("log of the run", lambda r: _kb(r["log_bytes"]["total"])),
        row("longest log line (characters)", lambda r: f"{r.get('longest_log_line', 0):,}"),
        row("peak RSS, whole run", lambda r: _mib(r["peak_rss_bytes"])),
        *(
            row(f"peak RSS, {task} (growth while it ran)", lambda r, t=task: _task_peak(r.get("tasks", {}), t))
            for task in ("extract", "aggregate", "load")
        ),
        row("wall time of dag.test()", lambda r: f"{r['wall_s']:.1f} s"),
        "",
    ]
    after = runs.get("after")
    if after:
        peak = after["peak_rss_bytes"] / 2**20
        target = heavy["target_peak_mib"]
        verdict = (
            f"under the {target} MiB aim" if peak < target else f"{peak - target:,.0f} MiB over the {target} MiB aim"
        )
        floor = after.get("tasks", {}).get("plan", {}).get("peak_rss_bytes")
        text = f"Peak memory of the whole run: {peak:,.0f} MiB, {verdict}." + (
            f" Of it, {floor / 2**20:,.0f} MiB is the process before the first operator is counted (Airflow, "
            "its in-process API server and the DAG, measured at the end of `plan`); the largest growth of one task "
            f"was {max(t['growth_bytes'] for t in after['tasks'].values()) / 2**20:,.0f} MiB."
            if floor
            else ""
        )
        before = runs.get("before")
        if before:
            text += (
                f" Before, the same day took {_mib(before['peak_rss_bytes'])}, "
                f"{_kb(sum(before['xcom_bytes'].values()))} of XCom and {_kb(before['log_bytes']['total'])} of log."
            )
        text += (
            " Wall times are single runs on the shared machine (load averages in the machine table): indicative only."
        )
        lines += [text, ""]
    for label, reason in heavy.get("skipped", {}).items():
        lines += [f"The {label} run was skipped: {reason}.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mongo-uri", required=True, help="a MongoDB-wire server (e.g. the FerretDB of `make services`)")
    p.add_argument("--operators", type=int, default=OPERATORS)
    p.add_argument("--calls-per-operator", type=int, default=CALLS_PER_OPERATOR)
    p.add_argument("--slices", type=int, default=SLICES)
    p.add_argument("--before", default=BEFORE_REV, help="git revision measured as 'before' ('' to skip)")
    p.add_argument("--after-code", type=Path, help="measure this folder (include/, dags/, plugins/), not the tree")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    data = bench_heavy_day(
        args.mongo_uri, args.operators, args.calls_per_operator, args.slices, args.before or None, args.after_code
    )
    text = json.dumps(data, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
