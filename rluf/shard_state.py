"""A shard's open state as rows for the state table, and back (pure).

Open windows live for a whole attribution window (24 h by default). Were they kept only in
memory, a restart, or a partition moving to another worker in a rebalance, would have to
replay a day of events to rebuild them. Instead each landing also appends the *changes* of
the shard's state to a Delta table next to the triples (``features/lake/stream_state.py``), and
the triples commit records how far those changes go. The resume position is then the next
offset after everything seen, and a restore reads the live rows instead of replaying.

The rows are a log, newest last:

* ``hold``: a record the shard still needs (a response with an open window, a reaction not
  yet judged or accepted into an open window), with its raw payload;
* ``accept``: a held reaction the filter accepted (it counts in its window's label);
* ``release``: a record no longer needed (its effect landed in a triple, a correction or a
  quarantine row); only records that were written as ``hold`` are ever released, so a
  reaction judged within one landing interval never touches the table;
* ``filter``: a user's token bucket and daily counts after the last change;
* ``clock``: the newest event time of a topic-partition (the watermark's memory);
* ``seen``: a reaction's event id with the event time until which a repeat of it is a
  duplicate (so a redelivered reaction is recognised after a restart or a handover too).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["RowKind", "ShardRestore", "ShardStateDelta", "StateLog", "StateRow", "replay_rows"]

RowKind = Literal["hold", "accept", "release", "filter", "clock", "seen"]


@dataclass(frozen=True, slots=True)
class StateRow:
    """One change of a shard's state."""

    kind: RowKind
    key: str  # source "topic:partition:offset" (hold/accept/release), user id (filter), "topic:partition" (clock)
    payload: bytes = b""
    meta: str = ""  # a held response's light fields, so a restore need not parse it


@dataclass(frozen=True, slots=True)
class ShardStateDelta:
    """The changes of one shard since its previous landing."""

    shard: int
    seq: int  # this shard's landing number; the triples commit records the newest one
    rows: tuple[StateRow, ...]
    live: int = 0  # records the shard holds after these changes (to decide on compaction)


@dataclass(slots=True)
class StateLog:
    """Collects a shard's state changes between two landings."""

    seq: int = 0
    _written: set[str] = field(default_factory=set)  # sources written as hold and not released
    _new: dict[str, StateRow] = field(default_factory=dict)  # holds/accepts since the last landing
    _released: list[str] = field(default_factory=list)
    _users: set[str] = field(default_factory=set)
    _seen: list[StateRow] = field(default_factory=list)

    def hold(self, source: str, payload: bytes, meta: str = "") -> None:
        self._new[source] = StateRow("hold", source, payload, meta)

    def accept(self, source: str) -> None:
        if source in self._new or source in self._written:
            self._new[f"{source}#a"] = StateRow("accept", source)

    def release(self, source: str) -> None:
        if self._new.pop(source, None) is not None:
            self._new.pop(f"{source}#a", None)
            return
        if source in self._written:
            self._written.discard(source)
            self._new.pop(f"{source}#a", None)
            self._released.append(source)

    def touch_user(self, user_id: str) -> None:
        self._users.add(user_id)

    def seen(self, event_id: str, until: float) -> None:
        self._seen.append(StateRow("seen", event_id, json.dumps(until).encode()))

    def restored(self, sources: Iterable[str], seq: int) -> None:
        """Sources that are live in the table already (a restore), and the shard's last landing."""
        self._written.update(sources)
        self.seq = seq

    def drain(self, shard: int, filter_rows: Iterable[StateRow], clock_rows: Iterable[StateRow]) -> ShardStateDelta:
        """Everything since the last landing, numbered with the next landing number."""
        rows: list[StateRow] = [StateRow("release", s) for s in self._released]
        for row in self._new.values():
            rows.append(row)
            if row.kind == "hold":
                self._written.add(row.key)
        rows.extend(self._seen)
        rows.extend(filter_rows)
        rows.extend(clock_rows)
        self._new.clear()
        self._released.clear()
        self._users.clear()
        self._seen.clear()
        self.seq += 1
        return ShardStateDelta(shard, self.seq, tuple(rows), live=len(self._written))

    @property
    def touched_users(self) -> set[str]:
        return self._users


@dataclass(slots=True)
class ShardRestore:
    """A shard's live state, folded from its rows in log order."""

    holds: dict[str, bytes] = field(default_factory=dict)  # source -> raw payload
    meta: dict[str, str] = field(default_factory=dict)  # source -> light fields of a held response
    accepted: set[str] = field(default_factory=set)
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)  # user -> bucket/daily state
    clocks: dict[str, float] = field(default_factory=dict)  # "topic:partition" -> newest event time
    seen: dict[str, float] = field(default_factory=dict)  # reaction event id -> duplicate until (event time)
    seq: int = 0


def replay_rows(rows: Iterable[tuple[int, StateRow]]) -> ShardRestore:
    """Fold ``(seq, row)`` pairs (in write order) into the live state."""
    out = ShardRestore()
    for seq, row in rows:
        out.seq = max(out.seq, seq)
        kind = row.kind
        if kind == "hold":
            out.holds[row.key] = row.payload
            if row.meta:
                out.meta[row.key] = row.meta
        elif kind == "accept":
            if row.key in out.holds:
                out.accepted.add(row.key)
        elif kind == "release":
            out.holds.pop(row.key, None)
            out.meta.pop(row.key, None)
            out.accepted.discard(row.key)
        elif kind == "filter":
            out.filters[row.key] = json.loads(row.payload)
        elif kind == "clock":
            out.clocks[row.key] = float(json.loads(row.payload))
        elif kind == "seen":
            out.seen[row.key] = float(json.loads(row.payload))
    if out.seen and out.clocks:  # forget what no event can repeat any more
        newest = max(out.clocks.values())
        out.seen = {eid: until for eid, until in out.seen.items() if until > newest}
    return out
