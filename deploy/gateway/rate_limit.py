"""Per-user token buckets for the gateway: a bounded, pure rate limiter (time is an argument).

Every chat or reaction call takes one token from its user's bucket; a bucket holds at most
``burst`` tokens and refills at ``per_s`` tokens per second. Buckets live in a dictionary
bounded to ``max_users`` entries, least recently used dropped first: a dropped user simply
starts again with a full bucket, which errs towards serving (an attacker would need to push
``max_users`` other users through in between, and each of them is limited too).

One process, one limiter: behind a load balancer each instance limits on its own, so the
effective limit is ``instances × per_s`` unless users are routed stickily (docs/gateway.md).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["RateDecision", "UserRateLimiter"]


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one `UserRateLimiter.take`.

    Attributes:
        allowed: True when a token was taken.
        retry_after_s: When refused, whole seconds until one token is back (for Retry-After).
    """

    allowed: bool
    retry_after_s: int = 0


class UserRateLimiter:
    """Token buckets keyed by user id.

    Args:
        per_s: Refill rate, tokens per second.
        burst: Bucket size, tokens (also the starting level).
        max_users: Buckets kept; beyond it the least recently used is dropped.
    """

    def __init__(self, *, per_s: float, burst: float, max_users: int) -> None:
        if per_s <= 0 or burst < 1 or max_users < 1:
            raise ValueError("per_s must be > 0, burst >= 1 and max_users >= 1")
        self._per_s = per_s
        self._burst = burst
        self._max_users = max_users
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # user -> (level, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, user_id: str, *, now: float) -> RateDecision:
        """Take one token from `user_id`'s bucket at time `now` (seconds, any monotone clock)."""
        level, at = self._buckets.pop(user_id, (self._burst, now))
        level = min(self._burst, level + max(0.0, now - at) * self._per_s)
        allowed = level >= 1.0
        if allowed:
            level -= 1.0
        self._buckets[user_id] = (level, now)
        while len(self._buckets) > self._max_users:
            self._buckets.popitem(last=False)
        if allowed:
            return RateDecision(allowed=True)
        return RateDecision(allowed=False, retry_after_s=max(1, math.ceil((1.0 - level) / self._per_s)))
