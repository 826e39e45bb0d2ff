"""Render docs/benchmarks.md from the JSON of one bench/run.py run.

Every sentence that states a number, a verdict or a cause is computed here from that JSON, so the
page cannot drift from the run: a target met or missed, by how much, and which measured
component (server CPU, client CPU, waiting, memory floor, batch size, Airflow's share) explains it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

MIB = 2**20


# --------------------------------------------------------------------------- formatting


def human_bytes(value: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value:,.0f} bytes"


def mib(value: float) -> str:
    return f"{value / MIB:,.1f}"


def fmt_stats(s: dict[str, Any], f: Callable[[float], str] = lambda v: f"{v:.2f}") -> str:
    if s["n"] == 1:
        return f"**{f(s['median'])}**"
    return f"{f(s['min'])} / **{f(s['median'])}** / {f(s['max'])}"


def ratio(v: float) -> str:
    return f"{v:.2f}×"


def n_calls(size: str | int) -> str:
    return f"{int(size):,}"


def verdict(met: bool, missed_by: str) -> str:
    return "met" if met else f"**missed** by {missed_by}"


# --------------------------------------------------------------------------- targets


def _target_rows(data: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """Rows of the targets table, and one computed explanation per missed target."""
    meta = data["meta"]
    t = meta["targets"]
    rows: list[list[str]] = []
    why: list[str] = []
    fer = data.get("ferretdb", {})
    sizes = sorted(fer.get("sizes", {}), key=int)
    for size in sizes:
        e = fer["sizes"][size]
        for key, what in (("wall", "wall time"), ("server_cpu", "FerretDB CPU time")):
            r = e["ratios"][key]["median"]
            met = r <= t["ratio"]
            rows.append(
                [
                    f"FerretDB, `auto` ({'/'.join(e['ours']['strategy'] or ['?'])}) ÷ fetch-all, {what}, {n_calls(size)} CDRs",
                    f"≤ {t['ratio']}×",
                    f"{ratio(r)} (median of {e['runs']} pairs)",
                    verdict(met, f"{ratio(r - t['ratio'])[:-1]} ({(r / t['ratio'] - 1) * 100:.0f}% over)"),
                ]
            )
            if not met:
                why.append(_why_ratio(data, size, key))
    idle = fer.get("idle_worker")
    peaks = {s: fer["sizes"][s]["ours"]["client_peak_rss_bytes"]["max"] for s in sizes}
    for size in sizes:
        peak = peaks[size]
        met = peak <= t["client_mib"] * MIB
        rows.append(
            [
                f"client peak RSS of ours (worker VmHWM, largest of the runs), {n_calls(size)} CDRs",
                f"≤ {t['client_mib']:.0f} MiB",
                f"{mib(peak)} MiB",
                verdict(
                    met,
                    f"{(peak - t['client_mib'] * MIB) / MIB:.1f} MiB ({(peak / (t['client_mib'] * MIB) - 1) * 100:.0f}% over)",
                ),
            ]
        )
    if any(peaks[s] > t["client_mib"] * MIB for s in sizes) and idle:
        why.append(_why_client_rss(data))
    if len(sizes) > 1:
        spread = max(peaks.values()) - min(peaks.values())
        met = spread <= t["flat_mib"] * MIB
        rows.append(
            [
                f"client peak RSS flat from {n_calls(sizes[0])} to {n_calls(sizes[-1])} CDRs",
                f"spread ≤ {t['flat_mib']:.0f} MiB",
                f"{spread / MIB:.1f} MiB",
                verdict(met, f"{(spread - t['flat_mib'] * MIB) / MIB:.1f} MiB"),
            ]
        )
        if not met:
            why.append(
                "**Client memory not flat:** ours peaked at "
                + ", ".join(f"{mib(peaks[s])} MiB at {n_calls(s)}" for s in sizes)
                + " CDRs, so something in the extract holds memory that grows with the number of records."
            )
    for rt in _all_round_trips(data):
        query = "aggregate" if rt["strategy"] == "pushdown" else "find"
        met = rt["queries_per_slice"] == 1 and rt["other_queries"] == 0
        rows.append(
            [
                f"{rt['server']}, `{rt['strategy']}`: one `{query}` per slice, {rt['slices']} slice{'s' if rt['slices'] > 1 else ''}",
                f"1 {query}/slice" + (" (+ getMores)" if query == "find" else ""),
                f"{rt['queries_per_slice']:g} {query}/slice, {rt['other_queries']} other queries, {rt['get_mores']} getMores",
                verdict(met, f"{rt['queries_per_slice'] - 1:+g} {query}/slice, {rt['other_queries']} other queries"),
            ]
        )
        if not met:
            why.append(
                f"**Round trips ({rt['server']}, {rt['strategy']}, {rt['slices']} slices):** commands sent: {rt['commands']}."
            )
    dag = data.get("dag_test")
    if dag:
        r = dag["ratio_report_over_noop"]["median"]
        met = r <= t["dag_test"]
        rows.append(
            [
                (
                    f"dag.test() of `cdr_daily_report` ÷ a no-op DAG of the same shape ({len(dag.get('shape', {})) or 4} tasks), "
                    f"{dag['calls']:,} CDRs (demo's daily volume)"
                ),
                f"≤ {t['dag_test']}×",
                f"{ratio(r)} (median of {dag['runs']} pairs)",
                verdict(met, f"{ratio(r - t['dag_test'])[:-1]} ({(r / t['dag_test'] - 1) * 100:.0f}% over)"),
            ]
        )
        if not met:
            why.append(_why_dag_test(data))
    rows += _rollup_target_rows(data)
    return rows, why


def _rollup_target_rows(data: dict[str, Any]) -> list[list[str]]:
    """Issue 18: the monthly roll-up's server CPU against the direct extract's, per server."""
    rollup = data.get("rollup") or {}
    rows = []
    for name, e in rollup.get("servers", {}).items():
        share = e["ratios"]["rollup_over_direct_server_cpu"]["median"]
        target = rollup["target_server_cpu_share"]
        rows.append(
            [
                f"{name}: monthly report rolled up ÷ `CDR_ROLLUP=off`, server CPU ({rollup['calls_per_day']:,} CDRs/day)",
                f"≤ {target * 100:.0f}%",
                f"{share * 100:.1f}% (median of {rollup['runs']} pairs; results {'identical' if e['agree'] else 'DIFFER'})",
                verdict(share <= target and e["agree"], f"{(share - target) * 100:.1f} points"),
            ]
        )
    return rows


def _why_ratio(data: dict[str, Any], size: str, key: str) -> str:
    e = data["ferretdb"]["sizes"][size]
    d = e["differences"]
    ours, base = e["ours"], e["baseline"]
    nproc = data["meta"]["machine"]["nproc"]
    load = e["loadavg_start"][0]
    records = ours["records"] or 1
    if key == "wall":
        dw, ds, dc = (d[k]["median"] for k in ("wall_seconds", "server_cpu_seconds", "client_cpu_seconds"))
        head = (
            f"**Wall time at {n_calls(size)} CDRs ({ratio(e['ratios']['wall']['median'])}):** per pair ours took "
            f"{dw:.1f} s longer (median); the difference in FerretDB CPU was {ds:+.1f} s, in worker CPU {dc:+.1f} s. "
        )
        if ds > 0 and ds >= max(dc, 0.25 * dw):
            cause = f"The excess is FerretDB's own work ({ratio(e['ratios']['server_cpu']['median'])} its CPU for fetch-all; see the CPU row)."
        elif dc > 0 and dc >= 0.25 * dw:
            cause = (
                f"The excess is client work: the worker spent {ours['client_cpu_seconds']['median']:.1f} s of CPU "
                f"validating and counting the {records:,} projected records as they arrived "
                f"({ours['client_cpu_seconds']['median'] / records * 1e6:.1f} µs each) against "
                f"{base['client_cpu_seconds']['median']:.1f} s for fetch-all."
            )
        else:
            cause = (
                "Neither side used materially more CPU for ours, so the excess is time spent waiting: the machine is "
                f"shared (load average {load} on {nproc} cores when this size started) and the per-pair ratios ranged "
                f"{ratio(e['ratios']['wall']['min'])} to {ratio(e['ratios']['wall']['max'])}."
            )
        return head + cause
    o_cpu, b_cpu = ours["server_cpu_seconds"]["median"], base["server_cpu_seconds"]["median"]
    return (
        f"**FerretDB CPU at {n_calls(size)} CDRs ({ratio(e['ratios']['server_cpu']['median'])}):** FerretDB spent "
        f"{o_cpu / records * 1e6:.0f} µs of CPU per record for ours and {b_cpu / records * 1e6:.0f} µs for fetch-all. "
        f"Both queries carry the same filter (the window of `validity.window_query` and the global filter); they "
        f"differ in what FerretDB sends back: ours a projection ({human_bytes(ours['wire_bytes'] / records)} per record, "
        f"{ours['get_mores']} getMores of {data['meta']['stream_batch_size']:,}), fetch-all whole documents "
        f"({human_bytes(base['wire_bytes'] / records)} per record, {base['get_mores']} getMores). FerretDB 1.x decodes every "
        "full document before it filters and projects, so a projection saves encoding and transfer but not the decode "
        "that dominates its cost; what it saves did not outweigh the projection's own work here."
    )


def _why_client_rss(data: dict[str, Any]) -> str:
    fer = data["ferretdb"]
    idle = fer["idle_worker"]
    stages = idle["rss_stages"]
    sizes = sorted(fer["sizes"], key=int)
    ours = [fer["sizes"][s]["ours"]["client_peak_rss_bytes"]["max"] for s in sizes]
    growth = statistics.median(o - idle["peak_rss_bytes"]["median"] for o in ours)
    batch = data["meta"]["stream_batch_size"]
    heavy = idle.get("modules") or []
    holders = idle.get("module_holders") or {}
    held = " and ".join(
        f"`{m}` (imported at module level by {', '.join(f'`{h}`' for h in holders.get(m, [])) or '?'})" for m in heavy
    )
    return (
        f"**Client peak RSS:** the idle worker (same imports, connected, no work) already peaks at "
        f"{mib(idle['peak_rss_bytes']['median'])} MiB: interpreter {mib(stages['interpreter'])} MiB, pymongo and bson "
        f"+{mib(stages['pymongo'] - stages['interpreter'])} MiB, the pipeline modules +{mib(stages['pipeline'] - stages['pymongo'])} MiB"
        f", the connection +{mib(stages['connected'] - stages['pipeline'])} MiB."
        + (f" The pipeline modules load {held}; neither the extract nor the aggregate step calls it." if heavy else "")
        + f" Streaming adds {growth / MIB:.1f} MiB "
        f"at every size: pymongo decodes one getMore batch of {batch:,} projected documents at once "
        f"(~{growth / batch:,.0f} bytes each as Python objects)."
    )


def _why_dag_test(data: dict[str, Any]) -> str:
    dag = data["dag_test"]
    excess = dag["excess_s"]["median"]
    plain = dag["pipeline_without_airflow_s"]["median"]
    share = plain / excess if excess > 0 else 0.0
    ts = dag.get("task_seconds")
    tasks = ""
    if ts:
        report, noop = ts["cdr_daily_report"], ts["bench_noop"]
        diffs = sorted(((report.get(t, 0) - noop.get(t, 0), t) for t in set(report) | set(noop)), reverse=True)
        in_tasks = sum(d for d, _ in diffs)
        tasks = (
            f" Inside the tasks the report spends {in_tasks:.2f} s more than the no-op, most in "
            + ", ".join(f"`{t}` ({d:+.2f} s)" for d, t in diffs[:3] if d > 0)
            + f"; the remaining {excess - in_tasks:+.2f} s is between tasks."
        )
    return (
        f"**dag.test():** the report takes {excess:.2f} s more than the no-op DAG of the same shape "
        f"({dag['report_s']['median']:.2f} s vs {dag['noop_s']['median']:.2f} s). The same report without Airflow "
        f"(`run_report`: extract, aggregate and load, with a fresh client and engine as the tasks make) takes "
        f"{plain:.2f} s, {share * 100:.0f}% of that excess: "
        + (
            "the pipeline's own work, mostly the FerretDB query (FerretDB decodes the whole collection for every query)."
            if share >= 0.5
            else f"the rest ({excess - plain:.2f} s) is what the report's tasks do around the pipeline in Airflow "
            "(connections from AIRFLOW_CONN_*, hooks, the SQL engine, larger XComs)"
            + (
                f" and the tasks `run_report` does not include ({', '.join(f'`{t}`' for t in _extra_tasks(dag))})"
                if _extra_tasks(dag)
                else ""
            )
            + "."
        )
        + tasks
    )


def _extra_tasks(dag: dict[str, Any]) -> list[str]:
    core = ("plan", "extract", "aggregate", "load")
    return [t for t in dag.get("shape", {}) if t not in core]


def _all_round_trips(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [*data.get("ferretdb", {}).get("round_trips", []), *data.get("mjs", {}).get("round_trips", [])]


# --------------------------------------------------------------------------- page


def render_markdown(data: dict[str, Any]) -> str:
    meta = data["meta"]
    fer = data.get("ferretdb", {})
    sizes = sorted(fer.get("sizes", {}), key=int)
    mjs = data.get("mjs")
    mjs_sizes = sorted((mjs or {}).get("sizes", {}), key=int)
    target_rows, why = _target_rows(data)
    missed = sum(1 for r in target_rows if r[3] != "met")
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `bench/run.py` (`make bench`) on {meta['date']} with:",
        "",
        f"    {meta['command']}",
        "",
        (
            "Every number below comes from that one run (`benchmarks.json`, next to this file, has the raw samples); "
            "every verdict and explanation is computed from it (`bench/report.py`). Cells read `min / **median** / max`. "
            "The machine is shared (load averages are in the machine table), so single timings are noisy; documents, "
            "bytes, CPU times and the ratios of interleaved pairs are the robust numbers."
        ),
        "",
        "## Targets",
        "",
        f"{len(target_rows) - missed} of {len(target_rows)} met." if target_rows else "No target measured.",
        "",
        "| measurement | target | measured | verdict |",
        "|---|---|---|---|",
        *(f"| {' | '.join(r)} |" for r in target_rows),
        "",
    ]
    if why:
        lines += ["### Why the missed targets were missed", "", *(f"* {w}" for w in why), ""]
    lines += _headlines(data, sizes, mjs_sizes)
    lines += _machine(data)
    if sizes:
        lines += _ferretdb_section(data, sizes)
    if mjs_sizes:
        lines += _mjs_section(data, mjs_sizes)
    lines += _round_trip_section(data)
    if data.get("dag_test"):
        lines += _dag_test_section(data)
    if data.get("parse_time"):
        lines += _parse_section(data)
    if data.get("load_throughput"):
        lines += _load_section(data)
    if (data.get("rollup") or {}).get("servers"):
        lines += _rollup_section(data)
    if data.get("heavy_day"):
        from heavy_day import markdown_section  # bench/heavy_day.py

        lines += markdown_section(data["heavy_day"])
    lines += ["Scale-out arithmetic for production volumes: [scale-out.md](scale-out.md).", ""]
    return "\n".join(lines)


def _headlines(data: dict[str, Any], sizes: list[str], mjs_sizes: list[str]) -> list[str]:
    """The figures worth quoting, one line each."""
    out = []
    fer = data.get("ferretdb", {})
    for s in sizes:
        e = fer["sizes"][s]
        o, b = e["ours"], e["baseline"]
        out.append(
            f"* **FerretDB, {n_calls(s)} CDRs** (`auto` → `{'/'.join(o['strategy'] or ['?'])}`), ours ÷ fetch-all "
            f"(median of {e['runs']} per-pair ratios): wall {ratio(e['ratios']['wall']['median'])}, FerretDB CPU "
            f"{ratio(e['ratios']['server_cpu']['median'])} (median times: wall {o['seconds']['median']:.1f} s vs "
            f"{b['seconds']['median']:.1f} s, CPU {o['server_cpu_seconds']['median']:.1f} s vs "
            f"{b['server_cpu_seconds']['median']:.1f} s); client peak {mib(o['client_peak_rss_bytes']['max'])} MiB vs "
            f"{mib(b['client_peak_rss_bytes']['median'])} MiB; {human_bytes(o['wire_bytes'])} vs {human_bytes(b['wire_bytes'])} "
            "over the wire."
        )
    for s in mjs_sizes:
        e = data["mjs"]["sizes"][s]
        o, b = e["ours"], e["baseline"]
        out.append(
            f"* **mongo-java-server, {n_calls(s)} CDRs** (`pushdown`): {o['wire_documents']:,} "
            f"document{'s' if o['wire_documents'] != 1 else ''} "
            f"({human_bytes(o['wire_bytes'])}) vs {b['wire_documents']:,} ({human_bytes(b['wire_bytes'])}); "
            f"wall {ratio(e['ratios']['wall']['median'])} (median of per-pair ratios; median times "
            f"{o['seconds']['median']:.1f} s vs {b['seconds']['median']:.1f} s)."
        )
    rts = _all_round_trips(data)
    if rts:
        exact = all(rt["queries_per_slice"] == 1 and rt["other_queries"] == 0 for rt in rts)
        out.append(
            "* **Round trips:** "
            + ("exactly one query per slice" if exact else "NOT one query per slice")
            + " in every case measured (pushdown: 1 `aggregate`; stream: 1 `find` + getMores), for 1 and 4 slices."
        )
    dag = data.get("dag_test")
    if dag:
        out.append(
            f"* **dag.test():** `cdr_daily_report` {dag['report_s']['median']:.2f} s vs its no-op twin "
            f"{dag['noop_s']['median']:.2f} s ({ratio(dag['ratio_report_over_noop']['median'])}) at {dag['calls']:,} CDRs/day."
        )
    parse = data.get("parse_time", {}).get("files", {}).get("dags/cdr_report_dags.py")
    if parse:
        out.append(
            f"* **DAG parse:** `dags/cdr_report_dags.py` {parse['parse_s']['median'] * 1000:.0f} ms after `import airflow.sdk` "
            f"({parse['parse_ratio_vs_empty']:.2f}× an empty DAG file; {parse['total_ratio_vs_empty']:.2f}× including the import)."
        )
    load = data.get("load_throughput")
    if load:
        out.append(
            f"* **Load:** {load['rows']:,} operator rows at {load['postgresql']['rows_per_second']['median']:,.0f} rows/s "
            f"into PostgreSQL, {load['sqlite']['rows_per_second']['median']:,.0f} rows/s into SQLite."
        )
    return ["## Headlines", "", *out, ""] if out else []


def _machine(data: dict[str, Any]) -> list[str]:
    meta, m = data["meta"], data["meta"]["machine"]
    sizes = ", ".join(f"{s['runs']} pairs at {s['calls']:,}" for s in meta["sizes"])
    return [
        "## Machine and method",
        "",
        "| | |",
        "|---|---|",
        f"| CPUs (nproc) | {m['nproc']} |",
        f"| CPU model | {m['cpu_model']} |",
        f"| RAM | {m['ram_gib']} GiB |",
        f"| OS | {m['os']} |",
        f"| Python | {m['python']} |",
        f"| FerretDB | {m['ferretdb']} |",
        *([f"| mongo-java-server | {m['mongo_java_server']} |"] if "mongo_java_server" in m else []),
        f"| PostgreSQL | {m['postgresql']} |",
        f"| Airflow / pymongo / SQLAlchemy | {m['airflow']} / {m['pymongo']} / {m['sqlalchemy']} |",
        f"| Load average (1, 5, 15 min) at start → end | {meta['loadavg_start']} → {meta.get('loadavg_end', 'not recorded')} |",
        f"| Code | {_code_row(meta)} |",
        "| Total bench time | "
        + (
            f"{meta['total_seconds'] / 60:.1f} min |"
            if "total_seconds" in meta
            else "the run was cut short: rendered from its checkpoint |"
        ),
        "",
        (
            "**Data.** `cdr_reports_dev.synthetic` (seed 7, 12 operators, ~1% malformed, ~2% deleted), every call inside "
            "the daily period 2026-11-27 (Europe/Istanbul), so the collection holds exactly the period; one fresh database "
            f"per server and size, seeded once, dropped after. Pairs per size: {sizes}."
        ),
        "",
        "**Method.** Each run is a fresh worker process (`bench/worker.py extract`) that imports the same modules "
        "and connects before the clock starts. Runs alternate ours, fetch-all, ours, fetch-all…; ratios are taken per "
        "adjacent pair and their median reported. Before the timed pairs of a size, one untimed pair warms the "
        "server and counts the BSON bytes of every reply (re-encoding each document costs the client, so timed runs "
        "count documents only). *Client peak RSS* is the worker's own `VmHWM` as it exits (not `ru_maxrss`, which "
        "Linux carries across `exec` from the forking parent). *Server CPU* is utime + stime of the whole server "
        "process from `/proc/<pid>/stat`, read by the worker right before and after the timed section; *server peak "
        "RSS* is its `VmHWM` after `echo 5 > /proc/<pid>/clear_refs` reset it to the current RSS just before the run "
        + (
            "(the reset worked in every run)."
            if _peak_reset_ok(data)
            else "(**the reset did not take effect in some runs**: those peaks include earlier runs)."
        )
        + " The servers are the benchmark's own processes (`bench/servers.py`: the binaries `make services` builds, "
        "on free ports), so no other work on the machine is counted in their CPU or memory"
        + (" — except in this run, made with `--shared-servers`." if meta.get("shared_servers") else "."),
        "",
    ]


def _code_row(meta: dict[str, Any]) -> str:
    start, end = meta.get("code_start"), meta.get("code_end")
    if not start:
        return "not recorded"
    row = f"git `{start['git_head']}` + working tree, sources `{start['sources_sha1']}`"
    if not end:
        return row + " (the run was cut short)"
    if end["sources_sha1"] == start["sources_sha1"]:
        moved = f" (git HEAD moved to `{end['git_head']}` by commits that changed none of them)" if end != start else ""
        return row + f"; unchanged during the run{moved}"
    return (
        row + f"; **changed during the run** (git `{end['git_head']}`, sources `{end['sources_sha1']}` at the end): "
        "the measurements may mix code versions"
    )


def _peak_reset_ok(data: dict[str, Any]) -> bool:
    return all(
        e[a]["server_peak_reset"]
        for part in ("ferretdb", "mjs")
        for e in data.get(part, {}).get("sizes", {}).values()
        for a in ("ours", "baseline")
    )


def _ferretdb_section(data: dict[str, Any], sizes: list[str]) -> list[str]:
    fer = data["ferretdb"]
    lines = [
        "## 1. FerretDB: ours (`auto`) vs fetch-all",
        "",
        (
            "Ours = `extract_period` + `build_report` with `CDR_EXTRACT_STRATEGY=auto`, which asks the server (`buildInfo`) "
            "and picks `stream` on FerretDB: one projected `find` per slice, validated and counted in Python as the batches "
            "arrive. Fetch-all = `bench/baseline.py`, the original approach: one `find` of the whole documents of the "
            "period, all held in a list (the .NET job's `ToList()`), then grouped in a dict; it judges each document by "
            "the same rules (`cdr_reports.pipeline.validity`), so both do the same per-record Python work and must agree."
        ),
        "",
        "| CDRs | pairs | ours (s) | fetch-all (s) | wall: ours ÷ fetch-all | ours: FerretDB CPU (s) | fetch-all: FerretDB CPU (s) | CPU: ours ÷ fetch-all |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        e = fer["sizes"][s]
        lines.append(
            f"| {n_calls(s)} | {e['runs']} | {fmt_stats(e['ours']['seconds'])} | {fmt_stats(e['baseline']['seconds'])} | "
            f"{fmt_stats(e['ratios']['wall'], ratio)} | {fmt_stats(e['ours']['server_cpu_seconds'])} | "
            f"{fmt_stats(e['baseline']['server_cpu_seconds'])} | {fmt_stats(e['ratios']['server_cpu'], ratio)} |"
        )
    lines += [
        "",
        "Where the time goes (medians): FerretDB CPU per record and the worker's own CPU.",
        "",
        "| CDRs | ours: FerretDB µs/record | fetch-all: FerretDB µs/record | ours: worker CPU (s) | fetch-all: worker CPU (s) | load average at start → end |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for s in sizes:
        e = fer["sizes"][s]
        rec = e["ours"]["records"] or 1
        lines.append(
            f"| {n_calls(s)} | {e['ours']['server_cpu_seconds']['median'] / rec * 1e6:.0f} | "
            f"{e['baseline']['server_cpu_seconds']['median'] / rec * 1e6:.0f} | {fmt_stats(e['ours']['client_cpu_seconds'])} | "
            f"{fmt_stats(e['baseline']['client_cpu_seconds'])} | {e['loadavg_start']} → {e['loadavg_end']} |"
        )
    idle = fer["idle_worker"]
    lines += [
        "",
        "### Memory",
        "",
        "| CDRs | ours: client peak (MiB) | fetch-all: client peak (MiB) | ours: FerretDB peak (MiB) | fetch-all: FerretDB peak (MiB) | FerretDB RSS before a run (MiB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        e = fer["sizes"][s]
        lines.append(
            f"| {n_calls(s)} | {fmt_stats(e['ours']['client_peak_rss_bytes'], mib)} | {fmt_stats(e['baseline']['client_peak_rss_bytes'], mib)} | "
            f"{fmt_stats(e['ours']['server_peak_rss_bytes'], mib)} | {fmt_stats(e['baseline']['server_peak_rss_bytes'], mib)} | "
            f"{mib(e['ours']['server_rss_before_bytes']['median'])} |"
        )
    lines += [
        f"| idle worker (same imports, connected, no work) | {fmt_stats(idle['peak_rss_bytes'], mib)} | | | | |",
        "",
        (
            "The fetch-all worker holds every document of the period, so its peak grows with the number of calls; ours "
            "holds one decoded batch at a time and a dict per operator."
        ),
        "",
        "### Over the wire",
        "",
        "| CDRs | ours: documents | ours: bytes | ours: commands | fetch-all: documents | fetch-all: bytes | fetch-all: commands | results agree |",
        "|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for s in sizes:
        e = fer["sizes"][s]
        lines.append(
            f"| {n_calls(s)} | {e['ours']['wire_documents']:,} | {e['ours']['wire_bytes']:,} | {_cmds(e['ours']['commands'])} | "
            f"{e['baseline']['wire_documents']:,} | {e['baseline']['wire_bytes']:,} | {_cmds(e['baseline']['commands'])} | "
            f"{'yes' if e['results_agree'] else '**NO**'}: {e['agreement']} |"
        )
    if sizes:
        e = fer["sizes"][sizes[-1]]
        lines += [
            "",
            (
                f"On FerretDB both approaches receive every live record of the period; ours receives "
                f"{e['baseline']['wire_bytes'] / max(e['ours']['wire_bytes'], 1):.1f}× fewer bytes (only the fields the rules "
                "read) and never holds more than one batch."
            ),
        ]
    lines.append("")
    return lines


def _cmds(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def _mjs_section(data: dict[str, Any], sizes: list[str]) -> list[str]:
    mjs = data["mjs"]
    lines = [
        "## 2. mongo-java-server: `pushdown` vs fetch-all",
        "",
        (
            "The same comparison on mongo-java-server (memory backend), the MongoDB-wire server here that runs the "
            "`pushdown` pipeline: one aggregation per slice (`$match` on the window, then one `$facet` computing the "
            "source, rejected, valid-per-operator and answered-per-operator counts in the server). Fetch-all asks for "
            f"batches of {data['meta']['mjs_baseline_batch']:,} documents (~16 MB, MongoDB's default reply size): this "
            "server answers an unbounded getMore with every remaining document, which exceeds the 48 MB message limit."
        ),
        "",
        "| CDRs | pairs | pushdown (s) | fetch-all (s) | wall: pushdown ÷ fetch-all | pushdown: server CPU (s) | fetch-all: server CPU (s) | worker CPU: pushdown / fetch-all (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in sizes:
        e = mjs["sizes"][s]
        lines.append(
            f"| {n_calls(s)} | {e['runs']} | {fmt_stats(e['ours']['seconds'])} | {fmt_stats(e['baseline']['seconds'])} | "
            f"{fmt_stats(e['ratios']['wall'], ratio)} | {fmt_stats(e['ours']['server_cpu_seconds'])} | "
            f"{fmt_stats(e['baseline']['server_cpu_seconds'])} | {e['ours']['client_cpu_seconds']['median']:.2f} / "
            f"{e['baseline']['client_cpu_seconds']['median']:.2f} |"
        )
    lines += [
        "",
        "| CDRs | pushdown: documents | pushdown: bytes | pushdown: commands | fetch-all: documents | fetch-all: bytes | fetch-all: commands | client peak RSS: pushdown / fetch-all (MiB) | results agree |",
        "|---:|---:|---:|---|---:|---:|---|---|---|",
    ]
    for s in sizes:
        e = mjs["sizes"][s]
        lines.append(
            f"| {n_calls(s)} | {e['ours']['wire_documents']:,} | {e['ours']['wire_bytes']:,} | {_cmds(e['ours']['commands'])} | "
            f"{e['baseline']['wire_documents']:,} | {e['baseline']['wire_bytes']:,} | {_cmds(e['baseline']['commands'])} | "
            f"{mib(e['ours']['client_peak_rss_bytes']['median'])} / {mib(e['baseline']['client_peak_rss_bytes']['median'])} | "
            f"{'yes' if e['results_agree'] else '**NO**'}: {e['agreement']} |"
        )
    if sizes:
        e = mjs["sizes"][sizes[-1]]
        faster = e["ratios"]["wall"]["median"]
        lines += [
            "",
            (
                f"At {n_calls(sizes[-1])} CDRs pushdown brings back {e['ours']['wire_documents']:,} document"
                f"{'s' if e['ours']['wire_documents'] != 1 else ''} ({human_bytes(e['ours']['wire_bytes'])}) where fetch-all "
                f"brings {e['baseline']['wire_documents']:,} ({human_bytes(e['baseline']['wire_bytes'])}), and takes "
                f"{ratio(faster)} its wall time, with no work left for the worker. mongo-java-server evaluates the pipeline "
                "in Java over its in-memory documents; on MongoDB the `$match` on `DateTime.Start` is an index range scan "
                "(the real-MongoDB integration test asserts IXSCAN), so only the period's documents are read. "
                "Its memory is not reported: a JVM keeps the heap it has grown to, so its RSS says little about one query."
            ),
        ]
    lines.append("")
    return lines


def _round_trip_section(data: dict[str, Any]) -> list[str]:
    rts = _all_round_trips(data)
    if not rts:
        return []
    calls = rts[0]["seeded_live"]
    batch = data["meta"]["stream_batch_size"]
    lines = [
        "## 3. Round trips per slice",
        "",
        (
            f"Every command the worker's `MongoClient` sent during one extract (`CDR_EXTRACT_SLICES` = 1 and 4), counted by a "
            f"pymongo `CommandListener`, on a day of {calls:,} live CDRs. The stream strategy reads batches of {batch:,} "
            "documents, so a slice with more records than that continues its one query with getMores."
        ),
        "",
        "| server | strategy (requested → used) | slices | commands sent | queries per slice | getMores | records counted |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for rt in rts:
        lines.append(
            f"| {rt['server']} | {rt['requested']} → `{rt['strategy']}` | {rt['slices']} | {_cmds(rt['commands'])} | "
            f"{rt['queries_per_slice']:g} | {rt['get_mores']} | {rt['records']:,} |"
        )
    build_info = {rt["commands"].get("buildInfo", 0) / rt["slices"] for rt in rts if rt["requested"] == "auto"}
    lines.append("")
    if build_info and max(build_info) > 0:
        lines += [
            (
                f"`auto` also sends {' or '.join(f'{b:g}' for b in sorted(build_info))} `buildInfo` per slice (to choose the "
                "strategy; it returns one small document and touches no data); a forced strategy sends none."
            ),
            "",
        ]
    return lines


def _dag_test_section(data: dict[str, Any]) -> list[str]:
    dag = data["dag_test"]
    shape = dag.get("task_instances", {})
    warm = ", after one warm-up of each" if dag.get("warmup") else " (no warm-up: quick mode)"
    return [
        "## 4. dag.test(): the daily report vs a no-op DAG of the same shape",
        "",
        f"Fresh Airflow home (SQLite metadata DB, `airflow db migrate` once); dags folder = a copy of "
        f"`dags/cdr_report_dags.py` and `bench_noop`, generated from `cdr_daily_report`'s own task graph: plan → "
        f"extract mapped over the same {dag['slices']} slice(s) → aggregate → load, each a no-op `@task` passing a small "
        "XCom (the load with an asset outlet, like the report's)"
        + (
            f", plus the report's other tasks ({', '.join(f'`{t}`' for t in _extra_tasks(dag))}) as no-ops after the same upstreams"
            if _extra_tasks(dag)
            else ""
        )
        + ". Connections from "
        f"`AIRFLOW_CONN_*`: the benchmark's FerretDB with one day of {dag['calls']:,} CDRs (`DEMO_CALLS_PER_DAY` of "
        f"`cdr_reports_dev.demo`, the demo's daily volume), a SQLite report sink. One worker process{warm}, then "
        f"{dag['runs']} interleaved rounds. Successful task instances in the last run of each: "
        + "; ".join(
            f"`{d}`: {', '.join(f'{t} ×{n}' if n > 1 else t for t, n in sorted(c.items()))}" for d, c in shape.items()
        )
        + ".",
        "",
        "| | seconds | per-pair ratio vs no-op |",
        "|---|---:|---:|",
        f"| `cdr_daily_report` | {fmt_stats(dag['report_s'])} | {fmt_stats(dag['ratio_report_over_noop'], ratio)} |",
        f"| `bench_noop` (same shape, no work) | {fmt_stats(dag['noop_s'])} | 1 |",
        f"| the same report without Airflow (`cdr_reports.pipeline.runner.run_report`) | {fmt_stats(dag['pipeline_without_airflow_s'])} | |",
        "",
        *_task_table(dag),
        (
            f"Stored report rows (source_records, operators, extract_strategy) after the runs: {dag['stored_run_rows']} "
            "(one row: re-runs replace, never duplicate)."
        ),
        "",
    ]


def _task_table(dag: dict[str, Any]) -> list[str]:
    """Median seconds per task (Airflow's own `duration` of each task instance) in both DAGs."""
    ts = dag.get("task_seconds")
    if not ts:
        return []
    report, noop = ts["cdr_daily_report"], ts["bench_noop"]
    lines = [
        (
            "Where the difference is: median seconds per task over the timed runs (the task instance's own `duration`; "
            "the mapped extract summed over its slices). dag.test() also spends time between tasks (scheduling them in "
            "process, creating the run), which neither column holds."
        ),
        "",
        "| task | `cdr_daily_report` (s) | `bench_noop` (s) | difference (s) |",
        "|---|---:|---:|---:|",
    ]
    for task in sorted(set(report) | set(noop), key=lambda t: -(report.get(t, 0) - noop.get(t, 0))):
        lines.append(
            f"| `{task}` | {report.get(task, 0):.3f} | {noop.get(task, 0):.3f} | {report.get(task, 0) - noop.get(task, 0):+.3f} |"
        )
    lines += [
        f"| all tasks | {sum(report.values()):.3f} | {sum(noop.values()):.3f} | {sum(report.values()) - sum(noop.values()):+.3f} |",
        "",
    ]
    return lines


def _parse_section(data: dict[str, Any]) -> list[str]:
    parse = data["parse_time"]
    warm = "" if data["meta"].get("quick") else ", after one warm-up each"
    lines = [
        "## 5. DAG file parse time",
        "",
        (
            "Each sample is a fresh process that first runs `import airflow.sdk` (timed apart), then `runpy.run_path(file)`. "
            "The empty file builds one DAG with one `EmptyOperator`."
        ),
        "",
        "| file | DAGs | `import airflow.sdk` (s) | parse after import (s) | ratio vs empty | import + parse (s) | ratio vs empty |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, f in parse["files"].items():
        lines.append(
            f"| `{name}` | {', '.join(f['dags'])} | {fmt_stats(f['airflow_sdk_import_s'], lambda v: f'{v:.3f}')} | "
            f"{fmt_stats(f['parse_s'], lambda v: f'{v:.3f}')} | {f['parse_ratio_vs_empty']:.2f}× | "
            f"{fmt_stats(f['total_s'], lambda v: f'{v:.3f}')} | {f['total_ratio_vs_empty']:.2f}× |"
        )
    lines += [
        "",
        f"Runs: {parse['runs']} per file, interleaved{warm}. `dags/cdr_report_dags.py` builds the three report DAGs from "
        "settings only: no network, database, Variable or Connection access."
        + "".join(
            f" `{n}` could not be parsed: {err.splitlines()[-1] if err else '?'}"
            for n, err in parse.get("errors", {}).items()
        ),
        "",
    ]
    return lines


def _load_section(data: dict[str, Any]) -> list[str]:
    load = data["load_throughput"]
    lines = [
        "## 6. Load throughput",
        "",
        (
            f"`cdr_reports.pipeline.load.load_report` of one report with {load['rows']:,} operator rows, a new daily period "
            "per run (pure inserts plus the run row, one transaction), after one warm-up load that creates the tables."
        ),
        "",
        "| sink | runs | seconds | rows/s |",
        "|---|---:|---:|---:|",
    ]
    for name in ("postgresql", "sqlite"):
        lines.append(
            f"| {name} | {load['runs']} | {fmt_stats(load[name]['seconds'])} | "
            f"{fmt_stats(load[name]['rows_per_second'], lambda v: f'{v:,.0f}')} |"
        )
    lines.append("")
    return lines


def _documents_read(commands: dict[str, Any], collection_size: int) -> str:
    """What the server read: nothing without a query; with one, these test servers scan the whole
    collection (FerretDB decodes every document of it, mongo-java-server's memory backend iterates it),
    so the collection's size. Neither server reports examined documents, so this is derived, not counted."""
    queried = {"find", "aggregate", "count"} & set(commands)
    return f"{collection_size:,} (a scan)" if queried else "0 (no query)"


def _rollup_section(data: dict[str, Any]) -> list[str]:
    rollup = data["rollup"]
    days = 30
    lines = [
        "## 7. Weekly and monthly reports from the stored daily reports (roll-up)",
        "",
        (
            f"November 2026 ({days} local days, {rollup['calls_per_day']:,} synthetic CDRs a day) seeded identically into "
            "each server, its daily reports stored in PostgreSQL (computed once, on mongo-java-server, in "
            f"{rollup['store_dailies_seconds']} s: what 30 daily runs leave behind). Each run is `runner.run_report` "
            "(plan, count, aggregate, load) in a fresh process; server CPU is the server process's utime+stime from "
            "/proc (10 ms ticks: 0.00 means under one tick). Pairs are interleaved: `CDR_ROLLUP=off` (today's direct "
            "extract) then `auto` (rolled up); then the mixed month (the daily report of "
            f"{rollup['missing_day']} missing: 29 days rolled up, 1 extracted) then that day's own daily report."
        ),
        "",
        "| server | run | method | seconds | server CPU s | documents returned | documents read by the server | commands |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for name, e in rollup["servers"].items():
        for mode, label in (
            ("direct", "month, `CDR_ROLLUP=off`"),
            ("rollup", "month, rolled up"),
            ("mixed", "month, one daily report missing"),
            ("one_day", "that one day's daily report"),
        ):
            method = {
                "direct": "/".join(e["methods"]["direct"]),
                "rollup": "/".join(e["methods"]["rollup"]),
                "mixed": "/".join(e["methods"]["mixed"])
                + f" ({'/'.join(map(str, e['methods']['mixed_days_extracted']))} day extracted)",
                "one_day": "extract",
            }[mode]
            cmds = _cmds(e["commands"][mode]) if mode in e["commands"] else ""
            lines.append(
                f"| {name} | {label} | {method} | {fmt_stats(e['seconds'][mode])} | "
                f"{fmt_stats(e['server_cpu_seconds'][mode])} | "
                f"{fmt_stats(e['wire_documents'][mode], lambda v: f'{v:,.0f}')} | "
                f"{_documents_read(e['commands'].get(mode, {}), rollup['seed'][name]['inserted'])} | {cmds or '—'} |"
            )
    lines += [
        "",
        (
            "| server | rolled up ÷ off, server CPU | rolled up ÷ off, wall | mixed ÷ one daily report, server CPU | "
            "mixed ÷ one daily report, wall | all results identical |"
        ),
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, e in rollup["servers"].items():
        r = e["ratios"]
        lines.append(
            f"| {name} | {fmt_stats(r['rollup_over_direct_server_cpu'], lambda v: f'{v * 100:.1f}%')} | "
            f"{fmt_stats(r['rollup_over_direct_wall'])} | {fmt_stats(r['mixed_over_one_day_server_cpu'])} | "
            f"{fmt_stats(r['mixed_over_one_day_wall'])} | {'yes' if e['agree'] else '**no**'} |"
        )
    lines += [
        "",
        (
            "Documents read by the server: these servers report no examined-document count, so the column is "
            "derived from the commands: a run that sends no query reads nothing, and a query makes these test "
            "servers scan the whole collection of "
            f"{rollup['seed'][next(iter(rollup['servers']))]['inserted']:,} documents. "
            "The roll-up sends no query to the MongoDB server (the commands column; `endSessions` is the client "
            "closing): its server CPU is the server's idle ticks, and its wall time is the PostgreSQL read of 30 days × operators rows plus the load. "
            "The mixed month costs the server what the missing day's own daily report costs: on these test servers a "
            "day's query still decodes the whole collection (FerretDB) or scans it in memory (mongo-java-server), so "
            "it is the cost of one scan; on MongoDB with the `DateTime.Start` index it reads that day's CDRs only "
            "([scale-out.md](scale-out.md))."
        ),
        "",
    ]
    return lines
