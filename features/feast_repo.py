"""The Feast feature repository: generation, apply, materialize, online/offline queries, push, reputation.

``rluf features apply`` writes ``<feature_repo_dir>/feature_store.yaml`` and a definitions
module (``rluf_definitions.py``, absolute Delta paths: Feast's DuckDB store resolves
relative paths against the working directory, not the repository) and registers:

* entities ``user`` (join key ``user_id``) and ``response`` (``response_id``);
* feature view ``user_stats`` over the Delta table of the same name, fed by the push
  source ``user_stats_push`` (its batch source is the same Delta table, so materialize
  and historical retrieval read what the stream worker appended);
* feature view ``response_features`` (text features, one row per response).

The offline store is Feast's DuckDB store with the bundled ``delta`` extension
(``features.feast_offline``); the online store is SQLite under the repository, or Redis
when ``features.online_store`` says so (see docs/features.md for the scale path).

Feast's ``push(to=OFFLINE)`` cannot write a Delta source with deltalake >= 1.0, so
``push_user_stats`` appends to the Delta table with deltalake and pushes to the online
store only; historical retrieval sees the appended rows at once.

``import feast`` takes seconds, so this module imports it lazily: the stream worker can
import ``features.reputation.ReputationLookup`` (re-exported here) without paying for it until it
actually opens a store.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import pandas as pd

from features.feature_tables import (
    RESPONSE_FEATURES,
    RESPONSE_FEATURES_TABLE,
    USER_STATS_TABLE,
    activities_from_landing,
    build_feature_tables,
    ensure_feature_tables,
    user_stats_to_arrow,
)
from features.lake.duckdb_lake import resolve_root
from features.lake.reader import lake_error
from features.lake.schema import table_uri
from features.reputation import OnlineFeatureSource, ReputationLookup
from features.user_stats import USER_STATS_FEATURES, RollingUserStats, UserStatsRow, to_micros
from rluf.errors import ConfigError, InputFileError, RlufError
from rluf.records import Landing
from rluf.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = [
    "DEFINITIONS_FILE",
    "ENTITY_KEYS",
    "FEATURE_VIEWS",
    "PUSH_SOURCE",
    "ApplySummary",
    "MaterializeSummary",
    "OnlineFeatureSource",
    "OfflineKind",
    "ReputationLookup",
    "UserStatsPusher",
    "apply_repo",
    "feast_objects",
    "feature_refs",
    "format_rows",
    "get_offline",
    "get_online",
    "materialize",
    "open_store",
    "push_user_stats",
    "read_entity_file",
    "render_definitions",
    "render_feature_store_yaml",
    "write_repo",
]

logger = logging.getLogger(__name__)

DEFINITIONS_FILE: Final = "rluf_definitions.py"
PUSH_SOURCE: Final = "user_stats_push"
ENTITY_KEYS: Final[Mapping[str, str]] = {"user": "user_id", "response": "response_id"}
"""Entity name -> join key."""
FEATURE_VIEWS: Final[Mapping[str, tuple[str, tuple[str, ...]]]] = {
    USER_STATS_TABLE: ("user", USER_STATS_FEATURES),
    RESPONSE_FEATURES_TABLE: ("response", RESPONSE_FEATURES),
}
"""Feature view name -> (entity, feature names)."""
_OFFLINE_STORE_TYPE: Final = "features.feast_offline.BundledDuckDBOfflineStore"  # importing it imports feast


# --------------------------------------------------------------------------- definitions


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


def _paths(settings: Settings) -> dict[str, str]:
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
    p = _paths(settings)
    names = ["user", "response", "user_stats_source", "user_stats_push", "user_stats",
             "response_features_source", "response_features"]
    body = "\n".join(f"{n} = _objects[{n!r}]" for n in names)
    return (
        '"""Feast definitions of the rluf feature repository.\n\n'
        "Generated by `rluf features apply`; edit the rluf settings, not this file. The objects come\n"
        "from features.feast_repo.feast_objects so the feast CLI and rluf register the same ones.\n"
        '"""\n\n'
        "from features.feast_repo import feast_objects\n\n"
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


def open_store(settings: Settings) -> FeatureStore:
    """Open the applied repository.

    Raises:
        ConfigError: the repository was not generated yet.
    """
    repo = settings.feature_repo_dir.resolve()
    if not (repo / "feature_store.yaml").is_file():
        raise ConfigError(f"no feature repository at {repo}", "run `rluf features apply` first")
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo))


def _store(target: Settings | FeatureStore) -> FeatureStore:
    return open_store(target) if isinstance(target, Settings) else target


# --------------------------------------------------------------------------- apply / materialize


@dataclass(frozen=True, slots=True)
class ApplySummary:
    """What ``apply_repo`` registered."""

    repo_dir: str
    project: str
    online_store: str
    entities: list[str]
    feature_views: dict[str, list[str]]
    push_sources: list[str]
    tables: dict[str, str]
    table_versions: dict[str, int]


def apply_repo(settings: Settings, *, offline: OfflineKind = "duckdb") -> ApplySummary:
    """Generate the repository and register its objects (``rluf features apply``).

    Creates the feature tables empty when they do not exist, so the offline store can
    be queried before the first ``materialize``.

    Args:
        settings: Repository directory, lake root, online store choice.
        offline: ``duckdb`` (default, bundled) or ``spark`` (the scale path; needs
            ``pip install rluf[spark]`` and the Delta JARs, see docs/features.md).
    """
    root = settings.lake_root
    opts = settings.lake.storage_options
    versions = ensure_feature_tables(root, storage_options=opts)
    repo = write_repo(settings, offline=offline)
    store = open_store(settings)
    paths = _paths(settings)
    objects = feast_objects(user_stats_path=paths["user_stats_path"],
                            response_features_path=paths["response_features_path"], offline=offline)
    store.apply(list(objects.values()))
    summary = ApplySummary(
        repo_dir=str(repo),
        project=settings.features.project,
        online_store=settings.features.online_store,
        entities=list(ENTITY_KEYS),
        feature_views={name: list(feats) for name, (_, feats) in FEATURE_VIEWS.items()},
        push_sources=[PUSH_SOURCE],
        tables=_paths(settings),
        table_versions=versions,
    )
    logger.info("applied feature repository %s (%s online store)", repo, summary.online_store)
    return summary


@dataclass(frozen=True, slots=True)
class MaterializeSummary:
    """What ``materialize`` did."""

    start: datetime
    end: datetime
    feature_views: list[str]
    refreshed: bool
    user_stats_rows: int = 0
    response_features_added: int = 0
    table_versions: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _newest_event(settings: Settings) -> datetime | None:
    from features.feature_tables import latest_version
    from features.lake.duckdb_lake import attach_table, connect

    con = connect(storage_options=settings.lake.storage_options)
    newest: datetime | None = None
    try:
        for name in (USER_STATS_TABLE, RESPONSE_FEATURES_TABLE):
            v = latest_version(settings.lake_root, name, storage_options=settings.lake.storage_options)
            if v is None:
                continue
            attach_table(con, f"t_{name}", settings.lake_root, name, version=v)
            row = con.execute(f"SELECT max(event_timestamp) FROM t_{name}").fetchone()
            if row and row[0] is not None:
                ts = row[0] if row[0].tzinfo else row[0].replace(tzinfo=UTC)
                newest = ts if newest is None or ts > newest else newest
    finally:
        con.close()
    return newest


def materialize(
    settings: Settings,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    refresh: bool = True,
    feature_views: Sequence[str] | None = None,
    now: datetime | None = None,
) -> MaterializeSummary:
    """Rebuild the feature tables from the lake and load ``[start, end]`` into the online store.

    Args:
        settings: The settings (repository, lake).
        start: Oldest event time to load; the epoch if None (a full backfill:
            ``materialize_incremental`` would start at now - ttl and skip older rows).
        end: Newest event time to load; the later of now and the newest feature row.
        refresh: Rebuild the Delta feature tables first (``build_feature_tables``).
        feature_views: Views to load; all if None.
        now: Wall-clock time used for the default ``end`` (tests pass a fixed one).
    """
    store = open_store(settings)  # fails fast, before the rebuild, when `apply` never ran
    build = build_feature_tables(settings.lake_root, storage_options=settings.lake.storage_options) if refresh else None
    t1 = time.perf_counter()
    start = start or datetime(1970, 1, 1, tzinfo=UTC)
    if end is None:
        end = now or datetime.now(UTC)
        newest = _newest_event(settings)
        if newest is not None and newest >= end:
            end = newest + timedelta(seconds=1)
    views = list(feature_views) if feature_views else list(FEATURE_VIEWS)
    try:
        store.materialize(start_date=start, end_date=end, feature_views=views)
    except RlufError:
        raise
    except Exception as exc:
        raise lake_error(exc, uri=_paths(settings)["user_stats_path"], action="materialize from") from exc
    t2 = time.perf_counter()
    seconds = {"materialize": t2 - t1}
    if build:
        seconds.update(build.seconds)
    return MaterializeSummary(
        start=start, end=end, feature_views=views, refreshed=build is not None,
        user_stats_rows=build.user_stats_rows if build else 0,
        response_features_added=build.response_features_added if build else 0,
        table_versions=dict(build.versions) if build else {}, seconds=seconds,
    )


# --------------------------------------------------------------------------- queries


def feature_refs(entity: str | None = None, features: Sequence[str] | None = None) -> list[str]:
    """Return ``view:feature`` references: ``features`` as given (bare names resolved), or all of ``entity``'s.

    Raises:
        ConfigError: an unknown entity or feature name.
    """
    views = [v for v, (e, _) in FEATURE_VIEWS.items() if entity is None or e == entity]
    if entity is not None and entity not in ENTITY_KEYS:
        raise ConfigError(f"unknown entity {entity!r}", f"use one of {', '.join(ENTITY_KEYS)}")
    if not features:
        return [f"{v}:{f}" for v in views for f in FEATURE_VIEWS[v][1]]
    refs = []
    for name in features:
        if ":" in name:
            view, feat = name.split(":", 1)
            if view not in FEATURE_VIEWS or feat not in FEATURE_VIEWS[view][1]:
                raise ConfigError(f"unknown feature {name!r}", "see `rluf features apply` for the list")
            refs.append(name)
            continue
        owners = [v for v in views if name in FEATURE_VIEWS[v][1]]
        if not owners:
            raise ConfigError(f"unknown feature {name!r}", f"features of {entity or 'any entity'}: "
                              + ", ".join(f for v in views for f in FEATURE_VIEWS[v][1]))
        refs.append(f"{owners[0]}:{name}")
    return refs


def get_online(
    target: Settings | FeatureStore, entity: str, keys: Sequence[str], features: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Return the online feature values of ``keys`` of ``entity`` (``rluf features query --online``).

    Returns:
        One dict per key, in order: the join key and each feature (None where unknown).
    """
    refs = feature_refs(entity, features)
    join_key = ENTITY_KEYS[entity]
    store = _store(target)
    resp = store.get_online_features(features=refs, entity_rows=[{join_key: str(k)} for k in keys]).to_dict()
    cols = [join_key] + [r.split(":", 1)[1] for r in refs]
    return [{c: resp[c][i] for c in cols} for i in range(len(keys))]


def get_offline(
    target: Settings | FeatureStore, entity_df: pd.DataFrame, features: Sequence[str] | None = None
) -> pd.DataFrame:
    """Point-in-time join of ``entity_df`` with the feature views (Feast historical retrieval).

    Args:
        target: Settings or an open store.
        entity_df: ``event_timestamp`` plus ``user_id`` and/or ``response_id``; each row
            gets the newest feature row at or before its timestamp.
        features: Feature names or ``view:feature`` refs; all features of the entities
            whose join keys are present if None.

    Raises:
        InputFileError: ``entity_df`` lacks ``event_timestamp`` or any join key.
    """
    if "event_timestamp" not in entity_df.columns:
        raise InputFileError("entity rows", "needs an event_timestamp column")
    entities = [e for e, k in ENTITY_KEYS.items() if k in entity_df.columns]
    if not entities:
        raise InputFileError("entity rows", f"needs a join key column ({', '.join(ENTITY_KEYS.values())})")
    refs = [r for e in entities for r in feature_refs(e)] if not features else feature_refs(None, features)
    df = entity_df.copy()
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    for e in entities:
        df[ENTITY_KEYS[e]] = df[ENTITY_KEYS[e]].astype(str)
    store = _store(target)
    return store.get_historical_features(entity_df=df, features=refs).to_df()


def read_entity_file(path: Path) -> pd.DataFrame:
    """Read an entity file for an offline query: CSV or parquet with ``event_timestamp`` and join keys.

    Raises:
        InputFileError: missing, unreadable, or of another format.
    """
    if not path.is_file():
        raise InputFileError(str(path), "no such entity file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if path.suffix.lower() in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",",
                               dtype={k: str for k in ENTITY_KEYS.values()})
    except Exception as exc:  # pandas raises several unrelated types for bad files
        raise InputFileError(str(path), f"cannot read entity rows ({str(exc).splitlines()[0]})") from exc
    raise InputFileError(str(path), "entity file must be .csv, .tsv or .parquet")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def format_rows(rows: Sequence[Mapping[str, Any]] | pd.DataFrame, *, fmt: Literal["table", "json"] = "table") -> str:
    """Render query results as an aligned text table or as JSON (one array of objects).

    The CLI prints the result; keeping the rendering here lets tests check it.
    """
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else [dict(r) for r in rows]
    records = [{k: _jsonable(v) for k, v in r.items()} for r in records]
    if fmt == "json":
        return json.dumps(records, indent=2, default=str)
    if not records:
        return "(no rows)"
    cols = list(records[0])
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells)
    return "\n".join(lines)


# --------------------------------------------------------------------------- push


def push_user_stats(
    target: Settings | FeatureStore,
    rows: Sequence[UserStatsRow],
    *,
    lake_root: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    created: datetime | None = None,
) -> int:
    """Append user statistics rows to the Delta table and push the newest per user online.

    Args:
        target: Settings, or an open store (then ``lake_root`` is required).
        rows: Rows from ``RollingUserStats``.
        lake_root: Lake root when ``target`` is a store.
        storage_options: Object-store options when ``target`` is a store.
        created: The rows' ``created`` stamp; now if None.

    Returns:
        Rows appended to Delta.
    """
    if not rows:
        return 0
    if isinstance(target, Settings):
        root, opts = target.lake_root, target.lake.storage_options
    else:
        if lake_root is None:
            raise ValueError("lake_root is required when pushing through an open store")
        root, opts = lake_root, dict(storage_options or {})
    from deltalake import write_deltalake

    table = user_stats_to_arrow(rows, created=created or datetime.now(UTC))
    uri = table_uri(resolve_root(root), USER_STATS_TABLE)
    try:
        write_deltalake(uri, table, mode="append", storage_options=dict(opts) or None)
    except Exception as exc:  # delta-rs raises plain Exception for some failures
        raise lake_error(exc, uri=uri, action="append to") from exc
    frame = table.to_pandas()
    newest = frame.sort_values(["user_id", "event_timestamp", "created"]).drop_duplicates("user_id", keep="last")
    from feast.data_source import PushMode

    _store(target).push(PUSH_SOURCE, newest.reset_index(drop=True), to=PushMode.ONLINE)
    logger.debug("pushed %d user-stat rows (%d users)", len(rows), len(newest))
    return len(rows)


class UserStatsPusher:
    """Stream-worker hook: keeps ``RollingUserStats`` over landed batches and pushes what changed.

    Call ``restore`` once at start (replays the last 7 days of the lake without pushing),
    then ``on_landing`` after each successful ``DeltaLandingSink.land`` with the batch and
    the watermark.
    """

    def __init__(self, settings: Settings, *, store: FeatureStore | None = None) -> None:
        self._settings = settings
        self._store = store
        self._stats = RollingUserStats()

    @property
    def store(self) -> FeatureStore:
        if self._store is None:
            self._store = open_store(self._settings)
        return self._store

    def restore(self) -> int:
        """Replay the last 7 days of lake activity into the state; return the activities read."""
        from features.feature_tables import latest_version, read_activities
        from features.lake.duckdb_lake import attach_table, connect
        from features.lake.schema import QUARANTINE_TABLE, TRIPLES_TABLE

        root, opts = self._settings.lake_root, self._settings.lake.storage_options
        con = connect(storage_options=opts)
        try:
            aliases: dict[str, str | None] = {}
            for name in (TRIPLES_TABLE, QUARANTINE_TABLE):
                v = latest_version(root, name, storage_options=opts)
                aliases[name] = None if v is None else f"r_{name}"
                if v is not None:
                    attach_table(con, f"r_{name}", root, name, version=v)
            acts, until = read_activities(con, triples=aliases[TRIPLES_TABLE], quarantine=aliases[QUARANTINE_TABLE])
        finally:
            con.close()
        if until is None:
            return 0
        from features.user_stats import WEEK_US

        recent = [a for a in acts if a.ts > until - WEEK_US]
        recent.sort(key=lambda a: (a.ts, a.user_id))
        self._stats = RollingUserStats()
        for _ in self._stats.observe_sorted(iter(recent)):
            pass
        self._stats.advance(until)
        return len(recent)

    def on_landing(self, landing: Landing, *, watermark: datetime | None = None) -> int:
        """Count a landed batch, advance to ``watermark`` and push the changed rows; return rows pushed."""
        rows = self._stats.observe(activities_from_landing(landing))
        if watermark is not None:
            rows.extend(self._stats.advance(to_micros(watermark)))
        return push_user_stats(self.store, rows, lake_root=self._settings.lake_root,
                               storage_options=self._settings.lake.storage_options)
