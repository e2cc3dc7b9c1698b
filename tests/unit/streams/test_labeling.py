"""Reaction ledger and the label rule."""

from __future__ import annotations

from streams.labeling import ReactionLedger, label_of


def test_owner_love_gives_label_one_other_users_do_not_count():
    ledger = ReactionLedger()
    ledger.apply("other", "love", "add", 1.0, "s1", "e1")
    assert label_of(ledger, "owner") == 0
    ledger.apply("owner", "love", "add", 2.0, "s2", "e2")
    assert label_of(ledger, "owner") == 1
    assert ledger.summary() == {"love": 2}


def test_latest_action_in_event_time_wins_regardless_of_arrival():
    ledger = ReactionLedger()
    ledger.apply("owner", "love", "remove", 5.0, "s1", "e1")
    ledger.apply("owner", "love", "add", 3.0, "s2", "e2")  # older: ignored
    assert label_of(ledger, "owner") == 0
    ledger.apply("owner", "love", "add", 7.0, "s3", "e3")
    assert label_of(ledger, "owner") == 1


def test_retract_forgets_one_event():
    ledger = ReactionLedger()
    ledger.apply("owner", "love", "add", 1.0, "s1", "e1")
    ledger.apply("owner", "laugh", "add", 1.0, "s2", "e2")
    assert ledger.retract("e1") is True and ledger.retract("nope") is False
    assert label_of(ledger, "owner") == 0 and ledger.summary() == {"laugh": 1}
