"""The attribution core: windows, labels, late events, duplicates, quarantine, restart."""

from __future__ import annotations

from rluf.ports import LandedTriple, RestoredState
from rluf.records import Landing
from rluf.settings import FilterSettings, StreamSettings
from streams.attribution import AttributionEngine
from tests.factories import T0, Feed, reaction, response

W = 3600.0
STREAM = StreamSettings(attribution_window_s=W, allowed_lateness_s=0, max_lateness_s=7200, idle_advance=True)
NO_FILTERS = FilterSettings(
    owner_only=True, rate_enabled=False, too_fast_enabled=False, daily_cap_enabled=False,
    coordination_enabled=False, low_info_enabled=False,
)
WALL = T0.timestamp() + 30 * 86400  # processing time well after the events (a replay of old data)


def engine(filters: FilterSettings = NO_FILTERS, stream: StreamSettings = STREAM,
           restored: RestoredState | None = None) -> AttributionEngine:
    return AttributionEngine(stream, filters, restored)


def one_topic() -> Feed:
    """Responses and reactions on one partition: the watermark follows that one source."""
    return Feed("events", "events")


def test_owner_love_within_window_labels_one_when_watermark_passes():
    feed, eng = one_topic(), engine()
    out = eng.process(feed.records(response("r1", "u1", 0), reaction("x1", "r1", "u1", 60)), WALL)
    assert out.triples == [] and eng.open_windows == 1
    out = eng.process(feed.records(response("r2", "u2", W + 1)), WALL)  # pushes the watermark past r1
    assert [(t.response_id, t.label, t.reactions) for t in out.triples] == [("r1", 1, {"love": 1})]
    t = out.triples[0]
    assert t.window_closed_at.timestamp() == T0.timestamp() + W
    assert (t.source_topic, t.source_partition, t.source_offset) == ("events", 0, 0)
    assert t.reaction_sources == ["events:0:1"]
    assert t.close_reason == "watermark" and t.weight == 1.0
    assert eng.open_windows == 1


def test_no_love_labels_zero_and_other_reactions_are_summarised():
    feed, eng = Feed(), engine()
    eng.process(feed.records(response("r1", "u1", 0), reaction("x1", "r1", "u1", 5, "laugh")), WALL)
    out = eng.flush(WALL)
    assert [(t.label, t.reactions, t.close_reason) for t in out.triples] == [(0, {"laugh": 1}, "flush")]


def test_unreact_cancels_love_and_latest_event_time_wins():
    feed, eng = Feed(), engine()
    eng.process(feed.records(
        response("r1", "u1", 0), reaction("a", "r1", "u1", 10), reaction("b", "r1", "u1", 20, action="remove"),
        response("r2", "u2", 0), reaction("c", "r2", "u2", 30), reaction("d", "r2", "u2", 20, action="remove"),
    ), WALL)
    labels = {t.response_id: t.label for t in eng.flush(WALL).triples}
    assert labels == {"r1": 0, "r2": 1}  # r2: the remove is older in event time than the add


def test_reaction_before_its_response_is_held_then_joined():
    feed, eng = Feed(), engine()
    eng.process(feed.records(reaction("x1", "r1", "u1", 30)), WALL)
    assert eng.held_orphans == 1 and eng.checkpoint() == {("reactions", 0): 0}
    eng.process(feed.records(response("r1", "u1", 0)), WALL)
    assert eng.held_orphans == 0
    assert [t.label for t in eng.flush(WALL).triples] == [1]


def test_reaction_whose_response_never_comes_is_quarantined_unknown_response():
    feed, eng = one_topic(), engine()
    eng.process(feed.records(reaction("x1", "ghost", "u1", 0)), WALL)
    assert eng.checkpoint() == {("events", 0): 0}
    out = eng.process(feed.records(response("r9", "u9", W + 5)), WALL)
    assert [(q.reason, q.event_id, q.response_id) for q in out.quarantine] == [("unknown_response", "x1", "ghost")]
    assert eng.checkpoint() == {("events", 0): 1}  # only r9 is held now


def test_duplicates_count_once_and_are_quarantined():
    feed, eng = Feed(), engine()
    out = eng.process(feed.records(
        response("r1", "u1", 0), response("r1", "u1", 0),                       # same event twice
        response("r1", "u1", 1, event_id="other"),                              # second event for r1
        reaction("x1", "r1", "u1", 5), reaction("x1", "r1", "u1", 5),
    ), WALL)
    assert [q.reason for q in out.quarantine] == ["duplicate_event", "duplicate_response", "duplicate_event"]
    triples = eng.flush(WALL).triples
    assert [(t.response_id, t.label) for t in triples] == [("r1", 1)]
    assert eng.stats.quarantined["duplicate_event"] == 2


def test_malformed_and_schema_violations_keep_raw_payload_and_name_the_field():
    feed, eng = Feed(), engine()
    bad_kind = reaction("x1", "r1", "u1", 5, kind="hug")
    out = eng.process([feed.record(b'{"type": "response", "event_id": '), feed.record(bad_kind)], WALL)
    assert [q.reason for q in out.quarantine] == ["malformed_json", "schema_violation"]
    assert out.quarantine[0].raw == '{"type": "response", "event_id": '
    assert out.quarantine[1].detail.startswith("reaction.reaction:") and "'hug'" in out.quarantine[1].detail
    assert out.quarantine[1].quarantine_id == "reactions:0:0"


def test_unknown_fields_are_kept_in_extra():
    feed, eng = Feed(), engine()
    eng.process(feed.records(response("r1", "u1", 0, locale="fr-FR", client={"app": "ios"})), WALL)
    (t,) = eng.flush(WALL).triples
    assert t.extra == {"locale": "fr-FR", "client": {"app": "ios"}}


def test_late_love_becomes_a_correction_and_beyond_max_lateness_is_quarantined():
    feed, eng = one_topic(), engine()
    eng.process(feed.records(response("r1", "u1", 0), response("r2", "u2", W + 10)), WALL)  # r1 closed, label 0
    out = eng.process(feed.records(reaction("late", "r1", "u1", W + 100)), WALL)
    assert [(c.response_id, c.old_label, c.new_label, c.lateness_s) for c in out.corrections] == [("r1", 0, 1, 100.0)]
    out = eng.process(feed.records(reaction("unlove", "r1", "u1", W + 200, action="remove")), WALL)
    assert [(c.old_label, c.new_label) for c in out.corrections] == [(1, 0)]
    out = eng.process(feed.records(reaction("meh", "r1", "u1", W + 300, kind="sad")), WALL)
    assert [q.reason for q in out.quarantine] == ["late_reaction"]
    out = eng.process(feed.records(reaction("toolate", "r2", "u2", 2 * W + 10 + 7200 + 1)), WALL)
    assert [q.reason for q in out.quarantine] == ["beyond_max_lateness"]


def test_reaction_after_window_end_but_before_close_is_judged_late():
    feed, eng = one_topic(), engine(stream=STREAM.model_copy(update={"allowed_lateness_s": 600}))
    eng.process(feed.records(response("r1", "u1", 0), reaction("x", "r1", "u1", W + 60)), WALL)
    assert eng.open_windows == 1  # watermark = W + 60 - 600 < W
    out = eng.process(feed.records(response("r2", "u2", W + 700)), WALL)
    assert [(t.response_id, t.label) for t in out.triples] == [("r1", 0)]
    assert [(c.response_id, c.new_label) for c in out.corrections] == [("r1", 1)]


def test_idle_tick_advances_watermark_by_wall_clock_and_closes_windows():
    feed, eng = Feed(), engine()
    eng.process(feed.records(response("r1", "u1", 0)), WALL)
    assert eng.tick(WALL + W - 1).triples == []
    assert [t.response_id for t in eng.tick(WALL + W + 1).triples] == ["r1"]


def test_no_idle_advance_when_disabled():
    feed, eng = Feed(), engine(stream=STREAM.model_copy(update={"idle_advance": False}))
    eng.process(feed.records(response("r1", "u1", 0)), WALL)
    assert eng.tick(WALL + 10 * W).triples == []


def test_future_timestamps_are_quarantined():
    feed, eng = Feed(), engine()
    out = eng.process(feed.records(response("r1", "u1", 0)), T0.timestamp() - 7200)
    assert [q.reason for q in out.quarantine] == ["future_timestamp"]


def test_checkpoint_is_the_oldest_held_offset_per_partition():
    feed, eng = Feed(), engine()
    eng.process(feed.records(response("r1", "u1", 0), response("r2", "u2", 100), reaction("x", "r2", "u2", 150)), WALL)
    assert eng.checkpoint() == {("responses", 0): 0, ("reactions", 0): 0}
    eng.process(feed.records(response("r3", "u3", W + 50)), WALL)
    assert eng.open_windows == 3  # the reactions partition is still at t=150: it holds the watermark back
    assert [t.response_id for t in eng.tick(WALL + 6).triples] == ["r1"]  # both quiet 6 s: idle advance
    assert eng.checkpoint() == {("responses", 0): 1, ("reactions", 0): 0}
    out = eng.process(feed.records(response("r4", "u4", W + 200)), WALL + 6)  # reactions idle: not waited for
    assert [t.response_id for t in out.triples] == ["r2"]
    assert eng.checkpoint() == {("responses", 0): 2, ("reactions", 0): 1}


def test_watermark_follows_the_slowest_partition():
    feed, eng = Feed(), engine()
    eng.process(feed.records(response("r1", "u1", 0), reaction("early", "r1", "u1", 30)), WALL)
    # responses race ahead (a catch-up); r1's window must wait for the reactions partition
    eng.process(feed.records(*[response(f"n{i}", "u2", W + 10 * i) for i in range(1, 5)]), WALL + 1)
    assert eng.open_windows == 5
    out = eng.process(feed.records(reaction("love", "r1", "u1", W - 5), reaction("tick", "n4", "u2", W + 60)),
                      WALL + 2)
    assert [(t.response_id, t.label) for t in out.triples] == [("r1", 1)]


def test_restart_replays_from_checkpoint_without_landing_twice():
    feed = Feed()
    events = [response("r1", "u1", 0), response("r2", "u2", 100), reaction("x2", "r2", "u2", 200),
              response("r3", "u3", W + 50), reaction("x1late", "r1", "u1", W + 60),
              response("r4", "u4", W + 90)]
    records = feed.records(*events)
    first = engine()
    out = first.process(records, WALL)
    landed = {t.response_id: t for t in out.triples}
    assert set(landed) == {"r1"} and [c.response_id for c in out.corrections] == ["r1"]
    ckpt = first.checkpoint()
    assert ckpt == {("responses", 0): 1, ("reactions", 0): 0}
    # Crash. The lake says r1 landed (label 1 after its correction); replay from the checkpoint.
    t1 = landed["r1"]
    restored = RestoredState(checkpoint=ckpt, closed=[LandedTriple(
        response_id="r1", event_id=t1.event_id, user_id="u1", ts=t1.ts.timestamp(),
        window_closed_at=t1.window_closed_at.timestamp(), label=1, source="responses:0:0",
        reaction_sources=frozenset({"reactions:0:1"}),  # its landed correction's source
        response_chars=len(t1.response))])
    second = engine(restored=restored)
    out2 = second.process(records, WALL)  # the broker redelivers everything (at-least-once)
    assert second.stats.below_checkpoint_skipped == 1  # r1's response event
    assert len(out2) == 0 and second.stats.replayed_skipped == 1  # x1late: its correction landed
    final = {t.response_id: t.label for t in second.flush(WALL).triples}
    assert final == {"r2": 1, "r3": 0, "r4": 0}


def test_replayed_reaction_of_a_landed_triple_is_recognised():
    feed = Feed()
    records = feed.records(response("r1", "u1", 0), reaction("x", "r1", "u1", 10))
    restored = RestoredState(checkpoint={}, closed=[LandedTriple(
        response_id="r1", event_id="ev-r1", user_id="u1", ts=T0.timestamp(), window_closed_at=T0.timestamp() + W,
        label=1, source="responses:0:0", reaction_sources=frozenset({"reactions:0:0"}), response_chars=10)])
    eng = engine(restored=restored)
    out = eng.process(records, WALL)
    assert len(out) == 0 and eng.stats.replayed_skipped == 2


def test_filters_quarantine_with_reason():
    filters = FilterSettings(rate_capacity=2, rate_per_s=0.001, ms_per_char=10, min_read_ms=500,
                             daily_cap=100, coordination_enabled=False, low_info_enabled=False)
    feed, eng = one_topic(), engine(filters)
    text = "x" * 300  # 3 s of reading
    out = eng.process(feed.records(
        response("r1", "u1", 0, text=text), reaction("troll", "r1", "u2", 100),
        reaction("fast", "r1", "u1", 1),
        response("r2", "u1", 0, text=text), reaction("ok1", "r2", "u1", 100),
        response("r3", "u1", 0, text=text), reaction("ok2", "r3", "u1", 101, "laugh"),
        reaction("limited", "r3", "u1", 102),
    ), WALL)
    assert [(q.event_id, q.reason) for q in out.quarantine] == [  # judged in event-time order
        ("fast", "too_fast"), ("troll", "not_owner"), ("limited", "rate_limited")]
    assert "u2" in out.quarantine[1].detail


def test_daily_cap_counts_per_utc_day():
    filters = NO_FILTERS.model_copy(update={"daily_cap_enabled": True, "daily_cap": 2})
    feed, eng = Feed(), engine(filters)
    evs = [response(f"r{i}", "u1", i) for i in range(4)]
    evs += [reaction(f"x{i}", f"r{i}", "u1", 60 + i) for i in range(3)]
    evs += [response("r9", "u1", 86400), reaction("next-day", "r9", "u1", 86460)]
    out = eng.process(feed.records(*evs), WALL)
    assert [(q.event_id, q.reason) for q in out.quarantine] == [("x2", "daily_cap")]


def test_coordinated_burst_is_quarantined_including_earlier_members():
    filters = NO_FILTERS.model_copy(update={"coordination_enabled": True, "burst_users": 3, "burst_window_s": 10})
    feed, eng = one_topic(), engine(filters)
    spam = "Buy SuperWidget now, the best widget!"
    evs = [response(f"r{i}", f"a{i}", 0, text=spam) for i in range(4)]
    evs += [response("rn", "n1", 0, text="an honest answer"), reaction("honest", "rn", "n1", 31)]
    evs += [reaction(f"c{i}", f"r{i}", f"a{i}", 30 + i) for i in range(4)]
    out = eng.process(feed.records(*evs), WALL)
    assert out.quarantine == []  # a Love's burst verdict is final only burst_window_s after it
    out = eng.process(feed.records(response("later", "n2", 43)), WALL)  # the watermark reaches 33 + 10
    assert sorted((q.event_id, q.reason) for q in out.quarantine) == [
        ("c0", "coordinated"), ("c1", "coordinated"), ("c2", "coordinated"), ("c3", "coordinated")]
    labels = {t.response_id: t.label for t in eng.flush(WALL).triples}
    assert labels == {"r0": 0, "r1": 0, "r2": 0, "r3": 0, "rn": 1, "later": 0}
    assert eng.checkpoint() == {("events", 0): 11}  # nothing is held any more


def test_constant_lovers_are_downweighted_not_dropped():
    filters = NO_FILTERS.model_copy(update={"low_info_enabled": True, "low_info_min_events": 5,
                                            "low_info_love_rate": 0.8, "low_info_weight": 0.1})
    feed, eng = Feed(), engine(filters)
    evs = []
    for i in range(8):
        evs += [response(f"r{i}", "lover", i * 10), reaction(f"x{i}", f"r{i}", "lover", i * 10 + 5)]
    evs += [response("n", "normal", 0)]
    eng.process(feed.records(*evs), WALL)
    triples = sorted(eng.flush(WALL).triples, key=lambda t: (t.user_id, t.ts))
    weights = [t.weight for t in triples if t.user_id == "lover"]
    assert weights == [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1]
    assert [t.weight for t in triples if t.user_id == "normal"] == [1.0]
    assert eng.stats.downweighted == 4


def test_per_user_rules_see_reactions_in_event_time_order_across_partitions():
    # One user's reactions spread over two partitions; the consumer reads partition 1 first.
    filters = NO_FILTERS.model_copy(update={"rate_enabled": True, "rate_capacity": 2, "rate_per_s": 0.01})
    eng = engine(filters)
    eng.expect_sources({("events", 0): None, ("events", 1): None}, WALL)  # the worker announces its partitions
    p0, p1 = Feed("events", "events"), Feed("events", "events")
    early = [response(f"a{i}", "u1", i * 300) for i in range(3)] + [reaction(f"xa{i}", f"a{i}", "u1", i * 300 + 60)
                                                                     for i in range(3)]
    late = [response(f"b{i}", "u1", 2000 + i * 300) for i in range(3)] + [
        reaction(f"xb{i}", f"b{i}", "u1", 2000 + i * 300 + 60) for i in range(3)]
    recs1 = [r for r in (p1.record(e, partition=1) for e in late)]
    recs0 = [r for r in (p0.record(e, partition=0) for e in early)]
    out = eng.process(recs1 + recs0, WALL)  # partition 1 (later in event time) first
    out.extend(eng.flush(WALL))
    # 300 s between reactions refills 3 tokens at 0.01/s: in event-time order nobody is limited
    assert [q.reason for q in out.quarantine] == []
    assert sorted(t.label for t in out.triples) == [1] * 6


def test_restart_with_a_long_skip_phase_keeps_loves_that_wait_for_their_response():
    # The Faust restart race (shared notes: faust-restart-race.md), hit on purpose. The lake's
    # checkpoint is far into the responses partition and close to the start of the reactions
    # partition; the consumer restarts from offset 0 of both (Kafka never committed). Skipping
    # the responses below the checkpoint takes longer than `idle_source_s` of wall-clock time,
    # while the reactions partition already delivers Loves for responses not re-read yet.
    stream = STREAM.model_copy(update={"attribution_window_s": 600.0, "idle_source_s": 5.0, "idle_advance": True})
    responses, reactions = ("responses", 0), ("reactions", 0)
    landed = 400  # responses 0..399 landed before the crash
    restored = RestoredState(checkpoint={responses: landed, reactions: 0})
    eng = engine(stream=stream, restored=restored)
    eng.expect_sources({responses: None, reactions: None}, WALL)
    feed = Feed()
    resp = [feed.record(response(f"r{i}", f"u{i}", i * 10.0)) for i in range(landed + 200)]
    # Every open response (400..599) is Loved by its owner 30 s later; their event times span
    # 2,000 s, several windows, so the reactions partition alone would push the watermark past them.
    loves = [feed.record(reaction(f"l{i}", f"r{i}", f"u{i}", i * 10.0 + 30)) for i in range(landed, landed + 200)]
    out = eng.process(loves[:50], WALL)
    for step in range(0, landed, 40):  # the skip phase: 40 records a second for 10 s
        wall = WALL + 1 + step / 40
        out.extend(eng.process(resp[step:step + 40], wall))
        out.extend(eng.process(loves[50 + step // 8: 50 + step // 8 + 5], wall))
        out.extend(eng.tick(wall))
    assert eng.stats.below_checkpoint_skipped == landed
    out.extend(eng.process(resp[landed:] + loves[100:], WALL + 12))
    out.extend(eng.flush(WALL + 13))
    assert [q.reason for q in out.quarantine] == []
    assert {t.response_id: t.label for t in out.triples} == {f"r{i}": 1 for i in range(landed, landed + 200)}


def test_a_source_with_a_backlog_is_never_dropped_from_the_watermark():
    stream = STREAM.model_copy(update={"attribution_window_s": 600.0, "idle_source_s": 5.0})
    eng = engine(stream=stream)
    responses, reactions = ("responses", 0), ("reactions", 0)
    eng.expect_sources({responses: 0, reactions: 0}, WALL)
    feed = Feed()
    eng.process([feed.record(response("r1", "u1", 0))], WALL)
    eng.process([feed.record(reaction(f"x{i}", "r-other", "u9", 100 * i)) for i in range(1, 40)], WALL)
    eng.report_backlog({responses: 250, reactions: 0})  # responses fetched slowly: 250 unread
    out = eng.tick(WALL + 60)  # a minute of silence from responses
    assert out.triples == [] and out.quarantine == [] and eng.open_windows == 1
    assert eng.behind
    eng.report_backlog({responses: 0, reactions: 0})
    out = eng.tick(WALL + 61)
    assert [t.response_id for t in out.triples] == ["r1"] and not eng.behind


def _landed(out_triples, corrections) -> list[LandedTriple]:
    """What a sink restore would read back about closed responses (labels after corrections)."""
    fixed = {c.response_id: c.new_label for c in corrections}
    return [LandedTriple(response_id=t.response_id, event_id=t.event_id, user_id=t.user_id, ts=t.ts.timestamp(),
                         window_closed_at=t.window_closed_at.timestamp(), label=fixed.get(t.response_id, t.label),
                         source=f"{t.source_topic}:{t.source_partition}:{t.source_offset}",
                         reaction_sources=frozenset(t.reaction_sources) | {
                             f"{c.source_topic}:{c.source_partition}:{c.source_offset}"
                             for c in corrections if c.response_id == t.response_id},
                         response_chars=len(t.response)) for t in out_triples]


def _seconds(event: dict) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(event["ts"]) - T0).total_seconds()


def _stream(n: int, seed: int) -> list[dict]:
    """Responses of 40 users 30 s apart, Loves (some taken back), laughs, late Loves, trolls, a burst."""
    import random

    rng = random.Random(seed)
    events: list[dict] = []
    for i in range(n):
        user, t = f"u{i % 40}", i * 30.0
        events.append(response(f"r{i}", user, t, text="Buy SuperWidget now!" if i % 10 == 7 else f"answer {i}"))
        roll = rng.random()
        if roll < 0.3:
            events.append(reaction(f"l{i}", f"r{i}", user, t + rng.uniform(5, 900)))
            if rng.random() < 0.2:
                events.append(reaction(f"x{i}", f"r{i}", user, t + rng.uniform(900, 1200), action="remove"))
        elif roll < 0.4:
            events.append(reaction(f"h{i}", f"r{i}", user, t + rng.uniform(5, 300), kind="laugh"))
        elif roll < 0.45:
            events.append(reaction(f"late{i}", f"r{i}", user, t + 3700 + rng.uniform(0, 3000)))
        elif roll < 0.5:
            events.append(reaction(f"t{i}", f"r{i}", "troll", t + 60))
    burst_at = 9000.0  # six users Love their own copy of the same spam answer within seconds
    burst = [e for e in events if e["type"] == "response" and e["response"].startswith("Buy")
             and burst_at - 3000 <= _seconds(e) <= burst_at - 100][:6]
    events += [reaction(f"b{k}", e["response_id"], e["user_id"], burst_at + k) for k, e in enumerate(burst)]
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    # Redelivered reactions, 60 arrivals after the original: still duplicates after any restart.
    loves = [i for i, e in enumerate(events) if e["type"] == "reaction" and e["event_id"].startswith("l")]
    for i in reversed(loves[::9]):
        events.insert(min(i + 60, len(events)), dict(events[i]))
    return events


def test_an_engine_restored_from_its_state_rows_continues_exactly_as_the_one_that_never_stopped():
    from rluf.shard_state import replay_rows

    filters = FilterSettings(coordination_enabled=True, burst_users=4, burst_window_s=60, rate_capacity=2,
                             rate_per_s=0.0003, daily_cap=40, too_fast_enabled=False, low_info_enabled=False)
    stream = STREAM.model_copy(update={"attribution_window_s": 3600.0, "allowed_lateness_s": 120.0})
    feed = Feed("events", "events")
    records = feed.records(*_stream(600, seed=5))

    def run(cuts: list[int]) -> tuple[dict, list, list]:
        rows: list = []
        out_all = Landing()
        eng = AttributionEngine(stream, filters, state=True)
        start = 0
        for cut in [*cuts, len(records)]:
            for batch in range(start, cut, 25):  # as a driver feeds it, batch by batch
                out_all.extend(eng.process(records[batch:min(batch + 25, cut)], WALL))
            delta = eng.drain_state()  # a landing: its output and its state changes land together
            rows += [(delta.seq, row) for row in delta.rows]
            if cut != len(records):  # crash after the landing: restore from the lake alone
                checkpoint = eng.checkpoint()
                assert checkpoint == {("events", 0): cut}  # the next offset: nothing is replayed
                restored = RestoredState(checkpoint=checkpoint,
                                         closed=_landed(out_all.triples, out_all.corrections))
                eng = AttributionEngine(stream, filters, restored, state=True, shard_state=replay_rows(rows))
            start = cut
        out_all.extend(eng.flush(WALL))
        labels = {t.response_id: (t.label, t.weight, t.close_reason) for t in out_all.triples}
        return labels, sorted((c.response_id, c.new_label) for c in out_all.corrections), sorted(
            (q.event_id or "-", q.reason) for q in out_all.quarantine)

    straight = run([])
    assert len(straight[0]) == 600 and straight[1] and {r for _, r in straight[2]} >= {
        "not_owner", "coordinated", "rate_limited", "duplicate_event"}
    assert run([150, 151, 420]) == straight
    assert run([37, 300, 301, 555]) == straight


def test_the_outcome_does_not_depend_on_how_records_are_batched():
    filters = FilterSettings(coordination_enabled=True, burst_users=4, burst_window_s=60, rate_capacity=2,
                             rate_per_s=0.0003, daily_cap=40, too_fast_enabled=False, low_info_enabled=False)
    stream = STREAM.model_copy(update={"attribution_window_s": 3600.0, "allowed_lateness_s": 120.0,
                                       "max_lateness_s": 5000.0})
    records = Feed("events", "events").records(*_stream(300, seed=9))

    def run(size: int) -> tuple[list, list, list]:
        eng, out = AttributionEngine(stream, filters), Landing()
        for i in range(0, len(records), size):
            out.extend(eng.process(records[i:i + size], WALL))
        out.extend(eng.flush(WALL))
        return (sorted((t.response_id, t.label, t.close_reason) for t in out.triples),
                sorted((c.response_id, c.new_label) for c in out.corrections),
                sorted((q.event_id or "-", q.reason) for q in out.quarantine))

    one_by_one = run(1)
    assert {r for _, r in one_by_one[2]} >= {"coordinated", "not_owner", "rate_limited", "duplicate_event"}
    assert run(7) == one_by_one and run(len(records)) == one_by_one
