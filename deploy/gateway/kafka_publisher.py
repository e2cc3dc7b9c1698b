"""Publish one gateway event to Kafka and wait for the broker's acknowledgement (aiokafka).

Invariant: the gateway answers 2xx for an event only after the broker acknowledged it
(``send_and_wait`` returned its offset). With ``acks="all"`` and idempotence on a real cluster
(``kafka.local_profile = false``) an acknowledged record survives the loss of the leader; the
embedded broker gets ``acks=1`` (it has one replica and no idempotent producer). When no ack
arrives within ``publish_timeout_s`` the call raises `PublishError` and the gateway answers
503: the client retries, nothing it was told succeeded is lost. The reverse can happen (the
record landed but the ack was lost), so a retried reaction may arrive twice; the stream
worker's labels depend on the state a user holds, so a repeated "add" changes nothing.

The producer connects lazily on the first publish (or `start`), so the gateway starts and
answers /healthz while Kafka is down, and reconnects by itself when it comes back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from rluf.settings import KafkaSettings
from streams.kafka_admin import client_options

__all__ = ["PublishError", "EventSink", "AckedKafkaPublisher"]

logger = logging.getLogger(__name__)


class PublishError(Exception):
    """Raised when Kafka did not acknowledge a record in time; the gateway answers 503."""


class EventSink(Protocol):
    """Where the gateway's events go; `publish` returns only once the record is durable."""

    async def publish(self, topic: str, key: bytes, value: bytes) -> None: ...


class AckedKafkaPublisher:
    """An aiokafka producer that awaits every record's acknowledgement.

    Args:
        kafka: Connection, security and profile settings (acks/idempotence follow the profile).
        timeout_s: Longest wait for a connection or an ack before `PublishError`.
    """

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float) -> None:
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """True once a producer started and has not failed since."""
        return self._producer is not None

    def _options(self) -> dict[str, Any]:
        opts = client_options(self._kafka, role="admin")  # connection + SASL keys share aiokafka's names
        timeout_ms = int(self._timeout_s * 1000)
        opts.update(
            client_id="rluf-gateway",
            acks=1 if self._kafka.local_profile else "all",
            enable_idempotence=not self._kafka.local_profile,
            linger_ms=0,  # every request waits for its own ack; batching would only add latency
            request_timeout_ms=timeout_ms,  # also when an unsent batch expires
            retry_backoff_ms=100,
            metadata_max_age_ms=30_000,
        )
        return opts

    async def start(self) -> None:
        """Connect now (idempotent).

        Raises:
            PublishError: no broker answered within the timeout.
        """
        await self._ensure()

    async def _ensure(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is not None:
                return self._producer
            producer = AIOKafkaProducer(**self._options())
            try:
                await asyncio.wait_for(producer.start(), self._timeout_s)
            except (KafkaError, OSError, TimeoutError) as exc:
                await _stop_quietly(producer)
                raise PublishError(f"no Kafka broker answers at {self._kafka.bootstrap_servers} "
                                   f"({type(exc).__name__})") from exc
            self._producer = producer
            logger.info("gateway producer connected to %s", self._kafka.bootstrap_servers)
            return producer

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Send one record and wait for its acknowledgement.

        Raises:
            PublishError: not connected, or no ack within the timeout (the record may or may
                not have landed; the caller must report failure).
        """
        producer = await self._ensure()
        try:
            await asyncio.wait_for(producer.send_and_wait(topic, value=value, key=key), self._timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise PublishError(f"Kafka did not acknowledge the record on {topic} "
                               f"within {self._timeout_s:g} s ({type(exc).__name__})") from exc

    async def close(self) -> None:
        """Flush what is pending and disconnect (safe to call twice)."""
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer)


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), 10.0)
    except (KafkaError, OSError, TimeoutError) as exc:  # shutting down; the cause is logged, not raised
        logger.warning("gateway producer did not stop cleanly: %s", type(exc).__name__)
