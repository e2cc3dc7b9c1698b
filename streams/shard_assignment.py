"""What a worker does with a new assignment: keep, release and restore shards (both drivers).

A shard is partition p of *both* event topics; the consumer group's assignor must hand them
out together (aiokafka's range assignor, Faust's co-partitioning assignor). After a
rebalance a worker keeps the engines of shards it still owns (their state is exactly what
it landed when the partitions were revoked), forgets the shards it lost (their new owner
restores them from the lake), and restores new shards from the state table. Where each
partition is read from then follows: a kept shard where its engine stands, a restored one at
its Delta checkpoint, a partition the lake has never seen at its beginning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rluf.errors import ConfigError
from rluf.records import TopicPartition
from streams.ingest_loop import IngestLoop

__all__ = ["AssignmentPlan", "plan_assignment"]


@dataclass
class AssignmentPlan:
    """The outcome of `plan_assignment` for one new assignment."""

    shards: set[int]
    kept: set[int]
    released: list[int]
    restored: set[int]
    positions: dict[TopicPartition, int] = field(default_factory=dict)  # kept shards and checkpoints
    from_beginning: list[TopicPartition] = field(default_factory=list)

    def starts(self, beginnings: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Every assigned partition's start offset, given the beginnings of the new ones."""
        out = dict(self.positions)
        for tp in self.from_beginning:
            out[tp] = beginnings.get(tp, 0)
        return out


def plan_assignment(loop: IngestLoop, partitions: Iterable[TopicPartition], topics: Iterable[str]) -> AssignmentPlan:
    """Apply a new assignment to ``loop`` (release lost shards, restore new ones) and plan the seeks.

    Raises:
        ConfigError: a partition came without its partner in the other event topic (an
            assignor that does not co-partition).
    """
    tps = sorted(set(partitions))
    topics = tuple(topics)
    shards = {p for _, p in tps}
    for shard in sorted(shards):
        missing = [t for t in topics if (t, shard) not in tps]
        if missing:
            raise ConfigError(
                f"partition {shard} of {', '.join(t for t in topics if t not in missing)} was assigned without "
                f"partition {shard} of {', '.join(missing)}: a shard needs both",
                "use the default (co-partitioning) assignor of rluf's drivers",
            )
    released = loop.drop_partitions([tp for tp in loop.shard_partitions(loop.engines) if tp[1] not in shards])
    kept = shards & loop.engines.keys()
    restored = shards - kept
    positions = loop.positions()
    plan = AssignmentPlan(shards=shards, kept=kept, released=released, restored=restored,
                          positions={tp: positions[tp] for tp in tps if tp[1] in kept and tp in positions})
    new_tps = [tp for tp in tps if tp[1] in restored]
    checkpoints = loop.take_partitions(new_tps) if new_tps else {}
    for tp in tps:
        if tp[1] in kept and tp in plan.positions:
            continue
        if tp in checkpoints:
            plan.positions[tp] = checkpoints[tp]
        else:
            plan.from_beginning.append(tp)
    return plan
