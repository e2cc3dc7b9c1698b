"""The Feast repository over real Delta tables: apply, materialize, online/offline, push, reputation."""

from __future__ import annotations

import json
import runpy
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.lake.reader import history, read_table
from features.lake.schema import TRIPLES_TABLE
from features.store.definitions import DEFINITIONS_FILE, render_feature_store_yaml
from features.store.feast_offline import STORE_TYPE
from features.store.feature_tables import SOURCES_METADATA_KEY, USER_STATS_TABLE
from features.store.push import UserStatsPusher, push_user_stats
from features.store.repository import apply_repo
from features.store.reputation import ReputationLookup
from features.store.serving import format_rows, get_offline, get_online, read_entity_file
from features.store.user_stats import USER_STATS_FEATURES, UserStatsRow, to_micros
from features.training_set import DATA_FILE, FEATURE_COLUMNS, build_training_set
from rluf.records import Landing
from rluf.settings import FeatureSettings, Settings

from .conftest import MATERIALIZED_UNTIL, T0, USERS, World, build_world, closed_at, make_triple

pytestmark = pytest.mark.integration


def latest_stats(world: World) -> pd.DataFrame:
    frame = read_table(world.root, USER_STATS_TABLE)
    frame = frame[frame["event_timestamp"] <= MATERIALIZED_UNTIL]
    return frame.sort_values(["user_id", "event_timestamp", "created"]).drop_duplicates("user_id", keep="last")


def test_repo_files_are_generated_with_absolute_paths(world: World) -> None:
    repo = world.settings.feature_repo_dir
    yaml = (repo / "feature_store.yaml").read_text()
    assert f"type: {STORE_TYPE}" in yaml and "type: sqlite" in yaml
    names = runpy.run_path(str(repo / DEFINITIONS_FILE))
    assert names["user_stats_source"].path == str(Path(world.root).resolve() / USER_STATS_TABLE)
    assert Path(names["response_features_source"].path).is_absolute()
    assert {fv.name for fv in world.store.list_feature_views()} == {"user_stats", "response_features"}
    assert [p.name for p in world.store.list_data_sources() if type(p).__name__ == "PushSource"] == ["user_stats_push"]


def test_redis_online_store_is_configurable(tmp_path: Path) -> None:
    settings = Settings(data_home=tmp_path, features=FeatureSettings(online_store="redis",
                                                                     redis_connection_string="redis:6379,ssl=true"))
    yaml = render_feature_store_yaml(settings)
    assert 'type: redis\n  connection_string: "redis:6379,ssl=true"' in yaml


def test_feature_tables_record_their_source_versions(world: World) -> None:
    meta = history(world.root, USER_STATS_TABLE, limit=1)[0][SOURCES_METADATA_KEY]
    got = json.loads(meta) if isinstance(meta, str) else meta
    assert got == {"triples": 1, "quarantine": 1}


def test_online_equals_the_newest_offline_row_after_materialize(world: World) -> None:
    newest = latest_stats(world).set_index("user_id")
    online = {r["user_id"]: r for r in get_online(world.store, "user", list(USERS))}
    for user in USERS:
        for f in USER_STATS_FEATURES:
            assert online[user][f] == pytest.approx(newest.loc[user, f]), (user, f)
    assert newest.loc["bob", "quarantined_7d"] == 3 and newest.loc["alice", "windows_7d"] > 0
    # the same values from the offline store, asked for the time materialize loaded up to
    ent = pd.DataFrame({"user_id": list(USERS), "event_timestamp": [MATERIALIZED_UNTIL] * 3})
    offline = get_offline(world.store, ent, list(USER_STATS_FEATURES)).set_index("user_id")
    for user in USERS:
        for f in USER_STATS_FEATURES:
            assert offline.loc[user, f] == pytest.approx(online[user][f]), (user, f)


def test_online_response_features_and_unknown_keys(world: World) -> None:
    rows = get_online(world.store, "response", ["r01", "r00", "nope"], ["is_refusal", "uses_list"])
    assert rows[0] == {"response_id": "r01", "is_refusal": True, "uses_list": False}
    assert rows[1] == {"response_id": "r00", "is_refusal": False, "uses_list": True}
    assert rows[2] == {"response_id": "nope", "is_refusal": None, "uses_list": None}


def test_feast_historical_retrieval_agrees_with_the_training_set_join(world: World, tmp_path: Path) -> None:
    ts = build_training_set(world.settings, out=tmp_path / "ts", fill_missing=False)
    ours = pd.read_parquet(ts.path).set_index("response_id")
    ent = pd.DataFrame({
        "user_id": ours["user_id"].to_numpy(),
        "response_id": ours.index.to_numpy(),
        # the training set takes features strictly before the label time
        "event_timestamp": (ours["window_closed_at"] - pd.Timedelta(microseconds=1)).to_numpy(),
    })
    feast = get_offline(world.store, ent).set_index("response_id")
    assert len(feast) == len(ours) == 36
    for f in FEATURE_COLUMNS:
        a = feast.loc[ours.index, f].astype("float64")
        b = ours[f].astype("float64")
        assert a.isna().tolist() == b.isna().tolist(), f
        assert a.fillna(-1).to_numpy() == pytest.approx(b.fillna(-1).to_numpy()), f
    # alice's and carol's first triples: no statistics yet (bob's reactions were quarantined before his)
    assert ours["reputation"].isna().sum() == 2


def test_offline_query_from_an_entity_file(world: World, tmp_path: Path) -> None:
    path = tmp_path / "entities.csv"
    path.write_text(f"user_id,event_timestamp\nbob,{closed_at(1).isoformat()}\nbob,{closed_at(4).isoformat()}\n")
    frame = get_offline(world.store, read_entity_file(path), ["windows_7d", "quarantined_7d"])
    assert frame.sort_values("event_timestamp")["windows_7d"].tolist() == [1, 2]
    text = format_rows(frame, fmt="table")
    assert text.splitlines()[0].split() == ["user_id", "event_timestamp", "windows_7d", "quarantined_7d"]
    assert json.loads(format_rows(frame, fmt="json"))[0]["user_id"] == "bob"


@pytest.fixture
def fresh(tmp_path: Path) -> World:
    """A world of its own, for tests that write to it."""
    return build_world(tmp_path)


def test_push_is_visible_online_at_once_and_offline(fresh: World) -> None:
    at = T0 + timedelta(days=20)
    row = UserStatsRow("alice", to_micros(at), 0, 0, 0, 0, 0, 0.0, 50, 0.0909)
    lookup = ReputationLookup(fresh.store, ttl_s=60.0)
    assert lookup("alice") > 0.5
    push_user_stats(fresh.settings, [row])
    assert get_online(fresh.store, "user", ["alice"], ["reputation", "quarantined_7d"]) == [
        {"user_id": "alice", "reputation": 0.0909, "quarantined_7d": 50}
    ]
    lookup.invalidate("alice")
    assert lookup("alice") == pytest.approx(0.0909)
    ent = pd.DataFrame({"user_id": ["alice", "alice"], "event_timestamp": [at - timedelta(seconds=1), at]})
    offline = get_offline(fresh.store, ent, ["reputation"]).sort_values("event_timestamp")
    assert offline["reputation"].tolist()[1] == pytest.approx(0.0909)
    assert offline["reputation"].tolist()[0] != pytest.approx(0.0909)  # a pushed value never reaches back in time


def test_stream_pusher_updates_user_stats_from_a_landing(fresh: World) -> None:
    pusher = UserStatsPusher(fresh.settings, store=fresh.store)
    assert pusher.restore() > 0
    late = make_triple(40).model_copy(update={"user_id": "carol", "label": 1, "reactions": {"love": 2}})
    pushed = pusher.on_landing(Landing(triples=[late]), watermark=closed_at(40))
    assert pushed >= 1
    online = get_online(fresh.store, "user", ["carol"], ["loves_1d", "reactions_1d"])[0]
    assert online["loves_1d"] >= 1 and online["reactions_1d"] >= 2


class CountingStore:
    """Wraps a store and counts online reads."""

    def __init__(self, store: object) -> None:
        self.store = store
        self.calls = 0

    def get_online_features(self, features: object, entity_rows: object) -> object:
        self.calls += 1
        return self.store.get_online_features(features=features, entity_rows=entity_rows)  # type: ignore[attr-defined]


def test_reputation_cache_hits_do_not_touch_the_store(world: World) -> None:
    counting = CountingStore(world.store)
    now = [0.0]
    lookup = ReputationLookup(counting, ttl_s=60.0, clock=lambda: now[0])
    bob = lookup("bob")
    assert 0.0 < bob < 1.0  # bob has quarantined reactions
    for _ in range(1000):
        assert lookup("bob") == bob
    assert counting.calls == 1 and lookup.hits == 1000
    assert lookup("stranger") == 1.0  # unknown users start at the prior
    assert counting.calls == 2
    assert lookup.get_many(["bob", "stranger", "alice", "carol"])["alice"] <= 1.0
    assert counting.calls == 3  # alice and carol in one read
    now[0] = 61.0
    lookup("bob")
    assert counting.calls == 4  # expired


def test_reputation_lookup_falls_back_to_the_default_when_the_store_fails() -> None:
    class Broken:
        def get_online_features(self, features: object, entity_rows: object) -> object:
            raise OSError("database is locked")

    lookup = ReputationLookup(Broken(), ttl_s=5.0, default=1.0)
    assert lookup("anyone") == 1.0
    assert lookup("anyone") == 1.0 and lookup.store_calls == 1


def test_apply_before_any_data_gives_queryable_empty_tables(tmp_path: Path) -> None:
    settings = Settings(data_home=tmp_path, features=FeatureSettings(repo_dir=str(tmp_path / "repo")))
    summary = apply_repo(settings)
    assert summary.table_versions == {"user_stats": 0, "response_features": 0}
    assert get_online(settings, "user", ["alice"], ["reputation"]) == [{"user_id": "alice", "reputation": None}]
    assert not (tmp_path / "lake" / TRIPLES_TABLE).exists()
    assert DATA_FILE == "training_set.parquet"


def test_spark_offline_store_is_the_documented_scale_path(tmp_path: Path) -> None:
    from features.store.definitions import feast_objects, render_definitions

    settings = Settings(data_home=tmp_path, lake={"root": "s3://bucket/lake"})  # type: ignore[arg-type]
    objects = feast_objects(user_stats_path="s3a://bucket/lake/user_stats",
                            response_features_path="s3a://bucket/lake/response_features", offline="spark")
    src = objects["user_stats_source"]
    assert type(src).__name__ == "SparkSource" and src.table_format.format_type.value == "delta"
    assert objects["user_stats_push"].batch_source is src
    yaml = render_feature_store_yaml(settings, offline="spark")
    assert "type: spark" in yaml and "DeltaSparkSessionExtension" in yaml
    assert "'s3://bucket/lake/user_stats'" in render_definitions(settings, offline="spark")


def test_materialize_before_apply_says_what_to_run(tmp_path: Path) -> None:
    from features.store.repository import materialize
    from rluf.errors import ConfigError

    with pytest.raises(ConfigError, match="rluf features apply"):
        materialize(Settings(data_home=tmp_path))
