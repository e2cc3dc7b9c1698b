"""Point-in-time-correct training sets: triples ⨝ features, label corrections applied, split without leaks.

A training set is read at pinned Delta versions of four tables (triples, label_corrections,
user_stats, response_features), and those versions go into its manifest, so it can be
rebuilt later by time travel (``rebuild_training_set``) and compared by content hash.

Point in time. Each triple gets the user statistics of the newest ``user_stats`` row
*strictly before* its ``window_closed_at``, the moment its label became known: the row at
exactly that instant already counts the triple's own label (its window closed then), so
taking it would leak the label into its own features. This is Feast's point-in-time rule
(newest ``event_timestamp`` at or before the entity timestamp, ties broken by the newest
``created``) applied at ``window_closed_at - 1 µs``; a test checks that Feast's
``get_historical_features`` gives the same values. Response features are joined the same
way (their ``event_timestamp`` is the response time, always earlier).

Why DuckDB and not Feast for the join. Feast's DuckDB offline store does the
point-in-time join as an inner join on the entity key followed by a window dedup, i.e. it
pairs every triple with every earlier stats row of its user: for 1M triples over 10k users
with ~240 stats rows each that is ~10^8 intermediate rows, minutes and gigabytes on two
cores. DuckDB's ``ASOF JOIN`` does the same lookup with a sort-merge in seconds, reads the
Delta tables with the same extension, and writes the parquet file itself, so no row passes
through Python. Feast stays the interface for online lookups, materialize and ad-hoc
offline queries (``features.store.serving``).

Label corrections. The newest correction per response (by ``reaction_ts``, then source
offset: the same rule as the landing sink's restore) replaces the label at close.

Splits. Conversations are ordered by their first response time (ties broken by a seeded
hash of the conversation id) and cut by cumulative triple count: the oldest
``split[0]`` of the triples go to ``train``, the next ``split[1]`` to ``validation``, the
newest to ``test``. A conversation is assigned as a whole, to the split where its first
triple falls, so none spans two splits, and every test conversation started after every
train conversation.

Why one module of ~500 lines: a build is one DuckDB statement (``_build_sql``) plus the checks
around it (pinned versions, no leak, the manifest), and the rules above are what that statement
does; split apart, the SQL and the reasons it is correct would have to be read side by side.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import duckdb
import pandas as pd

from features.lake.duckdb_lake import attach_table, connect, resolve_root
from features.lake.reader import history
from features.lake.schema import CORRECTIONS_TABLE, TRIPLES_TABLE
from features.store.feature_tables import (
    RESPONSE_FEATURES,
    RESPONSE_FEATURES_TABLE,
    USER_STATS_TABLE,
    build_response_features,
    build_user_stats,
    latest_version,
)
from features.store.user_stats import PRIOR_ACCEPTED, USER_STATS_FEATURES
from rluf.errors import DataQualityError, InputFileError, TableMissingError
from rluf.settings import Settings

__all__ = [
    "BASE_COLUMNS",
    "DATA_FILE",
    "FEATURE_COLUMNS",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "SPLITS",
    "TrainingSet",
    "build_training_set",
    "rebuild_training_set",
]

logger = logging.getLogger(__name__)

DATA_FILE: Final = "training_set.parquet"
MANIFEST_FILE: Final = "manifest.json"
MANIFEST_FORMAT: Final = "rluf.training_set/1"
SPLITS: Final[tuple[str, str, str]] = ("train", "validation", "test")
BASE_COLUMNS: Final[tuple[str, ...]] = (
    "response_id", "conversation_id", "user_id", "context", "response", "label", "weight", "split",
    "window_closed_at", "policy_version", "ts", "label_at_close", "corrected",
)
"""Columns before the features: what the trainer reads, plus provenance of the label."""
FEATURE_COLUMNS: Final[tuple[str, ...]] = USER_STATS_FEATURES + RESPONSE_FEATURES
"""Feature columns, user statistics first."""

# Values of a user with no activity before the label time (Feast would return NULL).
_NEW_USER: Final[Mapping[str, str]] = {
    **{name: "0" for name in USER_STATS_FEATURES},
    "love_rate_7d": "0.0",
    "reputation": "1.0",
}
assert PRIOR_ACCEPTED > 0  # the new-user reputation is 1.0 only with a positive prior


@dataclass(frozen=True, slots=True)
class TrainingSet:
    """A training set on disk.

    Attributes:
        path: The parquet file (all splits; a ``split`` column tells them apart).
        manifest_path: The JSON manifest beside it.
        manifest: Its content: Delta versions read, rows and base rate per split, features.
    """

    path: Path
    manifest_path: Path
    manifest: dict[str, Any]

    @property
    def versions(self) -> dict[str, int | None]:
        """Delta versions the set was read at, per table."""
        return dict(self.manifest["versions"])

    @property
    def rows(self) -> dict[str, int]:
        """Rows per split, and ``total``."""
        return dict(self.manifest["rows"])

    @property
    def content_hash(self) -> str:
        """Order-independent hash of every row (DuckDB ``hash``); equal for a faithful rebuild."""
        return str(self.manifest["content_hash"])

    def frame(self, split: str | None = None) -> pd.DataFrame:
        """Read the rows (of one split) into a DataFrame."""
        frame = pd.read_parquet(self.path)
        return frame if split is None else frame[frame["split"] == split].reset_index(drop=True)


def _version_at(root: str, name: str, *, at_ms: int, storage_options: Mapping[str, str] | None) -> int | None:
    """Newest version of ``name`` committed at or before ``at_ms`` (epoch ms); None if none."""
    if latest_version(root, name, storage_options=storage_options) is None:
        return None
    versions = [int(c["version"]) for c in history(root, name, storage_options=storage_options)
                if int(c.get("timestamp", 0)) <= at_ms]
    return max(versions) if versions else None


def _commit_ms(root: str, name: str, version: int, storage_options: Mapping[str, str] | None) -> int:
    for commit in history(root, name, storage_options=storage_options):
        if int(commit["version"]) == version:
            return int(commit["timestamp"])
    raise TableMissingError(f"{root}/{name}@v{version}", "that version is not in the table's history (vacuumed?)")


def _resolve_versions(
    root: str,
    *,
    version: int | None,
    corrections_version: int | None,
    feature_versions: Mapping[str, int] | None,
    storage_options: Mapping[str, str] | None,
) -> dict[str, int | None]:
    newest = latest_version(root, TRIPLES_TABLE, storage_options=storage_options)
    if newest is None:
        raise TableMissingError(f"{root}/{TRIPLES_TABLE}")
    tv = newest if version is None else int(version)
    if tv > newest:
        raise TableMissingError(f"{root}/{TRIPLES_TABLE}@v{tv}", f"the newest version is {newest}")
    if corrections_version is not None:
        cv: int | None = int(corrections_version)
    elif version is None:
        cv = latest_version(root, CORRECTIONS_TABLE, storage_options=storage_options)
    else:
        # The corrections landed alongside: the sink commits them just before the triples.
        cv = _version_at(root, CORRECTIONS_TABLE, at_ms=_commit_ms(root, TRIPLES_TABLE, tv, storage_options),
                         storage_options=storage_options)
    out: dict[str, int | None] = {TRIPLES_TABLE: tv, CORRECTIONS_TABLE: cv}
    for name in (USER_STATS_TABLE, RESPONSE_FEATURES_TABLE):
        fv = (feature_versions or {}).get(name)
        if fv is None:
            fv = latest_version(root, name, storage_options=storage_options)
        if fv is None:
            raise TableMissingError(f"{root}/{name}", "run `rluf features materialize` first")
        out[name] = int(fv)
    return out


def _fractions(split: Sequence[float]) -> tuple[float, float, float]:
    if len(split) != 3 or any(f < 0 for f in split) or sum(split) <= 0:
        raise ValueError(f"split must be three non-negative fractions, got {tuple(split)}")
    total = float(sum(split))
    a, b, c = (float(f) / total for f in split)
    return a, b, c


def _sql_literal(value: float | int | str) -> str:
    return repr(value) if not isinstance(value, str) else "'" + value.replace("'", "''") + "'"


def _build_sql(
    *,
    has_corrections: bool,
    fractions: tuple[float, float, float],
    seed: int,
    fill_missing: bool,
    dedupe_triples: bool = True,
    dedupe_user_stats: bool = True,
) -> str:
    """The join as SQL over the attached tables ``tri``, ``corr``, ``us``, ``rf``.

    The dedup steps (one triple per response_id, one user_stats row per user and instant,
    newest ``created`` first) cost a sort or hash aggregation over millions of wide rows,
    so the caller switches them off when a cheap count shows there is nothing to dedupe.
    """
    train, validation, _ = fractions
    corrections = (
        "LEFT JOIN (SELECT response_id, new_label FROM corr "
        "QUALIFY row_number() OVER (PARTITION BY response_id ORDER BY reaction_ts DESC, source_offset DESC) = 1) c "
        "ON t.response_id = c.response_id"
        if has_corrections
        else "LEFT JOIN (SELECT NULL::VARCHAR AS response_id, NULL::INTEGER AS new_label) c ON false"
    )
    ufeat = ", ".join(f"max_by({f}, created) AS {f}" for f in USER_STATS_FEATURES)
    user_stats = (
        f"(SELECT user_id, event_timestamp, {ufeat} FROM us GROUP BY user_id, event_timestamp)"
        if dedupe_user_stats
        else "us"
    )
    triples = (
        "(SELECT * FROM tri QUALIFY row_number() OVER (PARTITION BY response_id "
        "ORDER BY window_closed_at, source_topic, source_partition, source_offset) = 1)"
        if dedupe_triples
        else "tri"
    )
    rfeat = ", ".join(f"max_by({f}, created) AS {f}" for f in RESPONSE_FEATURES)

    def col(name: str, alias: str) -> str:
        if fill_missing and name in _NEW_USER:
            return f"coalesce({alias}.{name}, {_NEW_USER[name]}) AS {name}"
        return f"{alias}.{name}"

    feats = ", ".join([col(f, "u") for f in USER_STATS_FEATURES] + [f"r.{f}" for f in RESPONSE_FEATURES])
    return f"""
CREATE TEMP TABLE labeled AS
SELECT t.response_id, t.conversation_id, t.user_id, t.context, t.response,
       coalesce(c.new_label, t.label)::INTEGER AS label, t.weight, t.window_closed_at, t.policy_version, t.ts,
       t.label::INTEGER AS label_at_close, (c.new_label IS NOT NULL AND c.new_label <> t.label) AS corrected
FROM {triples} t
{corrections};

CREATE TEMP TABLE conv AS
WITH c AS (
    SELECT conversation_id, min(ts) AS first_ts, count(*) AS n,
           hash(conversation_id || {_sql_literal(f"#{seed}")}) AS tie
    FROM labeled GROUP BY conversation_id
), o AS (
    SELECT conversation_id, n,
           sum(n) OVER (ORDER BY first_ts, tie, conversation_id ROWS UNBOUNDED PRECEDING) - n AS before,
           sum(n) OVER () AS total
    FROM c
)
SELECT conversation_id,
       CASE WHEN before < {train!r} * total THEN 'train'
            WHEN before < {train + validation!r} * total THEN 'validation'
            ELSE 'test' END AS split
FROM o;

CREATE TEMP TABLE result AS
SELECT b.response_id, b.conversation_id, b.user_id, b.context, b.response, b.label, b.weight, s.split,
       b.window_closed_at, b.policy_version, b.ts, b.label_at_close, b.corrected,
       (u.user_id IS NULL) AS _no_user_stats, (r.response_id IS NULL) AS _no_response_features,
       {feats}
FROM labeled b
JOIN conv s USING (conversation_id)
ASOF LEFT JOIN {user_stats} u
    ON b.user_id = u.user_id AND b.window_closed_at > u.event_timestamp
LEFT JOIN (SELECT response_id, arg_max(event_timestamp, created) AS event_timestamp, {rfeat}
           FROM rf GROUP BY response_id) r
    ON b.response_id = r.response_id AND r.event_timestamp <= b.window_closed_at;
"""


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _stats(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    per_split = con.execute(
        "SELECT split, count(*), sum(label), count(DISTINCT conversation_id), sum(corrected::INT), "
        "sum(_no_user_stats::INT), sum(_no_response_features::INT) FROM result GROUP BY split"
    ).fetchall()
    rows = {s: 0 for s in SPLITS}
    positives = {s: 0 for s in SPLITS}
    conversations = {s: 0 for s in SPLITS}
    corrected = missing_user = missing_resp = 0
    for split, n, pos, convs, corr, mu, mr in per_split:
        rows[split], positives[split], conversations[split] = int(n), int(pos or 0), int(convs)
        corrected += int(corr or 0)
        missing_user += int(mu or 0)
        missing_resp += int(mr or 0)
    total = sum(rows.values())
    base_rate: dict[str, float | None] = {s: (positives[s] / rows[s] if rows[s] else None) for s in SPLITS}
    base_rate["all"] = sum(positives.values()) / total if total else None
    return {
        "rows": {**rows, "total": total},
        "positives": {**positives, "total": sum(positives.values())},
        "conversations": conversations,
        "base_rate": base_rate,
        "corrections_applied": corrected,
        "missing_user_stats": missing_user,
        "missing_response_features": missing_resp,
    }


def _check_no_leak(con: duckdb.DuckDBPyConnection) -> None:
    leaked = con.execute(
        "SELECT count(*) FROM (SELECT conversation_id FROM result GROUP BY conversation_id "
        "HAVING count(DISTINCT split) > 1)"
    ).fetchone()
    if leaked and leaked[0]:
        raise DataQualityError(f"{leaked[0]} conversations span two splits; this is a bug in the split")


def _write(
    settings_root: str,
    out: Path,
    *,
    versions: Mapping[str, int | None],
    fractions: tuple[float, float, float],
    split: Sequence[float],
    seed: int,
    fill_missing: bool,
    threads: int | None,
    storage_options: Mapping[str, str] | None,
) -> TrainingSet:
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    con = connect(threads=threads, storage_options=storage_options)
    try:
        attach_table(con, "tri", settings_root, TRIPLES_TABLE, version=int(versions[TRIPLES_TABLE] or 0))
        cv = versions.get(CORRECTIONS_TABLE)
        if cv is not None:
            attach_table(con, "corr", settings_root, CORRECTIONS_TABLE, version=int(cv))
        attach_table(con, "us", settings_root, USER_STATS_TABLE, version=int(versions[USER_STATS_TABLE] or 0))
        attach_table(con, "rf", settings_root, RESPONSE_FEATURES_TABLE,
                     version=int(versions[RESPONSE_FEATURES_TABLE] or 0))
        dup_triples = _count(con, "SELECT count(*) - count(DISTINCT response_id) FROM tri")
        dup_stats = _count(con, "SELECT count(*) FROM (SELECT 1 FROM us GROUP BY user_id, event_timestamp "
                                "HAVING count(*) > 1)")
        if dup_triples:
            logger.warning("triples v%s has %d repeated response_ids; keeping the first of each",
                           versions[TRIPLES_TABLE], dup_triples)
        con.execute(_build_sql(has_corrections=cv is not None, fractions=fractions, seed=seed,
                               fill_missing=fill_missing, dedupe_triples=dup_triples > 0,
                               dedupe_user_stats=dup_stats > 0))
        t_join = time.perf_counter()
        _check_no_leak(con)
        stats = _stats(con)
        columns = [*BASE_COLUMNS, *FEATURE_COLUMNS]
        select = ", ".join(columns)
        content = con.execute(f"SELECT bit_xor(hash(x)) FROM (SELECT {select} FROM result) x").fetchone()
        content_hash = f"{int(content[0]) if content and content[0] is not None else 0:016x}"
        provenance = {
            "format": MANIFEST_FORMAT,
            "versions": dict(versions),
            "split": list(split),
            "seed": seed,
            "fill_missing": fill_missing,
            "content_hash": content_hash,
            "rows": stats["rows"],
        }
        data_path = out / DATA_FILE
        kv = json.dumps(provenance, sort_keys=True).replace("'", "''")
        order = "CASE split WHEN 'train' THEN 0 WHEN 'validation' THEN 1 ELSE 2 END, window_closed_at, response_id"
        con.execute(
            f"COPY (SELECT {select} FROM result ORDER BY {order}) TO '{str(data_path).replace(chr(39), chr(39) * 2)}' "
            f"(FORMAT parquet, COMPRESSION zstd, KV_METADATA {{'rluf.training_set': '{kv}'}})"
        )
    finally:
        con.close()
    t_end = time.perf_counter()
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "lake_root": settings_root,
        "data_file": DATA_FILE,
        "versions": dict(versions),
        "split": {"fractions": list(split), "seed": seed,
                  "by": "conversation, ordered by first response ts (seeded hash breaks ties)"},
        **stats,
        "features": {USER_STATS_TABLE: list(USER_STATS_FEATURES), RESPONSE_FEATURES_TABLE: list(RESPONSE_FEATURES)},
        "columns": [*BASE_COLUMNS, *FEATURE_COLUMNS],
        "point_in_time": {
            USER_STATS_TABLE: "newest row with event_timestamp < window_closed_at (newest created on ties)",
            RESPONSE_FEATURES_TABLE: "the response's row, event_timestamp (= response ts) <= window_closed_at",
            "label": "label at close, replaced by the newest correction in label_corrections at its version",
        },
        "fill_missing": fill_missing,
        "join": "duckdb asof join over the Delta tables (same rule as Feast get_historical_features)",
        "content_hash": content_hash,
        "built_at": datetime.now(UTC).isoformat(),
        "build_s": round(t_end - t0, 3),
        "join_s": round(t_join - t0, 3),
    }
    manifest_path = out / MANIFEST_FILE
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    logger.info(
        "training set %s: %d rows (train %d, validation %d, test %d), base rate %s, versions %s, %.1f s",
        data_path, stats["rows"]["total"], stats["rows"]["train"], stats["rows"]["validation"],
        stats["rows"]["test"], stats["base_rate"]["all"], dict(versions), t_end - t0,
    )
    return TrainingSet(path=data_path, manifest_path=manifest_path, manifest=manifest)


def build_training_set(
    settings: Settings,
    *,
    version: int | None = None,
    out: Path | None = None,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 13,
    corrections_version: int | None = None,
    feature_versions: Mapping[str, int] | None = None,
    refresh_features: bool = False,
    fill_missing: bool = True,
    threads: int | None = None,
) -> TrainingSet:
    """Build a point-in-time-correct training set from the lake and write parquet + manifest.

    Args:
        settings: Lake root and storage options; ``data_home`` for the default ``out``.
        version: Triples version to read; the newest if None. Triples landed after it
            are not in the set.
        out: Output folder (``training_set.parquet`` + ``manifest.json``); default
            ``<data_home>/training_sets/triples-v<version>``.
        split: Fractions of triples for train, validation, test (normalised).
        seed: Breaks ties between conversations that start at the same instant.
        corrections_version: Label-corrections version; default the newest when
            ``version`` is None, else the newest committed no later than that triples
            version (the corrections the sink landed alongside).
        feature_versions: Versions of ``user_stats`` / ``response_features``; newest if
            absent. Later versions cannot leak: rows are joined by event time.
        refresh_features: Rebuild the feature tables from the triples version first.
        fill_missing: Give users without earlier activity the new-user values (counts 0,
            love rate 0.0, reputation 1.0) instead of NULL.
        threads: DuckDB threads; all cores if None.

    Raises:
        TableMissingError: no triples (or feature tables: run ``rluf features materialize``).
        DataQualityError: a conversation would span two splits (a bug).
    """
    root = resolve_root(settings.lake_root)
    opts = settings.lake.storage_options
    fractions = _fractions(split)
    if refresh_features:
        tv = version if version is not None else latest_version(root, TRIPLES_TABLE, storage_options=opts)
        _, us_v, _ = build_user_stats(root, triples_version=tv, storage_options=opts)
        _, rf_v, _ = build_response_features(root, triples_version=tv, storage_options=opts)
        feature_versions = {USER_STATS_TABLE: us_v, RESPONSE_FEATURES_TABLE: rf_v, **(feature_versions or {})}
    versions = _resolve_versions(root, version=version, corrections_version=corrections_version,
                                 feature_versions=feature_versions, storage_options=opts)
    target = out or settings.data_home / "training_sets" / f"triples-v{versions[TRIPLES_TABLE]}"
    return _write(root, Path(target), versions=versions, fractions=fractions, split=split, seed=seed,
                  fill_missing=fill_missing, threads=threads, storage_options=opts)


def rebuild_training_set(
    manifest_path: Path,
    *,
    out: Path | None = None,
    storage_options: Mapping[str, str] | None = None,
    threads: int | None = None,
    verify: bool = True,
) -> TrainingSet:
    """Rebuild a training set from its manifest: the same Delta versions (time travel), split and seed.

    Args:
        manifest_path: The ``manifest.json`` of the set to reproduce.
        out: Output folder; default ``<original folder>-rebuild``.
        storage_options: Object-store options (secrets are never written to manifests).
        threads: DuckDB threads.
        verify: Raise when the rebuilt rows differ from the recorded content hash.

    Raises:
        InputFileError: the manifest is missing or not a training-set manifest.
        LakeError: a recorded version is gone (vacuumed).
        DataQualityError: ``verify`` and the content differs.
    """
    if not manifest_path.is_file():
        raise InputFileError(str(manifest_path), "no training-set manifest here")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise InputFileError(str(manifest_path), f"not JSON ({exc})") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InputFileError(str(manifest_path), f"not a {MANIFEST_FORMAT} manifest")
    split = list(manifest["split"]["fractions"])
    target = out or manifest_path.parent.with_name(manifest_path.parent.name + "-rebuild")
    rebuilt = _write(
        manifest["lake_root"], Path(target), versions=manifest["versions"], fractions=_fractions(split),
        split=split, seed=int(manifest["split"]["seed"]), fill_missing=bool(manifest.get("fill_missing", True)),
        threads=threads, storage_options=storage_options,
    )
    if verify and rebuilt.content_hash != manifest["content_hash"]:
        raise DataQualityError(
            f"rebuild of {manifest_path} differs (content hash {rebuilt.content_hash} != {manifest['content_hash']}); "
            "the recorded versions may have been rewritten"
        )
    return rebuilt
