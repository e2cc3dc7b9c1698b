"""Ingest benchmark: broker -> filter -> join -> Delta, against raw kafka-python consumption.

Run: ``python -m bench.ingest [--responses N] [--drivers batch,faust] [--rounds R]``

One process starts a fresh embedded broker, publishes a simulated stream (with bots,
coordinated attackers and trolls, ground truth known), and then, interleaved in rounds:
* the baseline: a plain kafka-python consumer reading every message of both topics
  (assign + seek to the beginning, default settings, values not decoded);
* each worker driver, as the real `rluf stream run` subprocess, into a fresh lake.
Rates exclude start-up (group join, imports): raw = messages / (first to last message);
pipeline = events / (first event fed to last Delta commit), from the worker's metrics.
Printed: events/s and the ratio to the raw rate, p50/p99 latency from window close to the
triple landed, and the filter's precision/recall against the ground truth.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from kafka import KafkaConsumer, TopicPartition

from features.lake.reader import read_table
from rluf.settings import BrokerSettings, KafkaSettings, Settings
from streams.broker_process import free_port, start_broker, stop_broker
from streams.filter_eval import score_filter
from streams.kafka_admin import ensure_topics
from streams.kafka_producer import EventPublisher
from streams.sources.simulator.simulate import simulate, write_simulation
from streams.sources.simulator.text_corpus import load_corpus


def raw_consume_rate(kafka: KafkaSettings, total: int, *, check_crcs: bool = True) -> float:
    """Messages/s of a default kafka-python consumer over both topics (the baseline).

    ``check_crcs=False`` is printed for context only: kafka-python checks CRC32C in pure Python
    (the `crc32c` package is not installed), which dominates its rate on ~800-byte events.
    """
    consumer = KafkaConsumer(bootstrap_servers=kafka.servers, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=10_000, check_crcs=check_crcs)
    parts = [TopicPartition(t, p) for t in kafka.data_topics for p in range(kafka.partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    seen, first, last = 0, None, 0.0
    for _ in consumer:
        now = time.perf_counter()
        if first is None:
            first = now
        seen += 1
        last = now
        if seen >= total:
            break
    consumer.close()
    if seen < total or first is None:
        raise RuntimeError(f"raw consumer read {seen} of {total} messages")
    return (seen - 1) / (last - first)


def run_driver(driver: str, kafka: KafkaSettings, home: Path) -> dict[str, Any]:
    """One `rluf stream run` into a fresh lake; returns its final metrics snapshot."""
    group = f"bench-{driver}-{uuid4().hex[:6]}"
    env = dict(os.environ, RLUF_DATA_HOME=str(home), RLUF_KAFKA__BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
               RLUF_KAFKA__CONSUMER_GROUP=group, RLUF_KAFKA__PARTITIONS=str(kafka.partitions))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rluf", "stream", "run", "--driver", driver, "--until-idle", "3",
                           "--flush"], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{driver} worker failed: {done.stderr[-2000:]}")
    snap: dict[str, Any] = json.loads((home / "metrics" / f"stream-{group}.json").read_text())
    snap["wall_s"] = time.perf_counter() - started
    snap["rate"] = snap["events_in"] / (snap["last_landing_at"] - snap["first_event_at"])
    return snap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--drivers", default="batch,faust")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    drivers = [d for d in args.drivers.split(",") if d]
    settings = Settings()
    work = Path(tempfile.mkdtemp(prefix="rluf-bench-"))
    sim_cfg = settings.simulation.model_copy(update={"responses": args.responses, "users": args.users})
    sim = simulate(sim_cfg, settings.filters, window_s=settings.stream.attribution_window_s,
                   corpus=load_corpus(Path(__file__).resolve().parents[2] / "shared" / "data", seed=sim_cfg.seed))
    events, truth_path = work / "events.jsonl", work / "truth.json"
    write_simulation(sim, events, truth_path)
    truth = json.loads(truth_path.read_text())
    lines = [line for line in events.read_bytes().splitlines() if line.strip()]

    broker_dir = work / "broker"
    info = start_broker(BrokerSettings(port=free_port()), broker_dir)
    try:
        kafka = KafkaSettings(bootstrap_servers=info.bootstrap_servers, partitions=args.partitions)
        ensure_topics(kafka)
        with EventPublisher(kafka) as pub:
            pub.publish(lines)
            pub.flush()
        total = len(lines)
        raw_rates: list[float] = []
        results: dict[str, list[dict[str, Any]]] = {d: [] for d in drivers}
        raw_consume_rate(kafka, total)  # warm-up
        for r in range(args.rounds):
            raw_rates.append(raw_consume_rate(kafka, total))
            for d in drivers:
                results[d].append(run_driver(d, kafka, work / f"{d}-{r}"))
        raw = statistics.median(raw_rates)
        no_crc = raw_consume_rate(kafka, total, check_crcs=False)
        for d in drivers:
            rate = statistics.median(s["rate"] for s in results[d])
            print(f"ingest[{d}]: {rate / raw:.2f}x raw kafka-python consume "
                  f"(n={total} events, median of {args.rounds} rounds, cpu=2 cores, {args.partitions} partitions)")
        print(f"raw kafka-python consume: {raw:,.0f} msg/s (rounds: {', '.join(f'{x:,.0f}' for x in raw_rates)}); "
              f"for context, with check_crcs=False: {no_crc:,.0f} msg/s")
        for d in drivers:
            snaps = results[d]
            last = snaps[-1]
            rounds = ", ".join(f"{s['rate']:,.0f}" for s in snaps)
            print(f"{d:>6}: {statistics.median(s['rate'] for s in snaps):,.0f} events/s through broker -> filter -> "
                  f"join -> Delta (rounds: {rounds}; wall incl. start-up {last['wall_s']:.1f} s)")
            print(f"        window close -> triple landed: p50 {last['close_to_landed_p50_s']:.3f} s, "
                  f"p99 {last['close_to_landed_p99_s']:.3f} s; triples {last['triples_out']}, "
                  f"quarantined {last['quarantined_total']}")
            lake = str(work / f"{d}-{len(snaps) - 1}" / "lake")
            q = read_table(lake, "quarantine", columns=["event_id", "reason"])
            t = read_table(lake, "triples", columns=["user_id", "weight"])
            scores = score_filter(zip(q["event_id"], q["reason"], strict=True), truth["adversarial"],
                                  downweighted_users=set(t.loc[t["weight"] < 1, "user_id"]),
                                  low_info_users=truth["low_information_users"])
            for line in scores.lines():
                print(f"        {line}")
    finally:
        stop_broker(broker_dir, timeout_s=10)


if __name__ == "__main__":
    main()
