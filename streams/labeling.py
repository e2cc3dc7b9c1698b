"""Who holds which reaction on one response, and the label that follows (pure).

A user may add and remove the same reaction several times, and events may arrive out of
order; the latest action in event time wins (arrival order breaks ties). The label is 1
when the conversation's own user holds a Love when the window closes: that is the RLUF
paper's P[Love] target, a sparse but strong signal of satisfaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["LOVE", "ReactionLedger", "label_of"]

LOVE = "love"


@dataclass(slots=True)
class _Held:
    ts: float
    seq: int
    added: bool
    source: str
    event_id: str


@dataclass(slots=True)
class ReactionLedger:
    """Latest action per (user, reaction kind) on one response."""

    _state: dict[tuple[str, str], _Held] = field(default_factory=dict)
    _seq: int = 0

    def apply(self, user_id: str, kind: str, action: str, ts: float, source: str, event_id: str) -> None:
        """Record an add/remove; an older event (in event time) than the one held is ignored
        for the state but still counts as seen."""
        self._seq += 1
        key = (user_id, kind)
        current = self._state.get(key)
        if current is not None and ts < current.ts:
            return
        self._state[key] = _Held(ts=ts, seq=self._seq, added=action == "add", source=source, event_id=event_id)

    def retract(self, event_id: str) -> bool:
        """Forget the action of one event (it was quarantined after the fact)."""
        for key, held in self._state.items():
            if held.event_id == event_id:
                del self._state[key]
                return True
        return False

    def holds(self, user_id: str, kind: str) -> bool:
        held = self._state.get((user_id, kind))
        return held is not None and held.added

    def summary(self) -> dict[str, int]:
        """Count of users holding each reaction kind (only kinds held by someone)."""
        counts: dict[str, int] = {}
        for (_, kind), held in self._state.items():
            if held.added:
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def __len__(self) -> int:
        return len(self._state)


def label_of(ledger: ReactionLedger, owner_id: str) -> int:
    """1 if the conversation's owner holds a Love, else 0."""
    return 1 if ledger.holds(owner_id, LOVE) else 0
