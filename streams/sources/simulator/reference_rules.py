"""Reference evaluation of the adversarial-filter rules, for the simulator's ground truth.

The simulator must know, before it returns, that no honest reaction comes near a filter rule
and which rules each adversarial reaction trips. This module evaluates every rule on its own
(a reaction rejected by one rule still counts for the others), in event-time order, exactly as
``FilterSettings`` words them. It is deliberately independent of ``streams.filtering`` so the
benchmark compares the filter against a second reading of the rules, not against itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rluf.settings import FilterSettings

__all__ = ["RULES", "RuleEvent", "reading_time_ms", "tripped_rules"]

RULES: tuple[str, ...] = ("not_owner", "too_fast", "rate_limited", "daily_cap", "coordinated")
_DAY_MS = 86_400_000


def reading_time_ms(text: str, filters: FilterSettings) -> float:
    """Minimum human reading time of ``text`` under the too-fast rule, in milliseconds."""
    return max(filters.min_read_ms, filters.ms_per_char * len(text))


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """One reaction as the rules see it; times are integer milliseconds since the epoch."""

    event_id: str
    user_id: str
    owner_id: str
    kind: str
    action: str
    ts: int
    response_ts: int
    answer: str


def tripped_rules(events: Sequence[RuleEvent], filters: FilterSettings) -> dict[str, list[str]]:
    """Return, per reaction event_id, the rules (in ``RULES`` order) that it trips.

    Rate and daily-cap state is per user; each reaction that finds a token takes one, a
    reaction that finds none is rate limited and takes none. The daily cap counts every
    reaction of the user's UTC day. A Love is ``coordinated`` when some span of
    ``burst_window_s`` holds it and Loves (adds) from >= ``burst_users`` distinct users on the
    same answer text. Enable flags are ignored: a benchmark intersects with what is switched on.
    """
    hits: dict[str, set[str]] = {e.event_id: set() for e in events}
    ordered = sorted(events, key=lambda e: (e.ts, e.event_id))
    tokens: dict[str, float] = {}
    last: dict[str, int] = {}
    per_day: dict[tuple[str, int], int] = {}
    loves: dict[str, list[RuleEvent]] = {}
    for e in ordered:
        got = hits[e.event_id]
        if e.user_id != e.owner_id:
            got.add("not_owner")
        if e.ts - e.response_ts < reading_time_ms(e.answer, filters):
            got.add("too_fast")
        have = tokens.get(e.user_id, filters.rate_capacity)
        if e.user_id in last:
            have = min(filters.rate_capacity, have + (e.ts - last[e.user_id]) / 1000 * filters.rate_per_s)
        last[e.user_id] = e.ts
        if have >= 1:
            have -= 1
        else:
            got.add("rate_limited")
        tokens[e.user_id] = have
        day = (e.user_id, e.ts // _DAY_MS)
        per_day[day] = per_day.get(day, 0) + 1
        if per_day[day] > filters.daily_cap:
            got.add("daily_cap")
        if e.kind == "love" and e.action == "add":
            loves.setdefault(e.answer, []).append(e)
    window = filters.burst_window_s * 1000
    for group in loves.values():
        if len({e.user_id for e in group}) < filters.burst_users:
            continue
        for i, first in enumerate(group):
            j = i
            while j < len(group) and group[j].ts - first.ts <= window:
                j += 1
            if len({e.user_id for e in group[i:j]}) >= filters.burst_users:
                for e in group[i:j]:
                    hits[e.event_id].add("coordinated")
    return {eid: [r for r in RULES if r in got] for eid, got in hits.items()}
