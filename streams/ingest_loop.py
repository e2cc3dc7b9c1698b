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

from rluf.ports import LandingObserver, LandingSink, QuarantinePublisher, RestoredState
from rluf.records import InputRecord, Landing, TopicPartition
from rluf.settings import FilterSettings, StreamSettings
from rluf.shard_state import ShardStateDelta
from streams.attribution import AttributionEngine, EngineStats
from streams.bursts import BurstOracle, LocalBursts
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
    state: list[ShardStateDelta] = field(default_factory=list)  # open-state changes of each shard
    fed_through: float | None = None  # wall time of the newest record this landing covers

    def __len__(self) -> int:
        return len(self.landing)


class IngestLoop:
    """Owns one attribution engine per shard and the pending output; drivers own consumption.

    A shard is partition p of both event topics (keyed by the conversation owner), so the
    engines share nothing but the burst exchange: a worker may gain and lose shards in a
    rebalance and goes on with the rest (`take_partitions`, `drop_partitions`).

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
        bursts: The burst exchange between shards; default: an in-process one over the
            shards this loop owns (one worker, or tests).
        topics: The event topics (responses, reactions): shard p is partition p of each.
        clock: Wall clock (injectable for tests).
    """

    def __init__(self, stream: StreamSettings, filters: FilterSettings, sink: LandingSink, *,
                 publisher: QuarantinePublisher | None = None, metrics: IngestMetrics | None = None,
                 observers: Sequence[LandingObserver] = (), reputation: Callable[[str], float] | None = None,
                 bursts: BurstOracle | None = None, topics: Sequence[str] = ("responses", "reactions"),
                 clock: Callable[[], float] = time.time) -> None:
        self._cfg = stream
        self._filters = filters
        self._sink = sink
        self._publisher = publisher
        self._reputation = reputation
        self._clock = clock
        self._local_bursts = LocalBursts(filters.burst_users, filters.burst_window_s, []) if bursts is None else None
        self._bursts: BurstOracle = bursts if bursts is not None else self._local_bursts  # type: ignore[assignment]
        self._topics = tuple(dict.fromkeys(topics))
        self.restored_checkpoint: dict[TopicPartition, int] = {}  # of the shards taken so far
        self.engines: dict[int, AttributionEngine] = {}
        self._owned: set[int] | None = None  # None until a driver assigns shards: own whatever arrives
        self._retired = EngineStats()  # counters of shards this worker gave away
        self._observers = list(observers)
        self.observer_failures = 0
        self.metrics = metrics or IngestMetrics(path=None, started_at=clock())
        self._pending = Landing()
        self._produced: list[tuple[float, int]] = []
        self._pending_since: float | None = None
        self._landed_checkpoint: dict[TopicPartition, int] = {}
        self.last_event_at: float | None = None
        self._ready_at: float | None = None
        self._last_cut_at = float("-inf")
        self._frozen = False  # between a rebalance's revocation and the new assignment
        self._caught_up_for: float | None = None

    @property
    def _horizon_s(self) -> float:
        return self._cfg.attribution_window_s + self._cfg.max_lateness_s

    # ------------------------------------------------------------------ shards

    def engine(self, shard: int) -> AttributionEngine:
        """The shard's engine (built from the lake the first time it is needed)."""
        eng = self.engines.get(shard)
        if eng is None:
            self._build([shard])
            eng = self.engines[shard]
        return eng

    def _build(self, shards: Sequence[int]) -> None:
        """Restore shards from the lake: open state and resume offsets first, then closed responses.

        The state and the offsets come from one triples commit; the closed-response index is
        read afterwards, so it covers at least everything that state had already closed.
        """
        states = {s: self._sink.restore_shard(s, [(t, s) for t in self._topics]) for s in shards}
        restored = self._sink.restore(horizon_s=self._horizon_s)
        for shard in shards:
            live, offsets = states[shard]
            base = _shard_state(restored, shard)
            base.checkpoint = offsets
            self.restored_checkpoint.update(offsets)
            self._landed_checkpoint.update(offsets)
            self.engines[shard] = AttributionEngine(
                self._cfg, self._filters, base, reputation=self._reputation, shard=shard, bursts=self._bursts,
                state=True, shard_state=live)
            if self._local_bursts is not None:
                self._local_bursts.expect(shard)
            logger.info("shard %d restored: %d held records, %d closed responses, offsets %s", shard,
                        len(live.holds), len(base.closed), offsets)

    @property
    def stats(self) -> EngineStats:
        """Counters over every shard this worker owns or owned."""
        return EngineStats.total([self._retired, *(e.stats for e in self.engines.values())])

    @property
    def watermark(self) -> float | None:
        """The slowest shard's watermark (None while one has none)."""
        marks = [e.watermark for e in self.engines.values()]
        return None if not marks or any(m is None for m in marks) else min(m for m in marks if m is not None)

    def checkpoint(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for eng in self.engines.values():
            out.update(eng.checkpoint())
        return out

    def positions(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for eng in self.engines.values():
            out.update(eng.positions())
        return out

    def take_partitions(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Partitions newly assigned: restore their shards from the lake as it is now.

        Returns:
            The Delta checkpoint of each partition that has one (where reading resumes).
        """
        tps = list(partitions)
        shards = {tp[1] for tp in tps}
        self._owned = (self._owned or set()) | shards
        new = sorted(shards - self.engines.keys())
        if new:
            self._build(new)
        return {tp: self.restored_checkpoint[tp] for tp in tps if tp in self.restored_checkpoint}

    def freeze(self) -> None:
        """A rebalance began: change nothing until the new assignment (then land what is pending).

        A record fed or a tick during the rebalance would close windows of shards this worker
        may lose, and their triples would land after the new owner restored the shards: twice.
        Records fed while frozen are dropped unacknowledged (read again where the new
        assignment starts); `assigned` thaws.
        """
        self._frozen = True

    @property
    def frozen(self) -> bool:
        return self._frozen

    def drop_partitions(self, partitions: Iterable[TopicPartition]) -> list[int]:
        """Forget the shards of revoked partitions (land first: their state is rebuilt elsewhere)."""
        gone = sorted({tp[1] for tp in partitions} & self.engines.keys())
        for shard in gone:
            eng = self.engines.pop(shard)
            self._retired = EngineStats.total([self._retired, eng.stats])
            if self._owned is not None:
                self._owned.discard(shard)
            if self._local_bursts is not None:
                self._local_bursts.forget(shard)
            for tp in [tp for tp in self._landed_checkpoint if tp[1] == shard]:
                del self._landed_checkpoint[tp]
                self.restored_checkpoint.pop(tp, None)
        return gone

    # ------------------------------------------------------------------ feeding

    def feed(self, records: Iterable[InputRecord]) -> None:
        """Run records through their shards' engines and keep the output pending."""
        now = self._clock()
        if self._frozen:
            return  # not processed, not acknowledged: read again where the new assignment starts
        by_shard: dict[int, list[InputRecord]] = {}
        owned = self._owned
        for record in records:
            if owned is not None and record.source.partition not in owned:
                continue  # a partition revoked while this batch was in flight: its new owner reads it
            shard_records = by_shard.get(record.source.partition)
            if shard_records is None:
                shard_records = by_shard[record.source.partition] = []
            shard_records.append(record)
        if not by_shard:
            return
        for shard, shard_records in by_shard.items():
            self._add(self.engine(shard).process(shard_records, now), now)
        self._advance_all(now)
        self.last_event_at = now
        if self.metrics.first_event_at is None:
            self.metrics.first_event_at = now

    def tick(self) -> None:
        """Processing-time timer: let an idle watermark close windows."""
        if self._frozen:
            return
        now = self._clock()
        for eng in self.engines.values():
            self._add(eng.tick(now), now)
        self._advance_all(now)

    def flush(self) -> None:
        """Close every open window now (``rluf stream run --flush``)."""
        self.flush_route()
        self.flush_close()

    def flush_route(self) -> None:
        """First half of `flush`: every shard routes what it holds and publishes its last Loves.

        A driver with a burst exchange between workers exchanges before `flush_close`.
        """
        now = self._clock()
        for eng in self.engines.values():
            eng.flush_route(now)

    def flush_close(self) -> None:
        """Second half of `flush`: judge, close and expire everything."""
        now = self._clock()
        for eng in self.engines.values():
            self._add(eng.flush_close(now), now)

    def advance(self) -> None:
        """Judge and close what the burst exchange now allows (after the driver exchanged)."""
        if self._frozen:
            return
        now = self._clock()
        for eng in self.engines.values():
            self._add(eng.advance(now), now)

    def _advance_all(self, now: float) -> None:
        # One shard's heartbeat can make another's burst verdicts final.
        if len(self.engines) > 1 or self._local_bursts is None:
            for eng in self.engines.values():
                self._add(eng.advance(now), now)

    def shard_partitions(self, shards: Iterable[int]) -> list[TopicPartition]:
        """The topic-partitions of some shards (partition p of each event topic)."""
        return [(topic, shard) for shard in shards for topic in self._topics]

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
        # Positions move with every record: record them (and the state changes) at the landing pace.
        return now - self._last_cut_at >= self._cfg.land_interval_s and self.checkpoint() != self._landed_checkpoint

    def cut(self) -> PendingLanding:
        """Detach the pending output with the resume positions and the state changes that cover it."""
        self._last_cut_at = self._clock()
        state = [eng.drain_state() for eng in self.engines.values()]
        pending = PendingLanding(self._pending, self.checkpoint(), self._produced, self.watermark, state,
                                 self.last_event_at)
        self._pending, self._produced, self._pending_since = Landing(), [], None
        return pending

    def write(self, pending: PendingLanding) -> dict[TopicPartition, int]:
        """Land one cut (blocking I/O); return the positions the driver may now acknowledge."""
        started = self._clock()
        landing = pending.landing
        self._sink.land(landing, checkpoint=pending.checkpoint, state=pending.state)
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
        if pending.fed_through is not None and pending.fed_through != self._caught_up_for:
            self._caught_up_for = pending.fed_through
            self.metrics.caught_up_at = landed
        return pending.checkpoint

    def land_now(self) -> dict[TopicPartition, int]:
        """Cut and write synchronously (shutdown, tests)."""
        return self.write(self.cut())

    def assigned(self, starts: Mapping[TopicPartition, int | None]) -> None:
        """The consumer got its partitions (with their start offsets, where known).

        Idle time counts from here, not from start-up (joining a group takes seconds, and an
        idle limit must not expire during it), and the watermark waits for every assigned
        partition's first event.
        """
        now = self._clock()
        self._frozen = False
        if self._ready_at is None:
            self._ready_at = now
        by_shard: dict[int, dict[TopicPartition, int | None]] = {}
        for tp, start in starts.items():
            by_shard.setdefault(tp[1], {})[tp] = start
        for shard, shard_starts in by_shard.items():
            self.engine(shard).expect_sources(shard_starts, now)

    def report_highwater(self, highwater: Mapping[TopicPartition, int | None]) -> None:
        """The consumer's high-water marks (None before a partition's first fetch).

        Lag (for `rluf stream stats`) and backlog (for the watermark's idle rule) are the same
        number: high-water mark minus the next offset the core needs. Both drivers call this
        on every tick, so a partition with unread records never counts as idle.
        """
        positions = self.positions()
        backlog: dict[TopicPartition, int | None] = {}
        for tp, high in highwater.items():
            nxt = positions.get(tp)
            backlog[tp] = None if high is None or nxt is None else max(0, high - nxt)
        for tp, left in backlog.items():
            eng = self.engines.get(tp[1])
            if eng is not None:
                eng.report_backlog({tp: left})
        self.metrics.lag = {tp: left for tp, left in backlog.items() if left is not None}

    def idle_for(self) -> float:
        """Seconds since the last record arrived (since the consumer was ready when none did).

        0 while the consumer is not ready yet, or while a partition still has records to
        read: silence with a backlog is a slow consumer, not an idle stream.
        """
        ref = self.last_event_at if self.last_event_at is not None else self._ready_at
        if ref is None or any(eng.behind for eng in self.engines.values()):
            return 0.0
        return self._clock() - ref

    def snapshot(self, gauges: dict[str, object] | None = None) -> dict[str, object]:
        """Everything `rluf stream stats` shows, as plain data."""
        engines = self.engines.values()
        return self.metrics.snapshot(
            self.stats.as_dict(),
            {"open_windows": sum(e.open_windows for e in engines), "held_orphans": sum(e.held_orphans for e in engines),
             "watermark": self.watermark, "shards": sorted(self.engines), "pending_rows": len(self._pending),
             **(gauges or {})},
            self._clock(),
        )


def _shard_state(restored: RestoredState, shard: int) -> RestoredState:
    """The part of the lake's state that belongs to one shard (partition ``shard`` of each topic)."""
    return RestoredState(
        checkpoint={tp: o for tp, o in restored.checkpoint.items() if tp[1] == shard},
        closed=[c for c in restored.closed if int(c.source.rsplit(":", 2)[1]) == shard],
        user_windows=restored.user_windows,
    )
