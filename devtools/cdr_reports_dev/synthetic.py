"""Seedable synthetic call-detail records (CDRs) for tests, demos and load checks.

Documents follow the CDR contract (``Operator.Id``, ``DateTime.Start``, ``DateTime.Connect``,
``Duration``, optional ``IsDeleted``) plus a configurable share of malformed documents, so that
report code can be checked against exact, known counts.

Stdlib only at import time: this module is reachable from Airflow DAG parsing, so pymongo and
bson are imported inside the functions that use them.
"""

from __future__ import annotations

import math
import sys
import time
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import accumulate
from random import Random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

__all__ = ["SeedStats", "SyntheticConfig", "generate_cdrs", "main", "seed_collection"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_MS = 3_600_000

# Relative call volume by local hour: quiet 02-05, peaks 10-12 and 19-21.
_LOCAL_HOUR_WEIGHTS = (
    0.34,
    0.20,
    0.12,
    0.08,
    0.07,
    0.10,
    0.24,
    0.48,  # 00-07
    0.80,
    1.00,
    1.18,
    1.22,
    1.08,
    0.98,
    1.00,
    1.02,  # 08-15
    1.02,
    1.00,
    1.06,
    1.20,
    1.24,
    1.12,
    0.80,
    0.55,  # 16-23
)
# Monday..Sunday: business traffic drops at the weekend.
_WEEKDAY_FACTORS = (1.00, 1.00, 1.00, 1.00, 1.03, 0.86, 0.76)

_STRING_OPERATOR_IDS = (
    "TT-MOBILE",
    "TURKCELL",
    "VODAFONE-TR",
    "NETGSM",
    "BIMCELL",
    "PTTCELL",
    "KKTCELL",
    "TELSIM-W",
    "VERIBAND",
    "MEDYATEL",
    "SUPERONLINE",
    "TURKNET",
)
_OPERATOR_NAMES = (
    "Anadolu Telekom",
    "Boğaziçi Net",
    "Ege İletişim",
    "Karadeniz GSM",
    "Marmara Voice",
    "Toros Telecom",
    "Kapadokya Tel",
    "Trakya Hat",
    "Dicle Net",
    "Fırat İletişim",
    "Akdeniz Mobil",
    "Çukurova Telekom",
    "Güneydoğu Net",
    "İstanbul VoIP",
    "Uludağ Tel",
)
_MOBILE_PREFIXES = ("532", "533", "535", "542", "505", "506", "544", "555", "537", "530")
_CALL_TYPES = ("VOICE",) * 18 + ("VIDEO", "CONFERENCE")

_DURATION_MEDIAN_S = 90.0
_DURATION_SIGMA = 1.1  # log-space spread: most calls 15 s .. 10 min, a long tail
_DURATION_CAP_S = 4 * 3600


# Document kinds, tallied by seed_collection.
_LIVE, _ANSWERED, _DELETED, _MALFORMED = range(4)
_MALFORMED_VARIANTS = 7


@dataclass(kw_only=True)
class SyntheticConfig:
    """What to generate; the same config (seed included) always yields the same documents.

    ``start``/``end`` are aware datetimes, ``calls`` is the total in ``[start, end)``.
    """

    seed: int = 42
    operators: int = 12
    start: datetime
    end: datetime
    calls: int
    answer_rate: float = 0.72
    malformed_share: float = 0.01
    deleted_share: float = 0.02
    time_zone: str = "Europe/Istanbul"

    def validate(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.calls < 0:
            raise ValueError(f"calls must be >= 0, got {self.calls}")
        if self.calls and self.end == self.start:
            raise ValueError("calls > 0 need a non-empty [start, end) window")
        if self.operators < 1:
            raise ValueError(f"operators must be >= 1, got {self.operators}")
        for name in ("answer_rate", "malformed_share", "deleted_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        if self.malformed_share + self.deleted_share > 1.0:
            raise ValueError("malformed_share + deleted_share must not exceed 1")


@dataclass
class SeedStats:
    """Exact counts of what seed_collection generated and inserted.

    ``malformed`` and ``deleted`` are disjoint (a deleted document is otherwise well formed);
    ``answered`` counts well-formed, non-deleted documents with a ``DateTime.Connect`` date, so
    ``inserted - malformed - deleted`` is the number of live calls a whole-period report sees.
    """

    inserted: int
    malformed: int
    deleted: int
    answered: int
    seconds: float

    @property
    def docs_per_second(self) -> float:
        return self.inserted / self.seconds if self.seconds > 0 else float("inf")


def _to_ms(value: datetime, ceil: bool = False) -> int:
    delta = value.astimezone(UTC) - _EPOCH
    ms, rest = divmod(delta.microseconds, 1000)
    # Ceil for window starts: BSON keeps milliseconds, and no Start may precede the window.
    return (delta.days * 86_400 + delta.seconds) * 1000 + ms + (1 if ceil and rest else 0)


def _ms_to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


@cache
def _std_normal_quantiles() -> tuple[float, ...]:
    """N(0, 1) quantiles at the midpoints of 4096 equal-probability slices.

    Indexing this with random() is a fast stand-in for gauss(); tails beyond ~3.5 sigma do not
    matter for synthetic data. Built lazily to keep the module cheap to import.
    """
    from statistics import NormalDist

    dist = NormalDist()
    return tuple(dist.inv_cdf((i + 0.5) / 4096) for i in range(4096))


def _operators(rng: Random, count: int) -> list[tuple[Any, str | None, float]]:
    """(id, name or None, traffic weight) per operator: a mix of int and string ids."""
    str_ids = list(_STRING_OPERATOR_IDS)
    rng.shuffle(str_ids)
    names = list(_OPERATOR_NAMES)
    rng.shuffle(names)
    next_int = 101
    result = []
    for i in range(count):
        # Index 0 is always an int and index 1 a string so small configs still mix both types.
        use_str = i == 1 or (i > 1 and rng.random() < 0.35)
        if use_str:
            op_id: Any = str_ids.pop() if str_ids else f"OP-{i:03d}"
        else:
            op_id = next_int
            next_int += rng.choice((1, 1, 1, 2, 7))
        name = None if rng.random() < 0.15 else (names[i] if i < len(names) else f"Carrier {i}")
        # Zipf-like sizes so a few operators dominate, like real interconnect traffic.
        weight = (1.0 / (i + 1) ** 1.2) * rng.uniform(0.8, 1.25)
        result.append((op_id, name, weight))
    rng.shuffle(result)
    return result


def _hour_buckets(config: SyntheticConfig, rng: Random) -> list[tuple[int, int, int]]:
    """(start_ms, end_ms, calls) per UTC hour in [start, end); the counts sum to config.calls."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(config.time_zone)
    start_ms, end_ms = _to_ms(config.start, ceil=True), _to_ms(config.end)
    spans: list[tuple[int, int]] = []
    weights: list[float] = []
    day_factor: dict[Any, float] = {}
    lo = start_ms
    while lo < end_ms:
        hi = min((lo // _HOUR_MS + 1) * _HOUR_MS, end_ms)
        local = _ms_to_datetime(lo).astimezone(tz)
        day = local.date()
        if day not in day_factor:
            # Day-to-day noise so consecutive days are not identical copies.
            day_factor[day] = _WEEKDAY_FACTORS[local.weekday()] * rng.uniform(0.9, 1.1)
        spans.append((lo, hi))
        weights.append(_LOCAL_HOUR_WEIGHTS[local.hour] * day_factor[day] * (hi - lo) / _HOUR_MS)
        lo = hi
    if not spans:
        if config.calls:
            raise ValueError("calls > 0 need a window of at least one millisecond")
        return []
    # Largest-remainder apportionment: exact total, smooth curve, no sampling noise.
    total = sum(weights)
    quotas = [config.calls * w / total for w in weights]
    counts = [math.floor(q) for q in quotas]
    short = config.calls - sum(counts)
    by_remainder = sorted(range(len(quotas)), key=lambda i: (counts[i] - quotas[i], i))
    for i in by_remainder[:short]:
        counts[i] += 1
    return [(lo, hi, n) for (lo, hi), n in zip(spans, counts, strict=False)]


def _generate(config: SyntheticConfig) -> Iterator[tuple[dict[str, Any], int]]:
    """Yield (document, kind) in Start order; kind is one of _LIVE/_ANSWERED/_DELETED/_MALFORMED."""
    from bson.int64 import Int64

    config.validate()
    rng = Random(config.seed)
    operators = _operators(rng, config.operators)
    op_docs = [{"Id": i, "Name": n} if n is not None else {"Id": i} for i, n, _ in operators]
    op_cum = list(accumulate(w for _, _, w in operators))
    op_total = op_cum[-1]
    buckets = _hour_buckets(config, rng)

    random, getrandbits = rng.random, rng.getrandbits
    answer_rate = config.answer_rate
    malformed_share = config.malformed_share
    dead_limit = config.malformed_share + config.deleted_share
    mu = math.log(_DURATION_MEDIAN_S)
    last_op = len(op_docs) - 1
    call_types, n_types = _CALL_TYPES, len(_CALL_TYPES)
    prefixes, n_prefixes = _MOBILE_PREFIXES, len(_MOBILE_PREFIXES)
    normal = _std_normal_quantiles()
    n_normal = len(normal)
    fromtimestamp = datetime.fromtimestamp

    # int(random() * n) instead of randrange/gauss: several times faster, still seed-deterministic.
    for lo, hi, count in buckets:
        span = hi - lo
        for offset in sorted([int(random() * span) for _ in range(count)]):
            start_ms = lo + offset
            # ms / 1000 is exact enough: fromtimestamp rounds to the microsecond, so whole ms survive.
            times: dict[str, Any] = {"Start": fromtimestamp(start_ms / 1000, UTC)}
            operator = dict(op_docs[min(bisect(op_cum, random() * op_total), last_op)])
            answered = random() < answer_rate
            if answered:
                ring_ms = max(300, int(8500 + 4000 * normal[int(random() * n_normal)]))
                times["Connect"] = fromtimestamp((start_ms + ring_ms) / 1000, UTC)
                z = normal[int(random() * n_normal)]
                seconds = min(math.exp(mu + _DURATION_SIGMA * z), _DURATION_CAP_S)
                number_type = random()
                if number_type < 0.85:
                    duration: Any = max(1, round(seconds))
                elif number_type < 0.95:
                    duration = round(max(seconds, 0.1), 3)
                else:
                    duration = Int64(max(1, round(seconds)))
            else:
                # Both shapes occur in real feeds: explicit null and absent field.
                if random() < 0.5:
                    times["Connect"] = None
                duration = 0 if random() < 0.9 else 0.0
            doc: dict[str, Any] = {
                "CallId": f"{getrandbits(64):016x}",
                "Operator": operator,
                "DateTime": times,
                "Duration": duration,
                "CallingNumber": f"90{prefixes[int(random() * n_prefixes)]}{int(random() * 1e7):07d}",
                "CalledNumber": f"90{prefixes[int(random() * n_prefixes)]}{int(random() * 1e7):07d}",
                "CallType": call_types[int(random() * n_types)],
            }
            fate = random()
            if fate < malformed_share:
                _break(doc, rng, duration)
                kind = _MALFORMED
            elif fate < dead_limit:
                doc["IsDeleted"] = True
                kind = _DELETED
            else:
                if random() < 0.5:
                    doc["IsDeleted"] = False
                kind = _ANSWERED if answered else _LIVE
            yield doc, kind


def _break(doc: dict[str, Any], rng: Random, duration: Any) -> None:
    """Damage one contract field the way broken upstream feeds do."""
    variant = rng.randrange(_MALFORMED_VARIANTS)
    if variant == 0:
        del doc["Operator"]["Id"]
    elif variant == 1:
        doc["Operator"]["Id"] = None
    elif variant == 2:
        del doc["Operator"]
    elif variant == 3:
        del doc["Duration"]
    elif variant == 4:
        doc["Duration"] = -(1 + rng.randrange(600))
    elif variant == 5:
        doc["Duration"] = str(int(duration))
    else:
        doc["Duration"] = [duration]


def generate_cdrs(config: SyntheticConfig) -> Iterator[dict[str, Any]]:
    """Yield CDR documents (without ``_id``) in ``DateTime.Start`` order, deterministic per seed."""
    for doc, _ in _generate(config):
        yield doc


def seed_collection(collection: Any, config: SyntheticConfig, batch_size: int = 10_000) -> SeedStats:
    """Insert ``generate_cdrs(config)`` into a pymongo collection and return exact counts."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tally = [0, 0, 0, 0]
    inserted = 0
    began = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for doc, kind in _generate(config):
        tally[kind] += 1
        batch.append(doc)
        if len(batch) >= batch_size:
            inserted += len(collection.insert_many(batch, ordered=False).inserted_ids)
            batch = []
    if batch:
        inserted += len(collection.insert_many(batch, ordered=False).inserted_ids)
    return SeedStats(
        inserted=inserted,
        malformed=tally[_MALFORMED],
        deleted=tally[_DELETED],
        answered=tally[_ANSWERED],
        seconds=time.perf_counter() - began,
    )


def _parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(prog="cdr-seed", description="Seed a collection with synthetic CDRs.")
    p.add_argument("--uri", required=True, help="MongoDB URI")
    p.add_argument("--database", help="database (default: the URI's database, else 'cdr')")
    p.add_argument("--collection", default="CdrRecords")
    p.add_argument("--days", type=int, default=35, help="period ending at the current UTC hour")
    p.add_argument("--calls-per-day", type=int, default=20_000)
    p.add_argument("--operators", type=int, default=SyntheticConfig.operators)
    p.add_argument("--seed", type=int, default=SyntheticConfig.seed)
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--drop", action="store_true", help="drop the collection first")
    return p


def main(argv: list[str] | None = None) -> int:
    """``cdr-seed`` entry point."""
    args = _parser().parse_args(argv)
    if args.days < 1 or args.calls_per_day < 0:
        _parser().error("--days must be >= 1 and --calls-per-day >= 0")
    import pymongo
    from pymongo.uri_parser import parse_uri

    database = args.database or parse_uri(args.uri).get("database") or "cdr"
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    config = SyntheticConfig(
        seed=args.seed,
        operators=args.operators,
        start=end - timedelta(days=args.days),
        end=end,
        calls=args.days * args.calls_per_day,
    )
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(args.uri) as client:
        collection: Any = client[database][args.collection]
        if args.drop:
            collection.drop()
        stats = seed_collection(collection, config, batch_size=args.batch_size)
    print(
        f"cdr-seed: inserted={stats.inserted} malformed={stats.malformed} "
        f"deleted={stats.deleted} answered={stats.answered} "
        f"into {database}.{args.collection} [{config.start:%Y-%m-%dT%H:%MZ}, "
        f"{config.end:%Y-%m-%dT%H:%MZ}) seed={config.seed} in {stats.seconds:.2f}s "
        f"({stats.docs_per_second:,.0f} docs/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
