"""Watermark and window-queue arithmetic."""

from __future__ import annotations

from streams.windowing import Watermark, WindowQueue, window_end


def test_watermark_trails_max_event_time_and_never_moves_back():
    wm = Watermark(allowed_lateness_s=10, idle_advance=False)
    assert wm.value is None
    wm.observe(100, wall_now=0)
    assert wm.value == 90
    wm.observe(50, wall_now=1)  # an old event does not pull it back
    assert wm.value == 90
    wm.observe(130, wall_now=2)
    assert wm.value == 120


def test_idle_advance_adds_wall_clock_time_since_last_event():
    wm = Watermark(allowed_lateness_s=10, idle_advance=True)
    wm.observe(100, wall_now=1000)
    assert wm.tick(wall_now=1030) == 120
    wm.observe(105, wall_now=1031)  # a new, older-than-watermark event keeps it monotone
    assert wm.value == 120
    assert wm.tick(wall_now=1061) == 125  # 105 - 10 + 30


def test_tick_without_idle_advance_is_a_no_op():
    wm = Watermark(allowed_lateness_s=0, idle_advance=False)
    wm.observe(5, wall_now=0)
    assert wm.tick(wall_now=10_000) == 5


def test_window_queue_pops_due_keys_in_deadline_order_and_honours_rescheduling():
    q = WindowQueue()
    q.push("a", 30)
    q.push("b", 10)
    q.push("c", 20)
    q.push("a", 5)  # rescheduled earlier; the old entry is stale
    assert q.pop_due(15) == ["a", "b"]
    assert "c" in q and len(q) == 1
    q.discard("c")
    assert q.pop_due(100) == [] and len(q) == 0


def test_window_queue_pop_all_orders_by_deadline():
    q = WindowQueue()
    for key, deadline in [("x", 3.0), ("y", 1.0), ("z", 2.0)]:
        q.push(key, deadline)
    assert q.pop_all() == ["y", "z", "x"] and len(q) == 0


def test_window_end():
    assert window_end(1000.0, 86_400.0) == 87_400.0


def test_watermark_follows_the_slowest_active_source():
    wm = Watermark(allowed_lateness_s=0, idle_advance=False, idle_source_s=5)
    wm.observe(100, wall_now=0, source="responses")
    wm.observe(10, wall_now=0, source="reactions")
    assert wm.value == 100  # never moves back once set
    wm.observe(500, wall_now=1, source="responses")
    assert wm.value == 100  # reactions (at 10) hold it back
    wm.observe(300, wall_now=2, source="reactions")
    assert wm.value == 300
    wm.observe(900, wall_now=3, source="responses")
    assert wm.tick(wall_now=6) == 300  # reactions heard 4 s ago: still active
    assert wm.tick(wall_now=7.5) == 900  # reactions silent for 5.5 s: no longer waited for


def test_idle_advance_with_several_sources_adds_quiet_time_to_the_slowest():
    wm = Watermark(allowed_lateness_s=0, idle_advance=True, idle_source_s=5)
    wm.observe(100, wall_now=0, source="a")
    wm.observe(50, wall_now=0, source="b")
    assert wm.tick(wall_now=2) == 100  # both active: slowest (50) + 2 s idle, but never back from 100
    assert wm.tick(wall_now=10) == 110  # both quiet: newest (100) + 10 s


def test_an_announced_source_holds_the_watermark_until_it_speaks_or_goes_quiet():
    wm = Watermark(allowed_lateness_s=0, idle_advance=False, idle_source_s=5)
    wm.expect("reactions", wall_now=0)
    wm.observe(1000, wall_now=1, source="responses")
    assert wm.value is None  # reactions not fetched yet: nothing may close
    wm.observe(400, wall_now=2, source="reactions")
    assert wm.value == 400
    wm.expect("late-partition", wall_now=3)
    assert wm.tick(wall_now=4) == 400
    assert wm.tick(wall_now=9) == 1000  # everything quiet for >= 5 s


def test_a_silent_source_with_unread_records_keeps_holding_the_watermark():
    # A slow fetch, a GC pause or a restart skipping records: silence with a backlog is not idleness.
    wm = Watermark(allowed_lateness_s=0, idle_advance=True, idle_source_s=5)
    wm.observe(100, wall_now=0, source="responses")
    wm.observe(900, wall_now=0, source="reactions")
    wm.set_backlog("responses", 4_000)
    wm.set_backlog("reactions", 0)
    wm.observe(950, wall_now=9, source="reactions")
    assert wm.tick(wall_now=10) == 100  # responses silent for 10 s but behind: still the slowest
    wm.set_backlog("responses", None)  # high-water mark unknown (not fetched yet): not idle either
    assert wm.tick(wall_now=20) == 100
    wm.set_backlog("responses", 0)  # caught up and silent: now it may stop holding the watermark
    assert wm.tick(wall_now=21) == 950 + 21 - 9  # and with nothing left anywhere, idle time advances it


def test_records_without_event_time_count_as_heard():
    wm = Watermark(allowed_lateness_s=0, idle_advance=False, idle_source_s=5)
    wm.expect("responses", wall_now=0)
    wm.observe(500, wall_now=0, source="reactions")
    for second in range(1, 12):  # a long skip phase below a restored checkpoint
        wm.heard("responses", wall_now=second)
    assert wm.tick(wall_now=12) is None  # it never delivered an event time: nothing may close
    wm.observe(300, wall_now=13, source="responses")
    assert wm.value == 300
    wm.forget("responses")
    assert wm.tick(wall_now=14) == 500


def test_window_queue_pops_one_key_at_a_time_even_with_equal_deadlines():
    q = WindowQueue()
    for key in ("a", "b", "c"):
        q.push(key, 10.0)
    q.push("a", 20.0)  # rescheduled: its old entry is stale
    assert q.next_deadline() == 10.0
    assert [q.pop_first(), q.pop_first()] == ["b", "c"]
    assert q.next_deadline() == 20.0 and q.pop_first() == "a" and q.next_deadline() is None
