"""The Faust driver: a faust-streaming app around ``IngestLoop``, crash-safe by deferred acks.

Same core, same sink, same shards and resume positions as the batch driver
(``streams.batch_worker``); only consumption and acknowledgement differ. One agent reads both
event topics with manual acks (``stream.noack()`` + ``noack_take``) and keeps every event it
fed to the core. An event is acknowledged only after a Delta commit recorded a checkpoint
above its offset (its effect, or the open state holding it, is in the lake), always in offset
order per partition, so Faust's offset commit never passes what Delta holds: a SIGKILL at any
instruction loses nothing, and a restart reads on from the checkpoint with the shards' open
state restored from the state table. Faust's default acks would commit events still waiting
in open windows and lose them on a crash (docs: ``ingest.md``, control run G).

Rebalances: several workers share the partitions of one consumer group; Faust's assignor
gives a worker partition p of both topics together (a shard). When a rebalance starts the
worker lands everything (open state included); when it completes, the worker keeps the
shards it still owns, forgets those it lost and restores new ones from the lake, and sets
Kafka's committed offsets to where each partition must be read from before Faust seeks
there. No exit, no restart, no flush.

Cost: measured on 2 cores with the full core and a list sink, this driver does ~6k events/s
against ~32k for the batch driver, because Faust spends most of its time in per-message tasks
(``Consumer._drain_messages``/``wait_first``); the deferred acks cost ~3% in a profile. Memory
holds the events fed since the last landing until they are acked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import faust
from faust.exceptions import ConsumerNotStarted
from faust.streams import Stream
from faust.types import EventT, StreamT

from rluf.errors import RlufError
from rluf.records import InputRecord, SourceRef, TopicPartition
from rluf.settings import KafkaSettings, StreamSettings
from streams.batch_worker import RunOutcome
from streams.burst_channel import KafkaBursts
from streams.ingest_loop import IngestLoop, tune_gc_for_streaming
from streams.kafka_admin import wait_for_kafka
from streams.shard_assignment import plan_assignment

__all__ = ["AGENT_NAME", "FaustRun", "broker_urls", "create_app", "internal_topics", "run_faust_worker"]

logger = logging.getLogger(__name__)

AGENT_NAME = "rluf-ingest"
"""Name of the one agent that reads both event topics."""

_QUIET_LOGGERS = ("faust", "mode")  # set to WARNING unless the process configured them itself

ProgressCallback = Callable[[dict[str, object]], None]


def internal_topics(app_id: str) -> list[str]:
    """Return the topics Faust itself uses for an app, to be created up front.

    The app runs with ``topic_allow_declare=False`` (the admin code creates every topic with
    the configured partitions and replication), so Faust's leader-election topic must exist
    before the worker starts. The app has no tables, hence no changelog topics.
    """
    return [f"{app_id}-__assignor-__leader"]


def broker_urls(kafka: KafkaSettings) -> str:
    """Return Faust's broker string for the bootstrap servers (``kafka://h1:9092;kafka://h2:9092``)."""
    return ";".join(f"kafka://{server}" for server in kafka.servers)


def _credentials(kafka: KafkaSettings) -> faust.auth.Credentials | None:
    """Translate the TLS/SASL settings into Faust credentials (None for PLAINTEXT)."""
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl.create_default_context())
    context = ssl.create_default_context() if protocol == "SASL_SSL" else None
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    return faust.SASLCredentials(username=kafka.sasl_username, password=password, ssl_context=context,
                                 mechanism=kafka.sasl_mechanism or "PLAIN")


class FaustRun:
    """State of one Faust worker run: the held events, the landing lock, how the run ended.

    Built by `create_app`; its methods are the agent body, the timer and the signal
    handlers. Tests and `run_faust_worker` read ``reason``/``error``/``outcome()``.
    """

    def __init__(self, app: faust.App, kafka: KafkaSettings, stream: StreamSettings, loop: IngestLoop, *,
                 until_idle_s: float | None, flush: bool, on_progress: ProgressCallback | None,
                 bursts: KafkaBursts | None = None) -> None:
        self.app = app
        self.loop = loop
        self.reason = "stopped"
        self.error: BaseException | None = None
        self.request_stop: Callable[[], None] = _sigterm_self
        self.rebalances = 0
        self._cfg = stream
        self._kafka = kafka
        self._data_topics = frozenset(kafka.data_topics)
        self._until_idle_s = until_idle_s
        self._flush = flush
        self._on_progress = on_progress
        self._bursts = bursts
        self._bursts_started = False
        self._held: dict[TopicPartition, deque[EventT]] = {}
        self._ackable: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._landing: asyncio.Future[None] | None = None  # referenced so the task is not collected
        self._stream: StreamT[Any] | None = None
        self._closing = False
        self._next_stats = 0.0

    # ------------------------------------------------------------------ agent

    async def consume(self, stream: StreamT[Any]) -> None:
        """Agent body: feed batches to the core, keep the events, land when due."""
        # noack()/noack_take() live on the concrete Stream, not on Faust's StreamT protocol.
        manual = cast(Stream[Any], cast(Stream[Any], stream).noack())
        self._stream = manual
        async for events in manual.noack_take(self._cfg.batch_size, within=self._cfg.batch_timeout_s):
            if self._closing:
                continue  # neither fed nor acknowledged: the next run reads them again
            try:
                await self._on_events(events)
            except Exception as exc:
                # Not re-raised: Faust would restart the agent, and the held events with it.
                self._fail(exc)

    async def _on_events(self, events: Iterable[EventT]) -> None:
        records: list[InputRecord] = []
        held = self._held
        for event in events:
            message = event.message
            tp = (message.topic, message.partition)
            records.append(InputRecord(SourceRef(message.topic, message.partition, message.offset),
                                       message.value or b""))
            queue = held.get(tp)
            if queue is None:
                queue = held[tp] = deque()
            queue.append(event)
        self.loop.feed(records)
        if self.loop.due() and not self._lock.locked() and not self._closing:
            # Keep consuming while the landing is written, as the batch driver does.
            self._landing = asyncio.ensure_future(self._land_guarded())

    # ------------------------------------------------------------------ timer

    async def on_tick(self) -> None:
        """Timer body: advance the watermark, exchange bursts, land when due, stats, stop when idle."""
        if self._closing:
            return
        try:
            await self._tick()
            if self.loop.due() and not self._lock.locked():
                await self._land()
            now = time.monotonic()
            if now >= self._next_stats:
                self._write_stats()
                self._next_stats = now + self._cfg.stats_interval_s
            if self._until_idle_s is not None and self.loop.idle_for() >= self._until_idle_s:
                await self.finish("idle")
                self.request_stop()
        except Exception as exc:
            self._fail(exc)

    async def _tick(self) -> None:
        self._report_highwater()
        self.loop.tick()
        if self._bursts is not None:
            if not self._bursts_started:
                await self._bursts.start()
                self._bursts_started = True
            await self._bursts.exchange()
            self.loop.advance()

    # ------------------------------------------------------------------ landing

    async def _land(self, *, force: bool = False) -> None:
        """Cut, write in a thread, then acknowledge what the written checkpoint covers."""
        async with self._lock:
            if not force and not self.loop.due():
                return
            checkpoint = await asyncio.to_thread(self.loop.write, self.loop.cut())
            await self._acknowledge(checkpoint)

    async def _land_guarded(self) -> None:
        try:
            await self._land()
        except Exception as exc:
            self._fail(exc)

    async def _acknowledge(self, checkpoint: Mapping[TopicPartition, int]) -> None:
        ackable = self._ackable
        for tp, offset in checkpoint.items():
            if offset > ackable.get(tp, -1):
                ackable[tp] = offset
        await self._ack_below(ackable)

    async def _ack_below(self, limits: Mapping[TopicPartition, int]) -> None:
        """Ack held events below each partition's limit, oldest first.

        Offset order matters: Faust commits up to the first unacknowledged offset, but does
        not see a single unacknowledged offset right after its last commit as a gap.
        """
        stream = self._stream
        if stream is None:
            return
        for tp, queue in self._held.items():
            limit = limits.get(tp)
            if limit is None:
                continue
            while queue and queue[0].message.offset < limit:
                await stream.ack(queue.popleft())

    async def finish(self, reason: str) -> None:
        """Final landing: tick, flush if asked, land, ack, write stats; no more feeding after it.

        Args:
            reason: How the run ends (``"idle"``, ``"stopped"``).
        """
        if self._closing:
            return
        self._closing = True
        self.reason = reason
        async with self._lock:
            await self._tick()
            if self._flush:
                self.loop.flush_route()
                if self._bursts is not None:
                    await self._bursts.settle()
                self.loop.flush_close()
            checkpoint = await asyncio.to_thread(self.loop.write, self.loop.cut())
            await self._acknowledge(checkpoint)
        self._write_stats()
        if self._bursts is not None and self._bursts_started:
            await self._bursts.stop()
        logger.info("faust worker finishing (%s): checkpoint %s", reason, checkpoint)

    def _fail(self, exc: BaseException) -> None:
        """Record the first error and stop: nothing past the failure is acknowledged."""
        if self.error is None:
            self.error = exc
            logger.error("faust worker stops after an error: %s", exc)
        self._closing = True
        self.request_stop()

    # ------------------------------------------------------------------ signals

    async def on_partitions_revoked(self, _sender: Any, *args: Any, signal: Any = None, **_: Any) -> None:
        """A rebalance starts: land everything, so the shards' open state is in the lake.

        Faust has already paused the partitions and cleared the agent's buffer; what was fed
        is landed with its state and acknowledged. Which shards stay is decided when the new
        assignment is complete (`on_rebalance_complete`); the worker keeps running.
        """
        if self._closing or not self.loop.engines:
            return
        self.rebalances += 1
        self.loop.freeze()
        try:
            await self._land(force=True)
        except Exception as exc:
            self._fail(exc)

    async def on_rebalance_complete(self, _sender: Any, *_args: Any, signal: Any = None, **_: Any) -> None:
        """Keep, release and restore shards, and make each partition start where the lake says.

        Faust has no call to position a partition before its stream resumes: right after this
        signal it seeks every partition to Kafka's committed offset. So the committed offset
        is set to the start offset here (a kept shard's position, which its last landing
        recorded; a restored shard's Delta checkpoint; a partition the lake never saw, its
        beginning), and reading starts exactly where the lake says.
        """
        if self._closing:
            return
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in self._data_topics]
        try:
            plan = plan_assignment(self.loop, [(tp.topic, tp.partition) for tp in tps], self._kafka.data_topics)
        except Exception as exc:
            self._fail(exc)
            return
        for shard in plan.released:
            for tp in self.loop.shard_partitions([shard]):
                self._held.pop(tp, None)  # its new owner reads them again from the lake's checkpoint
                self._ackable.pop(tp, None)
        fresh = [tp for tp in tps if (tp.topic, tp.partition) in plan.from_beginning]
        earliest = await consumer.earliest_offsets(*fresh) if fresh else {}
        starts = plan.starts({(tp.topic, tp.partition): offset for tp, offset in earliest.items()})
        self.loop.assigned(starts)
        for tp in tps:
            queue = self._held.get((tp.topic, tp.partition))
            if queue:  # events beyond the start are read again: never acknowledge them twice
                while queue and queue[-1].message.offset >= starts[(tp.topic, tp.partition)]:
                    queue.pop()
        # ThreadDelegateConsumer._commit: commit these exact offsets (Faust's public commit
        # only commits acknowledged messages).
        committed = await consumer._commit(  # type: ignore[attr-defined]
            {tp: starts[(tp.topic, tp.partition)] for tp in tps}) if tps else True
        logger.info("faust worker owns shards %s (kept %s, restored %s, released %s); starts %s (committed: %s)",
                    sorted(plan.shards), sorted(plan.kept), sorted(plan.restored), plan.released, starts, committed)

    async def on_before_shutdown(self, _sender: Any, *_args: Any, signal: Any = None, **_: Any) -> None:
        """Stopped from outside (SIGTERM/SIGINT): land and ack before the consumer's last commit."""
        if self._closing:
            return
        try:
            await self.finish("stopped")
        except Exception as exc:
            if self.error is None:
                self.error = exc

    # ------------------------------------------------------------------ stats

    def _write_stats(self) -> None:
        snapshot = self.loop.snapshot({"driver": "faust", "rebalances": self.rebalances})
        self.loop.metrics.write(snapshot)
        if self._on_progress is not None:
            self._on_progress(snapshot)

    def _report_highwater(self) -> None:
        """High-water marks from the last fetch (Tansu's ListOffsets is wrong) for lag and idleness."""
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
        except ConsumerNotStarted:
            return
        highwater: dict[TopicPartition, int | None] = {}
        for tp in assignment:
            if tp.topic not in self._data_topics:
                continue
            try:
                highwater[(tp.topic, tp.partition)] = consumer.highwater(tp)
            except (ConsumerNotStarted, AssertionError, KeyError):
                highwater[(tp.topic, tp.partition)] = None
        self.loop.report_highwater(highwater)

    def outcome(self) -> RunOutcome:
        """How the run ended, with the core's counters."""
        stats = self.loop.stats
        return RunOutcome(reason=self.reason, events_in=stats.events_in, triples_out=stats.triples_out,
                          rebalances=self.rebalances)


def _sigterm_self() -> None:
    """Stop an app that runs under another worker (``faust worker``): the path SIGTERM takes."""
    os.kill(os.getpid(), signal.SIGTERM)


def _connect(signal: Any, receiver: Any) -> None:
    """Connect a bound ``async def`` receiver (strongly referenced: the run owns it).

    Untyped on purpose: mode types receivers with mypy_extensions argument kinds that no
    ``async def`` method satisfies.
    """
    signal.connect(receiver)


def create_app(kafka: KafkaSettings, stream: StreamSettings, loop: IngestLoop, *,
               until_idle_s: float | None, flush: bool, on_progress: ProgressCallback | None = None,
               datadir: Path | None = None,
               bursts: KafkaBursts | None = None) -> tuple[faust.App, FaustRun]:
    """Build the Faust app (agent, timer and rebalance hooks registered here, not at import).

    Args:
        kafka: Brokers, topics, group (the app id, so Delta checkpoints and Kafka commits
            belong to the same group), session timeouts and the local-broker profile.
        stream: Batch size and timeout, timer intervals.
        loop: The ingest loop (core + sink) this app drives.
        until_idle_s: Stop once no event arrived for this long after the first assignment;
            None runs until stopped from outside.
        flush: Close every open window in the final landing.
        on_progress: Called with a metrics snapshot every ``stats_interval_s``.
        datadir: Faust's data folder (it creates one even without tables); default: Faust's
            ``<app id>-data`` in the working directory.
        bursts: The burst exchange with the group's other workers (started on the first tick).

    Returns:
        The app and the run state whose ``outcome()`` tells how the run ended.
    """
    options: dict[str, Any] = {
        "broker": broker_urls(kafka),
        "processing_guarantee": "at_least_once",
        "broker_session_timeout": kafka.session_timeout_ms / 1000,
        "broker_heartbeat_interval": kafka.heartbeat_interval_ms / 1000,
        "topic_replication_factor": kafka.replication_factor,
        "topic_partitions": kafka.partitions,
        "topic_allow_declare": False,
        "stream_wait_empty": False,  # events wait across windows: never wait for them to be acked
        "web_enabled": False,
        "consumer_auto_offset_reset": "earliest",
        "key_serializer": "raw",
        "value_serializer": "raw",
        "autodiscover": False,
    }
    if kafka.local_profile:
        options["producer_max_batch_size"] = 1
    credentials = _credentials(kafka)
    if credentials is not None:
        options["broker_credentials"] = credentials
    if datadir is not None:
        options["datadir"] = str(datadir)
    app = faust.App(kafka.consumer_group, **options)
    run = FaustRun(app, kafka, stream, loop, until_idle_s=until_idle_s, flush=flush, on_progress=on_progress,
                   bursts=bursts)
    topic = app.topic(*kafka.data_topics, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    app.agent(topic, name=AGENT_NAME, concurrency=1)(run.consume)
    app.timer(stream.tick_interval_s, name="rluf-tick")(run.on_tick)
    _connect(app.on_rebalance_complete, run.on_rebalance_complete)
    _connect(app.on_partitions_revoked, run.on_partitions_revoked)
    _connect(app.on_before_shutdown, run.on_before_shutdown)
    return app, run


def run_faust_worker(kafka: KafkaSettings, stream: StreamSettings, loop: IngestLoop, *,
                     until_idle_s: float | None = None, flush: bool = False,
                     on_progress: ProgressCallback | None = None,
                     bursts: KafkaBursts | None = None) -> RunOutcome:
    """Run the Faust worker in the calling (main) thread until it stops; return how it ended.

    The worker installs SIGTERM/SIGINT handlers (a graceful stop lands and acknowledges
    what is pending, reason ``"stopped"``), so call it from the main thread. It stops by
    itself when idle (``until_idle_s``) or after a rebalance took partitions with state.

    Args:
        kafka: Broker, topic and group settings.
        stream: Batch sizes and timers.
        loop: The ingest loop (core + sink).
        until_idle_s: Exit once no event arrived for this long; None runs until stopped.
        flush: Close every open window before exiting.
        on_progress: Called with a metrics snapshot every ``stats_interval_s``.

    Raises:
        KafkaUnavailableError: no broker answers.
        RlufError: the worker crashed (the original error is chained); a failed landing
            is re-raised as it is.
    """
    wait_for_kafka(kafka, timeout_s=10.0)
    for name in _QUIET_LOGGERS:
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    event_loop = asyncio.new_event_loop()  # the worker closes it when it shuts down
    asyncio.set_event_loop(event_loop)
    try:
        with tempfile.TemporaryDirectory(prefix="rluf-faust-") as datadir:
            app, run = create_app(kafka, stream, loop, until_idle_s=until_idle_s, flush=flush,
                                  on_progress=on_progress, datadir=Path(datadir), bursts=bursts)
            worker = faust.Worker(app, loop=event_loop, loglevel="warning", quiet=True, override_logging=False,
                                  redirect_stdouts=False, daemon=True)
            worker.spinner = None  # it writes to stdout; the CLI reports progress itself
            # The path a SIGTERM takes: the worker stops its services, then the loop ends.
            run.request_stop = worker._on_sigterm
            tune_gc_for_streaming()
            code: object = 0
            try:
                worker.execute_from_commandline()
            except SystemExit as exc:
                code = exc.code
            crash = worker.crash_reason
    finally:
        asyncio.set_event_loop(None)
        if not event_loop.is_closed():
            event_loop.close()
    if run.error is not None:
        raise run.error
    if code not in (0, None):
        raise RlufError(f"the faust worker exited with code {code} ({crash!r}); see the log above") from crash
    outcome = run.outcome()
    logger.info("faust worker stopped (%s): %d events in, %d triples out", outcome.reason, outcome.events_in,
                outcome.triples_out)
    return outcome
