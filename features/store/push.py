"""The stream worker's push: fresh user statistics into Delta and the online store.

Feast's ``push(to=OFFLINE)`` cannot write a Delta source with deltalake >= 1.0, so
``push_user_stats`` appends to the Delta table with deltalake and pushes to the online
store only; historical retrieval sees the appended rows at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from features.lake.duckdb_lake import attach_table, connect, resolve_root
from features.lake.reader import lake_error
from features.lake.schema import QUARANTINE_TABLE, TRIPLES_TABLE, table_uri
from features.store.definitions import PUSH_SOURCE
from features.store.feature_tables import (
    USER_STATS_TABLE,
    activities_from_landing,
    latest_version,
    read_activities,
    user_stats_to_arrow,
)
from features.store.repository import open_store, store_for
from features.store.user_stats import WEEK_US, RollingUserStats, UserStatsRow, to_micros
from rluf.records import Landing
from rluf.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = ["UserStatsPusher", "push_user_stats"]

logger = logging.getLogger(__name__)


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

    store_for(target).push(PUSH_SOURCE, newest.reset_index(drop=True), to=PushMode.ONLINE)
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
