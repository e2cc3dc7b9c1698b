"""The per-user statistics: window edges, expiries, reputation, and batch == stream."""

from __future__ import annotations

import random
from bisect import bisect_right
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from features.store.user_stats import (
    DAY_US,
    USER_STATS_FEATURES,
    WEEK_US,
    Activity,
    RollingUserStats,
    UserStatsRow,
    compute_user_stats,
    reputation,
    to_datetime,
    to_micros,
)

H = 3_600_000_000  # one hour in µs
T = 1_790_000_000_000_000  # an arbitrary event time, µs


def win(user: str, ts: int, reactions: int = 1, love: bool = False) -> Activity:
    return Activity(user, ts, "window", reactions, love)


def bad(user: str, ts: int) -> Activity:
    return Activity(user, ts, "quarantined")


def brute(acts: list[Activity], user: str, t: int) -> tuple[int | float, ...]:
    """The statistics at ``t`` straight from the definition (windows (t - size, t])."""
    mine = [a for a in acts if a.user_id == user and a.ts <= t]
    day = [a for a in mine if a.ts > t - DAY_US and a.kind == "window"]
    week = [a for a in mine if a.ts > t - WEEK_US]
    wk_win = [a for a in week if a.kind == "window"]
    r7 = sum(a.reactions for a in wk_win)
    l7 = sum(a.love for a in wk_win)
    q7 = sum(1 for a in week if a.kind == "quarantined")
    return (sum(a.reactions for a in day), r7, sum(a.love for a in day), l7, len(wk_win),
            l7 / len(wk_win) if wk_win else 0.0, q7, reputation(r7, q7))


def random_activity(seed: int, users: int = 3, n: int = 60) -> list[Activity]:
    rng = random.Random(seed)
    acts = []
    for _ in range(n):
        ts = T + rng.randrange(0, 20 * DAY_US // H) * H // 2  # half-hour grid: many ties and exact edges
        user = f"u{rng.randrange(users)}"
        acts.append(bad(user, ts) if rng.random() < 0.2 else win(user, ts, rng.randrange(3), rng.random() < 0.3))
    return acts


def by_user(rows: list[UserStatsRow]) -> dict[str, list[UserStatsRow]]:
    out: dict[str, list[UserStatsRow]] = {}
    for r in sorted(rows, key=lambda r: (r.user_id, r.event_timestamp)):
        out.setdefault(r.user_id, []).append(r)
    return out


def test_time_conversions_round_trip() -> None:
    when = datetime(2026, 11, 1, 12, 30, 0, 123456, tzinfo=UTC)
    assert to_datetime(to_micros(when)) == when
    assert to_micros(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000  # naive is UTC


def test_reputation_prior_and_range() -> None:
    assert reputation(0, 0) == 1.0  # a new user
    assert reputation(0, 5) == 0.5
    assert reputation(100, 1) > 0.99
    assert 0.0 < reputation(0, 10**9) < 1e-8


def test_one_window_then_expiries_at_the_exact_edges() -> None:
    rows = list(compute_user_stats([win("u", T, reactions=2, love=True)], until=T + 30 * DAY_US))
    assert [r.event_timestamp for r in rows] == [T, T + DAY_US, T + WEEK_US]
    first, after_day, after_week = rows
    assert first[2:] == (2, 2, 1, 1, 1, 1.0, 0, reputation(2, 0))
    assert after_day[2:] == (0, 2, 0, 1, 1, 1.0, 0, reputation(2, 0))
    assert after_week[2:] == (0, 0, 0, 0, 0, 0.0, 0, 1.0)


def test_quarantine_counts_only_in_the_week_and_lowers_reputation() -> None:
    rows = list(compute_user_stats([win("u", T, reactions=1), bad("u", T + H)], until=T + 10 * DAY_US))
    at_bad = rows[1]
    assert at_bad.event_timestamp == T + H
    assert at_bad.quarantined_7d == 1 and at_bad.reactions_1d == 1
    assert at_bad.reputation == pytest.approx(6 / 7)
    # the window leaves the 1-day window at T + 1 d; the quarantine has no 1-day counter, so no row at T + H + 1 d
    assert [r.event_timestamp for r in rows] == [T, T + H, T + DAY_US, T + WEEK_US, T + H + WEEK_US]


def test_same_time_activity_gives_one_row() -> None:
    stats = RollingUserStats()
    rows = stats.observe([win("u", T, love=True), win("u", T), bad("u", T)])
    assert len(rows) == 1
    assert (rows[0].windows_7d, rows[0].loves_7d, rows[0].quarantined_7d) == (2, 1, 1)


def test_rows_never_repeat_values() -> None:
    rows = list(compute_user_stats(sorted(random_activity(3), key=lambda a: (a.user_id, a.ts)), until=T + 40 * DAY_US))
    for user_rows in by_user(rows).values():
        for a, b in pairwise(user_rows):
            assert a[2:] != b[2:]
            assert a.event_timestamp < b.event_timestamp


@pytest.mark.parametrize("seed", range(25))
def test_latest_row_at_any_time_matches_the_definition(seed: int) -> None:
    acts = random_activity(seed)
    until = T + 40 * DAY_US
    rows = by_user(list(compute_user_stats(sorted(acts, key=lambda a: (a.user_id, a.ts)), until=until)))
    rng = random.Random(seed)
    probes = [a.ts for a in acts] + [a.ts + DAY_US for a in acts] + [a.ts + WEEK_US - 1 for a in acts]
    probes += [T + rng.randrange(0, 35 * DAY_US) for _ in range(50)]
    for user, user_rows in rows.items():
        stamps = [r.event_timestamp for r in user_rows]
        for t in probes:
            i = bisect_right(stamps, t)
            expected = brute(acts, user, t)
            if i == 0:
                assert expected == brute([], user, t), "activity before the user's first row"
                continue
            assert user_rows[i - 1][2:] == pytest.approx(expected), (user, t)


@pytest.mark.parametrize("seed", range(10))
def test_stream_batches_give_the_batch_rows(seed: int) -> None:
    acts = random_activity(seed, users=4, n=80)
    until = T + 40 * DAY_US
    batch = list(compute_user_stats(sorted(acts, key=lambda a: (a.user_id, a.ts)), until=until))

    # The stream: activity in event-time order, in random batches, advance(watermark) after each.
    ordered = sorted(acts, key=lambda a: a.ts)
    stats = RollingUserStats()
    stream: list[UserStatsRow] = []
    rng = random.Random(seed)
    i = 0
    while i < len(ordered):
        j = i + rng.randrange(1, 8)
        while j < len(ordered) and ordered[j].ts == ordered[j - 1].ts:
            j += 1  # a watermark never splits one instant
        stream.extend(stats.observe(ordered[i:j]))
        if j < len(ordered):
            stream.extend(stats.advance(ordered[j].ts - 1))
        i = j
    stream.extend(stats.advance(until))
    assert sorted(stream) == sorted(batch)
    assert len(stats) == 0  # every user's week emptied by the final watermark


def test_late_activity_is_stamped_at_the_users_current_time() -> None:
    stats = RollingUserStats()
    stats.observe([win("u", T + 10 * H)])
    late = stats.observe([win("u", T + 2 * H, love=True)])
    assert [r.event_timestamp for r in late] == [T + 10 * H]
    assert late[0].loves_7d == 1 and late[0].windows_7d == 2
    assert stats.observe([win("u", T + 10 * H - WEEK_US)]) == []  # older than the week: dropped


def test_compute_rejects_unsorted_activity() -> None:
    with pytest.raises(ValueError, match="not sorted"):
        list(compute_user_stats([win("b", T), win("a", T)]))


def test_feature_names_match_the_row() -> None:
    row = next(compute_user_stats([win("u", T)]))
    assert tuple(row.features()) == USER_STATS_FEATURES
    assert UserStatsRow._fields[2:] == USER_STATS_FEATURES
