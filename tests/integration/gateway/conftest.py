"""Fixtures for the gateway's integration tests: a tiny chat LM folder and `rluf serve` as a child process.

The gateway runs exactly as in production (``python -m rluf serve``), configured through
``RLUF_*`` environment variables, against the real embedded broker.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from rluf.localhost import free_port
from rluf.settings import KafkaSettings
from tests.cli_env import worker_env
from tests.tiny_lm import build_tiny_chat_lm

API_KEY = "integration-api-key-123"
SIGNING_KEY = "integration-signing-key-0123456789abcdef"


@pytest.fixture(scope="package")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random chat LM saved as an HF folder called ``tinypolicy``."""
    return build_tiny_chat_lm(tmp_path_factory.mktemp("policy") / "tinypolicy")


def gateway_env(kafka: KafkaSettings, home: Path, policy: Path, *, dev: bool = False,
                **settings: Any) -> dict[str, str]:
    """Environment for `rluf serve` (and the stream worker) on ``kafka``'s topics with a local policy."""
    values: dict[str, Any] = {
        "gateway__policy_dir": policy, "gateway__temperature": 0, "gateway__max_new_tokens": 8,
        "gateway__publish_timeout_s": 2,
    }
    if not dev:
        values.update({"gateway__api_keys": API_KEY, "gateway__signing_key": SIGNING_KEY})
    values.update(settings)
    return worker_env(kafka, home, **values)


@contextmanager
def running_gateway(env: dict[str, str], log: Path, *, dev: bool = False, ready_s: float = 90.0) -> Iterator[str]:
    """Run `rluf serve` on a free port until the block ends; yields its base URL once /readyz is 200."""
    port = free_port()
    cmd = [sys.executable, "-m", "rluf", "serve", "--port", str(port), *(["--dev"] if dev else [])]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_s
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"rluf serve exited with {proc.returncode}: {log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"rluf serve not ready after {ready_s} s: {log.read_text()[-3000:]}")
                time.sleep(0.2)
            yield base
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def read_topic(kafka: KafkaSettings, topic: str) -> list[tuple[bytes | None, dict[str, Any]]]:
    """Every record on `topic` as (key, decoded JSON value), partition by partition."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka.servers, enable_auto_commit=False, consumer_timeout_ms=3000)
    parts = [TopicPartition(topic, p) for p in range(kafka.partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    out = [(m.key, json.loads(m.value)) for m in consumer]
    consumer.close()
    return out
