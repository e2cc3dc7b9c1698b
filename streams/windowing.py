"""Event-time watermark and attribution-window arithmetic (pure).

The watermark says "every event stamped at or before this time has arrived, give or take
the allowed lateness". It is the largest event time seen minus the allowed lateness, and
it never moves back. While the stream is quiet it also advances by the wall-clock time
elapsed since the last event: otherwise the last day of windows would stay open forever
on a quiet stream (faust's windowed tables only expire on new events), while a replay of
old data at full speed still closes windows by event time, not by the clock.
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
    """Monotonic event-time watermark with processing-time advance while idle.

    Args:
        allowed_lateness_s: How far behind the newest event time the watermark trails.
        idle_advance: Whether quiet wall-clock time moves the watermark forward.
    """

    allowed_lateness_s: float
    idle_advance: bool = True
    max_event_ts: float | None = None
    _value: float | None = None
    _wall_at_last_event: float | None = None

    @property
    def value(self) -> float | None:
        """Current watermark in epoch seconds, or None before the first event."""
        return self._value

    def observe(self, event_ts: float, wall_now: float) -> None:
        """Account for one event; time is passed in, never read from the clock."""
        if self.max_event_ts is None or event_ts > self.max_event_ts:
            self.max_event_ts = event_ts
        self._wall_at_last_event = wall_now
        self._raise_to(self.max_event_ts - self.allowed_lateness_s)

    def tick(self, wall_now: float) -> float | None:
        """Advance by the wall-clock time elapsed since the last event (if enabled)."""
        if self.idle_advance and self.max_event_ts is not None and self._wall_at_last_event is not None:
            idle = max(0.0, wall_now - self._wall_at_last_event)
            self._raise_to(self.max_event_ts - self.allowed_lateness_s + idle)
        return self._value

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
