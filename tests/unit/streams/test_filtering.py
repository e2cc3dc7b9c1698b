"""Adversarial filter rules, each on its own."""

from __future__ import annotations

from rluf.settings import FilterSettings
from streams.bursts import BurstDetector, LocalBursts, LoveFact, ShardClock, shared_watermark
from streams.filtering import (
    LowInformationTracker,
    ReactionFacts,
    ReactionFilter,
    TokenBucket,
    answer_fingerprint,
    min_read_seconds,
)


def facts(eid: str, user: str = "u", ts: float = 1000.0, *, owner: str = "u", kind: str = "love",
          action: str = "add", response_ts: float = 0.0, chars: int = 100, fp: str | None = "fp",
          coordinated: bool = False) -> ReactionFacts:
    return ReactionFacts(event_id=eid, user_id=user, kind=kind, action=action, ts=ts, owner_id=owner,
                         response_ts=response_ts, response_chars=chars, fingerprint=fp, coordinated=coordinated)


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
    assert f.check(facts("a", user="x", owner="u")) == "not_owner"
    assert f.check(facts("b", ts=0.5, chars=100)) == "too_fast"   # needs 1 s
    assert f.check(facts("c", ts=0.5, action="remove")) is None   # removes are not timed
    assert f.check(facts("d")) is None
    assert f.check(facts("e")) == "daily_cap"                     # c and d used the cap of 2
    assert f.check(facts("g", ts=86_400 + 10)) is None            # next UTC day


def test_a_burst_verdict_comes_first_and_uses_no_allowance():
    f = ReactionFilter(FilterSettings(rate_capacity=100, daily_cap=1, ms_per_char=0, min_read_ms=0))
    assert f.check(facts("a", user="x", owner="u", coordinated=True)) == "coordinated"  # before not_owner
    assert f.check(facts("b", coordinated=True)) == "coordinated"
    assert f.check(facts("c")) is None  # the daily cap of 1 was not used by the coordinated Love
    assert f.check(facts("d", kind="laugh", coordinated=True)) == "daily_cap"  # only Love adds are bursts


def test_switched_off_rules_accept():
    f = ReactionFilter(FilterSettings(owner_only=False, too_fast_enabled=False, rate_enabled=False,
                                      daily_cap_enabled=False, coordination_enabled=False))
    assert f.check(facts("a", user="x", owner="u", ts=0.0)) is None


def love(eid: str, ts: float, user: str, fp: str = "fp", shard: int = 0) -> LoveFact:
    return LoveFact(ts=ts, event_id=eid, fingerprint=fp, user_id=user, shard=shard)


def test_burst_detector_flags_every_member_whatever_the_arrival_order():
    facts_in_time = [love("e1", 0, "a"), love("e1b", 1, "a"), love("e9", 2, "z", fp="other"), love("e2", 3, "b"),
                     love("e3", 4, "c"), love("e4", 5, "d"), love("e5", 100, "e")]
    for order in (facts_in_time, facts_in_time[::-1], facts_in_time[3:] + facts_in_time[:3]):
        d = BurstDetector(burst_users=3, burst_window_s=10)
        for fact in order:
            d.add(fact)
        d.add(love("e2", 3, "b"))  # a redelivered fact counts once
        d.advance(200)
        flagged = sorted(f.event_id for f in facts_in_time if d.coordinated(f.event_id))
        assert flagged == ["e1", "e1b", "e2", "e3", "e4"]  # same user twice is one user; e5 is too late
    assert d.final_through() == 190


def test_verdicts_are_final_only_when_every_shard_has_published_past_them():
    bursts = LocalBursts(burst_users=2, burst_window_s=10, shards=[0, 1])
    bursts.publish([love("a", 100, "u1", shard=0)])
    bursts.heartbeat(ShardClock(0, 500))
    assert bursts.final_through() is None  # shard 1 has not reported
    bursts.heartbeat(ShardClock(1, 105))
    assert bursts.final_through() == 95 and not bursts.coordinated("a")  # 100 is not final yet
    bursts.publish([love("b", 104, "u2", shard=1)])
    bursts.heartbeat(ShardClock(1, 120))
    assert bursts.final_through() == 110 and bursts.coordinated("a") and bursts.coordinated("b")
    bursts.heartbeat(ShardClock(1, 50))  # a shard's clock never moves back
    assert bursts.final_through() == 110


def test_the_shared_watermark_waits_for_shards_that_have_not_started_but_not_for_idle_ones():
    assert shared_watermark([ShardClock(0, 10), ShardClock(1, None)]) is None
    assert shared_watermark([ShardClock(0, 10), ShardClock(1, None, idle=True), ShardClock(2, 7)]) == 7


def test_low_information_tracker_weights_constant_lovers():
    t = LowInformationTracker(min_events=4, love_rate=0.75, weight=0.2)
    for label in [1, 1, 1]:
        t.record("lover", label)
    assert t.weight_for("lover") == 1.0  # not enough windows yet
    t.record("lover", 0)
    assert t.weight_for("lover") == 0.2  # 3/4 >= 0.75
    t.seed({"restored": (10, 1)})
    assert t.weight_for("restored") == 1.0 and t.weight_for("unknown") == 1.0
