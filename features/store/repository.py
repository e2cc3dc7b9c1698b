"""The Feast repository as a running store: open it, apply it, materialize it.

``apply_repo`` generates the repository files (``features.store.definitions``) and registers
its objects; ``materialize`` rebuilds the Delta feature tables from the lake and loads the
online store. Serving (``features.store.serving``) and the stream worker's push
(``features.store.push``) open the store through ``open_store``.

``import feast`` takes seconds, so this module imports it only when a store is opened.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from features.lake.duckdb_lake import attach_table, connect
from features.lake.reader import lake_error
from features.store.definitions import (
    ENTITY_KEYS,
    FEATURE_VIEWS,
    PUSH_SOURCE,
    OfflineKind,
    feast_objects,
    feature_table_paths,
    write_repo,
)
from features.store.feature_tables import (
    RESPONSE_FEATURES_TABLE,
    USER_STATS_TABLE,
    build_feature_tables,
    ensure_feature_tables,
    latest_version,
)
from rluf.errors import ConfigError, RlufError
from rluf.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = ["ApplySummary", "MaterializeSummary", "apply_repo", "materialize", "open_store", "store_for"]

logger = logging.getLogger(__name__)


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



def store_for(target: Settings | FeatureStore) -> FeatureStore:
    """Return ``target`` when it is an open store, else open the repository of the settings ``target``."""
    return open_store(target) if isinstance(target, Settings) else target


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
    paths = feature_table_paths(settings)
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
        tables=feature_table_paths(settings),
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
        raise lake_error(exc, uri=feature_table_paths(settings)["user_stats_path"], action="materialize from") from exc
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
