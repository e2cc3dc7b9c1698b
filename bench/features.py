"""Benchmark the feature store: Delta appends, the 1M-triple training set, online lookups.

Run: ``python -m bench.features [--triples 1000000] [--users 10000] [--rounds 5] [--append-rows 20000]``

1. Delta append rows/s: ``DeltaLandingSink.land`` (dedup bookkeeping, checkpoint in the
   commit) against a raw ``write_deltalake`` append of the same rows (baseline), both
   including the Arrow conversion, interleaved after a warm-up, each round into fresh tables.
   The first line printed is that ratio (baseline time / sink time) with n and rounds.
2. Training set for ``--triples`` synthetic triples (pyarrow-generated, written with
   ``write_deltalake``; 1 % label corrections, 2 % quarantined reactions): the feature-table
   build (user_stats recompute, response_features from scratch) and ``build_training_set``
   timed separately. Target: training set < 60 s for 1M triples on 2 cores.
   ``--feast-sample`` rows are also joined with Feast's ``get_historical_features`` for a
   comparison of the two point-in-time joins.
3. Online lookups after ``materialize`` of user_stats: p50/p99 of 1,000 single-entity
   ``get_online_features`` calls (target p99 < 5 ms), and the amortised cost of a cached
   ``ReputationLookup`` call.

Figures only; nothing is asserted (CI gets no absolute-time thresholds).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from features.lake.delta_sink import DeltaLandingSink
from features.lake.schema import (
    CORRECTIONS_SCHEMA,
    CORRECTIONS_TABLE,
    PARTITION_COLUMN,
    QUARANTINE_SCHEMA,
    QUARANTINE_TABLE,
    TRIPLES_SCHEMA,
    TRIPLES_TABLE,
    table_uri,
    triples_to_arrow,
)
from rluf.records import Landing
from rluf.schemas import Message, Triple
from rluf.settings import FeatureSettings, Settings

T0 = datetime(2026, 10, 1, tzinfo=UTC)
_TS = pa.timestamp("us", tz="UTC")
WORDS = ["the", "answer", "is", "here", "and", "it", "explains", "python", "code", "step", "by", "with",
         "a", "short", "example", "thanks", "for", "question", "about", "weather", "in", "paris"]
ENDINGS = ["", " Would you like an example?", " Have a great day!", "\n\n- one\n- two", " **Note:** done.",
           " I'm sorry, but I can't help with that."]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            name = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or "cpu"
    return f"CPU {name}, {os.cpu_count()} cores"


def seconds(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# --------------------------------------------------------------------------- 1. appends


def make_triples(n: int, offset: int) -> list[Triple]:
    out = []
    for i in range(offset, offset + n):
        ts = T0 + timedelta(seconds=i)
        out.append(Triple(
            response_id=f"r{i}", event_id=f"e{i}", conversation_id=f"c{i // 4}", user_id=f"u{i % 1000}",
            context=[Message(role="user", content=f"question {i}")], response=f"answer {i} " + "x" * 200,
            policy_version="p1", ts=ts, label=int(i % 10 == 0), reactions={"love": 1} if i % 10 == 0 else {},
            window_closed_at=ts + timedelta(days=1), source_topic="rluf.responses", source_partition=0,
            source_offset=i,
        ))
    return out


def bench_append(n: int, rounds: int) -> None:
    triples = make_triples(n, 0)
    work = Path(tempfile.mkdtemp(prefix="rluf-bench-append-"))
    counter = iter(range(10_000))

    def sink() -> None:
        root = str(work / f"sink{next(counter)}")
        DeltaLandingSink(root, app_id="bench").land(Landing(triples=triples), checkpoint={("rluf.responses", 0): n})

    def raw() -> None:
        root = str(work / f"raw{next(counter)}")
        write_deltalake(table_uri(root, TRIPLES_TABLE), triples_to_arrow(triples), mode="append",
                        partition_by=[PARTITION_COLUMN])

    raw()
    sink()
    b, c = [], []
    for _ in range(rounds):
        b.append(seconds(raw))
        c.append(seconds(sink))
    shutil.rmtree(work, ignore_errors=True)
    mb, mc = statistics.median(b), statistics.median(c)
    print(f"delta append: DeltaLandingSink {mb / mc:.2f}x raw write_deltalake (n={n} rows, median of {rounds}, "
          f"{cpu_name()})")
    print(f"  raw write_deltalake: {n / mb:,.0f} rows/s ({mb * 1e3:.0f} ms); "
          f"DeltaLandingSink.land: {n / mc:,.0f} rows/s ({mc * 1e3:.0f} ms)")


# --------------------------------------------------------------------------- 2. training set


def synthetic_lake(root: Path, n: int, users: int, seed: int = 7) -> None:
    """Write ``n`` triples (+ corrections, quarantine) with the lake schemas, quickly, with numpy/pyarrow."""
    rng = np.random.default_rng(seed)
    span_s = 30 * 86_400
    conv = np.arange(n) // 4
    ts_us = (T0.timestamp() * 1e6 + np.sort(rng.integers(0, span_s * 10**6, n))).astype("int64")
    closed_us = ts_us + 86_400 * 10**6
    user = rng.integers(0, users, n)
    conv_user = user[conv * 4]  # a conversation has one owner
    label = (rng.random(n) < 0.08).astype("int32")
    ids = [f"r{i:07d}" for i in range(n)]
    n_texts = 5000
    texts = [" ".join(rng.choice(WORDS, 30)) + ENDINGS[i % len(ENDINGS)] for i in range(n_texts)]
    resp_idx = rng.integers(0, n_texts, n)
    ctx_struct = pa.StructArray.from_arrays(
        [pa.array(["user"] * n), pa.array([f"question {i % 50_000}" for i in range(n)])], names=["role", "content"])
    context = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype="int32")), ctx_struct,
                                       type=TRIPLES_SCHEMA.field("context").type)
    has = label.astype(bool)
    offsets = np.concatenate([[0], np.cumsum(has)]).astype("int32")
    reactions = pa.MapArray.from_arrays(pa.array(offsets), pa.array(["love"] * int(has.sum())),
                                        pa.array(np.ones(int(has.sum()), dtype="int32")),
                                        type=TRIPLES_SCHEMA.field("reactions").type)
    closed = pa.array(closed_us).cast(_TS)
    cols = {
        "response_id": pa.array(ids),
        "event_id": pa.array([f"e{i}" for i in range(n)]),
        "conversation_id": pa.array([f"c{c}" for c in conv]),
        "user_id": pa.array([f"u{u:05d}" for u in conv_user]),
        "context": context,
        "response": pa.array([texts[i] for i in resp_idx]),
        "policy_version": pa.array(["p1"] * n),
        "ts": pa.array(ts_us).cast(_TS),
        "label": pa.array(label),
        "reactions": reactions,
        "window_closed_at": closed,
        "close_reason": pa.array(["watermark"] * n),
        "weight": pa.array(np.ones(n)),
        "source_topic": pa.array(["rluf.responses"] * n),
        "source_partition": pa.array(np.zeros(n, dtype="int32")),
        "source_offset": pa.array(np.arange(n, dtype="int64")),
        "reaction_sources": pa.array([[] for _ in range(n)], type=TRIPLES_SCHEMA.field("reaction_sources").type),
        "extra_json": pa.array(["{}"] * n),
        PARTITION_COLUMN: closed.cast(pa.date32()).cast(pa.string()),
    }
    table = pa.Table.from_pydict(cols, schema=TRIPLES_SCHEMA)
    write_deltalake(table_uri(str(root), TRIPLES_TABLE), table, mode="append", partition_by=[PARTITION_COLUMN])

    k = n // 100  # corrections: late Loves on 1 % of the responses
    pick = rng.choice(n, k, replace=False)
    reaction_us = closed_us[pick] + 3600 * 10**6
    corr = {
        "correction_id": pa.array([f"k{i}" for i in range(k)]),
        "response_id": pa.array([ids[i] for i in pick]),
        "user_id": pa.array([f"u{conv_user[i]:05d}" for i in pick]),
        "reaction_event_id": pa.array([f"re{i}" for i in range(k)]),
        "action": pa.array(["add"] * k),
        "old_label": pa.array(label[pick]),
        "new_label": pa.array(np.ones(k, dtype="int32")),
        "reaction_ts": pa.array(reaction_us).cast(_TS),
        "window_closed_at": pa.array(closed_us[pick]).cast(_TS),
        "lateness_s": pa.array(np.full(k, 3600.0)),
        "source_topic": pa.array(["rluf.reactions"] * k),
        "source_partition": pa.array(np.zeros(k, dtype="int32")),
        "source_offset": pa.array(np.arange(k, dtype="int64")),
        PARTITION_COLUMN: pa.array(reaction_us).cast(_TS).cast(pa.date32()).cast(pa.string()),
    }
    write_deltalake(table_uri(str(root), CORRECTIONS_TABLE), pa.Table.from_pydict(corr, schema=CORRECTIONS_SCHEMA),
                    mode="append", partition_by=[PARTITION_COLUMN])

    q = n // 50  # quarantined reactions
    qpick = rng.choice(n, q, replace=False)
    q_us = ts_us[qpick] + 60 * 10**6
    quarantine = {
        "quarantine_id": pa.array([f"q{i}" for i in range(q)]),
        "reason": pa.array(["too_fast"] * q),
        "detail": pa.array(["bench"] * q),
        "raw": pa.array(["{}"] * q),
        "event_type": pa.array(["reaction"] * q),
        "event_id": pa.array([f"qe{i}" for i in range(q)]),
        "response_id": pa.array([ids[i] for i in qpick]),
        "user_id": pa.array([f"u{u:05d}" for u in rng.integers(0, users, q)]),
        "event_ts": pa.array(q_us).cast(_TS),
        "quarantined_at": pa.array(q_us).cast(_TS),
        "source_topic": pa.array(["rluf.reactions"] * q),
        "source_partition": pa.array(np.zeros(q, dtype="int32")),
        "source_offset": pa.array(np.arange(q, dtype="int64")),
        PARTITION_COLUMN: pa.array(q_us).cast(_TS).cast(pa.date32()).cast(pa.string()),
    }
    write_deltalake(table_uri(str(root), QUARANTINE_TABLE),
                    pa.Table.from_pydict(quarantine, schema=QUARANTINE_SCHEMA), mode="append",
                    partition_by=[PARTITION_COLUMN])


def bench_training_set(args: argparse.Namespace, home: Path) -> Settings:
    from features.store.feature_tables import build_response_features, build_user_stats
    from features.training_set import build_training_set

    settings = Settings(data_home=home, features=FeatureSettings(repo_dir=str(home / "repo")))
    t = seconds(lambda: synthetic_lake(Path(settings.lake_root), args.triples, args.users))
    print(f"synthetic lake: {args.triples:,} triples, {args.users:,} users written in {t:.1f} s")
    t_us = seconds(lambda: build_user_stats(settings.lake_root))
    t_rf = seconds(lambda: build_response_features(settings.lake_root))
    print(f"feature tables: user_stats recompute {t_us:.1f} s, response_features from scratch {t_rf:.1f} s "
          f"(5,000 distinct texts)")
    holder: dict[str, object] = {}
    t_ts = seconds(lambda: holder.setdefault("ts", build_training_set(settings, out=home / "ts")))
    m = holder["ts"].manifest  # type: ignore[attr-defined]
    print(f"training set: {m['rows']['total']:,} triples in {t_ts:.1f} s (join {m['join_s']:.1f} s; target < 60 s); "
          f"train/validation/test {m['rows']['train']:,}/{m['rows']['validation']:,}/{m['rows']['test']:,}, "
          f"base rate {m['base_rate']['all']:.4f}, corrections applied {m['corrections_applied']:,}")
    return settings


def bench_feast(args: argparse.Namespace, settings: Settings) -> None:
    import pandas as pd

    from features.store.repository import apply_repo, materialize, open_store
    from features.store.reputation import ReputationLookup
    from features.store.serving import get_offline
    from features.training_set import DATA_FILE

    t_apply = seconds(lambda: apply_repo(settings))
    t_mat = seconds(lambda: materialize(settings, refresh=False, feature_views=["user_stats"]))
    print(f"feast: apply {t_apply:.1f} s, materialize user_stats {t_mat:.1f} s")
    store = open_store(settings)
    rng = np.random.default_rng(1)
    users = [f"u{u:05d}" for u in rng.integers(0, args.users, args.lookups)]
    store.get_online_features(features=["user_stats:reputation"], entity_rows=[{"user_id": users[0]}])
    lat = []
    for u in users:
        t = time.perf_counter()
        store.get_online_features(features=["user_stats:reputation"], entity_rows=[{"user_id": u}]).to_dict()
        lat.append(time.perf_counter() - t)
    p50, p99 = np.percentile(np.array(lat) * 1e3, [50, 99])
    print(f"online lookup (1 entity, 1 feature, SQLite): p50 {p50:.2f} ms, p99 {p99:.2f} ms over {len(lat)} calls "
          f"(target p99 < 5 ms)")
    lookup = ReputationLookup(store, ttl_s=60.0)
    distinct = sorted(set(users))[:100]
    lookup.get_many(distinct)
    calls = 1_000_000
    t = time.perf_counter()
    for i in range(calls):
        lookup(distinct[i % len(distinct)])
    per = (time.perf_counter() - t) / calls
    print(f"ReputationLookup cached: {per * 1e6:.2f} µs per call ({calls:,} calls, {lookup.store_calls} store calls)")
    if args.feast_sample:
        frame = pd.read_parquet(settings.data_home / "ts" / DATA_FILE,
                                columns=["response_id", "user_id", "window_closed_at", "reputation"])
        sample = frame.sample(args.feast_sample, random_state=0)
        ent = pd.DataFrame({"user_id": sample["user_id"],
                            "event_timestamp": sample["window_closed_at"] - pd.Timedelta(microseconds=1)})
        holder: dict[str, pd.DataFrame] = {}
        t = seconds(lambda: holder.setdefault("f", get_offline(store, ent, ["user_stats:reputation"])))
        print(f"feast get_historical_features: {len(ent):,} entity rows in {t:.1f} s "
              f"({len(ent) / t:,.0f} rows/s; the training set joins {args.triples:,} in DuckDB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triples", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--append-rows", type=int, default=20_000)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--feast-sample", type=int, default=20_000)
    parser.add_argument("--keep", action="store_true", help="keep the synthetic lake")
    args = parser.parse_args()
    bench_append(args.append_rows, args.rounds)
    home = Path(tempfile.mkdtemp(prefix="rluf-bench-features-"))
    try:
        settings = bench_training_set(args, home)
        bench_feast(args, settings)
    finally:
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
