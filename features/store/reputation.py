"""User reputation from the online store, behind a TTL cache, for the ingest path.

The stream filter asks for a user's reputation once per reaction. The online store answers
in ~0.2-0.5 ms (SQLite) or a network round trip (Redis), far too slow per event at
ingest rates, so values are cached for ``features.reputation_cache_s``. This module imports
neither Feast nor pandas, so the stream worker pays nothing for it until a store is opened.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from feast import FeatureStore

    from rluf.settings import Settings

__all__ = ["REPUTATION_REF", "OnlineFeatureSource", "ReputationLookup"]

logger = logging.getLogger(__name__)

REPUTATION_REF: Final = "user_stats:reputation"
"""The Feast feature reference read."""



class OnlineFeatureSource(Protocol):
    """The part of ``feast.FeatureStore`` that ``ReputationLookup`` uses."""

    def get_online_features(self, features: Any, entity_rows: Any) -> Any: ...


class ReputationLookup:
    """User reputation from the online store, behind a TTL cache, for the ingest path.

    A cache hit is a dict lookup plus a clock read (well under a microsecond), so the
    stream filter can ask once per reaction; only a miss or an expired entry reads the
    online store (~0.2-0.5 ms with SQLite). ``get_many`` reads all of a batch's misses in
    one store call. Unknown users get ``default`` (1.0, the value a new user's
    statistics start at). If the store cannot be read, the lookup logs one warning and
    answers ``default`` (cached like a value), so a feature-store outage degrades the
    filter instead of stopping ingest.

    Args:
        store: An open ``FeatureStore`` (or anything with ``get_online_features``).
        ttl_s: How long a value is reused, seconds (``features.reputation_cache_s``);
            0 reads the store every time.
        default: Reputation of users the store does not know.
        clock: Monotonic seconds; injectable for tests.
        max_users: Cache size bound; the cache is cleared when it is exceeded.
    """

    def __init__(
        self,
        store: OnlineFeatureSource,
        *,
        ttl_s: float,
        default: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        max_users: int = 1_000_000,
    ) -> None:
        self._store = store
        self._ttl = float(ttl_s)
        self._default = float(default)
        self._clock = clock
        self._max = max_users
        self._cache: dict[str, tuple[float, float]] = {}  # user -> (reputation, expires at)
        self._failing = False
        self.hits = 0
        self.misses = 0
        self.store_calls = 0

    @classmethod
    def from_settings(cls, settings: Settings, *, store: FeatureStore | None = None) -> ReputationLookup:
        """Build the lookup for ``settings`` (opens the repository unless ``store`` is given)."""
        from features.store.repository import open_store

        return cls(store or open_store(settings), ttl_s=settings.features.reputation_cache_s)

    def __call__(self, user_id: str) -> float:
        """Return ``user_id``'s reputation in ``[0, 1]``."""
        hit = self._cache.get(user_id)
        if hit is not None and hit[1] > self._clock():
            self.hits += 1
            return hit[0]
        return self.get_many((user_id,))[user_id]

    def get_many(self, user_ids: Iterable[str]) -> dict[str, float]:
        """Return the reputation of each user; all misses are read in one store call."""
        now = self._clock()
        out: dict[str, float] = {}
        missing: list[str] = []
        for u in user_ids:
            hit = self._cache.get(u)
            if hit is not None and hit[1] > now:
                self.hits += 1
                out[u] = hit[0]
            elif u not in out:
                missing.append(u)
        if missing:
            missing = list(dict.fromkeys(missing))
            self.misses += len(missing)
            fetched = self._fetch(missing)
            if len(self._cache) + len(fetched) > self._max:
                self._cache.clear()
            expires = now + self._ttl
            for u, v in fetched.items():
                self._cache[u] = (v, expires)
                out[u] = v
        return out

    def invalidate(self, user_id: str | None = None) -> None:
        """Forget one user's cached value, or all of them."""
        if user_id is None:
            self._cache.clear()
        else:
            self._cache.pop(user_id, None)

    def _fetch(self, users: list[str]) -> dict[str, float]:
        self.store_calls += 1
        try:
            resp = self._store.get_online_features(
                features=[REPUTATION_REF], entity_rows=[{"user_id": u} for u in users]
            ).to_dict()
        except Exception as exc:  # any store failure: degrade to the default, never stop ingest
            if not self._failing:
                logger.warning("reputation lookup failed, using %.2f until it recovers: %s", self._default,
                               str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                self._failing = True
            return dict.fromkeys(users, self._default)
        if self._failing:
            logger.warning("reputation lookup recovered")
            self._failing = False
        values = resp.get("reputation", [None] * len(users))
        return {u: self._default if v is None else float(v) for u, v in zip(users, values, strict=True)}
