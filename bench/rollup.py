"""Section `rollup`: the monthly report from the stored daily reports vs read from the CDRs (issue 18).

Setup (untimed): a month of synthetic CDRs (November 2026, 30 local days) seeded identically into
FerretDB and mongo-java-server under the same database name, and its 30 daily reports stored in
a PostgreSQL schema. The daily reports are computed once, on mongo-java-server (`pushdown`, fast):
the rules fingerprint names the connection id, database and collection, not the server, so they
qualify on both servers; every measured roll-up is checked against the direct extract of the
same server, which proves that the dailies hold exactly what that server's CDRs say. A second
schema holds the same dailies minus one day (the mixed case).

Measured, per server, each in a fresh worker process (bench/worker.py `monthly`), `runs`
interleaved pairs: the monthly report (plan, count, aggregate, load: `runner.run_report`) with
CDR_ROLLUP=off (today's direct extract) and with CDR_ROLLUP=auto (rolled up); then pairs of the
mixed month (one day missing: 29 days rolled up, 1 extracted) and the missing day's own daily
report. Each run reports its wall time, the server process's CPU time (utime+stime from /proc),
the documents the server returned, the commands sent, and the report's method.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

MONTH_DAY = date(2026, 11, 15)  # November 2026: 30 local days in Europe/Istanbul
MISSING_DAY = date(2026, 11, 17)  # the mixed case's day without a stored daily report
TZ = "Europe/Istanbul"
SEED = 18
TARGET_SERVER_CPU_SHARE = 0.01  # issue 18: roll-up <= 1% of the direct extract's server CPU


def _period(report_type: str, day: date) -> Any:
    from cdr_reports.pipeline.periods import period_containing

    return period_containing(report_type, day, TZ)


def seed_month(uri: str, database: str, calls_per_day: int) -> dict[str, Any]:
    """The month's synthetic CDRs (the same generator and seed on every server)."""
    import pymongo

    from cdr_reports.pipeline.extract import ensure_indexes
    from cdr_reports_dev.synthetic import SyntheticConfig, seed_collection

    month = _period("monthly", MONTH_DAY)
    days = (month.end_date - month.start_date).days
    config = SyntheticConfig(
        seed=SEED, start=month.start_utc, end=month.end_utc, calls=calls_per_day * days, time_zone=TZ
    )
    with pymongo.MongoClient[dict[str, Any]](uri, tz_aware=True) as client:
        collection = client[database]["CdrRecords"]
        result = seed_collection(collection, config)
        ensure_indexes(collection)
    return {"inserted": result.inserted, "live": result.inserted - result.deleted, "seconds": round(result.seconds, 1)}


def store_dailies(uri: str, database: str, sink_url: str, schema: str, skip: tuple[date, ...] = ()) -> float:
    """The month's daily reports, stored in `schema` (what 30 daily DAG runs leave behind); seconds taken."""
    import pymongo
    import sqlalchemy as sa

    from cdr_reports.pipeline.config import Settings
    from cdr_reports.pipeline.runner import run_report

    month = _period("monthly", MONTH_DAY)
    settings = Settings(sql_schema=schema)
    engine = sa.create_engine(sink_url)
    began = time.perf_counter()
    try:
        with pymongo.MongoClient[dict[str, Any]](uri, tz_aware=True) as client:
            collection = client[database]["CdrRecords"]
            day = month.start_date
            while day < month.end_date:
                if day not in skip:
                    run_report(collection, engine, _period("daily", day), settings, f"bench-daily-{day}")
                day += timedelta(days=1)
    finally:
        engine.dispose()
    return round(time.perf_counter() - began, 1)


def _stats(values: list[float]) -> dict[str, Any]:
    """The shape of bench/run.py's stats() (what bench/report.py's fmt_stats reads)."""
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "values": values,
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["summary"] == b["summary"]


def bench_rollup(
    servers_by_name: dict[str, tuple[Any, str]],
    pg_uri: str,
    calls_per_day: int,
    runs: int,
    run_worker: Callable[..., dict[str, Any]],
    log: Callable[[str], None],
    checkpoint: Callable[[], None],
    results: dict[str, Any],
) -> None:
    """servers_by_name: name -> (bench server, strategy). Fills `results` (benchmarks.json `rollup`)."""
    import sqlalchemy as sa

    database = f"cdrbench_month_{uuid.uuid4().hex[:8]}"
    sink_url = pg_uri.replace("postgresql://", "postgresql+psycopg://", 1)
    full, gap = f"cdrbench_full_{uuid.uuid4().hex[:6]}", f"cdrbench_gap_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(sink_url)
    results.update({"calls_per_day": calls_per_day, "runs": runs, "missing_day": MISSING_DAY.isoformat()})
    results["target_server_cpu_share"] = TARGET_SERVER_CPU_SHARE
    try:
        with admin.begin() as conn:
            for schema in (full, gap):
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        for name, (server, _strategy) in servers_by_name.items():
            log(f"rollup: seeding a month ({calls_per_day:,} CDRs/day) into {name} {database}")
            results.setdefault("seed", {})[name] = seed_month(server.uri, database, calls_per_day)
        dailies_on, _ = servers_by_name.get("mongo-java-server") or next(iter(servers_by_name.values()))
        log(f"rollup: storing the 30 daily reports (computed on {dailies_on.name})")
        results["store_dailies_seconds"] = store_dailies(dailies_on.uri, database, sink_url, full)
        store_dailies(dailies_on.uri, database, sink_url, gap, skip=(MISSING_DAY,))
        checkpoint()
        for name, (server, strategy) in servers_by_name.items():
            base = {
                "uri": server.uri, "database": database, "sink_url": sink_url, "strategy": strategy,
                "server_pid": server.pid, "tz": TZ,
            }  # fmt: skip
            entry: dict[str, Any] = {"strategy": strategy, "pairs": [], "mixed_pairs": []}
            for i in range(runs):
                pair = {}
                for mode, rollup in (("direct", "off"), ("rollup", "auto")):  # A B A B: drift hits both alike
                    args = {**base, "schema": full, "rollup": rollup, "report_type": "monthly", "day": str(MONTH_DAY)}
                    pair[mode] = run_worker("monthly", args)
                    r = pair[mode]
                    log(
                        f"rollup {name} pair {i + 1}/{runs} {mode}: {r['seconds']:.2f} s, server CPU "
                        f"{r['server_cpu_seconds']:.2f} s, {r['wire_documents']:,} documents, method {r['method']}"
                    )
                entry["pairs"].append(pair)
            for i in range(runs):
                pair = {}
                for mode, schema, report_type, day in (
                    ("mixed", gap, "monthly", MONTH_DAY),
                    ("one_day", full, "daily", MISSING_DAY),
                ):
                    args = {**base, "schema": schema, "rollup": "auto", "report_type": report_type, "day": str(day)}
                    pair[mode] = run_worker("monthly", args)
                    r = pair[mode]
                    log(
                        f"rollup {name} mixed pair {i + 1}/{runs} {mode}: {r['seconds']:.2f} s, server CPU "
                        f"{r['server_cpu_seconds']:.2f} s, {r['wire_documents']:,} documents, method {r['method']}"
                    )
                entry["mixed_pairs"].append(pair)
            _summarize(entry)
            results.setdefault("servers", {})[name] = entry
            checkpoint()
    finally:
        import pymongo

        for server, _strategy in servers_by_name.values():
            with pymongo.MongoClient[dict[str, Any]](server.uri) as client:
                client.drop_database(database)
        with admin.begin() as conn:
            for schema in (full, gap):
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _summarize(entry: dict[str, Any]) -> None:
    pairs, mixed = entry["pairs"], entry["mixed_pairs"]
    direct = [p["direct"] for p in pairs]
    rolled = [p["rollup"] for p in pairs]
    entry["agree"] = all(_same(direct[0], r) for r in direct + rolled + [p["mixed"] for p in mixed])
    entry["methods"] = {
        "direct": sorted({r["method"] for r in direct}),
        "rollup": sorted({r["method"] for r in rolled}),
        "mixed": sorted({p["mixed"]["method"] for p in mixed}),
        "mixed_days_extracted": sorted({p["mixed"]["days_extracted"] for p in mixed}),
    }
    for key in ("seconds", "server_cpu_seconds", "wire_documents"):
        entry[key] = {
            mode: _stats([float(r[key]) for r in runs])
            for mode, runs in (
                ("direct", direct),
                ("rollup", rolled),
                ("mixed", [p["mixed"] for p in mixed]),
                ("one_day", [p["one_day"] for p in mixed]),
            )
        }
    entry["commands"] = {
        "direct": direct[0]["commands"],
        "rollup": rolled[0]["commands"],
        "mixed": mixed[0]["mixed"]["commands"],
        "one_day": mixed[0]["one_day"]["commands"],
    }
    entry["ratios"] = {
        "rollup_over_direct_server_cpu": _stats(
            [p["rollup"]["server_cpu_seconds"] / max(p["direct"]["server_cpu_seconds"], 0.01) for p in pairs]
        ),
        "rollup_over_direct_wall": _stats([p["rollup"]["seconds"] / p["direct"]["seconds"] for p in pairs]),
        "mixed_over_one_day_server_cpu": _stats(
            [p["mixed"]["server_cpu_seconds"] / max(p["one_day"]["server_cpu_seconds"], 0.01) for p in mixed]
        ),
        "mixed_over_one_day_wall": _stats([p["mixed"]["seconds"] / p["one_day"]["seconds"] for p in mixed]),
    }


# --------------------------------------------------------------------------- the worker side


def monthly_worker(args: dict[str, Any]) -> dict[str, Any]:
    """bench/worker.py `monthly`: one report through `runner.run_report`, with its cost on the server."""
    import pymongo
    import sqlalchemy as sa
    from pymongo import monitoring
    from servers import cpu_seconds

    from cdr_reports.pipeline.config import Settings
    from cdr_reports.pipeline.runner import run_report

    class WireCounter(monitoring.CommandListener):
        def __init__(self) -> None:
            self.documents = 0
            self.commands: list[str] = []

        def started(self, event: Any) -> None:
            self.commands.append(event.command_name)

        def failed(self, event: Any) -> None:
            pass

        def succeeded(self, event: Any) -> None:
            cursor = event.reply.get("cursor") or {}
            self.documents += len(cursor.get("firstBatch", cursor.get("nextBatch", [])))

    period = _period(args["report_type"], date.fromisoformat(args["day"]))
    settings = Settings(sql_schema=args["schema"], extract_strategy=args["strategy"], rollup=args["rollup"])
    wire = WireCounter()
    client = pymongo.MongoClient[dict[str, Any]](args["uri"], tz_aware=True, event_listeners=[wire])
    collection = client[args["database"]]["CdrRecords"]
    client.admin.command("ping")  # connected before the clock starts
    engine = sa.create_engine(args["sink_url"])
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    wire.documents, wire.commands = 0, []
    server_cpu = cpu_seconds(args["server_pid"])
    began = time.perf_counter()
    report = run_report(collection, engine, period, settings, dag_run_id=f"bench-{uuid.uuid4().hex[:8]}")
    seconds = time.perf_counter() - began
    server_cpu = cpu_seconds(args["server_pid"]) - server_cpu
    client.close()
    engine.dispose()
    return {
        "seconds": seconds,
        "server_cpu_seconds": server_cpu,
        "wire_documents": wire.documents,
        "commands": dict(sorted((c, wire.commands.count(c)) for c in set(wire.commands))),
        "method": report.method,
        "days_extracted": report.days_extracted,
        "summary": {
            "source_records": report.source_records,
            "valid_records": report.valid_records,
            "rejected_records": report.rejected_records,
            "rows": {r.operator_id: [r.total_calls, r.answered_calls, r.total_duration_ms] for r in report.rows},
        }
        if args["report_type"] == "monthly"
        else {},
    }
