"""Reading features back: online lookups, point-in-time offline joins, entity files, printing rows.

What ``rluf features query`` calls. Each query takes the settings (the store is opened) or
an already open ``FeatureStore``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from features.store.definitions import ENTITY_KEYS, FEATURE_VIEWS
from features.store.repository import store_for
from rluf.errors import ConfigError, InputFileError
from rluf.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = ["feature_refs", "format_rows", "get_offline", "get_online", "read_entity_file"]


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
    store = store_for(target)
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
    store = store_for(target)
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
