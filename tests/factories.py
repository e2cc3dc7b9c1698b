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
