"""Several workers in one consumer group land exactly what one worker lands.

The same simulated traffic (bots, coordinated groups, trolls, duplicates, malformed lines,
out-of-order events, un-reacts, late Loves) is streamed twice against the real broker with
the real `rluf stream run`: once through a single worker, once through workers that join
mid-stream, leave, and are SIGKILLed during a rebalance while the traffic is still being
published. Triples, labels and weights, label corrections and quarantine rows must be the
same.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rluf.settings import FilterSettings, KafkaSettings, SimulationSettings
from streams.kafka_admin import ensure_topics
from streams.sources.simulator.simulate import simulate
from streams.sources.simulator.text_corpus import load_corpus
from tests.cli_env import worker_env
from tests.integration.stream.test_stream_e2e import RLUF, lake, publish, publish_slowly, run_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW_S = 6 * 3600.0
STREAM = {"stream__attribution_window_s": WINDOW_S, "stream__allowed_lateness_s": 120,
          "stream__max_lateness_s": 2 * 86_400, "stream__land_interval_s": 0.2, "stream__batch_size": 300}


def traffic() -> list[bytes]:
    cfg = SimulationSettings(users=120, responses=2500, days=2.0, seed=11)
    sim = simulate(cfg, FilterSettings(), window_s=WINDOW_S, corpus=load_corpus(None, seed=3, template_threads=400))
    return [line.encode() for line in sim.lines]


def outcome(home: Path) -> dict[str, Any]:
    """What must not depend on how many workers landed it."""
    triples = lake(home, "triples")
    corrections = lake(home, "label_corrections")
    quarantine = lake(home, "quarantine")
    return {
        "triples": sorted(zip(triples["response_id"], triples["label"], triples["weight"].round(6),
                              triples["reactions"].map(lambda r: sorted(dict(r).items()) if r is not None else []),
                              strict=True)),
        "corrections": [] if corrections is None else sorted(
            zip(corrections["response_id"], corrections["reaction_event_id"], corrections["new_label"], strict=True)),
        "quarantine": [] if quarantine is None else sorted(
            (r, e if isinstance(e, str) else raw) for r, e, raw in
            zip(quarantine["reason"], quarantine["event_id"], quarantine["raw"], strict=True)),
    }


def _start(env: dict[str, str], driver: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen([*RLUF, "-v", "stream", "run", "--driver", driver], env=env, stdout=fh,
                                stderr=subprocess.STDOUT)


def _metrics(home: Path, group: str) -> dict[str, Any]:
    """The snapshot of the group's most active worker (each worker writes its own file)."""
    best: dict[str, Any] = {}
    for path in (home / "metrics").glob(f"stream-{group}.*.json"):
        try:
            snap = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if snap.get("events_in", 0) >= best.get("events_in", 0):
            best = snap
    return best


def _wait(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _rebalance_log_lines(log: Path) -> int:
    lines = log.read_text(errors="replace").splitlines()
    return sum("assigned shards" in line or "owns shards" in line for line in lines)


@pytest.mark.parametrize("driver", ["batch", "faust"])
@pytest.mark.kafka_partitions(4)
def test_joins_leaves_and_a_kill_during_a_rebalance_land_what_one_worker_lands(
        kafka_broker: KafkaSettings, tmp_path: Path, driver: str) -> None:
    lines = traffic()
    groups: dict[str, KafkaSettings] = {}
    for name in ("single", "scaled"):
        suffix = f"{name}-{driver}-{time.monotonic_ns() % 10**9}"
        groups[name] = kafka_broker.model_copy(update={
            "responses_topic": f"resp-{suffix}", "reactions_topic": f"react-{suffix}",
            "quarantine_topic": f"quar-{suffix}", "consumer_group": f"group-{suffix}", "partitions": 4})
        ensure_topics(groups[name])

    # One worker, everything published first.
    single_home = tmp_path / "single"
    publish(groups["single"], lines)  # type: ignore[arg-type]
    run_worker(worker_env(groups["single"], single_home, **STREAM), driver, flush=True, idle=3.0, timeout=300)
    expected = outcome(single_home)
    assert len(expected["triples"]) == 2500 and expected["corrections"]
    assert {r for r, _ in expected["quarantine"]} >= {"coordinated", "not_owner", "duplicate_event", "malformed_json"}

    # Several workers on a live stream: joins, a kill during a rebalance, a leave.
    kafka, home = groups["scaled"], tmp_path / "scaled"
    env = worker_env(kafka, home, **STREAM)
    # One long-lived producer (it remembers each response's owner to key its reactions), paced like live traffic.
    feeder = threading.Thread(target=publish_slowly, args=(kafka, lines, 13, 0.4))
    feeder.start()
    logs = [tmp_path / f"worker-{i}.log" for i in range(4)]
    w0 = _start(env, driver, logs[0])
    _wait(lambda: _metrics(home, kafka.consumer_group).get("events_in", 0) > 300, 90, "the first worker to read")
    w1 = _start(env, driver, logs[1])  # joins mid-stream
    _wait(lambda: _rebalance_log_lines(logs[1]) >= 1, 90, "the second worker's first shards")
    w2 = _start(env, driver, logs[2])  # a third joins ...
    time.sleep(1.0)
    w0.send_signal(signal.SIGKILL)  # ... and the first dies while the group rebalances
    w0.wait(timeout=10)
    _wait(lambda: _rebalance_log_lines(logs[2]) >= 1, 90, "the third worker's shards")
    w1.send_signal(signal.SIGTERM)  # a graceful leave
    assert w1.wait(timeout=60) == 0, logs[1].read_text()[-3000:]
    feeder.join()
    w2.send_signal(signal.SIGTERM)
    assert w2.wait(timeout=60) == 0, logs[2].read_text()[-3000:]
    run_worker(env, driver, flush=True, idle=3.0, timeout=300)

    got = outcome(home)
    assert got["triples"] == expected["triples"]
    assert got["corrections"] == expected["corrections"]
    missing = sorted(set(expected["quarantine"]) - set(got["quarantine"]))
    extra = sorted(set(got["quarantine"]) - set(expected["quarantine"]))
    assert got["quarantine"] == expected["quarantine"], (missing[:10], extra[:10])
