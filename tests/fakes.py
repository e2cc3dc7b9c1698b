"""In-memory stand-ins for the I/O edges, for tests of pure logic and drivers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rluf.ports import RestoredState
from rluf.records import Landing, TopicPartition


class ListSink:
    """A LandingSink that keeps everything in lists and records every checkpoint."""

    def __init__(self, restored: RestoredState | None = None) -> None:
        self.landed = Landing()
        self.checkpoints: list[dict[TopicPartition, int]] = []
        self._restored = restored or RestoredState()

    def land(self, landing: Landing, *, checkpoint: Mapping[TopicPartition, int]) -> None:
        self.landed.extend(landing)
        self.checkpoints.append(dict(checkpoint))

    def restore(self, *, horizon_s: float) -> RestoredState:
        return self._restored


class ListPublisher:
    """A QuarantinePublisher that keeps what it was given."""

    def __init__(self) -> None:
        self.published: list[object] = []

    def publish(self, records: Sequence[object]) -> None:
        self.published.extend(records)
