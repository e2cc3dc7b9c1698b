"""What the Feast feature repository holds, and the files that describe it to Feast.

``rluf features apply`` writes ``<feature_repo_dir>/feature_store.yaml`` and a definitions
module (``rluf_definitions.py``, absolute Delta paths: Feast's DuckDB store resolves
relative paths against the working directory, not the repository) and registers:

* entities ``user`` (join key ``user_id``) and ``response`` (``response_id``);
* feature view ``user_stats`` over the Delta table of the same name, fed by the push
  source ``user_stats_push`` (its batch source is the same Delta table, so materialize
  and historical retrieval read what the stream worker appended);
* feature view ``response_features`` (text features, one row per response).

The offline store is Feast's DuckDB store with the bundled ``delta`` extension
(``features.store.feast_offline``); the online store is SQLite under the repository, or Redis
when ``features.online_store`` says so (see docs/features.md for the scale path).

``import feast`` takes seconds, so this module imports it only inside the functions that
build Feast objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal

from features.lake.duckdb_lake import resolve_root
from features.lake.schema import table_uri
from features.store.feature_tables import RESPONSE_FEATURES, RESPONSE_FEATURES_TABLE, USER_STATS_TABLE
from features.store.user_stats import USER_STATS_FEATURES
from rluf.settings import Settings

__all__ = [
    "DEFINITIONS_FILE",
    "ENTITY_KEYS",
    "FEATURE_VIEWS",
    "PUSH_SOURCE",
    "OfflineKind",
    "feast_objects",
    "feature_table_paths",
    "render_definitions",
    "render_feature_store_yaml",
    "write_repo",
]

DEFINITIONS_FILE: Final = "rluf_definitions.py"
PUSH_SOURCE: Final = "user_stats_push"
ENTITY_KEYS: Final[Mapping[str, str]] = {"user": "user_id", "response": "response_id"}
"""Entity name -> join key."""
FEATURE_VIEWS: Final[Mapping[str, tuple[str, tuple[str, ...]]]] = {
    USER_STATS_TABLE: ("user", USER_STATS_FEATURES),
    RESPONSE_FEATURES_TABLE: ("response", RESPONSE_FEATURES),
}
"""Feature view name -> (entity, feature names)."""
_OFFLINE_STORE_TYPE: Final = "features.store.feast_offline.BundledDuckDBOfflineStore"  # importing it imports feast


OfflineKind = Literal["duckdb", "spark"]


def feast_objects(
    *, user_stats_path: str, response_features_path: str, offline: OfflineKind = "duckdb"
) -> dict[str, Any]:
    """Build the Feast objects of the repository over the Delta tables at the given absolute paths.

    The generated definitions module and ``apply_repo`` both call this, so the ``feast``
    CLI and the Python API register the same objects.

    Args:
        user_stats_path: Absolute path or object-store URI of the ``user_stats`` table.
        response_features_path: The same for ``response_features``.
        offline: ``duckdb`` builds ``FileSource(file_format=DeltaFormat())`` for the
            (bundled) DuckDB store; ``spark`` builds ``SparkSource(table_format=DeltaFormat())``
            for Feast's Spark store (the scale path, docs/features.md).
    """
    from feast import Entity, FeatureView, Field, PushSource, ValueType
    from feast.types import Bool, Float64, Int64

    def dtype(name: str) -> Any:
        if name in ("love_rate_7d", "reputation"):
            return Float64
        if name in USER_STATS_FEATURES or name.startswith("length_"):
            return Int64
        return Bool

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING,
                  description="A user whose reactions label their own conversations.")
    response = Entity(name="response", join_keys=["response_id"], value_type=ValueType.STRING,
                      description="One assistant answer (one triple).")
    user_src = _delta_source("user_stats_source", user_stats_path, offline,
                             "Delta table user_stats: one row per user per change.")
    push = PushSource(name=PUSH_SOURCE, batch_source=user_src,
                      description="The stream worker pushes fresh user statistics here.")
    user_stats = FeatureView(
        name=USER_STATS_TABLE, entities=[user], ttl=timedelta(0),  # rows carry their own expiry rows
        schema=[Field(name=n, dtype=dtype(n)) for n in USER_STATS_FEATURES], source=push, online=True,
        description="Per-user reactions, Loves, quarantine count and reputation over 1 d / 7 d.",
    )
    resp_src = _delta_source("response_features_source", response_features_path, offline,
                             "Delta table response_features: text features per response.")
    response_features = FeatureView(
        name=RESPONSE_FEATURES_TABLE, entities=[response], ttl=timedelta(0),
        schema=[Field(name=n, dtype=dtype(n)) for n in RESPONSE_FEATURES], source=resp_src, online=True,
        description="Surface features of the response text (length, goodbye, follow-up, refusal, list, markdown).",
    )
    return {
        "user": user, "response": response, "user_stats_source": user_src, "user_stats_push": push,
        "user_stats": user_stats, "response_features_source": resp_src, "response_features": response_features,
    }


def _delta_source(name: str, path: str, offline: OfflineKind, description: str) -> Any:
    if offline == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
        from feast.table_format import DeltaFormat as DeltaTableFormat

        return SparkSource(name=name, path=path, table_format=DeltaTableFormat(), timestamp_field="event_timestamp",
                           created_timestamp_column="created", description=description)
    from feast import FileSource
    from feast.data_format import DeltaFormat

    return FileSource(name=name, path=path, file_format=DeltaFormat(), timestamp_field="event_timestamp",
                      created_timestamp_column="created", description=description)


def feature_table_paths(settings: Settings) -> dict[str, str]:
    """Absolute paths (or object-store URIs) of the Delta tables behind the feature views."""
    root = resolve_root(settings.lake_root)
    return {
        "user_stats_path": table_uri(root, USER_STATS_TABLE),
        "response_features_path": table_uri(root, RESPONSE_FEATURES_TABLE),
    }


_SPARK_OFFLINE: Final = (
    "offline_store:\n"
    "  type: spark\n"
    "  spark_conf:\n"
    "    spark.sql.extensions: io.delta.sql.DeltaSparkSessionExtension\n"
    "    spark.sql.catalog.spark_catalog: org.apache.spark.sql.delta.catalog.DeltaCatalog\n"
    "    spark.sql.session.timeZone: UTC\n"
)


def render_feature_store_yaml(settings: Settings, *, offline: OfflineKind = "duckdb") -> str:
    """Return ``feature_store.yaml`` for ``settings`` (absolute paths throughout)."""
    repo = settings.feature_repo_dir.resolve()
    fs = settings.features
    if fs.online_store == "redis":
        online = f"  type: redis\n  connection_string: {json.dumps(fs.redis_connection_string)}\n"
    else:
        online = f"  type: sqlite\n  path: {json.dumps(str(repo / 'data' / 'online_store.db'))}\n"
    return (
        "# Generated by `rluf features apply` from the rluf settings; edit those, not this file.\n"
        f"project: {fs.project}\n"
        "provider: local\n"
        f"registry: {json.dumps(str(repo / 'data' / 'registry.db'))}\n"
        + (_SPARK_OFFLINE if offline == "spark" else f"offline_store:\n  type: {_OFFLINE_STORE_TYPE}\n")
        + "online_store:\n"
        f"{online}"
        "entity_key_serialization_version: 3\n"
    )


def render_definitions(settings: Settings, *, offline: OfflineKind = "duckdb") -> str:
    """Return the definitions module for the ``feast`` CLI (absolute Delta paths)."""
    p = feature_table_paths(settings)
    names = ["user", "response", "user_stats_source", "user_stats_push", "user_stats",
             "response_features_source", "response_features"]
    body = "\n".join(f"{n} = _objects[{n!r}]" for n in names)
    return (
        '"""Feast definitions of the rluf feature repository.\n\n'
        "Generated by `rluf features apply`; edit the rluf settings, not this file. The objects come\n"
        "from features.store.definitions.feast_objects so the feast CLI and rluf register the same ones.\n"
        '"""\n\n'
        "from features.store.definitions import feast_objects\n\n"
        "_objects = feast_objects(\n"
        f"    user_stats_path={p['user_stats_path']!r},\n"
        f"    response_features_path={p['response_features_path']!r},\n"
        f"    offline={offline!r},\n"
        ")\n"
        f"{body}\n"
    )


def write_repo(settings: Settings, *, offline: OfflineKind = "duckdb") -> Path:
    """Write ``feature_store.yaml`` and the definitions module under ``settings.feature_repo_dir``."""
    repo = settings.feature_repo_dir.resolve()
    (repo / "data").mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(render_feature_store_yaml(settings, offline=offline))
    (repo / DEFINITIONS_FILE).write_text(render_definitions(settings, offline=offline))
    return repo

