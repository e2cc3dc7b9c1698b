"""Replay a JSONL file of wire events into Kafka, as fast as possible or at event-time pace.

Each line is published as it is (bytes, trailing newline stripped, blank lines skipped), so
a replay exercises the stream worker with exactly what a producer would send, malformed
lines included. With a ``speedup``, the gaps between events' ``ts`` values are reproduced
divided by ``speedup`` (``speedup=60``: one hour of traffic per minute).

The pacing is a pure schedule (`Pacer`, `event_time`) fed with the clock by the I/O loop,
so it is unit-tested with a fake clock.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

from rluf.errors import InputFileError
from streams.kafka_producer import PublishStats

__all__ = [
    "LinePublisher",
    "ReplayStats",
    "Pacer",
    "event_time",
    "replay_file",
]

logger = logging.getLogger(__name__)

_PROGRESS_EVERY = 1000


class LinePublisher(Protocol):
    """What `replay_file` needs from a publisher (`EventPublisher` in production)."""

    def publish(self, raw_lines: Iterable[bytes]) -> PublishStats: ...

    def flush(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class ReplayStats:
    """What one replay did.

    Attributes:
        lines_read: Non-blank lines read from the file (each was published).
        blank_lines: Blank lines skipped.
        published: Records sent per topic name.
        unreadable: Lines that were not a JSON object (sent to the responses topic for the
            worker to quarantine).
        untimed: Lines sent without pacing because their ``ts`` could not be read (0 when
            ``speedup`` is None: nothing is paced then).
        seconds: Wall-clock duration, including the final flush.
    """

    lines_read: int
    blank_lines: int
    published: dict[str, int]
    unreadable: int
    untimed: int
    seconds: float

    @property
    def total_published(self) -> int:
        return sum(self.published.values())


def event_time(line: bytes) -> float | None:
    """Return a line's ``ts`` as seconds since the epoch, or None when it cannot be read.

    Accepts what the wire schema accepts in practice: an ISO-8601 string (``Z`` or an offset;
    a naive time is taken as UTC for pacing) or a number of epoch seconds. Pure, never raises.

    Args:
        line: One JSONL line.
    """
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    ts = obj.get("ts")
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int | float):
        value = float(ts)
        return value if math.isfinite(value) else None
    if isinstance(ts, str):
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return None


class Pacer:
    """Event-time schedule: how long to wait before sending an event, given the clock.

    The first timed event anchors event time to the wall clock; every later event is due at
    ``anchor_wall + (ts - anchor_ts) / speedup``. Anchoring (instead of sleeping each gap)
    keeps oversleeping from accumulating over a long replay. Events earlier than the anchor
    or already overdue (out-of-order input, a slow broker) are due at once.

    Args:
        speedup: Event seconds per wall second; must be positive.
    """

    def __init__(self, speedup: float) -> None:
        if not speedup > 0 or not math.isfinite(speedup):
            raise ValueError(f"speedup must be a positive finite number, got {speedup!r}")
        self.speedup = speedup
        self._anchor_ts: float | None = None
        self._anchor_wall = 0.0

    def delay(self, ts: float | None, now: float) -> float:
        """Return the seconds to wait before sending an event with time `ts`.

        Args:
            ts: The event's time, epoch seconds; None sends at once and does not anchor.
            now: The current reading of a monotonic clock, seconds.
        """
        if ts is None:
            return 0.0
        if self._anchor_ts is None:
            self._anchor_ts, self._anchor_wall = ts, now
            return 0.0
        due = self._anchor_wall + (ts - self._anchor_ts) / self.speedup
        return max(0.0, due - now)


def _lines(fh: IO[bytes], counts: dict[str, int]) -> Iterator[bytes]:
    for raw in fh:
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            counts["blank"] += 1
            continue
        counts["read"] += 1
        yield line


def _with_progress(lines: Iterator[bytes], on_progress: Callable[[int], None] | None) -> Iterator[bytes]:
    if on_progress is None:
        yield from lines
        return
    pending = 0
    for line in lines:
        yield line
        pending += 1
        if pending >= _PROGRESS_EVERY:
            on_progress(pending)
            pending = 0
    if pending:
        on_progress(pending)


def replay_file(
    path: Path,
    publisher: LinePublisher,
    *,
    speedup: float | None,
    on_progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayStats:
    """Publish every non-blank line of a JSONL file, optionally at event-time pace.

    Args:
        path: JSONL file of wire events (`rluf.schemas`), one per line.
        publisher: Where lines go; it routes them to topics.
        speedup: None sends as fast as the producer takes them; a positive number replays the
            events' ``ts`` gaps divided by it. Lines without a readable ``ts`` go at once.
        on_progress: Called with the number of lines sent since the previous call (every
            1,000 lines and at the end), e.g. ``tqdm.update``.
        clock: Monotonic clock, seconds; replaced in tests.
        sleep: Sleep function, seconds; replaced in tests.

    Returns:
        Counts per topic and timing; the publisher has been flushed.

    Raises:
        InputFileError: `path` does not exist or is not a readable file.
        ValueError: `speedup` is not positive.
        KafkaUnavailableError: the publisher could not deliver.
    """
    pacer = Pacer(speedup) if speedup is not None else None
    try:
        fh = path.open("rb")
    except FileNotFoundError as exc:
        raise InputFileError(str(path), "file not found") from exc
    except IsADirectoryError as exc:
        raise InputFileError(str(path), "is a directory, expected a JSONL file") from exc
    except OSError as exc:
        raise InputFileError(str(path), f"cannot open: {exc.strerror or exc}") from exc

    started = clock()
    counts = {"read": 0, "blank": 0}
    stats = PublishStats()
    untimed = 0
    with fh:
        lines = _with_progress(_lines(fh, counts), on_progress)
        if pacer is None:
            stats.add(publisher.publish(lines))
        else:
            for line in lines:
                ts = event_time(line)
                if ts is None:
                    untimed += 1
                wait = pacer.delay(ts, clock())
                if wait > 0:
                    sleep(wait)
                stats.add(publisher.publish((line,)))
    publisher.flush()
    seconds = clock() - started
    logger.info(
        "replayed %d lines from %s in %.2f s (%s; %d unreadable)",
        counts["read"], path, seconds, stats.per_topic, stats.unreadable,
    )
    return ReplayStats(
        lines_read=counts["read"],
        blank_lines=counts["blank"],
        published=dict(stats.per_topic),
        unreadable=stats.unreadable,
        untimed=untimed,
        seconds=seconds,
    )
