"""The Delta feature tables behind the Feast feature views, built from the lake.

Two tables live next to the stream worker's tables under the lake root:

``user_stats``
    One row per user per change of the per-user statistics (``features.store.user_stats``):
    ``user_id``, ``event_timestamp`` (when the values start to hold), ``created`` (when the
    row was written) and the ``USER_STATS_FEATURES``. Rebuilt by recomputing from the
    triples and quarantine tables and overwriting (one Delta commit; time travel keeps the
    previous build), because a late label correction or a replay can change history and a
    full replay of 1M triples takes seconds. The stream worker appends fresh rows between
    rebuilds (``features.store.push.push_user_stats``).

``response_features``
    One row per ``response_id`` with the text features of ``features.store.text_features`` and
    ``event_timestamp`` = the response's ``ts``. Text features cost ~0.1-0.2 ms per
    response, so this table is only ever appended: a build computes the responses not in
    it yet (identical texts once), in parallel processes for large batches.

Every commit records the versions of the source tables it was computed from under the
``rluf.sources`` commit-info key, so a feature build can be traced to a lake snapshot.

Why one module of ~440 lines: both tables are built by one ``build_feature_tables`` call from
one lake snapshot, and share the write path, the source-version bookkeeping and the activity
reader (which the stream worker's push also uses); two modules would split one build.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_all_start_methods, get_context
from typing import Any, Final, Literal

import duckdb
import pyarrow as pa
from deltalake import CommitProperties, write_deltalake

from features.lake.duckdb_lake import attach_table, connect, resolve_root
from features.lake.reader import lake_error, open_table, table_exists
from features.lake.schema import QUARANTINE_TABLE, TRIPLES_TABLE, table_uri
from features.store.text_features import FEATURE_NAMES as TEXT_FEATURE_NAMES
from features.store.text_features import text_features_frame
from features.store.user_stats import (
    USER_STATS_FEATURES,
    Activity,
    UserStatsRow,
    compute_user_stats,
    to_micros,
)
from rluf.records import Landing

__all__ = [
    "RESPONSE_FEATURES",
    "RESPONSE_FEATURES_SCHEMA",
    "RESPONSE_FEATURES_TABLE",
    "SOURCES_METADATA_KEY",
    "USER_STATS_SCHEMA",
    "USER_STATS_TABLE",
    "FeatureBuild",
    "activities_from_landing",
    "build_feature_tables",
    "build_response_features",
    "build_user_stats",
    "ensure_feature_tables",
    "latest_version",
    "read_activities",
    "user_stats_to_arrow",
]

logger = logging.getLogger(__name__)

USER_STATS_TABLE: Final = "user_stats"
RESPONSE_FEATURES_TABLE: Final = "response_features"
SOURCES_METADATA_KEY: Final = "rluf.sources"
RESPONSE_FEATURES: Final[tuple[str, ...]] = TEXT_FEATURE_NAMES
"""Feature columns of ``response_features`` (the text features), in order."""

_TS = pa.timestamp("us", tz="UTC")
USER_STATS_SCHEMA: Final = pa.schema(
    [
        pa.field("user_id", pa.string()),
        pa.field("event_timestamp", _TS),
        pa.field("created", _TS),
        *(
            pa.field(name, pa.float64() if name in ("love_rate_7d", "reputation") else pa.int64())
            for name in USER_STATS_FEATURES
        ),
    ]
)
"""Schema of ``<root>/user_stats``."""

RESPONSE_FEATURES_SCHEMA: Final = pa.schema(
    [
        pa.field("response_id", pa.string()),
        pa.field("event_timestamp", _TS),
        pa.field("created", _TS),
        *(
            pa.field(name, pa.int64() if name.startswith("length_") else pa.bool_())
            for name in TEXT_FEATURE_NAMES
        ),
    ]
)
"""Schema of ``<root>/response_features``."""

_PARALLEL_MIN_TEXTS: Final = 20_000  # below this a process pool costs more than it saves
_CHUNK_TEXTS: Final = 5_000
_ARROW_CHUNK_ROWS: Final = 500_000


@dataclass(frozen=True, slots=True)
class FeatureBuild:
    """What a feature build did.

    Attributes:
        user_stats_rows: Rows written to ``user_stats`` (the whole table).
        response_features_added: Rows appended to ``response_features``.
        sources: Versions of the lake tables read (None: the table does not exist yet).
        versions: Versions of the feature tables after the build.
        seconds: Wall time per step.
    """

    user_stats_rows: int
    response_features_added: int
    sources: dict[str, int | None]
    versions: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)


def latest_version(root: str, name: str, *, storage_options: Mapping[str, str] | None = None) -> int | None:
    """Return the newest version of table ``name``, or None when it does not exist."""
    if not table_exists(root, name, storage_options=storage_options):
        return None
    return open_table(root, name, storage_options=storage_options).version()


def _write(
    root: str,
    name: str,
    data: pa.Table | pa.RecordBatchReader,
    *,
    mode: Literal["append", "overwrite"],
    sources: Mapping[str, int | None],
    storage_options: Mapping[str, str] | None,
) -> int:
    uri = table_uri(resolve_root(root), name)
    props = CommitProperties(custom_metadata={SOURCES_METADATA_KEY: json.dumps(dict(sources), sort_keys=True)})
    try:
        write_deltalake(  # type: ignore[call-overload]
            uri,
            data,
            mode=mode,
            storage_options=dict(storage_options or {}) or None,
            commit_properties=props,
        )
    except Exception as exc:  # delta-rs raises plain Exception for some failures
        raise lake_error(exc, uri=uri, action=f"{mode} to") from exc
    version = open_table(root, name, storage_options=storage_options).version()
    return int(version)


def ensure_feature_tables(root: str, *, storage_options: Mapping[str, str] | None = None) -> dict[str, int]:
    """Create the feature tables empty where they do not exist yet; return their versions.

    Feast's offline store and the training-set join read them unconditionally, so a
    repository applied before any data landed must still find valid (empty) tables.
    """
    versions: dict[str, int] = {}
    for name, schema in ((USER_STATS_TABLE, USER_STATS_SCHEMA), (RESPONSE_FEATURES_TABLE, RESPONSE_FEATURES_SCHEMA)):
        v = latest_version(root, name, storage_options=storage_options)
        if v is None:
            v = _write(root, name, schema.empty_table(), mode="append", sources={}, storage_options=storage_options)
            logger.info("created empty feature table %s", table_uri(root, name))
        versions[name] = v
    return versions


# --------------------------------------------------------------------------- activity


def read_activities(
    con: duckdb.DuckDBPyConnection, *, triples: str | None, quarantine: str | None
) -> tuple[list[Activity], int | None]:
    """Read every user's activity from attached tables, sorted by ``(user_id, ts)``.

    Args:
        con: A connection from ``features.lake.duckdb_lake.connect``.
        triples: Alias of the attached triples table (None: no triples yet).
        quarantine: Alias of the attached quarantine table (None: none yet).

    Returns:
        The activity and the newest activity time (µs), the watermark up to which the
        batch emits expiries; None when there is no activity.
    """
    parts = []
    if triples:
        parts.append(
            f"SELECT user_id, epoch_us(window_closed_at) AS ts, 0 AS q, "
            f"coalesce(list_sum(map_values(reactions)), 0)::BIGINT AS r, label::BIGINT AS lv FROM {triples}"
        )
    if quarantine:
        parts.append(
            f"SELECT user_id, epoch_us(coalesce(event_ts, quarantined_at)) AS ts, 1 AS q, 0::BIGINT AS r, "
            f"0::BIGINT AS lv FROM {quarantine} WHERE user_id IS NOT NULL AND event_type = 'reaction'"
        )
    if not parts:
        return [], None
    table = con.execute(" UNION ALL ".join(parts) + " ORDER BY user_id, ts, q").fetch_arrow_table()
    if table.num_rows == 0:
        return [], None
    users = table.column("user_id").to_pylist()
    ts = table.column("ts").to_pylist()
    q = table.column("q").to_pylist()
    r = table.column("r").to_pylist()
    lv = table.column("lv").to_pylist()
    out = [
        Activity(u, t, "quarantined", 0, False) if qq else Activity(u, t, "window", rr, bool(ll))
        for u, t, qq, rr, ll in zip(users, ts, q, r, lv, strict=True)
    ]
    return out, max(ts)


def activities_from_landing(landing: Landing) -> list[Activity]:
    """Return the activity in one landed batch of the stream worker (for ``RollingUserStats``).

    The same rules as ``read_activities``: a triple is a closed window at
    ``window_closed_at``; a quarantined reaction with a user counts at its event time.
    """
    acts = [
        Activity(t.user_id, to_micros(t.window_closed_at), "window", sum(t.reactions.values()), t.label == 1)
        for t in landing.triples
    ]
    acts.extend(
        Activity(q.user_id, to_micros(q.event_ts or q.quarantined_at), "quarantined")
        for q in landing.quarantine
        if q.user_id is not None and q.event_type == "reaction"
    )
    return acts


# --------------------------------------------------------------------------- user_stats


def user_stats_to_arrow(rows: Sequence[UserStatsRow], *, created: datetime) -> pa.Table:
    """Convert user statistics rows to a table with ``USER_STATS_SCHEMA``."""
    return pa.Table.from_batches([_user_stats_batch(rows, created_us=to_micros(created))], schema=USER_STATS_SCHEMA)


def _user_stats_batch(rows: Sequence[UserStatsRow], *, created_us: int) -> pa.RecordBatch:
    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in range(10)]
    n = len(rows)
    arrays = [
        pa.array(cols[0], pa.string()),
        pa.array(cols[1], pa.int64()).cast(_TS),
        pa.array([created_us] * n, pa.int64()).cast(_TS),
    ]
    for i, f in enumerate(list(USER_STATS_SCHEMA)[3:]):
        arrays.append(pa.array(cols[2 + i], f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=USER_STATS_SCHEMA)


def _chunked(rows: Iterable[UserStatsRow], size: int) -> Iterator[list[UserStatsRow]]:
    chunk: list[UserStatsRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build_user_stats(
    root: str,
    *,
    triples_version: int | None = None,
    quarantine_version: int | None = None,
    created: datetime | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> tuple[int, int, dict[str, int | None]]:
    """Recompute ``user_stats`` from the lake and overwrite it.

    Args:
        root: Lake root.
        triples_version: Triples version to read; the newest if None.
        quarantine_version: Quarantine version to read; the newest if None.
        created: The ``created`` stamp of every row; now if None.
        storage_options: Object-store options.

    Returns:
        Rows written, the new table version, and the source versions read.
    """
    sources = {
        TRIPLES_TABLE: triples_version
        if triples_version is not None
        else latest_version(root, TRIPLES_TABLE, storage_options=storage_options),
        QUARANTINE_TABLE: quarantine_version
        if quarantine_version is not None
        else latest_version(root, QUARANTINE_TABLE, storage_options=storage_options),
    }
    created_us = to_micros(created or datetime.now(UTC))
    con = connect(storage_options=storage_options)
    try:
        aliases: dict[str, str | None] = {}
        for name, alias in ((TRIPLES_TABLE, "src_triples"), (QUARANTINE_TABLE, "src_quarantine")):
            v = sources[name]
            if v is None:
                aliases[name] = None
            else:
                attach_table(con, alias, root, name, version=v)
                aliases[name] = alias
        activities, until = read_activities(con, triples=aliases[TRIPLES_TABLE], quarantine=aliases[QUARANTINE_TABLE])
    finally:
        con.close()
    rows = compute_user_stats(activities, until=until)
    batches = [_user_stats_batch(chunk, created_us=created_us) for chunk in _chunked(rows, _ARROW_CHUNK_ROWS)]
    del activities
    table = pa.Table.from_batches(batches, schema=USER_STATS_SCHEMA)
    version = _write(root, USER_STATS_TABLE, table, mode="overwrite", sources=sources, storage_options=storage_options)
    logger.info("user_stats: %d rows (version %d) from %s", table.num_rows, version, sources)
    return table.num_rows, version, sources


# --------------------------------------------------------------------------- response_features


def _features_chunk(texts: list[str]) -> dict[str, list[int | bool]]:
    return text_features_frame(texts)


def _text_feature_columns(texts: list[str], *, workers: int) -> dict[str, list[Any]]:
    if workers <= 1 or len(texts) < _PARALLEL_MIN_TEXTS:
        return dict(text_features_frame(texts))
    chunks = [texts[i : i + _CHUNK_TEXTS] for i in range(0, len(texts), _CHUNK_TEXTS)]
    out: dict[str, list[Any]] = {name: [] for name in TEXT_FEATURE_NAMES}
    # fork where there is one: spawn would re-run the caller's __main__ in every worker (a
    # script without a main guard would recurse). The workers only run pure-Python regexes,
    # so the DuckDB/delta-rs threads this process may hold are never needed in a child.
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context(method)) as pool:
        for part in pool.map(_features_chunk, chunks):
            for name in TEXT_FEATURE_NAMES:
                out[name].extend(part[name])
    return out


def build_response_features(
    root: str,
    *,
    triples_version: int | None = None,
    created: datetime | None = None,
    workers: int | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> tuple[int, int, dict[str, int | None]]:
    """Append the text features of responses not in ``response_features`` yet.

    Args:
        root: Lake root.
        triples_version: Triples version to read; the newest if None.
        created: The ``created`` stamp of the new rows; now if None.
        workers: Processes for the text features; the CPU count if None.
        storage_options: Object-store options.

    Returns:
        Rows appended, the table version after the build, and the source versions read.
    """
    ensure_feature_tables(root, storage_options=storage_options)
    tv = triples_version if triples_version is not None else latest_version(
        root, TRIPLES_TABLE, storage_options=storage_options
    )
    sources: dict[str, int | None] = {TRIPLES_TABLE: tv}
    current = latest_version(root, RESPONSE_FEATURES_TABLE, storage_options=storage_options)
    assert current is not None
    if tv is None:
        return 0, current, sources
    con = connect(storage_options=storage_options)
    try:
        attach_table(con, "src_triples", root, TRIPLES_TABLE, version=tv)
        attach_table(con, "have", root, RESPONSE_FEATURES_TABLE, version=current)
        new = con.execute(
            "SELECT t.response_id, epoch_us(t.ts) AS ts, t.response FROM src_triples t "
            "ANTI JOIN have h ON t.response_id = h.response_id "
            "QUALIFY row_number() OVER (PARTITION BY t.response_id ORDER BY t.ts) = 1 "
            "ORDER BY t.ts, t.response_id"
        ).fetch_arrow_table()
        con.register("new_rows", new)
        distinct = con.execute("SELECT DISTINCT response FROM new_rows").fetch_arrow_table().column(0).to_pylist()
    finally:
        con.close()
    if new.num_rows == 0:
        return 0, current, sources
    texts = [t if isinstance(t, str) else "" for t in distinct]
    feats = _text_feature_columns(texts, workers=workers or os.cpu_count() or 1)
    index = {t: i for i, t in enumerate(distinct)}
    pos = [index[t] for t in new.column("response").to_pylist()]
    created_us = to_micros(created or datetime.now(UTC))
    arrays = [
        new.column("response_id"),
        new.column("ts").cast(pa.int64()).cast(_TS),
        pa.array([created_us] * new.num_rows, pa.int64()).cast(_TS),
    ]
    for f in list(RESPONSE_FEATURES_SCHEMA)[3:]:
        col = feats[f.name]
        arrays.append(pa.array([col[i] for i in pos], f.type))
    table = pa.Table.from_arrays(arrays, schema=RESPONSE_FEATURES_SCHEMA)
    version = _write(root, RESPONSE_FEATURES_TABLE, table, mode="append", sources=sources,
                     storage_options=storage_options)
    logger.info("response_features: +%d rows (%d distinct texts), version %d", table.num_rows, len(texts), version)
    return table.num_rows, version, sources


def build_feature_tables(
    root: str,
    *,
    created: datetime | None = None,
    workers: int | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> FeatureBuild:
    """Bring both feature tables up to date with the newest lake (``rluf features materialize`` runs it first).

    ``user_stats`` is recomputed and overwritten; ``response_features`` gets the new
    responses appended.
    """
    t0 = time.perf_counter()
    n_user, v_user, sources = build_user_stats(root, created=created, storage_options=storage_options)
    t1 = time.perf_counter()
    n_resp, v_resp, _ = build_response_features(
        root, triples_version=sources[TRIPLES_TABLE], created=created, workers=workers,
        storage_options=storage_options,
    )
    t2 = time.perf_counter()
    return FeatureBuild(
        user_stats_rows=n_user,
        response_features_added=n_resp,
        sources=sources,
        versions={USER_STATS_TABLE: v_user, RESPONSE_FEATURES_TABLE: v_resp},
        seconds={USER_STATS_TABLE: t1 - t0, RESPONSE_FEATURES_TABLE: t2 - t1},
    )
