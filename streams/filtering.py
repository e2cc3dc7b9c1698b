"""Adversarial-user filtering (pure; shared by the stream worker and the Beam backfill).

Each rule answers one question about a reaction with event time only (never the wall
clock), so a replay or a backfill reaches the same verdicts as the live stream:

* ``not_owner``   -- the reacting user does not own the conversation (only the owner saw it);
* ``too_fast``    -- added faster than a human could read the answer;
* ``rate_limited``-- the user's token bucket is empty (bursts of reactions);
* ``daily_cap``   -- the user already reacted ``daily_cap`` times this UTC day;
* ``coordinated`` -- many distinct users Love the same answer text within seconds (decided
  across shards by ``streams.bursts``; this module applies the verdict in rule order);
* ``low_reputation`` -- the user's reputation (share of their recent reactions that were
  not quarantined, from the feature store's online store) is below ``min_reputation``: the
  memory of a user's past that outlives a worker restart;
* low information -- a user who Loves nearly everything is not quarantined, but the
  triples of that user get a small weight (their Love carries little information).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from rluf.schemas import QuarantineReason
from rluf.settings import FilterSettings

__all__ = [
    "ReactionFacts",
    "ReactionFilter",
    "TokenBucket",
    "LowInformationTracker",
    "answer_fingerprint",
    "min_read_seconds",
]

_DAY_S = 86_400


def answer_fingerprint(text: str) -> str:
    """A short hash of the normalised answer text: the same planted answer, the same key."""
    normal = " ".join(text.lower().split())
    return hashlib.blake2b(normal.encode("utf-8"), digest_size=8).hexdigest()


def min_read_seconds(response_chars: int, cfg: FilterSettings) -> float:
    """Shortest believable time between seeing an answer and reacting to it."""
    return max(cfg.min_read_ms, cfg.ms_per_char * response_chars) / 1000.0


@dataclass(frozen=True, slots=True)
class ReactionFacts:
    """What the filter needs to know about one reaction and the response it targets."""

    event_id: str
    user_id: str
    kind: str
    action: str
    ts: float
    owner_id: str
    response_ts: float
    response_chars: int
    fingerprint: str | None  # None when the response text is no longer known (closed window)
    coordinated: bool = False  # the burst verdict of a Love on a known answer (streams.bursts)


@dataclass(slots=True)
class TokenBucket:
    """Classic token bucket refilled in event time; out-of-order events do not refill."""

    capacity: float
    rate_per_s: float
    tokens: float
    last_ts: float

    def take(self, ts: float) -> bool:
        if ts > self.last_ts:
            self.tokens = min(self.capacity, self.tokens + (ts - self.last_ts) * self.rate_per_s)
            self.last_ts = ts
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class LowInformationTracker:
    """Per-user closed-window and Love counts; constant Lovers get a small weight."""

    min_events: int
    love_rate: float
    weight: float
    enabled: bool = True
    _counts: dict[str, list[int]] = field(default_factory=dict)

    def seed(self, user_windows: dict[str, tuple[int, int]]) -> None:
        """Start from counts read back from the lake (worker restart)."""
        for user, (closed, loves) in user_windows.items():
            self._counts[user] = [closed, loves]

    def record(self, user_id: str, label: int) -> None:
        c = self._counts.setdefault(user_id, [0, 0])
        c[0] += 1
        c[1] += label

    def weight_for(self, user_id: str) -> float:
        """1.0 unless the user's Love rate over enough windows is near constant."""
        if not self.enabled:
            return 1.0
        c = self._counts.get(user_id)
        if c is None or c[0] < self.min_events:
            return 1.0
        return self.weight if c[1] / c[0] >= self.love_rate else 1.0


@dataclass(slots=True)
class ReactionFilter:
    """All quarantine rules for reactions, in a fixed order, with their state.

    Args:
        cfg: Thresholds and switches.
        reputation: User id -> reputation in [0, 1] (an I/O port, cached by the caller);
            None skips the rule (unit tests, the backfill, no feature store).
    """

    cfg: FilterSettings
    reputation: Callable[[str], float] | None = None
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _daily: dict[str, dict[int, int]] = field(default_factory=dict)  # user -> UTC day -> reactions

    def check(self, r: ReactionFacts) -> QuarantineReason | None:
        """Judge one reaction (in event-time order per user); None means accepted.

        The order of the rules matters: a reaction rejected by an earlier rule does not
        consume the user's tokens or daily allowance.
        """
        cfg = self.cfg
        if cfg.coordination_enabled and r.coordinated and r.kind == "love" and r.action == "add":
            return "coordinated"
        if cfg.owner_only and r.user_id != r.owner_id:
            return "not_owner"
        if cfg.reputation_enabled and self.reputation is not None and self.reputation(r.user_id) < cfg.min_reputation:
            return "low_reputation"
        if (
            cfg.too_fast_enabled
            and r.action == "add"
            and r.ts - r.response_ts < min_read_seconds(r.response_chars, cfg)
        ):
            return "too_fast"
        if cfg.rate_enabled:
            bucket = self._buckets.get(r.user_id)
            if bucket is None:
                bucket = TokenBucket(cfg.rate_capacity, cfg.rate_per_s, tokens=cfg.rate_capacity, last_ts=r.ts)
                self._buckets[r.user_id] = bucket
            if not bucket.take(r.ts):
                return "rate_limited"
        if cfg.daily_cap_enabled:
            days = self._daily.get(r.user_id)
            if days is None:
                days = self._daily[r.user_id] = {}
            day = int(r.ts // _DAY_S)
            used = days.get(day, 0)
            if used >= cfg.daily_cap:
                return "daily_cap"
            days[day] = used + 1
        return None

    def user_state(self, user_id: str) -> dict[str, object]:
        """A user's bucket and daily counts as plain data (for the state table)."""
        bucket = self._buckets.get(user_id)
        return {
            "bucket": None if bucket is None else [bucket.tokens, bucket.last_ts],
            "daily": {str(day): n for day, n in self._daily.get(user_id, {}).items()},
        }

    def restore_user(self, user_id: str, state: dict[str, object]) -> None:
        """Inverse of `user_state`."""
        bucket = state.get("bucket")
        if isinstance(bucket, list):
            self._buckets[user_id] = TokenBucket(self.cfg.rate_capacity, self.cfg.rate_per_s,
                                                 tokens=float(bucket[0]), last_ts=float(bucket[1]))
        daily = state.get("daily")
        if isinstance(daily, dict) and daily:
            self._daily[user_id] = {int(day): int(n) for day, n in daily.items()}

    def forget_before(self, ts: float) -> None:
        """Bound memory: drop day counters older than ``ts`` (event time)."""
        oldest_day = int(ts // _DAY_S) - 1
        for user in list(self._daily):
            days = self._daily[user]
            for day in [d for d in days if d < oldest_day]:
                del days[day]
            if not days:
                del self._daily[user]
