"""In-memory stand-ins for the I/O edges, for tests of pure logic and drivers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from rluf.ports import RestoredState
from rluf.records import Landing, TopicPartition
from rluf.shard_state import ShardRestore, ShardStateDelta, replay_rows


class ListSink:
    """A LandingSink that keeps everything in lists and records every checkpoint."""

    def __init__(self, restored: RestoredState | None = None) -> None:
        self.landed = Landing()
        self.checkpoints: list[dict[TopicPartition, int]] = []
        self.state: list[ShardStateDelta] = []
        self._restored = restored or RestoredState()

    def land(self, landing: Landing, *, checkpoint: Mapping[TopicPartition, int],
             state: Sequence[ShardStateDelta] = ()) -> None:
        self.landed.extend(landing)
        self.checkpoints.append(dict(checkpoint))
        self.state.extend(state)

    def restore(self, *, horizon_s: float) -> RestoredState:
        return self._restored

    def restore_shard(self, shard: int, topic_partitions: Iterable[TopicPartition]
                      ) -> tuple[ShardRestore, dict[TopicPartition, int]]:
        """The shard's rows landed so far, folded; offsets from the newest checkpoint."""
        live = replay_rows((d.seq, row) for d in self.state if d.shard == shard for row in d.rows)
        newest = self.checkpoints[-1] if self.checkpoints else self._restored.checkpoint
        return live, {tp: newest[tp] for tp in topic_partitions if tp in newest}


class ListPublisher:
    """A QuarantinePublisher that keeps what it was given."""

    def __init__(self) -> None:
        self.published: list[object] = []

    def publish(self, records: Sequence[object]) -> None:
        self.published.extend(records)
