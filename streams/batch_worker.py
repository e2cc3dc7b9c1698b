"""The batch driver: a plain aiokafka consumer group loop around ``IngestLoop``.

Same core, same sink, same shards and offset scheme as the Faust app, without Faust's
per-message task overhead (see docs/streams.md). Several workers share the partitions of
one consumer group; the range assignor gives a worker partition p of *both* event topics
(a shard). A rebalance does not stop a worker: when partitions are revoked it lands
everything (the shards' open state goes to the state table with the offsets it covers), and
when the new assignment arrives it keeps the shards it still owns, forgets the others and
restores new ones from the lake. Kafka offsets are committed only as far as Delta recorded,
and every assigned partition is sought to where the lake says, so Delta is the truth.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaConnectionError

from rluf.errors import KafkaUnavailableError
from rluf.records import InputRecord, SourceRef
from rluf.settings import KafkaSettings, StreamSettings
from streams.burst_channel import KafkaBursts
from streams.ingest_loop import IngestLoop, PendingLanding
from streams.kafka_admin import client_options
from streams.shard_assignment import plan_assignment

__all__ = ["RunOutcome", "run_batch_worker"]

logger = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """How a worker run ended."""

    reason: str  # "idle", "stopped"
    events_in: int
    triples_out: int
    rebalances: int = 0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands shards over on revoke and takes them over on assign (see the module docstring)."""

    def __init__(self, run: _BatchRun) -> None:
        self._run = run

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._run.revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._run.assigned(assigned)


class _BatchRun:
    """One batch-driver run: the consumer, the loop and the landing in flight."""

    def __init__(self, kafka: KafkaSettings, stream: StreamSettings, loop: IngestLoop,
                 consumer: AIOKafkaConsumer, bursts: KafkaBursts | None) -> None:
        self.kafka, self.stream, self.loop, self.consumer, self.bursts = kafka, stream, loop, consumer, bursts
        self.writing: asyncio.Task[dict[tuple[str, int], int]] | None = None
        self.rebalances = 0

    async def land(self, pending: PendingLanding) -> dict[tuple[str, int], int]:
        checkpoint = await asyncio.to_thread(self.loop.write, pending)
        assigned = self.consumer.assignment()
        offsets = {TopicPartition(t, p): o for (t, p), o in checkpoint.items() if TopicPartition(t, p) in assigned}
        if offsets:
            await self.consumer.commit(offsets)
        return checkpoint

    async def land_everything(self) -> None:
        """Wait for the landing in flight, then land all that is pending now."""
        if self.writing is not None:
            await self.writing
            self.writing = None
        await self.land(self.loop.cut())

    async def revoked(self) -> None:
        if not self.loop.engines:
            return
        self.rebalances += 1
        self.loop.freeze()
        await self.land_everything()  # the open state goes to the lake with its offsets

    async def assigned(self, assigned: Any) -> None:
        tps = [(tp.topic, tp.partition) for tp in assigned if tp.topic in self.kafka.data_topics]
        plan = plan_assignment(self.loop, tps, self.kafka.data_topics)
        fresh = [TopicPartition(t, p) for t, p in plan.from_beginning]
        begin = await self.consumer.beginning_offsets(fresh) if fresh else {}
        starts = plan.starts({(tp.topic, tp.partition): o for tp, o in begin.items()})
        self.loop.assigned(starts)
        for (topic, partition), offset in starts.items():
            self.consumer.seek(TopicPartition(topic, partition), offset)
        logger.info("assigned shards %s (kept %s, restored %s, released %s); starts %s", sorted(plan.shards),
                    sorted(plan.kept), sorted(plan.restored), sorted(plan.released), starts)

    async def tick(self) -> None:
        _report_highwater(self.consumer, self.loop)
        self.loop.tick()
        if self.bursts is not None:
            await self.bursts.exchange()
            self.loop.advance()

    async def finish(self, flush: bool) -> None:
        if self.writing is not None:
            await self.writing
            self.writing = None
        await self.tick()
        if flush:
            self.loop.flush_route()
            if self.bursts is not None:
                await self.bursts.settle()
            self.loop.flush_close()
        await self.land(self.loop.cut())
        _report_highwater(self.consumer, self.loop)


async def run_batch_worker(kafka: KafkaSettings, stream: StreamSettings, loop: IngestLoop, *,
                           until_idle_s: float | None = None, flush: bool = False,
                           on_progress: Callable[[dict[str, object]], None] | None = None,
                           stop: asyncio.Event | None = None, bursts: KafkaBursts | None = None) -> RunOutcome:
    """Consume both event topics until idle/stopped, landing through ``loop``.

    Args:
        kafka: Broker and topic settings.
        stream: Batch sizes and timers.
        loop: The ingest loop (engines per shard + sink).
        until_idle_s: Exit once no event arrived for this long and nothing is left to read
            (after closing what the watermark allows); None runs until ``stop`` is set.
        flush: Close every open window before exiting.
        on_progress: Called with a metrics snapshot every ``stats_interval_s``.
        stop: Set it to stop gracefully.
        bursts: The burst exchange with the group's other workers (started and stopped here).
    """
    stop = stop or asyncio.Event()
    consumer = AIOKafkaConsumer(
        **client_options(kafka), group_id=kafka.consumer_group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms, max_poll_records=stream.batch_size,
        fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024,
        partition_assignment_strategy=(RangePartitionAssignor,),  # partition p of both topics together
    )
    run = _BatchRun(kafka, stream, loop, consumer, bursts)
    consumer.subscribe(list(kafka.data_topics), listener=_Rebalance(run))
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        raise KafkaUnavailableError(kafka.bootstrap_servers, str(exc)) from exc
    reason = "stopped"
    loop_time = asyncio.get_running_loop().time
    next_tick = next_stats = loop_time()
    try:
        if bursts is not None:
            await bursts.start()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=int(stream.batch_timeout_s * 1000),
                                           max_records=stream.batch_size)
            records = [InputRecord(SourceRef(tp.topic, tp.partition, m.offset), m.value or b"")
                       for tp, messages in batch.items() for m in messages]
            if records:
                loop.feed(records)
            now = loop_time()
            if now >= next_tick:
                await run.tick()
                next_tick = now + stream.tick_interval_s
            if loop.due() and (run.writing is None or run.writing.done()):
                if run.writing is not None:
                    run.writing.result()  # surface a failed landing instead of acknowledging past it
                run.writing = asyncio.create_task(run.land(loop.cut()))
            if now >= next_stats:
                snapshot = loop.snapshot({"driver": "batch", "rebalances": run.rebalances})
                loop.metrics.write(snapshot)
                if on_progress is not None:
                    on_progress(snapshot)
                next_stats = now + stream.stats_interval_s
            if until_idle_s is not None and not records and loop.idle_for() >= until_idle_s:
                reason = "idle"
                break
        await run.finish(flush)
        loop.metrics.write(loop.snapshot({"driver": "batch", "rebalances": run.rebalances}))
    finally:
        await consumer.stop()
        if bursts is not None:
            await bursts.stop()
    stats = loop.stats
    return RunOutcome(reason=reason, events_in=stats.events_in, triples_out=stats.triples_out,
                      rebalances=run.rebalances)


def _report_highwater(consumer: AIOKafkaConsumer, loop: IngestLoop) -> None:
    """High-water marks from the last fetch (correct on every broker, unlike ListOffsets on Tansu)."""
    loop.report_highwater({(tp.topic, tp.partition): consumer.highwater(tp) for tp in consumer.assignment()})
