"""Builders for wire events and input records used across the tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from rluf.records import InputRecord, SourceRef

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def at(seconds: float) -> str:
    """ISO-8601 event time ``seconds`` after T0."""
    return (T0 + timedelta(seconds=seconds)).isoformat()


def response(rid: str, user: str, t: float, *, text: str = "Here is a careful answer to your question.",
             event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "response", "event_id": event_id or f"ev-{rid}", "response_id": rid,
        "conversation_id": f"conv-{rid}", "user_id": user,
        "context": [{"role": "user", "content": f"question {rid}"}],
        "response": text, "policy_version": "policy-v1", "ts": at(t), **extra,
    }


def reaction(eid: str, rid: str, user: str, t: float, kind: str = "love", action: str = "add") -> dict[str, Any]:
    return {"type": "reaction", "event_id": eid, "response_id": rid, "user_id": user,
            "reaction": kind, "action": action, "ts": at(t)}


class Feed:
    """Numbers records per topic the way Kafka would (one partition per topic)."""

    def __init__(self, responses_topic: str = "responses", reactions_topic: str = "reactions") -> None:
        self.topics = {"response": responses_topic, "reaction": reactions_topic}
        self.next: dict[str, int] = {}

    def record(self, event: dict[str, Any] | bytes, partition: int = 0) -> InputRecord:
        if isinstance(event, bytes):
            topic, value = self.topics["response"], event
        else:
            topic, value = self.topics[event["type"]], json.dumps(event).encode()
        offset = self.next.get(f"{topic}:{partition}", 0)
        self.next[f"{topic}:{partition}"] = offset + 1
        return InputRecord(SourceRef(topic, partition, offset), value)

    def records(self, *events: dict[str, Any] | bytes) -> list[InputRecord]:
        return [self.record(e) for e in events]


MALFORMED = b'{"type": "reaction", "event_id": '
SPAM = "Try MegaCoin today, the only investment you will ever need!"


def edge_case_events() -> list[dict[str, Any] | bytes]:
    """Events whose outcome does not depend on how a consumer interleaves the two topics.

    A duplicate, an un-react, a reaction before its response, a troll, a too-fast bot, an
    unknown field, a malformed line, a schema violation and a coordinated burst of five,
    all at t <= 300 s. Expected labels: r1 1, r2 0, r3 1, r4 0, r5 0, r6 0, c0..c4 0.
    """
    long_text = "A very detailed answer. " * 50  # 1,200 chars: 9.6 s to read at 8 ms/char
    return [
        response("r1", "u1", 0), reaction("x1", "r1", "u1", 60), reaction("x1", "r1", "u1", 60),  # duplicate
        response("r2", "u2", 0), reaction("x2", "r2", "u2", 60), reaction("x2off", "r2", "u2", 120, action="remove"),
        reaction("x3", "r3", "u3", 30), response("r3", "u3", 0),                                    # out of order
        response("r4", "u4", 0), reaction("troll", "r4", "u9", 60),                                 # not the owner
        response("r5", "u5", 0, text=long_text), reaction("bot", "r5", "u5", 1),                    # too fast
        response("r6", "u6", 0, unknown_field="kept"),
        MALFORMED, reaction("hug", "r6", "u6", 50, kind="hug"),                                     # malformed
        *[response(f"c{i}", f"a{i}", 0, text=SPAM) for i in range(5)],
        *[reaction(f"cl{i}", f"c{i}", f"a{i}", 100 + i) for i in range(5)],                       # coordinated
    ]
