"""The driver-independent worker loop: records in, Delta landings out, resume positions back.

The Faust app and the batch consumer both own one ``IngestLoop``. They feed it records and
clock ticks; it batches the core's output into landings (one Delta commit per table, the
triples commit last with the resume positions) and tells the driver up to which offset
each partition may be acknowledged. Landing is split into ``cut`` (cheap, on the event
loop) and ``write`` (blocking I/O, may run in a thread) so a driver can keep consuming
while the previous landing is written.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rluf.ports import LandingObserver, LandingSink, QuarantinePublisher
from rluf.records import InputRecord, Landing, TopicPartition
from rluf.settings import FilterSettings, StreamSettings
from streams.attribution import AttributionEngine
from streams.metrics import IngestMetrics

__all__ = ["IngestLoop", "PendingLanding", "tune_gc_for_streaming"]

logger = logging.getLogger(__name__)


def tune_gc_for_streaming() -> None:
    """Make the cyclic GC rare: open windows are many long-lived objects.

    With the default thresholds a full collection walks every open window again and again;
    measured on the ingest core, that alone cut throughput by more than half. The core
    creates no reference cycles on its hot path, so rare collections lose nothing.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


@dataclass
class PendingLanding:
    """A landing cut from the loop, with the resume positions valid once it is written."""

    landing: Landing
    checkpoint: dict[TopicPartition, int]
    produced_at: list[tuple[float, int]] = field(default_factory=list)  # (wall time, triples then)
    watermark: float | None = None  # event time the landing is complete up to

    def __len__(self) -> int:
        return len(self.landing)


class IngestLoop:
    """Owns the core and the pending output; drivers own consumption and acknowledgement.

    Args:
        stream: Window, watermark and landing settings.
        filters: Adversarial-filter settings.
        sink: Where landings go (Delta in production, a list in unit tests).
        publisher: Optional mirror of quarantined records to the quarantine topic.
        metrics: Counters and latency samples; written to a file by the driver.
        observers: Told about each landing once it is durable (feature-store push); a
            failing observer is logged and skipped: derived features can be rebuilt from
            the lake, the triples cannot be re-ingested.
        reputation: Optional user-reputation lookup for the filter (cached by the caller).
        clock: Wall clock (injectable for tests).
    """

    def __init__(self, stream: StreamSettings, filters: FilterSettings, sink: LandingSink, *,
                 publisher: QuarantinePublisher | None = None, metrics: IngestMetrics | None = None,
                 observers: Sequence[LandingObserver] = (), reputation: Callable[[str], float] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._cfg = stream
        self._sink = sink
        self._publisher = publisher
        self._clock = clock
        restored = sink.restore(horizon_s=stream.attribution_window_s + stream.max_lateness_s)
        self.restored_checkpoint: dict[TopicPartition, int] = dict(restored.checkpoint)
        logger.info("restored %d closed responses, checkpoint %s", len(restored.closed), restored.checkpoint)
        self.engine = AttributionEngine(stream, filters, restored, reputation=reputation)
        self._observers = list(observers)
        self.observer_failures = 0
        self.metrics = metrics or IngestMetrics(path=None, started_at=clock())
        self._pending = Landing()
        self._produced: list[tuple[float, int]] = []
        self._pending_since: float | None = None
        self._landed_checkpoint: dict[TopicPartition, int] = dict(restored.checkpoint)
        self.last_event_at: float | None = None
        self._ready_at: float | None = None

    # ------------------------------------------------------------------ feeding

    def feed(self, records: Iterable[InputRecord]) -> None:
        """Run records through the core and keep the output pending."""
        now = self._clock()
        before = self.engine.stats.events_in + self.engine.stats.below_checkpoint_skipped
        self._add(self.engine.process(records, now), now)
        if self.engine.stats.events_in + self.engine.stats.below_checkpoint_skipped > before:
            self.last_event_at = now
            if self.metrics.first_event_at is None:
                self.metrics.first_event_at = now

    def tick(self) -> None:
        """Processing-time timer: let an idle watermark close windows."""
        now = self._clock()
        self._add(self.engine.tick(now), now)

    def flush(self) -> None:
        """Close every open window now (``rluf stream run --flush``)."""
        now = self._clock()
        self._add(self.engine.flush(now), now)

    def _add(self, landing: Landing, now: float) -> None:
        if not len(landing):
            return
        self._pending.extend(landing)
        self._produced.append((now, len(landing.triples)))
        if self._pending_since is None:
            self._pending_since = now

    # ------------------------------------------------------------------ landing

    def due(self) -> bool:
        """Whether enough output waits, or it waited long enough, or positions moved."""
        if len(self._pending) >= self._cfg.land_max_rows:
            return True
        now = self._clock()
        if self._pending_since is not None:
            return now - self._pending_since >= self._cfg.land_interval_s
        return self.engine.checkpoint() != self._landed_checkpoint

    def cut(self) -> PendingLanding:
        """Detach the pending output with the resume positions that cover it."""
        pending = PendingLanding(self._pending, self.engine.checkpoint(), self._produced, self.engine.watermark)
        self._pending, self._produced, self._pending_since = Landing(), [], None
        return pending

    def write(self, pending: PendingLanding) -> dict[TopicPartition, int]:
        """Land one cut (blocking I/O); return the positions the driver may now acknowledge."""
        started = self._clock()
        landing = pending.landing
        self._sink.land(landing, checkpoint=pending.checkpoint)
        landed = self._clock()  # close -> landed latency ends here, not after the mirrors below
        if self._publisher is not None and landing.quarantine:
            self._publisher.publish(landing.quarantine)
        for observer in self._observers:
            try:
                observer.on_landing(landing, watermark=pending.watermark)
            except Exception as exc:  # any failure: see the class docstring
                self.observer_failures += 1
                logger.warning("landing observer %s failed: %s", type(observer).__name__, exc)
        latencies = [landed - at for at, n in pending.produced_at for _ in range(n)]
        self.metrics.record_landing(len(landing.triples), len(landing.corrections), len(landing.quarantine),
                                    landed - started, latencies, pending.checkpoint, landed)
        self._landed_checkpoint = pending.checkpoint
        return pending.checkpoint

    def land_now(self) -> dict[TopicPartition, int]:
        """Cut and write synchronously (shutdown, tests)."""
        return self.write(self.cut())

    def start_offsets(self, partitions: Iterable[TopicPartition],
                      earliest: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Where each assigned partition must be read from: Delta's checkpoint, else its beginning.

        Delta is the truth: Kafka's committed offset never decides where reading starts (it
        may lag the checkpoint, or belong to a lake that was since replaced).
        """
        return {tp: self.restored_checkpoint.get(tp, earliest.get(tp, 0)) for tp in partitions}

    def assigned(self, starts: Mapping[TopicPartition, int | None]) -> None:
        """The consumer got its partitions (with their start offsets, where known).

        Idle time counts from here, not from start-up (joining a group takes seconds, and an
        idle limit must not expire during it), and the watermark waits for every assigned
        partition's first event.
        """
        now = self._clock()
        if self._ready_at is None:
            self._ready_at = now
        self.engine.expect_sources(starts, now)

    def report_highwater(self, highwater: Mapping[TopicPartition, int | None]) -> None:
        """The consumer's high-water marks (None before a partition's first fetch).

        Lag (for `rluf stream stats`) and backlog (for the watermark's idle rule) are the same
        number: high-water mark minus the next offset the core needs. Both drivers call this
        on every tick, so a partition with unread records never counts as idle.
        """
        positions = self.engine.positions()
        backlog: dict[TopicPartition, int | None] = {}
        for tp, high in highwater.items():
            nxt = positions.get(tp)
            backlog[tp] = None if high is None or nxt is None else max(0, high - nxt)
        self.engine.report_backlog(backlog)
        self.metrics.lag = {tp: left for tp, left in backlog.items() if left is not None}

    def idle_for(self) -> float:
        """Seconds since the last record arrived (since the consumer was ready when none did).

        0 while the consumer is not ready yet, or while a partition still has records to
        read: silence with a backlog is a slow consumer, not an idle stream.
        """
        ref = self.last_event_at if self.last_event_at is not None else self._ready_at
        if ref is None or self.engine.behind:
            return 0.0
        return self._clock() - ref

    def snapshot(self, gauges: dict[str, object] | None = None) -> dict[str, object]:
        """Everything `rluf stream stats` shows, as plain data."""
        eng = self.engine
        return self.metrics.snapshot(
            eng.stats.as_dict(),
            {"open_windows": eng.open_windows, "held_orphans": eng.held_orphans, "watermark": eng.watermark,
             "pending_rows": len(self._pending), **(gauges or {})},
            self._clock(),
        )
