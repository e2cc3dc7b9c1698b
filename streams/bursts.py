"""Coordinated bursts across shards: many users Loving the same answer text within seconds (pure).

Every rule of the attribution core reads per-owner state, so a shard (partition p of both
event topics, keyed by the conversation owner) can judge its reactions alone, except this
one: the members of a coordinated group each Love their *own* conversation, so their Loves
sit in different shards, owned by different workers. Each shard therefore publishes a
``LoveFact`` for every Love it routes, and a heartbeat saying "all my Loves stamped at or
before W are published". Every worker runs the same deterministic ``BurstDetector`` over
all facts, in (event time, event id) order, as far as every shard's heartbeat allows; a
shard judges a Love only once that point lies ``burst_window_s`` past it. The verdict is
then final and the same whichever worker, and however many, computes it.

``LocalBursts`` is the in-process exchange (one worker owning every shard, the Beam
backfill, unit tests); ``streams.burst_channel`` carries the same facts and heartbeats over
a Kafka topic between workers.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["BurstDetector", "BurstOracle", "LocalBursts", "LoveFact", "ShardClock"]


@dataclass(frozen=True, slots=True, order=True)
class LoveFact:
    """One Love-add on a known answer text, as the burst rule needs it."""

    ts: float
    event_id: str
    fingerprint: str
    user_id: str
    shard: int


@dataclass(frozen=True, slots=True)
class ShardClock:
    """A shard's heartbeat: every Love it stamped at or before ``watermark`` is published.

    ``watermark`` None with ``idle`` True: the shard has nothing to read and holds nobody
    back; None with ``idle`` False: it has not started yet (everyone waits for it).
    """

    shard: int
    watermark: float | None
    idle: bool = False


@dataclass(slots=True)
class BurstDetector:
    """Flags Loves that belong to a burst of ``burst_users`` distinct users within ``burst_window_s``.

    Facts are processed strictly in (ts, event_id) order up to a point every shard has
    passed, so the flags do not depend on how facts arrived. A Love is flagged when, at it
    or at a later Love of the same answer at most ``burst_window_s`` after it, the Loves of
    the preceding ``burst_window_s`` come from at least ``burst_users`` distinct users.
    """

    burst_users: int
    burst_window_s: float
    _buffer: list[LoveFact] = field(default_factory=list)  # heap, not yet processed
    _known: set[str] = field(default_factory=set)  # event ids seen (dedupe of redelivered facts)
    _recent: dict[str, deque[LoveFact]] = field(default_factory=dict)
    _flagged: set[str] = field(default_factory=set)
    _done_through: float | None = None
    _expiry: deque[tuple[float, str]] = field(default_factory=deque)

    def add(self, fact: LoveFact) -> None:
        """Buffer one fact (a repeat of a known event id is ignored)."""
        if fact.event_id in self._known:
            return
        self._known.add(fact.event_id)
        self._expiry.append((fact.ts, fact.event_id))
        heapq.heappush(self._buffer, fact)

    def advance(self, through: float) -> None:
        """Process every buffered fact stamped at or before ``through``."""
        buffer, window = self._buffer, self.burst_window_s
        while buffer and buffer[0].ts <= through:
            fact = heapq.heappop(buffer)
            recent = self._recent.setdefault(fact.fingerprint, deque())
            recent.append(fact)
            while recent and recent[0].ts < fact.ts - window:
                recent.popleft()
            if len({f.user_id for f in recent}) >= self.burst_users:
                self._flagged.update(f.event_id for f in recent)
        if self._done_through is None or through > self._done_through:
            self._done_through = through

    def final_through(self) -> float | None:
        """Loves stamped at or before this have their final verdict."""
        return None if self._done_through is None else self._done_through - self.burst_window_s

    def coordinated(self, event_id: str) -> bool:
        return event_id in self._flagged

    def forget_before(self, ts: float) -> None:
        """Drop facts and flags older than ``ts`` (no Love that old is still waiting)."""
        for key in [k for k, q in self._recent.items() if not q or q[-1].ts < ts - self.burst_window_s]:
            del self._recent[key]
        expiry = self._expiry
        while expiry and expiry[0][0] < ts - self.burst_window_s:
            _, eid = expiry.popleft()
            self._known.discard(eid)
            self._flagged.discard(eid)


class BurstOracle(Protocol):
    """What a shard's engine needs from the burst exchange."""

    def publish(self, facts: Iterable[LoveFact]) -> None:
        """Hand over Loves this shard routed (fingerprint known)."""
        ...

    def heartbeat(self, clock: ShardClock) -> None:
        """Report how far this shard has published."""
        ...

    def final_through(self) -> float | None:
        """Loves stamped at or before this have a final verdict (None: not yet anywhere)."""
        ...

    def coordinated(self, event_id: str) -> bool:
        """Whether a Love (stamped at or before `final_through`) belongs to a burst."""
        ...


class LocalBursts:
    """The exchange inside one process: facts and heartbeats go straight to one detector.

    Args:
        burst_users: Distinct users that make a burst.
        burst_window_s: How close in event time their Loves must be.
        shards: Every shard of the stream (all of them must report before anything is final).
    """

    def __init__(self, burst_users: int, burst_window_s: float, shards: Iterable[int]) -> None:
        self.detector = BurstDetector(burst_users, burst_window_s)
        self._clocks: dict[int, ShardClock] = {s: ShardClock(s, None) for s in shards}
        self._advances = 0

    def expect(self, shard: int) -> None:
        """A shard joins the exchange: nothing is final until it reports."""
        self._clocks.setdefault(shard, ShardClock(shard, None))

    def forget(self, shard: int) -> None:
        """A shard left this process (its partitions were revoked): stop waiting for it."""
        self._clocks.pop(shard, None)
        self.advance()

    def publish(self, facts: Iterable[LoveFact]) -> None:
        for fact in facts:
            self.detector.add(fact)

    def heartbeat(self, clock: ShardClock) -> None:
        self.receive_clock(clock)
        self.advance()

    def receive_clock(self, clock: ShardClock) -> None:
        """Keep the newest heartbeat of a shard; a shard's watermark never moves back."""
        old = self._clocks.get(clock.shard)
        if old is not None and old.watermark is not None and (clock.watermark is None or
                                                               clock.watermark < old.watermark):
            clock = ShardClock(clock.shard, old.watermark, clock.idle)
        self._clocks[clock.shard] = clock

    def advance(self) -> None:
        """Process every fact all shards have published past."""
        through = shared_watermark(self._clocks.values())
        if through is not None:
            self.detector.advance(through)
            self._advances += 1
            if self._advances % 1000 == 0:  # bound memory: nothing older than two windows is needed
                self.detector.forget_before(through - 2 * self.detector.burst_window_s)

    def final_through(self) -> float | None:
        return self.detector.final_through()

    def coordinated(self, event_id: str) -> bool:
        return self.detector.coordinated(event_id)


def shared_watermark(clocks: Iterable[ShardClock]) -> float | None:
    """The point every shard has published through: min over shards, idle ones aside."""
    low: float | None = None
    for clock in clocks:
        if clock.watermark is None:
            if clock.idle:
                continue
            return None
        if low is None or clock.watermark < low:
            low = clock.watermark
    return low
