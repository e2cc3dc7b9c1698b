"""Event-time watermark and attribution-window arithmetic (pure).

The watermark says "every event stamped at or before this time has arrived, give or take
the allowed lateness". It follows the slowest active source (topic-partition) minus the
allowed lateness, and it never moves back. While the stream is quiet it also advances by
the wall-clock time elapsed since the last event: otherwise the last day of windows would
stay open forever on a quiet stream (faust's windowed tables only expire on new events),
while a replay of old data at full speed still closes windows by event time, not by the
clock.

Silence alone does not make a source idle when its consumer can tell how much is left to
read: a driver that reports each partition's backlog (high-water mark minus the next
offset it needs) keeps a partition with unread records in the watermark however long it
stays silent (a slow fetch, a GC pause, a restart skipping records below its checkpoint),
and no wall-clock advance happens while any source has records left to read.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

__all__ = ["Watermark", "WindowQueue", "window_end"]


def window_end(ts: float, window_s: float) -> float:
    """Return when a response's attribution window ends.

    Args:
        ts: Response event time, seconds since the epoch.
        window_s: Attribution window length in seconds.
    """
    return ts + window_s


@dataclass(slots=True)
class Watermark:
    """Monotonic event-time watermark over several sources, with idle handling.

    Each source (a topic-partition, or a file) keeps its own newest event time; the
    watermark follows the *slowest* active source, as in Flink and Beam. Otherwise a source
    that is consumed faster than another (a small reactions topic catching up next to a big
    responses topic) would push event time past responses not read yet, and their windows
    would close before their reactions were seen. A source that delivered nothing for
    ``idle_source_s`` of wall-clock time stops holding the watermark back unless its
    reported backlog says records are still unread (`set_backlog`), and when every source
    is quiet and caught up the watermark advances with the wall clock (``idle_advance``).

    Args:
        allowed_lateness_s: How far behind the slowest source's newest event it trails.
        idle_advance: Whether quiet wall-clock time moves the watermark forward.
        idle_source_s: Wall-clock seconds after which a silent source is ignored.
    """

    allowed_lateness_s: float
    idle_advance: bool = True
    idle_source_s: float = 5.0
    _newest: dict[object, float] = field(default_factory=dict)
    _heard: dict[object, float] = field(default_factory=dict)
    _backlog: dict[object, int | None] = field(default_factory=dict)
    _slowest: object = None
    _value: float | None = None
    _wall_at_last_event: float | None = None

    @property
    def value(self) -> float | None:
        """Current watermark in epoch seconds, or None before the first event."""
        return self._value

    @property
    def max_event_ts(self) -> float | None:
        return max(self._newest.values()) if self._newest else None

    def expect(self, source: object, wall_now: float) -> None:
        """Announce a source before its first event (a newly assigned partition).

        Until it delivers, or stays silent for ``idle_source_s``, it holds the watermark
        back: otherwise the first batches of a faster partition would close windows whose
        reactions sit, unread, in a partition not fetched yet.
        """
        if source not in self._heard:
            self._heard[source] = wall_now
        if self._wall_at_last_event is None and self._newest:
            # Restored event times (a shard taken over from the lake): quiet time counts from here.
            self._wall_at_last_event = wall_now

    def heard(self, source: object, wall_now: float) -> None:
        """A record arrived from ``source`` that carries no usable event time.

        Records skipped below a restored checkpoint, or unreadable ones, are still proof
        that the source is being read: it must keep holding the watermark.
        """
        self._heard[source] = wall_now

    def set_backlog(self, source: object, records: int | None) -> None:
        """Records of ``source`` not yet seen by the core (None: unknown, e.g. not fetched yet).

        A source with a backlog, or an unknown one, is never treated as idle. Sources for
        which no backlog is ever reported (files, unit tests) fall back to silence alone.
        """
        self._backlog[source] = records

    def newest_by_source(self) -> dict[object, float]:
        """Each source's newest event time (what a restore needs to resume the watermark)."""
        return dict(self._newest)

    def restore_newest(self, source: object, event_ts: float) -> None:
        """Seed a source's newest event time from a checkpoint (it still has to be heard from)."""
        if event_ts > self._newest.get(source, float("-inf")):
            self._newest[source] = event_ts

    def forget(self, source: object) -> None:
        """Stop tracking a source (a partition this worker no longer reads)."""
        self._newest.pop(source, None)
        self._heard.pop(source, None)
        self._backlog.pop(source, None)
        if self._slowest == source:
            self._slowest = None

    def observe(self, event_ts: float, wall_now: float, source: object = None) -> None:
        """Account for one event from ``source``; time is passed in, never read from the clock."""
        newest = self._newest
        previous = newest.get(source)
        self._heard[source] = wall_now
        self._wall_at_last_event = wall_now
        if previous is not None and event_ts <= previous:
            return
        newest[source] = event_ts
        # Only a new source or the slowest one moving can raise the watermark (all quiet: anyone).
        if previous is None or source == self._slowest or self._slowest is None:
            base = self._base(wall_now)
            if base is not None:
                self._raise_to(base - self.allowed_lateness_s)

    def tick(self, wall_now: float) -> float | None:
        """Drop sources that went quiet and advance by the wall-clock time since the last event."""
        base = self._base(wall_now)
        if base is None:
            return self._value
        last = self._wall_at_last_event
        idle = 0.0
        if self.idle_advance and last is not None and not self.behind():
            idle = max(0.0, wall_now - last)
        self._raise_to(base - self.allowed_lateness_s + idle)
        return self._value

    def _base(self, wall_now: float) -> float | None:
        """Newest event time of the slowest active source (of the newest one when all are quiet).

        None while an active source has not delivered its first event, or before any event.
        """
        newest, idle_s, backlog = self._newest, self.idle_source_s, self._backlog
        slowest_ts: float | None = None
        for src, heard in self._heard.items():
            if wall_now - heard >= idle_s:
                left = backlog.get(src, 0)
                if left is not None and left <= 0:
                    continue  # silent and caught up: idle
            ts = newest.get(src)
            if ts is None:  # announced, not heard from yet: wait for it
                self._slowest = src
                return None
            if slowest_ts is None or ts < slowest_ts:
                slowest_ts, self._slowest = ts, src
        if slowest_ts is None and newest:
            self._slowest = None
            slowest_ts = max(newest.values())
        return slowest_ts

    def behind(self) -> bool:
        """Whether some source still has records to read (or cannot tell)."""
        return any(left is None or left > 0 for left in self._backlog.values())

    def _raise_to(self, candidate: float) -> None:
        if self._value is None or candidate > self._value:
            self._value = candidate


@dataclass(slots=True)
class WindowQueue:
    """Min-heap of (deadline, key) with lazy deletion: pop every key whose deadline passed.

    Deadlines can change (a key may be re-pushed); only the entry matching the key's current
    deadline counts, so stale heap entries are skipped when popped.
    """

    _heap: list[tuple[float, int, str]] = field(default_factory=list)
    _deadline: dict[str, float] = field(default_factory=dict)
    _seq: int = 0

    def push(self, key: str, deadline: float) -> None:
        self._deadline[key] = deadline
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, key))

    def discard(self, key: str) -> None:
        self._deadline.pop(key, None)

    def __len__(self) -> int:
        return len(self._deadline)

    def __contains__(self, key: str) -> bool:
        return key in self._deadline

    def next_deadline(self) -> float | None:
        """The earliest current deadline (stale heap entries are dropped on the way)."""
        heap = self._heap
        while heap:
            deadline, _, key = heap[0]
            if self._deadline.get(key) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def pop_first(self) -> str:
        """Remove and return the key with the earliest current deadline (see `next_deadline`)."""
        if self.next_deadline() is None:
            raise KeyError("pop_first from an empty WindowQueue")
        _, _, key = heapq.heappop(self._heap)
        del self._deadline[key]
        return key

    def pop_due(self, now: float) -> list[str]:
        """Return the keys whose deadline is <= ``now``, earliest first, and forget them."""
        due: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            if self._deadline.get(key) == deadline:
                del self._deadline[key]
                due.append(key)
        return due

    def pop_all(self) -> list[str]:
        """Return every key, earliest deadline first, and empty the queue."""
        keys = sorted(self._deadline, key=self._deadline.__getitem__)
        self._deadline.clear()
        self._heap.clear()
        return keys
