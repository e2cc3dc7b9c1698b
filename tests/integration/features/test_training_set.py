"""Training sets on real Delta tables: point in time, corrections, splits, versions, rebuilds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.lake.delta_sink import DeltaLandingSink
from features.lake.reader import read_table
from features.lake.schema import TRIPLES_TABLE
from features.store.feature_tables import build_feature_tables
from features.store.user_stats import USER_STATS_FEATURES
from features.training_set import (
    BASE_COLUMNS,
    FEATURE_COLUMNS,
    build_training_set,
    rebuild_training_set,
)
from rluf.errors import DataQualityError, TableMissingError
from rluf.records import Landing

from .conftest import (
    CORRECTED_TWICE,
    CORRECTED_UP,
    N_FIRST,
    N_TOTAL,
    REAC,
    RESP,
    World,
    build_world,
    closed_at,
    make_correction,
    make_settings,
    make_triple,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The lake with its feature tables, no Feast repository (read only)."""
    world = build_world(tmp_path_factory.mktemp("lake"), apply=False)
    build_feature_tables(world.root)
    return world


@pytest.fixture(scope="module")
def training(lake: World, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    ts = build_training_set(lake.settings, out=tmp_path_factory.mktemp("ts"))
    return ts.frame()


def test_columns_are_what_the_trainer_reads(training: pd.DataFrame) -> None:
    assert list(training.columns) == [*BASE_COLUMNS, *FEATURE_COLUMNS]
    row = training.set_index("response_id").loc["r03"]
    assert list(row["context"]) == [{"role": "user", "content": "question 3"}]
    assert row["policy_version"] == "p1" and row["weight"] == 1.0
    assert len(training) == N_TOTAL and training["response_id"].is_unique


def test_no_user_statistic_from_at_or_after_the_label_time(lake: World, training: pd.DataFrame) -> None:
    stats = read_table(lake.root, "user_stats").sort_values("event_timestamp")
    # Reference: pandas merge_asof, strictly before window_closed_at.
    left = training[["response_id", "user_id", "window_closed_at"]].sort_values("window_closed_at")
    ref = pd.merge_asof(left, stats, left_on="window_closed_at", right_on="event_timestamp", by="user_id",
                        allow_exact_matches=False).set_index("response_id")
    got = training.set_index("response_id")
    for rid in got.index:
        used = ref.loc[rid, "event_timestamp"]
        assert pd.isna(used) or used < got.loc[rid, "window_closed_at"]
        for f in USER_STATS_FEATURES:
            expected = ref.loc[rid, f]
            if pd.isna(expected):  # no earlier activity: the new-user values
                expected = 1.0 if f == "reputation" else 0
            assert got.loc[rid, f] == pytest.approx(expected), (rid, f)


def test_a_triple_never_sees_its_own_label(training: pd.DataFrame) -> None:
    by_id = training.set_index("response_id")
    # r12 (alice, Loved at close) is alice's 5th window; her Loves before it: r00 only (r03, r06, r09 unLoved)
    assert by_id.loc["r12", "label_at_close"] == 1
    assert by_id.loc["r12", "loves_7d"] == 1 and by_id.loc["r12", "windows_7d"] == 4
    # r00 is alice's first window: nothing before it
    assert by_id.loc["r00", "windows_7d"] == 0 and by_id.loc["r00", "reputation"] == 1.0


def test_later_feature_rows_never_reach_back(lake: World, tmp_path: Path) -> None:
    """A statistic landing (or pushed) after a label time cannot change that triple's row."""
    from deltalake import write_deltalake

    from features.lake.schema import table_uri
    from features.store.feature_tables import user_stats_to_arrow
    from features.store.user_stats import UserStatsRow, to_micros

    home = tmp_path / "copy"
    world = build_world(home, apply=False)
    build_feature_tables(world.root)
    before = build_training_set(world.settings, out=home / "before").frame().set_index("response_id")
    late = UserStatsRow("alice", to_micros(closed_at(12)), 99, 99, 99, 99, 99, 1.0, 99, 0.01)
    write_deltalake(table_uri(world.root, "user_stats"),
                    user_stats_to_arrow([late], created=datetime.now(UTC) + timedelta(hours=1)), mode="append")
    after = build_training_set(world.settings, out=home / "after").frame().set_index("response_id")
    # r12 closed exactly then: strictly-before excludes it; the next alice triple (r15) sees it
    assert after.loc["r12", "reputation"] == before.loc["r12", "reputation"]
    assert after.loc["r15", "reputation"] == pytest.approx(0.01)
    pd.testing.assert_frame_equal(after.drop(index=["r15"]), before.drop(index=["r15"]))


def test_label_corrections_are_applied_newest_wins(training: pd.DataFrame) -> None:
    by_id = training.set_index("response_id")
    up, twice = f"r{CORRECTED_UP:02d}", f"r{CORRECTED_TWICE:02d}"
    assert (by_id.loc[up, "label_at_close"], by_id.loc[up, "label"], by_id.loc[up, "corrected"]) == (0, 1, True)
    assert (by_id.loc[twice, "label"], by_id.loc[twice, "corrected"]) == (0, False)  # Love then un-Love
    assert by_id["corrected"].sum() == 1


def test_splits_never_share_a_conversation_and_follow_time(training: pd.DataFrame) -> None:
    per_conv = training.groupby("conversation_id")["split"].nunique()
    assert (per_conv == 1).all()
    first = training.groupby("conversation_id").agg(split=("split", "first"), start=("ts", "min"))
    order = {"train": 0, "validation": 1, "test": 2}
    ranked = first.assign(rank=first["split"].map(order)).sort_values("start")
    assert ranked["rank"].is_monotonic_increasing
    assert set(training["split"]) == {"train", "validation", "test"}


def test_split_fractions_are_by_triples(lake: World, tmp_path: Path) -> None:
    ts = build_training_set(lake.settings, out=tmp_path, split=(0.5, 0.25, 0.25))
    rows = ts.rows
    assert rows["total"] == N_TOTAL
    assert rows["train"] >= N_TOTAL // 2 - 3 and rows["test"] > 0
    assert ts.manifest["conversations"]["train"] + ts.manifest["conversations"]["test"] <= 12


def test_version_n_ignores_triples_and_corrections_landed_later(lake: World, tmp_path: Path) -> None:
    ts = build_training_set(lake.settings, version=0, out=tmp_path)
    frame = ts.frame()
    assert ts.versions["triples"] == 0
    assert ts.versions["label_corrections"] is None  # the first step landed no corrections
    assert sorted(frame["response_id"]) == [f"r{i:02d}" for i in range(N_FIRST)]
    assert frame["corrected"].sum() == 0  # r05's late Love landed with version 1
    assert ts.manifest["rows"]["total"] == N_FIRST


def test_rebuild_from_the_manifest_is_identical_after_the_lake_moved_on(tmp_path: Path) -> None:
    world = build_world(tmp_path / "w", apply=False)
    build_feature_tables(world.root)
    original = build_training_set(world.settings, out=tmp_path / "orig")
    # The lake moves on: more triples, a correction, and a feature rebuild (an overwrite).
    sink = DeltaLandingSink(world.root, app_id="test")
    sink.land(Landing(triples=[make_triple(i) for i in range(N_TOTAL, N_TOTAL + 6)],
                      corrections=[make_correction(9, 2, new_label=1, after=timedelta(hours=1))]),
              checkpoint={(RESP, 0): N_TOTAL + 6, (REAC, 0): 2010})
    build_feature_tables(world.root)
    assert build_training_set(world.settings, out=tmp_path / "newer").rows["total"] == N_TOTAL + 6

    rebuilt = rebuild_training_set(original.manifest_path, out=tmp_path / "again")
    assert rebuilt.versions == original.versions
    assert rebuilt.content_hash == original.content_hash
    pd.testing.assert_frame_equal(rebuilt.frame(), original.frame())


def test_rebuild_detects_rewritten_history(tmp_path: Path) -> None:
    import json

    world = build_world(tmp_path / "w", apply=False)
    build_feature_tables(world.root)
    original = build_training_set(world.settings, out=tmp_path / "orig")
    manifest = json.loads(original.manifest_path.read_text())
    manifest["content_hash"] = "0" * 16
    original.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DataQualityError, match="differs"):
        rebuild_training_set(original.manifest_path, out=tmp_path / "again")


def test_missing_tables_say_what_to_run(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(TableMissingError, match="rluf"):
        build_training_set(settings)
    DeltaLandingSink(settings.lake_root, app_id="t").land(Landing(triples=[make_triple(0)]),
                                                         checkpoint={(RESP, 0): 1})
    with pytest.raises(TableMissingError, match="materialize"):
        build_training_set(settings)
    assert build_training_set(settings, refresh_features=True).rows["total"] == 1
    assert read_table(settings.lake_root, TRIPLES_TABLE, columns=["response_id"])["response_id"].tolist() == ["r00"]
