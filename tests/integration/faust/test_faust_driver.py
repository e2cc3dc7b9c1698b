"""The Faust driver against the real embedded broker and real Delta tables.

Each worker runs in a subprocess (``faust_worker.py``) because Faust apps keep process-global
state. The assertions are the driver's contract: exact triples for a small event set, an
exit of its own accord with ``until_idle_s``, and Kafka commits that never pass the
checkpoint Delta recorded, so a SIGKILL with windows still open loses and duplicates nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from features.lake.delta_sink import transaction_app_id
from features.lake.reader import read_table
from features.lake.schema import QUARANTINE_TABLE, TRIPLES_TABLE, table_uri
from rluf.settings import KafkaSettings
from streams.faust_app import broker_urls, internal_topics
from streams.kafka_admin import consumer_lag, ensure_topics
from streams.kafka_producer import EventPublisher
from tests.factories import reaction, response

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
FAST = {"tick_interval_s": 0.2, "batch_timeout_s": 0.2, "land_interval_s": 0.2, "stats_interval_s": 0.3}


# -- helpers ---------------------------------------------------------------------------------


class Worker:
    """One Faust worker subprocess and the files it writes."""

    def __init__(self, tmp: Path, name: str, kafka: KafkaSettings, lake: Path, *, until_idle_s: float | None,
                 flush: bool, stream: dict[str, Any]) -> None:
        self.metrics_path = tmp / f"{name}-metrics.json"
        self.outcome_path = tmp / f"{name}-outcome.json"
        config = {
            "kafka": kafka.model_dump(mode="json"), "stream": {**FAST, **stream}, "lake_root": str(lake),
            "metrics_path": str(self.metrics_path), "outcome_path": str(self.outcome_path),
            "until_idle_s": until_idle_s, "flush": flush,
        }
        config_path = tmp / f"{name}-config.json"
        config_path.write_text(json.dumps(config))
        self.log_path = tmp / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.faust.faust_worker", str(config_path)],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"worker did not stop within {timeout_s} s; log:\n{self.log()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def outcome(self) -> dict[str, Any]:
        assert self.outcome_path.is_file(), f"no outcome written; log:\n{self.log()}"
        result: dict[str, Any] = json.loads(self.outcome_path.read_text())
        return result

    def metrics(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.metrics_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Started workers, killed at teardown if a test left one running."""
    started: list[Worker] = []
    yield started
    for w in started:
        w.kill()


@pytest.fixture
def faust_kafka(kafka_settings: KafkaSettings) -> KafkaSettings:
    """The test's topics plus Faust's internal leader topic (the app may not declare topics)."""
    ensure_topics(kafka_settings, internal_topics(kafka_settings.consumer_group))
    return kafka_settings


def _stamp(event: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {**event, "ts": at.isoformat()}


def _publish(kafka: KafkaSettings, lines: list[bytes]) -> None:
    with EventPublisher(kafka) as pub:
        pub.publish(lines)
        pub.flush()


def _delta_checkpoint(lake: Path, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
    table = DeltaTable(table_uri(str(lake), TRIPLES_TABLE))
    return {tp: table.transaction_version(transaction_app_id(group, tp)) for tp in tps}


def _wait_until(check: Callable[[], bool], timeout_s: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if worker.proc.poll() is not None:
            pytest.fail(f"worker exited ({worker.proc.returncode}) before {what}; log:\n{worker.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; log:\n{worker.log()}")
        time.sleep(0.2)


def _assert_commits_within_checkpoint(kafka: KafkaSettings, lake: Path) -> dict[tuple[str, int], Any]:
    """Kafka's committed offset never passes the resume offset Delta recorded; returns the lag report."""
    lag = consumer_lag(kafka, kafka.consumer_group, list(kafka.data_topics))
    recorded = _delta_checkpoint(lake, kafka.consumer_group, list(lag))
    for tp, info in lag.items():
        if info.committed is not None:
            delta = recorded[tp]
            assert delta is not None, f"{tp} committed {info.committed} with no Delta checkpoint"
            assert info.committed <= delta, f"{tp}: committed {info.committed} > Delta {delta}"
    return lag


def _triples(lake: Path) -> list[tuple[str, int]]:
    df = read_table(str(lake), TRIPLES_TABLE, columns=["response_id", "label"])
    return sorted((str(r), int(label)) for r, label in zip(df["response_id"], df["label"], strict=True))


# -- tests -----------------------------------------------------------------------------------


def test_broker_urls_lists_every_server() -> None:
    kafka = KafkaSettings(bootstrap_servers="h1:9092, h2:9093")
    assert broker_urls(kafka) == "kafka://h1:9092;kafka://h2:9093"
    assert internal_topics("grp") == ["grp-__assignor-__leader"]


@pytest.mark.kafka_partitions(2)
def test_exact_triples_and_exit_when_idle(faust_kafka: KafkaSettings, tmp_path: Path,
                                          workers: list[Worker]) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    at = lambda s: base + timedelta(seconds=s)  # noqa: E731
    events = [
        _stamp(response("r1", "u1", 0), at(0)),
        _stamp(response("r2", "u2", 0), at(1)),
        _stamp(response("r3", "u3", 0), at(2)),
        _stamp(reaction("e1", "r1", "u1", 0), at(10)),                       # owner's Love: label 1
        _stamp(reaction("e2", "r2", "u2", 0), at(12)),                       # Love ...
        _stamp(reaction("e3", "r2", "u2", 0, action="remove"), at(14)),      # ... taken back: label 0
        _stamp(reaction("e4", "r-never", "u4", 0), at(15)),                  # orphan: its response never comes
    ]
    _publish(faust_kafka, [json.dumps(e).encode() for e in events] + [b'{"type": "response", broken'])
    lake = tmp_path / "lake"

    worker = Worker(tmp_path, "w", faust_kafka, lake, until_idle_s=2.0, flush=True,
                    stream={"attribution_window_s": 60.0})
    workers.append(worker)
    assert worker.wait(60) == 0, worker.log()

    assert worker.outcome() == {"reason": "idle", "events_in": 8, "triples_out": 3, "rebalances": 0}
    assert _triples(lake) == [("r1", 1), ("r2", 0), ("r3", 0)]
    quarantine = read_table(str(lake), QUARANTINE_TABLE, columns=["reason", "response_id"])
    assert sorted(quarantine["reason"]) == ["malformed_json", "unknown_response"]
    lag = _assert_commits_within_checkpoint(faust_kafka, lake)
    # A clean stop acknowledges everything the final landing covered and Faust commits it.
    assert {tp: (i.committed, i.highwater) for tp, i in lag.items() if i.highwater} == {
        tp: (i.highwater, i.highwater) for tp, i in lag.items() if i.highwater
    }
    assert worker.metrics()["driver"] == "faust"


def _phase(first: int, count: int, start: datetime) -> tuple[list[bytes], list[tuple[str, int]]]:
    """Responses 10 s apart, every third Loved by its owner 30 s later; returns lines and triples."""
    lines: list[bytes] = []
    expected: list[tuple[str, int]] = []
    for i in range(first, first + count):
        rid, user, t = f"r{i:04d}", f"u{i % 40}", start + timedelta(seconds=10 * (i - first))
        lines.append(json.dumps(_stamp(response(rid, user, 0), t)).encode())
        if i % 3 == 0:
            lines.append(json.dumps(_stamp(reaction(f"e{i}", rid, user, 0), t + timedelta(seconds=30))).encode())
        expected.append((rid, int(i % 3 == 0)))
    return lines, expected


@pytest.mark.kafka_partitions(2)
def test_sigkill_with_open_windows_loses_and_duplicates_nothing(faust_kafka: KafkaSettings, tmp_path: Path,
                                                                 workers: list[Worker]) -> None:
    # Windows (1,800 s) longer than each phase, so however Kafka interleaves the two topics
    # no reaction is judged before its response is read. Phase B starts an hour after
    # phase A: once read, it closes every phase-A window and stays open itself.
    base = datetime.now(UTC) - timedelta(hours=3)
    lines_a, expected_a = _phase(0, 120, base)
    lines_b, expected_b = _phase(120, 30, base + timedelta(seconds=1200 + 3600))
    stream = {"attribution_window_s": 1800.0, "allowed_lateness_s": 0.0, "idle_advance": False}
    lake = tmp_path / "lake"

    first = Worker(tmp_path, "first", faust_kafka, lake, until_idle_s=None, flush=False, stream=stream)
    workers.append(first)
    _publish(faust_kafka, lines_a)
    _wait_until(lambda: first.metrics().get("events_in") == len(lines_a), 60, "phase A read", first)
    phase_a_ends = {tp: i.highwater for tp, i in consumer_lag(faust_kafka, faust_kafka.consumer_group,
                                                               list(faust_kafka.data_topics)).items()}
    _publish(faust_kafka, lines_b)
    total = len(lines_a) + len(lines_b)
    _wait_until(lambda: first.metrics().get("rows_landed", {}).get("triples") == len(expected_a)
                and first.metrics().get("events_in") == total, 30, "phase A landed, phase B read", first)

    def committed_somewhere() -> bool:
        lag = consumer_lag(faust_kafka, faust_kafka.consumer_group, list(faust_kafka.data_topics))
        return any(i.committed for i in lag.values())

    _wait_until(committed_somewhere, 20, "a Kafka commit", first)
    first.kill()  # SIGKILL: phase B is read, held in open windows, not landed

    lag = _assert_commits_within_checkpoint(faust_kafka, lake)
    recorded = _delta_checkpoint(lake, faust_kafka.consumer_group, list(lag))
    # Phase B's open windows are in the state table, exactly the records the checkpoint passed.
    held = _live_state(lake, faust_kafka.consumer_group, faust_kafka.partitions)
    passed = {f"{t}:{p}:{o}" for (t, p), cp in recorded.items() for o in range(phase_a_ends.get((t, p), 0), cp or 0)}
    assert held and held == passed, (sorted(held)[:5], sorted(passed)[:5])
    assert _triples(lake) == sorted(expected_a)

    second = Worker(tmp_path, "second", faust_kafka, lake, until_idle_s=2.0, flush=True, stream=stream)
    workers.append(second)
    assert second.wait(60) == 0, second.log()
    assert second.outcome()["reason"] == "idle"
    assert _triples(lake) == sorted(expected_a + expected_b)  # every response once, with its label
    # It started reading at Delta's checkpoint, not at Kafka's older commit: nothing re-read and skipped.
    assert second.metrics()["below_checkpoint_skipped"] == 0
    assert second.metrics()["events_in"] < len(lines_a) + len(lines_b)
    _assert_commits_within_checkpoint(faust_kafka, lake)


@pytest.mark.kafka_partitions(2)
def test_a_joining_member_takes_shards_over_and_nobody_stops(faust_kafka: KafkaSettings, tmp_path: Path,
                                                             workers: list[Worker]) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    lines, expected = _phase(0, 60, base)
    stream = {"attribution_window_s": 1800.0, "idle_advance": False}  # every window stays open
    lake = tmp_path / "lake"
    _publish(faust_kafka, lines)

    first = Worker(tmp_path, "first", faust_kafka, lake, until_idle_s=None, flush=False, stream=stream)
    workers.append(first)
    _wait_until(lambda: first.metrics().get("events_in") == len(lines), 60, "all events read", first)
    # A second member joins: the first lands its open state and hands one shard over.
    second = Worker(tmp_path, "second", faust_kafka, lake, until_idle_s=None, flush=False, stream=stream)
    workers.append(second)
    _wait_until(lambda: len(first.metrics().get("shards", [])) == 1 and len(second.metrics().get("shards", [])) == 1,
                60, "one shard each", first)
    assert sorted(first.metrics()["shards"] + second.metrics()["shards"]) == [0, 1]
    assert first.metrics()["open_windows"] + second.metrics()["open_windows"] == len(expected)
    # The second leaves (SIGTERM): its shard goes back to the first, restored from the lake.
    second.proc.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0, second.log()
    assert second.outcome()["reason"] == "stopped"
    _wait_until(lambda: first.metrics().get("shards") == [0, 1]
                and first.metrics().get("open_windows") == len(expected), 60, "both shards back", first)
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0, first.log()
    assert first.outcome()["reason"] == "stopped" and first.outcome()["rebalances"] >= 2
    _assert_commits_within_checkpoint(faust_kafka, lake)

    last = Worker(tmp_path, "last", faust_kafka, lake, until_idle_s=2.0, flush=True, stream=stream)
    workers.append(last)
    assert last.wait(60) == 0, last.log()
    assert last.metrics()["events_in"] == 0  # everything came back from the state table, nothing re-read
    assert _triples(lake) == sorted(expected)
    lag = _assert_commits_within_checkpoint(faust_kafka, lake)
    assert all(info.committed == info.highwater for info in lag.values() if info.highwater)


def _live_state(lake: Path, group: str, partitions: int) -> set[str]:
    """Sources of the records the state table holds live, over every shard."""
    from features.lake.delta_sink import DeltaLandingSink

    sink = DeltaLandingSink(str(lake), app_id=group)
    return {source for shard in range(partitions) for source in sink.restore_shard(shard, [])[0].holds}
