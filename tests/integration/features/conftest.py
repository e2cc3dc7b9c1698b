"""A small real lake (written by ``DeltaLandingSink``) and a real applied Feast repository.

The lake: three users, 36 responses six hours apart over nine days, in conversations of
three responses each, landed in two steps (triples versions 0 and 1); every fourth answer
is Loved at close; bob's reactions are partly quarantined; one late Love and one later
un-Love land as label corrections in the second step.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from features.lake.delta_sink import DeltaLandingSink
from rluf.records import Landing
from rluf.schemas import LabelCorrection, Message, QuarantineRecord, Triple
from rluf.settings import FeatureSettings, Settings

T0 = datetime(2026, 11, 1, tzinfo=UTC)
USERS = ("alice", "bob", "carol")
N_FIRST = 24  # triples in the first landing step (version 0); the rest in the second (version 1)
N_TOTAL = 36
RESP = "rluf.responses"
REAC = "rluf.reactions"
TEXTS = (
    "Here is how:\n- step one\n- step two\nWould you like an example?",
    "I'm sorry, but I can't help with that.",
    "## Summary\nIt works. Have a great day!",
    "Plain answer.",
)


def response_ts(i: int) -> datetime:
    return T0 + timedelta(hours=6 * i)


def closed_at(i: int) -> datetime:
    return response_ts(i) + timedelta(hours=1)


def make_triple(i: int) -> Triple:
    user = USERS[i % 3]
    label = int(i % 4 == 0)
    reactions = {"love": 1} if label else ({"like": 1} if i % 5 == 0 else {})
    return Triple(
        response_id=f"r{i:02d}", event_id=f"e{i}", conversation_id=f"{user}-c{i // 9}", user_id=user,
        context=[Message(role="user", content=f"question {i}")], response=TEXTS[i % len(TEXTS)],
        policy_version="p1", ts=response_ts(i), label=label, reactions=reactions, window_closed_at=closed_at(i),
        source_topic=RESP, source_partition=0, source_offset=i,
    )


def make_quarantine(n: int, at: datetime, user: str = "bob") -> QuarantineRecord:
    return QuarantineRecord(
        quarantine_id=f"{REAC}:0:{1000 + n}", reason="too_fast", detail="reacted too fast", raw="{}",
        event_type="reaction", event_id=f"qe{n}", response_id="r01", user_id=user, event_ts=at,
        quarantined_at=at + timedelta(minutes=1), source_topic=REAC, source_partition=0, source_offset=1000 + n,
    )


def make_correction(n: int, i: int, *, new_label: int, after: timedelta) -> LabelCorrection:
    return LabelCorrection(
        correction_id=f"{REAC}:0:{2000 + n}", response_id=f"r{i:02d}", user_id=USERS[i % 3],
        reaction_event_id=f"ce{n}", action="add" if new_label else "remove", old_label=1 - new_label,
        new_label=new_label, reaction_ts=closed_at(i) + after, window_closed_at=closed_at(i),
        lateness_s=after.total_seconds(), source_topic=REAC, source_partition=0, source_offset=2000 + n,
    )


MATERIALIZED_UNTIL = T0 + timedelta(days=5)  # the online store holds the rows as of then
CORRECTED_UP = 5     # r05 closed unLoved; a late Love lands in step 2
CORRECTED_TWICE = 9  # r09: late Love, then an un-Love (the newest wins: 0)


def land_first(sink: DeltaLandingSink) -> None:
    sink.land(
        Landing(
            triples=[make_triple(i) for i in range(N_FIRST)],
            quarantine=[make_quarantine(n, response_ts(1) + timedelta(minutes=10 * n)) for n in range(3)],
        ),
        checkpoint={(RESP, 0): N_FIRST, (REAC, 0): 1003},
    )


def land_second(sink: DeltaLandingSink) -> None:
    sink.land(
        Landing(
            triples=[make_triple(i) for i in range(N_FIRST, N_TOTAL)],
            corrections=[
                make_correction(0, CORRECTED_UP, new_label=1, after=timedelta(hours=2)),
                make_correction(1, CORRECTED_TWICE, new_label=1, after=timedelta(hours=1)),
                make_correction(2, CORRECTED_TWICE, new_label=0, after=timedelta(hours=3)),
            ],
            quarantine=[make_quarantine(10, response_ts(30))],
        ),
        checkpoint={(RESP, 0): N_TOTAL, (REAC, 0): 2003},
    )


def make_settings(home: Path) -> Settings:
    return Settings(data_home=home, features=FeatureSettings(repo_dir=str(home / "repo"), reputation_cache_s=60.0))


@dataclass
class World:
    settings: Settings
    store: Any  # feast.FeatureStore

    @property
    def root(self) -> str:
        return self.settings.lake_root


def build_world(home: Path, *, apply: bool = True) -> World:
    settings = make_settings(home)
    sink = DeltaLandingSink(settings.lake_root, app_id="test")
    land_first(sink)
    land_second(sink)
    store = None
    if apply:
        from features.store.repository import apply_repo, materialize, open_store

        apply_repo(settings)
        materialize(settings, end=MATERIALIZED_UNTIL)
        store = open_store(settings)
    return World(settings=settings, store=store)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The lake, its feature tables and an applied, materialized repository (shared by a module: read only)."""
    yield build_world(tmp_path_factory.mktemp("world"))
