"""Per-user reaction statistics: one incremental definition for the batch job and the stream worker.

The feature store serves these numbers online (the stream filter reads ``reputation``) and
joins them point-in-time into training sets. Both paths must agree exactly, so there is a
single implementation, ``RollingUserStats``: the batch job (``features.store.feature_tables``)
replays the whole lake through it in event-time order, and the stream worker feeds it each
landed batch and pushes the rows it yields. Fed the same activity, both produce the same
rows.

Activity is in event time:

* a closed attribution window of a response in the user's own conversation, at its
  ``window_closed_at``, with the number of reactions the user held at close and whether
  one was a Love (the triple's ``label`` at close);
* a quarantined reaction by the user, at the reaction's event time.

A row describes the windows ``(t - 1 d, t]`` and ``(t - 7 d, t]`` ending at its
``event_timestamp`` ``t``. A row is emitted whenever a value changes: when activity
arrives, and when old activity falls out of a window (an *expiry*; without those rows a
point-in-time lookup a week after a user's last visit would still see last week's counts).
Rows that would repeat the previous values are not emitted.

``reputation`` is a smoothed share of the user's reactions over 7 d that were NOT
quarantined::

    reputation = (reactions_7d + PRIOR_ACCEPTED) / (reactions_7d + quarantined_7d + PRIOR_ACCEPTED)

The prior counts as ``PRIOR_ACCEPTED`` accepted reactions, so a new user starts at exactly
1.0 (the value ``ReputationLookup`` returns for unknown users), five quarantined reactions
with nothing accepted bring a user to 0.5, and one bad reaction among many good ones barely
moves it. It is in ``[0, 1]`` by construction.

Times are integer microseconds since the epoch (UTC), as Delta stores them: integer
arithmetic makes window edges exact, so the batch and stream paths cannot disagree by a
rounding error. This module is part of the pure core: standard library only, no clock
reads.
"""

from __future__ import annotations

import heapq
import logging
from bisect import insort
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Final, Literal, NamedTuple

__all__ = [
    "DAY_US",
    "PRIOR_ACCEPTED",
    "USER_STATS_FEATURES",
    "WEEK_US",
    "Activity",
    "RollingUserStats",
    "UserStatsRow",
    "compute_user_stats",
    "reputation",
    "to_datetime",
    "to_micros",
]

logger = logging.getLogger(__name__)

DAY_US: Final = 86_400_000_000
"""One day in microseconds (the short window)."""
WEEK_US: Final = 7 * DAY_US
"""Seven days in microseconds (the long window)."""
PRIOR_ACCEPTED: Final = 5.0
"""Pseudo-count of accepted reactions in ``reputation``: new users start at 1.0."""

USER_STATS_FEATURES: Final[tuple[str, ...]] = (
    "reactions_1d",
    "reactions_7d",
    "loves_1d",
    "loves_7d",
    "windows_7d",
    "love_rate_7d",
    "quarantined_7d",
    "reputation",
)
"""Feature columns of a ``UserStatsRow`` (and of the ``user_stats`` feature view), in order."""

ActivityKind = Literal["window", "quarantined"]
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(when: datetime) -> int:
    """Return ``when`` as integer microseconds since the epoch; a naive datetime is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def to_datetime(micros: int) -> datetime:
    """Return integer microseconds since the epoch as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=micros)


def reputation(accepted_7d: int, quarantined_7d: int) -> float:
    """Return the smoothed share of accepted reactions, in ``[0, 1]`` (see the module docstring)."""
    good = accepted_7d + PRIOR_ACCEPTED
    return good / (good + quarantined_7d)


class Activity(NamedTuple):
    """One thing a user did that the statistics count, in event time.

    A named tuple, not a dataclass: the batch job builds one per triple (millions), and
    tuple construction is several times cheaper.

    Attributes:
        user_id: The user.
        ts: Event time, microseconds since the epoch (a window's close, a reaction's time).
        kind: ``"window"`` for a closed attribution window of the user's own response,
            ``"quarantined"`` for a reaction of the user that the filters refused.
        reactions: Reactions the user held on the response at close (windows only).
        love: Whether the window closed with the user's Love (the label at close).
    """

    user_id: str
    ts: int
    kind: ActivityKind = "window"
    reactions: int = 0
    love: bool = False


class UserStatsRow(NamedTuple):
    """The statistics of one user over the windows ending at ``event_timestamp``.

    Attributes:
        user_id: The user.
        event_timestamp: End of the windows, microseconds since the epoch (UTC); the row
            holds from then until the user's next row.
        reactions_1d: Reactions held at close on the user's windows closed in the last day.
        reactions_7d: The same over 7 days.
        loves_1d: Windows closed with a Love in the last day.
        loves_7d: The same over 7 days.
        windows_7d: Windows closed in the last 7 days.
        love_rate_7d: ``loves_7d / windows_7d``; 0.0 without windows.
        quarantined_7d: Reactions of the user quarantined in the last 7 days.
        reputation: Smoothed share of reactions not quarantined (see ``reputation``).
    """

    user_id: str
    event_timestamp: int
    reactions_1d: int
    reactions_7d: int
    loves_1d: int
    loves_7d: int
    windows_7d: int
    love_rate_7d: float
    quarantined_7d: int
    reputation: float

    def features(self) -> dict[str, int | float]:
        """Return the feature values keyed by ``USER_STATS_FEATURES``."""
        return dict(zip(USER_STATS_FEATURES, self[2:], strict=True))


# Window entries: (ts, tie, reactions, love, quarantined). ``tie`` keeps arrival order among
# equal timestamps, so an out-of-order insert never compares the remaining fields.
_Entry = tuple[int, int, int, int, int]
_NEVER: Final = 1 << 62


class _UserState:
    __slots__ = ("day", "l1", "l7", "last", "now", "q7", "r1", "r7", "w7", "week")

    def __init__(self) -> None:
        self.day: deque[_Entry] = deque()   # windows (not quarantine) within 1 d
        self.week: deque[_Entry] = deque()  # everything within 7 d
        self.r1 = self.l1 = self.r7 = self.l7 = self.w7 = self.q7 = 0
        self.now: int | None = None  # the event time this user's state is at
        self.last: tuple[int, int, int, int, int, int] | None = None  # counters of the last row emitted

    def next_expiry(self) -> int:
        d = self.day[0][0] + DAY_US if self.day else _NEVER
        w = self.week[0][0] + WEEK_US if self.week else _NEVER
        return d if d < w else w

    def evict(self, t: int) -> None:
        # Window (t - size, t]: an entry at s is out once s <= t - size.
        day, week = self.day, self.week
        edge = t - DAY_US
        while day and day[0][0] <= edge:
            _, _, r, lv, _ = day.popleft()
            self.r1 -= r
            self.l1 -= lv
        edge = t - WEEK_US
        while week and week[0][0] <= edge:
            _, _, r, lv, q = week.popleft()
            self.r7 -= r
            self.l7 -= lv
            self.w7 -= 1 - q
            self.q7 -= q

    def add(self, entry: _Entry, t: int) -> None:
        ts, _, r, lv, q = entry
        if ts <= t - WEEK_US:
            return  # arrived after it had already left every window
        week = self.week
        if week and ts < week[-1][0]:
            insort(week, entry)
        else:
            week.append(entry)
        self.r7 += r
        self.l7 += lv
        self.w7 += 1 - q
        self.q7 += q
        if not q and ts > t - DAY_US:
            day = self.day
            if day and ts < day[-1][0]:
                insort(day, entry)
            else:
                day.append(entry)
            self.r1 += r
            self.l1 += lv

    def emit(self, user_id: str, t: int, rows: list[UserStatsRow]) -> None:
        c = (self.r1, self.r7, self.l1, self.l7, self.w7, self.q7)
        if c == self.last:
            return
        self.last = c
        r1, r7, l1, l7, w7, q7 = c
        good = r7 + PRIOR_ACCEPTED
        rows.append(UserStatsRow(user_id, t, r1, r7, l1, l7, w7, l7 / w7 if w7 else 0.0, q7, good / (good + q7)))

    def roll(self, user_id: str, until: int, *, inclusive: bool, rows: list[UserStatsRow]) -> None:
        """Emit a row at each expiry before ``until`` (or at it, if ``inclusive``)."""
        while True:
            e = self.next_expiry()
            if e > until or (e == until and not inclusive):
                return
            self.evict(e)
            self.emit(user_id, e, rows)


class RollingUserStats:
    """Incremental per-user statistics over 1-day and 7-day event-time windows.

    Feed activity with ``observe`` and, after it, call ``advance`` with the event-time
    watermark to emit the rows for activity that left a window. Fed in event-time order,
    the rows do not depend on how the activity is batched. Memory is the activity of the
    last 7 days per user.

    Activity older than the user's state (the newest activity seen, or the last
    ``advance``) is late: it is counted in a row stamped at the state's time, which says
    what was known then; activity more than 7 days older than that is dropped.
    """

    def __init__(self) -> None:
        self._users: dict[str, _UserState] = {}
        self._expiries: list[tuple[int, str]] = []  # heap of (next expiry, user); lazily validated
        self._tie = 0

    def __len__(self) -> int:
        """Number of users with activity in their current 7-day window."""
        return len(self._users)

    def observe(self, activities: Iterable[Activity]) -> list[UserStatsRow]:
        """Count ``activities`` and return the rows they change.

        Activities of one user at the same time are counted together and yield one row.
        The user's expiries up to (not including) the new time come first, in time order.
        """
        return list(self.observe_sorted(sorted(activities, key=_user_time)))

    def observe_sorted(self, activities: Iterable[Activity]) -> Iterator[UserStatsRow]:
        """Like ``observe`` for activity already sorted by ``(user_id, ts)`` or by ``ts``.

        The batch job uses it to replay the lake without materialising the rows.
        """
        out: list[UserStatsRow] = []
        users = self._users
        for (user_id, ts), group in groupby(activities, key=_user_time):
            st = users.get(user_id)
            if st is None:
                st = users[user_id] = _UserState()
            now = st.now
            if now is None or ts > now:
                if now is not None:
                    st.roll(user_id, ts, inclusive=False, rows=out)
                now = st.now = ts
            st.evict(now)
            for a in group:
                self._tie += 1
                if a.kind == "quarantined":
                    st.add((a.ts, self._tie, 0, 0, 1), now)
                else:
                    st.add((a.ts, self._tie, a.reactions, 1 if a.love else 0, 0), now)
            st.emit(user_id, now, out)
            heapq.heappush(self._expiries, (st.next_expiry(), user_id))
            if out:
                yield from out
                out.clear()

    def advance(self, until: int) -> list[UserStatsRow]:
        """Emit the rows for activity that left a window at or before ``until`` (event time, µs).

        Call it with the stream's watermark after observing the activity up to it. Rows
        are stamped at the exact expiry times, so a late call yields the same rows as a
        timely one. Users whose 7-day window is then empty are forgotten (their last row,
        all zeros, stands).
        """
        rows: list[UserStatsRow] = []
        heap = self._expiries
        while heap and heap[0][0] <= until:
            expiry, user_id = heapq.heappop(heap)
            st = self._users.get(user_id)
            if st is None or st.next_expiry() != expiry:
                continue  # stale entry: the user's current expiry is (or was) in the heap too
            st.roll(user_id, until, inclusive=True, rows=rows)
            if st.now is None or st.now < until:
                st.now = until
            if st.week:
                heapq.heappush(heap, (st.next_expiry(), user_id))
            else:
                del self._users[user_id]
        return rows


def _user_time(a: Activity) -> tuple[str, int]:
    return (a.user_id, a.ts)


def compute_user_stats(activities: Iterable[Activity], *, until: int | None = None) -> Iterator[UserStatsRow]:
    """Replay activity sorted by ``(user_id, ts)`` and yield every row, expiries up to ``until`` included.

    This is the batch definition of the ``user_stats`` table. It runs the same
    ``RollingUserStats`` the stream worker runs, one user at a time, so memory stays at one
    user's week and the rows equal what the stream yields for the same activity fed in
    event-time order (with ``advance`` called after ``observe``).

    Args:
        activities: Sorted by user, then event time.
        until: Watermark (µs), at or after every activity: expiries at or before it are
            emitted. None emits no expiry after a user's last activity.

    Raises:
        ValueError: the activity is not sorted by ``(user_id, ts)``.
    """
    stats = RollingUserStats()
    for _, group in groupby(_checked_order(activities), key=lambda a: a.user_id):
        yield from stats.observe_sorted(group)
        if until is not None:
            yield from stats.advance(until)


def _checked_order(activities: Iterable[Activity]) -> Iterator[Activity]:
    prev: Activity | None = None
    for a in activities:
        if prev is not None and (a.user_id, a.ts) < (prev.user_id, prev.ts):
            raise ValueError(f"activity not sorted by (user_id, ts): {a.user_id!r}@{a.ts} after "
                             f"{prev.user_id!r}@{prev.ts}")
        prev = a
        yield a
