"""Adversarial filter rules, each on its own."""

from __future__ import annotations

from rluf.settings import FilterSettings
from streams.filtering import (
    CoordinationDetector,
    LowInformationTracker,
    ReactionFacts,
    ReactionFilter,
    TokenBucket,
    answer_fingerprint,
    min_read_seconds,
)


def facts(eid: str, user: str = "u", ts: float = 1000.0, *, owner: str = "u", kind: str = "love",
          action: str = "add", response_ts: float = 0.0, chars: int = 100, fp: str | None = "fp") -> ReactionFacts:
    return ReactionFacts(event_id=eid, user_id=user, kind=kind, action=action, ts=ts, owner_id=owner,
                         response_ts=response_ts, response_chars=chars, fingerprint=fp)


def test_token_bucket_refills_in_event_time_only():
    b = TokenBucket(capacity=2, rate_per_s=0.5, tokens=2, last_ts=0)
    assert [b.take(0), b.take(0), b.take(0)] == [True, True, False]
    assert b.take(2) is True           # 2 s * 0.5/s = one token back
    assert b.take(1) is False          # out of order: no refill


def test_min_read_seconds_uses_the_larger_of_floor_and_per_char():
    cfg = FilterSettings(ms_per_char=10, min_read_ms=500)
    assert min_read_seconds(10, cfg) == 0.5
    assert min_read_seconds(300, cfg) == 3.0


def test_answer_fingerprint_normalises_case_and_whitespace():
    assert answer_fingerprint("Buy  NOW\n") == answer_fingerprint("buy now")
    assert answer_fingerprint("buy now") != answer_fingerprint("buy later")


def test_filter_order_and_reasons():
    f = ReactionFilter(FilterSettings(rate_capacity=100, daily_cap=2, ms_per_char=10, min_read_ms=0,
                                      coordination_enabled=False))
    assert f.check(facts("a", user="x", owner="u")) == ("not_owner", [])
    assert f.check(facts("b", ts=0.5, chars=100)) == ("too_fast", [])   # needs 1 s
    assert f.check(facts("c", ts=0.5, action="remove")) == (None, [])   # removes are not timed
    assert f.check(facts("d")) == (None, [])
    assert f.check(facts("e")) == ("daily_cap", [])                    # c and d used the cap of 2
    assert f.check(facts("g", ts=86_400 + 10)) == (None, [])           # next UTC day


def test_switched_off_rules_accept():
    f = ReactionFilter(FilterSettings(owner_only=False, too_fast_enabled=False, rate_enabled=False,
                                      daily_cap_enabled=False, coordination_enabled=False))
    assert f.check(facts("a", user="x", owner="u", ts=0.0)) == (None, [])


def test_coordination_detector_reports_earlier_members_once():
    d = CoordinationDetector(burst_users=3, burst_window_s=10)
    assert d.observe("fp", 0, "a", "e1") == []
    assert d.observe("fp", 1, "a", "e1b") == []   # same user twice is one user
    assert d.observe("other", 2, "z", "e9") == []
    assert sorted(d.observe("fp", 3, "b", "e2")) == []
    assert sorted(d.observe("fp", 4, "c", "e3")) == ["e1", "e1b", "e2", "e3"]
    assert d.observe("fp", 5, "d", "e4") == ["e4"]
    assert d.observe("fp", 100, "e", "e5") == []  # the burst is over


def test_low_information_tracker_weights_constant_lovers():
    t = LowInformationTracker(min_events=4, love_rate=0.75, weight=0.2)
    for label in [1, 1, 1]:
        t.record("lover", label)
    assert t.weight_for("lover") == 1.0  # not enough windows yet
    t.record("lover", 0)
    assert t.weight_for("lover") == 0.2  # 3/4 >= 0.75
    t.seed({"restored": (10, 1)})
    assert t.weight_for("restored") == 1.0 and t.weight_for("unknown") == 1.0
