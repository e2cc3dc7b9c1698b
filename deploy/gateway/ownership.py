"""Which user each response and conversation the gateway handed out belongs to (bounded, in memory).

The gateway answers a reaction only for the user it gave the response to; this is the record
that makes the check. It is a `cachetools.TTLCache` per kind: an entry lives ``ttl_s`` seconds
(long enough for the attribution window plus the allowed lateness of a Love) and at most
``max_entries`` entries are kept, least recently used evicted first. A reaction to a response
that fell out of the record is answered 404, like an unknown one; size ``max_entries`` for the
responses served in ``ttl_s`` (about 250 bytes each: 200,000 entries ≈ 50 MB).

The record is per process and is lost on restart. Several gateway instances need either
sticky routing by user (the reaction comes back to the instance that answered) or a shared
store with a TTL (e.g. Redis ``SET rid user EX ttl``) behind the same two methods.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

from cachetools import TTLCache

__all__ = ["OwnerCheck", "OwnershipLedger"]

OwnerCheck = Literal["owner", "other", "unknown"]


class OwnershipLedger:
    """Response and conversation owners with expiry and a size bound.

    Args:
        max_entries: Entries kept per kind (responses, conversations).
        ttl_s: Seconds an entry is kept.
        clock: Time source in seconds (injected so tests control expiry).
    """

    def __init__(self, *, max_entries: int, ttl_s: float, clock: Callable[[], float]) -> None:
        self._responses: TTLCache[str, str] = TTLCache(maxsize=max_entries, ttl=ttl_s, timer=clock)
        self._conversations: TTLCache[str, str] = TTLCache(maxsize=max_entries, ttl=ttl_s, timer=clock)
        self._lock = threading.Lock()  # TTLCache is not thread-safe; handlers may run on worker threads

    def record_response(self, response_id: str, conversation_id: str, user_id: str) -> None:
        """Remember that `user_id` was given `response_id` in `conversation_id`."""
        with self._lock:
            self._responses[response_id] = user_id
            self._conversations[conversation_id] = user_id

    def response(self, response_id: str, user_id: str) -> OwnerCheck:
        """Whether `user_id` owns `response_id`, another user does, or it is not (or no longer) known."""
        with self._lock:
            owner = self._responses.get(response_id)
        return "unknown" if owner is None else "owner" if owner == user_id else "other"

    def conversation(self, conversation_id: str, user_id: str) -> OwnerCheck:
        """Like `response`, for a conversation id."""
        with self._lock:
            owner = self._conversations.get(conversation_id)
        return "unknown" if owner is None else "owner" if owner == user_id else "other"
