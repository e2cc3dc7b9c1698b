"""Plain value types that the drivers hand to the core and the core hands to the sinks.

A ``SourceRef`` names where an input came from: a Kafka topic/partition/offset for the
stream worker, a file and line number (partition 0) for the batch backfill. Every output
row carries the ``SourceRef`` of the event that produced it, which is what makes the
Delta sink idempotent across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rluf.schemas import LabelCorrection, QuarantineRecord, Triple

__all__ = ["SourceRef", "InputRecord", "Landing", "TopicPartition"]

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Position of one input record in its source."""

    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One raw message as read from Kafka or a file; parsing happens in the core."""

    source: SourceRef
    value: bytes


@dataclass(slots=True)
class Landing:
    """Everything one core step produced; written to Delta as a unit, triples last."""

    triples: list[Triple] = field(default_factory=list)
    corrections: list[LabelCorrection] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)

    def extend(self, other: Landing) -> None:
        self.triples.extend(other.triples)
        self.corrections.extend(other.corrections)
        self.quarantine.extend(other.quarantine)

    def __len__(self) -> int:
        return len(self.triples) + len(self.corrections) + len(self.quarantine)
