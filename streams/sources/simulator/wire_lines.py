"""Wire side of `rluf simulate`: JSON lines in producer send order, with duplicates and malformed lines.

A real producer stamps the event time when something happens but sends it a little later
(network, batching, a phone coming back online), so lines are ordered by ``ts + jitter``. The
jitter stays under 30 s, well inside the stream's allowed lateness, so it reorders events (a
fast reaction can be sent before its response) without making any of them late. Retries
re-send a line byte for byte; broken clients send lines that are not valid events. A few valid
events carry fields the contract does not know, which consumers must keep.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rluf.schemas import EVENT_ADAPTER, ValidationError

__all__ = ["MAX_JITTER_MS", "WireNoise", "SentResponse", "SentReaction", "serialise"]

MAX_JITTER_MS = 30_000
_UNKNOWN_FIELD_RATE = 0.02


class SentResponse(Protocol):
    """What the wire needs from a simulated response (times in epoch milliseconds)."""

    @property
    def event_id(self) -> str: ...
    @property
    def response_id(self) -> str: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def ts(self) -> int: ...
    @property
    def answer(self) -> str: ...
    @property
    def policy(self) -> str: ...
    @property
    def context(self) -> Sequence[Any]: ...


class SentReaction(Protocol):
    """What the wire needs from a simulated reaction (times in epoch milliseconds)."""

    @property
    def event_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def ts(self) -> int: ...
    @property
    def response(self) -> SentResponse: ...


@dataclass(slots=True)
class WireNoise:
    """Where the noise went: 1-based line numbers and the count of events with unknown fields."""

    malformed_lines: list[int] = field(default_factory=list)
    duplicate_lines: list[int] = field(default_factory=list)
    unknown_field_events: int = 0


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _jitter(rng: random.Random) -> int:
    u = rng.random()
    if u < 0.8:
        return rng.randrange(300)
    if u < 0.98:
        return min(MAX_JITTER_MS, int(rng.expovariate(1 / 2000)))
    return rng.randrange(5_000, MAX_JITTER_MS + 1)  # a phone reconnecting


def _unknown_fields(rng: random.Random) -> dict[str, Any]:
    pool: list[tuple[str, Any]] = [
        ("client", {"platform": rng.choice(("ios", "android", "web")),
                    "app_version": f"4.{rng.randint(0, 19)}.{rng.randint(0, 9)}"}),
        ("locale", rng.choice(("en-US", "en-GB", "de-DE", "fr-FR", "es-ES"))),
        ("trace_id", f"{rng.getrandbits(64):016x}"),
        ("ab_bucket", rng.randint(0, 99)),
    ]
    return dict(rng.sample(pool, rng.randint(1, 2)))


def serialise(
    rng: random.Random,
    responses: Sequence[SentResponse],
    reactions: Sequence[SentReaction],
    *,
    duplicate_rate: float,
    malformed_rate: float,
    iso: Callable[[int], str],
    new_event_id: Callable[[], str],
) -> tuple[list[str], WireNoise]:
    """Return the JSONL lines in send order and where the noise went.

    Args:
        duplicate_rate: Re-sent lines per valid event; the count is rounded, the lines exact copies.
        malformed_rate: Invalid lines per valid event, each with a fresh event_id where it has one.
        iso: Formats an epoch-millisecond time as the wire's ISO 8601 string.
        new_event_id: Draws an unused event id (for malformed lines).
    """
    noise = WireNoise()
    sent: list[tuple[int, dict[str, Any]]] = []
    for r in responses:
        d: dict[str, Any] = {
            "type": "response", "event_id": r.event_id, "response_id": r.response_id,
            "conversation_id": r.conversation_id, "user_id": r.user_id,
            "context": [{"role": t.role, "content": t.content} for t in r.context],
            "response": r.answer, "policy_version": r.policy, "ts": iso(r.ts),
        }
        sent.append((r.ts, d))
    for x in reactions:
        d = {
            "type": "reaction", "event_id": x.event_id, "response_id": x.response.response_id,
            "user_id": x.user_id, "reaction": x.kind, "action": x.action, "ts": iso(x.ts),
        }
        sent.append((x.ts, d))
    sent.sort(key=lambda p: (p[0], p[1]["event_id"]))
    entries: list[tuple[int, int, str, str]] = []  # (send time, seq, line, tag)
    for ts, d in sent:
        if rng.random() < _UNKNOWN_FIELD_RATE:
            d.update(_unknown_fields(rng))
            noise.unknown_field_events += 1
        entries.append((ts + _jitter(rng), len(entries), _dump(d), "event"))
    n = len(entries)
    for i in rng.sample(range(n), round(duplicate_rate * n)):
        key, _, line, _ = entries[i]
        entries.append((key + rng.randint(50, 20_000), len(entries), line, "duplicate"))
    for k in range(round(malformed_rate * n)):
        i = rng.randrange(n)
        line = _malformed(rng, k, sent[i][1], entries[i][2], new_event_id, iso)
        entries.append((entries[i][0] + rng.randrange(1000), len(entries), line, "malformed"))
    entries.sort(key=lambda e: (e[0], e[1]))
    lines: list[str] = []
    for no, (_, _, line, tag) in enumerate(entries, start=1):
        lines.append(line)
        if tag == "duplicate":
            noise.duplicate_lines.append(no)
        elif tag == "malformed":
            noise.malformed_lines.append(no)
    return lines, noise


def _malformed(rng: random.Random, k: int, base: dict[str, Any], line: str,
               new_event_id: Callable[[], str], iso: Callable[[int], str]) -> str:
    """Build the ``k``-th malformed line from a valid event; cycles through the failure kinds.

    Raises:
        RuntimeError: the line would still validate (a bug in this function).
    """
    d = {key: value for key, value in base.items() if key not in ("client", "locale", "trace_id", "ab_bucket")}
    d["event_id"] = new_event_id()
    is_reaction = d["type"] == "reaction"
    variant = k % 9
    if variant == 0:  # truncated in flight
        out = line[: rng.randint(10, len(line) - 2)]
    elif variant == 1:  # not JSON at all
        out = rng.choice(("love it!!!", "<html><body>502 Bad Gateway</body></html>", "{'type': 'reaction'}"))
    elif variant == 2:  # JSON, but not an object
        out = rng.choice(('["reaction","love"]', "null", "42", '"love"'))
    elif variant == 3:  # wrong type
        d["user_id"] = rng.randint(1, 99_999)
        out = _dump(d)
    elif variant == 4:  # unparseable or naive timestamp
        d["ts"] = rng.choice(("yesterday", "2026-13-45T99:00:00Z", iso(0)[:19]))
        out = _dump(d)
    elif variant == 5:  # missing a required field
        del d[rng.choice(("response_id", "ts", "user_id"))]
        out = _dump(d)
    elif variant == 6:  # unknown reaction kind / context of the wrong shape
        if is_reaction:
            d["reaction"] = rng.choice(("heart_eyes", "fire", "clap", "LOVE"))
        else:
            d["context"] = "hi, can you help me?"
        out = _dump(d)
    elif variant == 7:  # bad enum / empty required string
        if is_reaction:
            d["action"] = "toggle"
        else:
            d["policy_version"] = ""
        out = _dump(d)
    else:  # an event type the contract does not know
        d["type"] = rng.choice(("click", "impression", "Reaction"))
        out = _dump(d)
    try:
        EVENT_ADAPTER.validate_json(out)
    except ValidationError:
        return out
    raise RuntimeError(f"malformed variant {variant} produced a valid event")
