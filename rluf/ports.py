"""Small interfaces between the pure core and the I/O at the edges.

The stream worker (Faust or the batch consumer) and the Beam backfill drive the same core
and write through the same ``LandingSink``; tests use in-memory fakes of these protocols.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rluf.records import Landing, TopicPartition
from rluf.shard_state import ShardRestore, ShardStateDelta

__all__ = ["LandedTriple", "LandingObserver", "LandingSink", "QuarantinePublisher", "RestoredState"]


@dataclass(frozen=True, slots=True)
class LandedTriple:
    """What the core must remember about a response whose triple already landed.

    Late reactions are attributed against it (label corrections), and a replay after a
    crash recognises its response and reactions instead of landing them twice.
    """

    response_id: str
    event_id: str
    user_id: str
    ts: float                   # response event time, epoch seconds
    window_closed_at: float     # epoch seconds
    label: int                  # after every landed correction
    source: str                 # "topic:partition:offset" of the response event
    reaction_sources: frozenset[str]  # the triple's reaction_sources + its corrections' sources
    response_chars: int


@dataclass(slots=True)
class RestoredState:
    """State read back from the lake when a worker starts."""

    checkpoint: dict[TopicPartition, int] = field(default_factory=dict)
    closed: list[LandedTriple] = field(default_factory=list)
    user_windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> (closed, loves)


class LandingSink(Protocol):
    """Writes a core step's output exactly once, together with the resume positions."""

    def land(self, landing: Landing, *, checkpoint: Mapping[TopicPartition, int],
             state: Sequence[ShardStateDelta] = ()) -> None:
        """Append the rows not landed before; record ``checkpoint`` (and the state numbers) in the triples commit."""
        ...

    def restore(self, *, horizon_s: float) -> RestoredState:
        """Return resume positions and the closed responses within ``horizon_s`` of the newest."""
        ...

    def restore_shard(self, shard: int, topic_partitions: Iterable[TopicPartition]
                      ) -> tuple[ShardRestore, dict[TopicPartition, int]]:
        """Return a shard's live open state and its partitions' resume offsets (one landing's)."""
        ...


class LandingObserver(Protocol):
    """Told about every landing after it is durable (e.g. the feature store's push source)."""

    def on_landing(self, landing: Landing, *, watermark: float | None) -> None: ...


class QuarantinePublisher(Protocol):
    """Mirrors quarantined records to the quarantine topic (at least once)."""

    def publish(self, records: Sequence[object]) -> None: ...
