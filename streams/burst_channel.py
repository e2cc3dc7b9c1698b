"""The burst exchange between workers: Love facts and shard heartbeats over one Kafka topic.

Every worker of a consumer group writes the Loves its shards route and each shard's
heartbeat to ``kafka.bursts_topic_name`` (one partition, tiny: about one record per hundred
responses plus a heartbeat per shard and tick) and reads the whole topic back, its own
records included, into one ``LocalBursts``. All workers therefore apply the same facts in
the same (event time, event id) order and reach the same verdicts; a shard moving to another
worker keeps its heartbeat (a shard's clock never moves back), and a restarted worker reads
the topic from the start (production: give it a retention of a few attribution windows and
read from an offset by time; documented in docs/streams.md).

Order matters: a heartbeat promises that the shard's facts up to its watermark are
published, so each `exchange` sends the facts, waits for them, and only then the heartbeats.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from rluf.errors import RlufError
from rluf.settings import FilterSettings, KafkaSettings
from streams.bursts import LocalBursts, LoveFact, ShardClock
from streams.kafka_admin import client_options

__all__ = ["KafkaBursts", "decode_record", "encode_clock", "encode_fact"]

logger = logging.getLogger(__name__)


def encode_fact(fact: LoveFact) -> bytes:
    return json.dumps({"f": [fact.ts, fact.event_id, fact.fingerprint, fact.user_id, fact.shard]}).encode()


def encode_clock(clock: ShardClock) -> bytes:
    return json.dumps({"c": [clock.shard, clock.watermark, clock.idle]}).encode()


def decode_record(value: bytes) -> LoveFact | ShardClock | None:
    """One record of the bursts topic (None: not one of ours; it is skipped)."""
    try:
        obj = json.loads(value)
        if "f" in obj:
            ts, eid, fp, user, shard = obj["f"]
            return LoveFact(ts=float(ts), event_id=str(eid), fingerprint=str(fp), user_id=str(user), shard=int(shard))
        if "c" in obj:
            shard, wm, idle = obj["c"]
            return ShardClock(int(shard), None if wm is None else float(wm), bool(idle))
    except (ValueError, TypeError, KeyError):
        pass
    return None


class KafkaBursts:
    """A `BurstOracle` shared through Kafka; the driver calls `exchange` on every tick.

    Args:
        kafka: Connection settings and the bursts topic.
        filters: Burst size and window.
        shards: How many shards the stream has (every one must report before a verdict is final).
    """

    def __init__(self, kafka: KafkaSettings, filters: FilterSettings, shards: int) -> None:
        self._kafka = kafka
        self._local = LocalBursts(filters.burst_users, filters.burst_window_s, range(shards))
        self._facts: list[LoveFact] = []
        self._clocks: dict[int, ShardClock] = {}
        self._sent: dict[int, ShardClock] = {}  # heartbeats sent and not read back yet
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.records_in = 0

    # ------------------------------------------------------------------ BurstOracle

    def publish(self, facts: Iterable[LoveFact]) -> None:
        self._facts.extend(facts)

    def heartbeat(self, clock: ShardClock) -> None:
        self._clocks[clock.shard] = clock

    def final_through(self) -> float | None:
        return self._local.final_through()

    def coordinated(self, event_id: str) -> bool:
        return self._local.coordinated(event_id)

    # ------------------------------------------------------------------ I/O

    async def start(self) -> None:
        opts: dict[str, Any] = client_options(self._kafka)
        topic = TopicPartition(self._kafka.bursts_topic_name, 0)
        try:
            self._producer = AIOKafkaProducer(**opts, linger_ms=0, acks=1 if self._kafka.local_profile else "all")
            await self._producer.start()
            self._consumer = AIOKafkaConsumer(**opts, enable_auto_commit=False, auto_offset_reset="earliest")
            await self._consumer.start()
            self._consumer.assign([topic])
            await self._consumer.seek_to_beginning(topic)
        except KafkaError as exc:
            await self.stop()
            raise RlufError(f"cannot open the bursts topic {self._kafka.bursts_topic_name}: {exc}") from exc

    async def stop(self) -> None:
        for client in (self._producer, self._consumer):
            if client is not None:
                try:
                    await client.stop()
                except KafkaError as exc:  # closing: nothing else to do with the error
                    logger.debug("closing a bursts client: %s", exc)
        self._producer = self._consumer = None

    async def exchange(self, *, poll_s: float = 0.0) -> int:
        """Send this worker's facts, then its heartbeats; apply everything new on the topic.

        Returns:
            How many records were read back.
        """
        producer, consumer = self._producer, self._consumer
        if producer is None or consumer is None:
            raise RlufError("the bursts exchange is not started")
        topic = self._kafka.bursts_topic_name
        facts, self._facts = self._facts, []
        clocks, self._clocks = list(self._clocks.values()), {}
        for fact in facts:
            await producer.send(topic, encode_fact(fact), partition=0)
        if facts:
            await producer.flush()
        for clock in clocks:
            await producer.send(topic, encode_clock(clock), partition=0)
        if clocks:
            await producer.flush()
        self._sent.update({clock.shard: clock for clock in clocks})
        return await self._read(poll_s)

    async def _read(self, poll_s: float) -> int:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=int(poll_s * 1000), max_records=100_000)
        n = 0
        for messages in batch.values():
            for message in messages:
                record = decode_record(message.value or b"")
                if isinstance(record, LoveFact):
                    self._local.publish([record])
                elif isinstance(record, ShardClock):
                    self._local.receive_clock(record)
                    if self._sent.get(record.shard) == record:
                        del self._sent[record.shard]
                n += 1
        if n:
            self._local.advance()
        self.records_in += n
        return n

    async def settle(self, *, timeout_s: float = 10.0) -> bool:
        """Exchange, then read until this worker's own last heartbeats came back (a flush).

        Returns:
            Whether they did within ``timeout_s`` (the verdicts then reflect everything this
            worker published).
        """
        await self.exchange()
        deadline = time.monotonic() + timeout_s
        while self._sent and time.monotonic() < deadline:
            await self._read(0.1)
        return not self._sent
