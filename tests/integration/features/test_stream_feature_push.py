"""The stream worker keeps the feature store fresh and consults user reputation from it.

Run 1: a bot's too-fast Loves are quarantined; the worker pushes the bot's statistics to the
online store (reputation falls). Run 2, a new worker process: the bot now reacts at human
speed, and only the reputation remembered in the feature store catches it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from features.lake.reader import read_table
from rluf.settings import KafkaSettings
from streams.kafka_producer import EventPublisher
from tests.cli_env import worker_env
from tests.factories import reaction, response

pytestmark = pytest.mark.integration
RLUF = [sys.executable, "-m", "rluf"]


def publish(kafka: KafkaSettings, events: list[dict[str, Any]]) -> None:
    with EventPublisher(kafka) as pub:
        pub.publish([json.dumps(e).encode() for e in events])
        pub.flush()


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*RLUF, *args], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_worker_pushes_user_stats_and_quarantines_low_reputation(kafka_settings: KafkaSettings,
                                                                  tmp_path: Path) -> None:
    env = worker_env(kafka_settings, tmp_path, stream__attribution_window_s=3600, stream__allowed_lateness_s=0,
                     features__reputation_cache_s=0, filters__rate_enabled="false",
                     filters__daily_cap_enabled="false")
    run(env, "features", "apply")
    long_text = "A long and careful answer. " * 40  # 8.6 s to read
    bot_phase = []
    for i in range(20):
        bot_phase += [response(f"b{i}", "bot", i * 60, text=long_text),
                      reaction(f"fast{i}", f"b{i}", "bot", i * 60 + 1)]
    bot_phase += [response("n1", "human", 0), reaction("nice", "n1", "human", 120)]
    publish(kafka_settings, bot_phase)
    run(env, "stream", "run", "--driver", "batch", "--until-idle", "3", "--flush")

    online = json.loads(run(env, "features", "query", "--online", "user", "bot", "human", "--json").stdout)
    by_user = {row["user_id"]: row for row in online}
    assert by_user["bot"]["quarantined_7d"] == 20
    assert by_user["bot"]["reputation"] == pytest.approx(5 / 25)  # (0 + 5) / (0 + 20 + 5)
    assert by_user["human"]["reputation"] == pytest.approx(1.0) and by_user["human"]["loves_7d"] == 1

    publish(kafka_settings, [response("b99", "bot", 5000, text="short"), reaction("slow", "b99", "bot", 5600),
                             response("n2", "human", 5000), reaction("nice2", "n2", "human", 5600)])
    run(env, "stream", "run", "--driver", "batch", "--until-idle", "3", "--flush")
    q = read_table(str(tmp_path / "lake"), "quarantine")
    assert dict(zip(q["event_id"], q["reason"], strict=True))["slow"] == "low_reputation"
    assert "nice2" not in set(q["event_id"])
    triples = read_table(str(tmp_path / "lake"), "triples")
    labels = dict(zip(triples["response_id"], triples["label"], strict=True))
    assert labels["b99"] == 0 and labels["n2"] == 1
