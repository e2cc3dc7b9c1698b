"""Feature-table helpers that need no lake: parallel text features, Arrow conversion, activity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import features.store.feature_tables as ft
from features.store.text_features import text_features_frame
from features.store.user_stats import UserStatsRow, to_micros
from rluf.records import Landing
from rluf.schemas import Message, QuarantineRecord, Triple

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_parallel_text_features_equal_the_serial_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ft, "_PARALLEL_MIN_TEXTS", 10)
    monkeypatch.setattr(ft, "_CHUNK_TEXTS", 7)
    texts = [f"Answer {i}.\n- a\n- b\nWould you like more?" if i % 2 else f"I'm sorry, I can't help {i}."
             for i in range(40)]
    assert ft._text_feature_columns(texts, workers=2) == dict(text_features_frame(texts))


def test_user_stats_rows_to_arrow_keep_exact_microseconds() -> None:
    when = T0 + timedelta(microseconds=7)
    row = UserStatsRow("u", to_micros(when), 1, 2, 0, 1, 3, 1 / 3, 0, 1.0)
    table = ft.user_stats_to_arrow([row], created=T0)
    assert table.schema == ft.USER_STATS_SCHEMA
    got = table.to_pylist()[0]
    assert got["event_timestamp"] == when and got["created"] == T0
    assert got["love_rate_7d"] == pytest.approx(1 / 3) and got["windows_7d"] == 3
    assert ft.user_stats_to_arrow([], created=T0).num_rows == 0


def test_activities_from_a_landing() -> None:
    triple = Triple(
        response_id="r1", event_id="e1", conversation_id="c1", user_id="u1",
        context=[Message(role="user", content="q")], response="a", policy_version="p", ts=T0, label=1,
        reactions={"love": 1, "like": 1}, window_closed_at=T0 + timedelta(hours=1), source_topic="t",
        source_partition=0, source_offset=0,
    )
    refused = QuarantineRecord(quarantine_id="q1", reason="too_fast", detail="d", raw="{}", event_type="reaction",
                               user_id="u2", event_ts=T0, quarantined_at=T0 + timedelta(seconds=5),
                               source_topic="r", source_partition=0, source_offset=1)
    malformed = QuarantineRecord(quarantine_id="q2", reason="malformed_json", detail="d", raw="x",
                                 quarantined_at=T0, source_topic="r", source_partition=0, source_offset=2)
    acts = ft.activities_from_landing(Landing(triples=[triple], quarantine=[refused, malformed]))
    assert [(a.user_id, a.kind, a.reactions, a.love) for a in acts] == [
        ("u1", "window", 2, True), ("u2", "quarantined", 0, False),
    ]
    assert acts[0].ts == to_micros(T0 + timedelta(hours=1)) and acts[1].ts == to_micros(T0)
