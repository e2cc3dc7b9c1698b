"""Ingest benchmark: broker -> filter -> join -> Delta, against the strongest raw consumer.

Run: ``python -m bench.ingest [--responses N] [--drivers batch,faust] [--rounds R] [--pair]``

One process starts a fresh embedded broker, publishes a simulated stream (with bots,
coordinated attackers and trolls, ground truth known), and then, interleaved in rounds, on
the same messages:
* the strongest baseline: an aiokafka consumer, ``getmany`` + ``json.loads`` of every message
  (assign + seek to the beginning) — the fastest honest way to read and decode them here;
* for context: default kafka-python (CRC-bound in pure Python on ~800-byte events), and a
  bare Faust agent that only decodes the messages (Faust's own ceiling, `bench/faust_ceiling.py`);
* each worker driver, as the real `rluf stream run` subprocess, into a fresh lake; with
  ``--pair``, also two batch workers of one consumer group at once (one per core), as a pair.
Rates exclude start-up (group join, imports): raw = messages / (first to last message);
pipeline = events / (first event fed to the Delta commit that made the last event durable, as
a triple or as open state), from the workers' metrics.
Printed: events/s and the ratio to the strongest baseline (Faust also to its own ceiling),
p50/p99 latency from window close to the triple landed, and the filter's precision/recall.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from kafka import KafkaConsumer, TopicPartition

from features.lake.reader import read_table
from rluf.settings import BrokerSettings, KafkaSettings, Settings
from rluf.shared_data import shared_data_dir
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


def aiokafka_decode_rate(kafka: KafkaSettings, total: int) -> float:
    """Messages/s of aiokafka ``getmany`` + ``json.loads`` of every message (the strongest baseline)."""

    async def read() -> float:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka.servers, enable_auto_commit=False,
                                    fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024)
        await consumer.start()
        try:
            parts = [AioTopicPartition(t, p) for t in kafka.data_topics for p in range(kafka.partitions)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            seen, first, last = 0, None, 0.0
            while seen < total:
                batch = await consumer.getmany(timeout_ms=10_000, max_records=2000)
                if not batch:
                    break
                now = time.perf_counter()
                if first is None:
                    first = now
                for messages in batch.values():
                    for message in messages:
                        with contextlib.suppress(ValueError):  # malformed lines too: the worker quarantines them
                            json.loads(message.value)
                seen += sum(len(m) for m in batch.values())
                last = time.perf_counter()
        finally:
            await consumer.stop()
        if seen < total or first is None:
            raise RuntimeError(f"aiokafka read {seen} of {total} messages")
        return seen / (last - first)

    return asyncio.run(read())


def faust_ceiling_rate(kafka: KafkaSettings, total: int, work: Path) -> float:
    """Messages/s of a bare Faust agent that only decodes (a process of its own)."""
    group = f"bench-ceiling-{uuid4().hex[:6]}"
    config, out = work / f"{group}.json", work / f"{group}.out.json"
    config.write_text(json.dumps({"kafka": kafka.model_copy(update={"consumer_group": group}).model_dump(mode="json"),
                                  "total": total, "out": str(out)}))
    subprocess.run([sys.executable, "-m", "bench.faust_ceiling", str(config)], check=False, capture_output=True,
                   timeout=600)
    if not out.is_file():
        raise RuntimeError("the bare Faust agent did not finish")
    return float(json.loads(out.read_text())["rate"])


def _env(kafka: KafkaSettings, home: Path, group: str) -> dict[str, str]:
    return dict(os.environ, RLUF_DATA_HOME=str(home), RLUF_KAFKA__BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
                RLUF_KAFKA__CONSUMER_GROUP=group, RLUF_KAFKA__PARTITIONS=str(kafka.partitions))


def _snapshots(home: Path, group: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((home / "metrics").glob(f"stream-{group}.*.json"))]


def run_driver(driver: str, kafka: KafkaSettings, home: Path, *, workers: int = 1) -> dict[str, Any]:
    """``workers`` concurrent `rluf stream run` processes of one group into a fresh lake; their metrics."""
    group = f"bench-{driver}-{uuid4().hex[:6]}"
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "rluf", "stream", "run", "--driver", driver, "--until-idle", "5",
                               "--flush"], env=_env(kafka, home, group), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{driver} worker failed: {err[-2000:]}")
    snaps = _snapshots(home, group)
    first = min(s["first_event_at"] for s in snaps if s.get("first_event_at"))
    last = max(s["caught_up_at"] for s in snaps if s.get("caught_up_at"))  # the newest event made durable
    events = sum(s["events_in"] for s in snaps)
    main = max(snaps, key=lambda s: s["events_in"])
    return {**main, "events_in": events, "triples_out": sum(s["triples_out"] for s in snaps),
            "quarantined_total": sum(s["quarantined_total"] for s in snaps), "workers": len(snaps),
            "wall_s": time.perf_counter() - started, "rate": events / (last - first),
            "close_to_landed_p99_s": max(s["close_to_landed_p99_s"] or 0 for s in snaps),
            "close_to_landed_p50_s": statistics.median(s["close_to_landed_p50_s"] or 0 for s in snaps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--drivers", default="batch,faust")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--pair", action="store_true", help="also run two batch workers of one group at once")
    args = parser.parse_args()
    drivers = [d for d in args.drivers.split(",") if d]
    settings = Settings()
    work = Path(tempfile.mkdtemp(prefix="rluf-bench-"))
    sim_cfg = settings.simulation.model_copy(update={"responses": args.responses, "users": args.users})
    sim = simulate(sim_cfg, settings.filters, window_s=settings.stream.attribution_window_s,
                   corpus=load_corpus(shared_data_dir(), seed=sim_cfg.seed))
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
        strongest: list[float] = []
        results: dict[str, list[dict[str, Any]]] = {d: [] for d in drivers}
        pairs: list[dict[str, Any]] = []
        aiokafka_decode_rate(kafka, total)  # warm-up
        for r in range(args.rounds):
            strongest.append(aiokafka_decode_rate(kafka, total))
            for d in drivers:
                results[d].append(run_driver(d, kafka, work / f"{d}-{r}"))
            if args.pair:
                pairs.append(run_driver("batch", kafka, work / f"pair-{r}", workers=2))
        base = statistics.median(strongest)
        kafka_python = raw_consume_rate(kafka, total)
        no_crc = raw_consume_rate(kafka, total, check_crcs=False)
        ceiling = faust_ceiling_rate(kafka, total, work) if "faust" in drivers else None
        rounds_text = ", ".join(f"{x:,.0f}" for x in strongest)
        print(f"strongest baseline, aiokafka getmany + json.loads: {base:,.0f} msg/s "
              f"(rounds: {rounds_text}; n={total} messages, {args.partitions} partitions)")
        print(f"for context: default kafka-python {kafka_python:,.0f} msg/s, with check_crcs=False {no_crc:,.0f} msg/s"
              + (f"; a bare Faust agent that only decodes {ceiling:,.0f} msg/s" if ceiling else ""))
        for d in drivers:
            rate = statistics.median(s["rate"] for s in results[d])
            extra = f", {rate / ceiling:.2f}x Faust's own ceiling" if d == "faust" and ceiling else ""
            print(f"ingest[{d}]: {rate / base:.2f}x the strongest baseline ({rate:,.0f} events/s){extra}")
        if pairs:
            rate = statistics.median(s["rate"] for s in pairs)
            print(f"ingest[batch x2, one group, one per core]: {rate / base:.2f}x the strongest baseline "
                  f"({rate:,.0f} events/s together)")
        for d, snaps in [*results.items(), *([("batch x2", pairs)] if pairs else [])]:
            last = snaps[-1]
            rounds = ", ".join(f"{s['rate']:,.0f}" for s in snaps)
            print(f"{d:>8}: {statistics.median(s['rate'] for s in snaps):,.0f} events/s through broker -> filter -> "
                  f"join -> Delta (rounds: {rounds}; wall incl. start-up {last['wall_s']:.1f} s)")
            print(f"          window close -> triple landed: p50 {last['close_to_landed_p50_s']:.3f} s, "
                  f"p99 {last['close_to_landed_p99_s']:.3f} s; triples {last['triples_out']}, "
                  f"quarantined {last['quarantined_total']}")
        for d in drivers:
            lake = str(work / f"{d}-{len(results[d]) - 1}" / "lake")
            q = read_table(lake, "quarantine", columns=["event_id", "reason"])
            t = read_table(lake, "triples", columns=["user_id", "weight"])
            scores = score_filter(zip(q["event_id"], q["reason"], strict=True), truth["adversarial"],
                                  downweighted_users=set(t.loc[t["weight"] < 1, "user_id"]),
                                  low_info_users=truth["low_information_users"])
            print(f"filter vs ground truth ({d}):")
            for line in scores.lines():
                print(f"          {line}")
    finally:
        stop_broker(broker_dir, timeout_s=10)


if __name__ == "__main__":
    main()
