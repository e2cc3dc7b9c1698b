"""Arrow schemas of the three Delta tables and the conversions to and from the wire models.

The schemas are explicit (not inferred from the first batch) so that every writer, the
stream worker as well as the Beam backfill, creates the same column types, and a batch
with only empty maps or lists cannot change a column's type. They live here, in the Delta
adapter, not in ``rluf.schemas``: the pure core must not import pyarrow.

Conversion to Arrow is on the ingest hot path (thousands of rows per step), so it builds
one Python list per column and flattens nested values (context, reactions) into child
arrays plus offsets, instead of going through ``model_dump`` dicts.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import pyarrow as pa
from pydantic import BaseModel

from rluf.schemas import LabelCorrection, QuarantineRecord, Triple

__all__ = [
    "CORRECTIONS_SCHEMA",
    "CORRECTIONS_TABLE",
    "PARTITION_COLUMN",
    "QUARANTINE_SCHEMA",
    "QUARANTINE_TABLE",
    "TABLE_KEYS",
    "TABLE_SCHEMAS",
    "TRIPLES_SCHEMA",
    "TRIPLES_TABLE",
    "corrections_from_arrow",
    "corrections_from_rows",
    "corrections_to_arrow",
    "quarantine_from_arrow",
    "quarantine_from_rows",
    "quarantine_to_arrow",
    "table_uri",
    "triples_from_arrow",
    "triples_from_rows",
    "triples_to_arrow",
]

logger = logging.getLogger(__name__)

TRIPLES_TABLE: Final = "triples"
CORRECTIONS_TABLE: Final = "label_corrections"
QUARANTINE_TABLE: Final = "quarantine"
PARTITION_COLUMN: Final = "date"

_TS = pa.timestamp("us", tz="UTC")
_MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
_CONTEXT = pa.list_(pa.field("element", _MESSAGE))
_REACTIONS = pa.map_(pa.string(), pa.int32())
_SOURCES = pa.list_(pa.field("element", pa.string()))

TRIPLES_SCHEMA: Final = pa.schema(
    [
        pa.field("response_id", pa.string()),
        pa.field("event_id", pa.string()),
        pa.field("conversation_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("context", _CONTEXT),
        pa.field("response", pa.string()),
        pa.field("policy_version", pa.string()),
        pa.field("ts", _TS),
        pa.field("label", pa.int32()),
        pa.field("reactions", _REACTIONS),
        pa.field("window_closed_at", _TS),
        pa.field("close_reason", pa.string()),
        pa.field("weight", pa.float64()),
        pa.field("source_topic", pa.string()),
        pa.field("source_partition", pa.int32()),
        pa.field("source_offset", pa.int64()),
        pa.field("reaction_sources", _SOURCES),
        pa.field("extra_json", pa.string()),
        pa.field(PARTITION_COLUMN, pa.string()),
    ]
)
"""Schema of ``<root>/triples``: one labeled (context, response) per response_id."""

CORRECTIONS_SCHEMA: Final = pa.schema(
    [
        pa.field("correction_id", pa.string()),
        pa.field("response_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("reaction_event_id", pa.string()),
        pa.field("action", pa.string()),
        pa.field("old_label", pa.int32()),
        pa.field("new_label", pa.int32()),
        pa.field("reaction_ts", _TS),
        pa.field("window_closed_at", _TS),
        pa.field("lateness_s", pa.float64()),
        pa.field("source_topic", pa.string()),
        pa.field("source_partition", pa.int32()),
        pa.field("source_offset", pa.int64()),
        pa.field(PARTITION_COLUMN, pa.string()),
    ]
)
"""Schema of ``<root>/label_corrections``: late reactions that changed a landed label."""

QUARANTINE_SCHEMA: Final = pa.schema(
    [
        pa.field("quarantine_id", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("raw", pa.string()),
        pa.field("event_type", pa.string()),
        pa.field("event_id", pa.string()),
        pa.field("response_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("event_ts", _TS),
        pa.field("quarantined_at", _TS),
        pa.field("source_topic", pa.string()),
        pa.field("source_partition", pa.int32()),
        pa.field("source_offset", pa.int64()),
        pa.field(PARTITION_COLUMN, pa.string()),
    ]
)
"""Schema of ``<root>/quarantine``: refused inputs with their reason and raw payload."""

TABLE_SCHEMAS: Final[Mapping[str, pa.Schema]] = {
    TRIPLES_TABLE: TRIPLES_SCHEMA,
    CORRECTIONS_TABLE: CORRECTIONS_SCHEMA,
    QUARANTINE_TABLE: QUARANTINE_SCHEMA,
}
TABLE_KEYS: Final[Mapping[str, str]] = {
    TRIPLES_TABLE: "response_id",
    CORRECTIONS_TABLE: "correction_id",
    QUARANTINE_TABLE: "quarantine_id",
}
"""The column that identifies a row of each table; a replay re-emits the same key."""

_M = TypeVar("_M", bound=BaseModel)


def table_uri(root: str, name: str) -> str:
    """Return the URI of table ``name`` under the lake ``root`` (a path or an object-store URI)."""
    return f"{root.rstrip('/')}/{name}"


# --------------------------------------------------------------------------- to Arrow


def _timestamps(values: list[Any]) -> pa.Array:
    # pyarrow converts aware datetimes to UTC itself; naive ones are taken as UTC.
    return pa.array(values, type=_TS)


def _dates(stamps: pa.Array) -> pa.Array:
    # The timestamp type carries tz=UTC, so the cast yields the UTC calendar day.
    return stamps.cast(pa.date32()).cast(pa.string())


def _extra_json(extra: Mapping[str, Any]) -> str:
    if not extra:
        return "{}"
    return json.dumps(extra, sort_keys=True, separators=(",", ":"), default=str)


def triples_to_arrow(triples: Sequence[Triple]) -> pa.Table:
    """Convert triples to an Arrow table with ``TRIPLES_SCHEMA`` (partition ``date`` included).

    ``date`` is the UTC day of ``window_closed_at``, the time the row was produced, so a
    day's partition only grows while that day's windows close.
    """
    roles: list[str] = []
    contents: list[str] = []
    ctx_offsets = [0]
    r_keys: list[str] = []
    r_counts: list[int] = []
    r_offsets = [0]
    sources: list[str] = []
    s_offsets = [0]
    for t in triples:
        for m in t.context:
            roles.append(m.role)
            contents.append(m.content)
        ctx_offsets.append(len(roles))
        reactions = t.reactions
        if reactions:
            r_keys.extend(reactions)
            r_counts.extend(reactions.values())
        r_offsets.append(len(r_keys))
        if t.reaction_sources:
            sources.extend(t.reaction_sources)
        s_offsets.append(len(sources))

    context = pa.ListArray.from_arrays(
        pa.array(ctx_offsets, pa.int32()),
        pa.StructArray.from_arrays(
            [pa.array(roles, pa.string()), pa.array(contents, pa.string())], fields=list(_MESSAGE)
        ),
        type=_CONTEXT,
    )
    reactions_arr = pa.MapArray.from_arrays(
        pa.array(r_offsets, pa.int32()),
        pa.array(r_keys, pa.string()),
        pa.array(r_counts, pa.int32()),
        type=_REACTIONS,
    )
    sources_arr = pa.ListArray.from_arrays(
        pa.array(s_offsets, pa.int32()), pa.array(sources, pa.string()), type=_SOURCES
    )
    closed_at = _timestamps([t.window_closed_at for t in triples])
    columns = [
        pa.array([t.response_id for t in triples], pa.string()),
        pa.array([t.event_id for t in triples], pa.string()),
        pa.array([t.conversation_id for t in triples], pa.string()),
        pa.array([t.user_id for t in triples], pa.string()),
        context,
        pa.array([t.response for t in triples], pa.string()),
        pa.array([t.policy_version for t in triples], pa.string()),
        _timestamps([t.ts for t in triples]),
        pa.array([t.label for t in triples], pa.int32()),
        reactions_arr,
        closed_at,
        pa.array([t.close_reason for t in triples], pa.string()),
        pa.array([t.weight for t in triples], pa.float64()),
        pa.array([t.source_topic for t in triples], pa.string()),
        pa.array([t.source_partition for t in triples], pa.int32()),
        pa.array([t.source_offset for t in triples], pa.int64()),
        sources_arr,
        pa.array([_extra_json(t.extra) if t.extra else "{}" for t in triples], pa.string()),
        _dates(closed_at),
    ]
    return pa.Table.from_arrays(columns, schema=TRIPLES_SCHEMA)


def corrections_to_arrow(corrections: Sequence[LabelCorrection]) -> pa.Table:
    """Convert label corrections to ``CORRECTIONS_SCHEMA``; ``date`` is the UTC day of ``reaction_ts``."""
    reaction_ts = _timestamps([c.reaction_ts for c in corrections])
    columns = [
        pa.array([c.correction_id for c in corrections], pa.string()),
        pa.array([c.response_id for c in corrections], pa.string()),
        pa.array([c.user_id for c in corrections], pa.string()),
        pa.array([c.reaction_event_id for c in corrections], pa.string()),
        pa.array([c.action for c in corrections], pa.string()),
        pa.array([c.old_label for c in corrections], pa.int32()),
        pa.array([c.new_label for c in corrections], pa.int32()),
        reaction_ts,
        _timestamps([c.window_closed_at for c in corrections]),
        pa.array([c.lateness_s for c in corrections], pa.float64()),
        pa.array([c.source_topic for c in corrections], pa.string()),
        pa.array([c.source_partition for c in corrections], pa.int32()),
        pa.array([c.source_offset for c in corrections], pa.int64()),
        _dates(reaction_ts),
    ]
    return pa.Table.from_arrays(columns, schema=CORRECTIONS_SCHEMA)


def quarantine_to_arrow(records: Sequence[QuarantineRecord]) -> pa.Table:
    """Convert quarantine records to ``QUARANTINE_SCHEMA``; ``date`` is the UTC day of ``quarantined_at``."""
    quarantined_at = _timestamps([q.quarantined_at for q in records])
    columns = [
        pa.array([q.quarantine_id for q in records], pa.string()),
        pa.array([q.reason for q in records], pa.string()),
        pa.array([q.detail for q in records], pa.string()),
        pa.array([q.raw for q in records], pa.string()),
        pa.array([q.event_type for q in records], pa.string()),
        pa.array([q.event_id for q in records], pa.string()),
        pa.array([q.response_id for q in records], pa.string()),
        pa.array([q.user_id for q in records], pa.string()),
        _timestamps([q.event_ts for q in records]),
        quarantined_at,
        pa.array([q.source_topic for q in records], pa.string()),
        pa.array([q.source_partition for q in records], pa.int32()),
        pa.array([q.source_offset for q in records], pa.int64()),
        _dates(quarantined_at),
    ]
    return pa.Table.from_arrays(columns, schema=QUARANTINE_SCHEMA)


# --------------------------------------------------------------------------- from Arrow / pandas


def _is_missing(value: Any) -> bool:
    # None from Arrow, NaT/NaN from pandas (NaT and NaN are the values unequal to themselves).
    return value is None or (isinstance(value, float) and math.isnan(value)) or value != value


def _dt(value: Any) -> datetime | None:
    if _is_missing(value):
        return None
    if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime()
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value  # type: ignore[no-any-return]


def _opt(value: Any) -> Any:
    return None if _is_missing(value) else value


def _seq(value: Any) -> Iterable[Any]:
    # pandas gives list columns as numpy arrays, whose truth value is ambiguous: test for None.
    return () if value is None else value  # type: ignore[no-any-return]


def _items(value: Any) -> Iterable[tuple[str, int]]:
    # Arrow's to_pylist and pandas both give a map as a list of (key, value) pairs.
    if value is None:
        return ()
    return value.items() if isinstance(value, Mapping) else value  # type: ignore[no-any-return]


def _triple_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("extra_json", PARTITION_COLUMN)}
    out["context"] = [{"role": m["role"], "content": m["content"]} for m in _seq(row["context"])]
    out["reactions"] = {k: int(v) for k, v in _items(row["reactions"])}
    out["reaction_sources"] = [str(s) for s in _seq(row["reaction_sources"])]
    out["ts"] = _dt(row["ts"])
    out["window_closed_at"] = _dt(row["window_closed_at"])
    extra = row.get("extra_json")
    out["extra"] = json.loads(extra) if extra else {}
    return out


def _correction_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != PARTITION_COLUMN}
    out["reaction_ts"] = _dt(row["reaction_ts"])
    out["window_closed_at"] = _dt(row["window_closed_at"])
    return out


def _quarantine_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: _opt(v) for k, v in row.items() if k != PARTITION_COLUMN}
    out["event_ts"] = _dt(row["event_ts"])
    out["quarantined_at"] = _dt(row["quarantined_at"])
    return out


def _models(
    model: type[_M], rows: Iterable[Mapping[str, Any]], shape: Callable[[Mapping[str, Any]], dict[str, Any]]
) -> list[_M]:
    return [model.model_validate(shape(row)) for row in rows]


def triples_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Triple]:
    """Rebuild triples from rows as given by ``pa.Table.to_pylist`` or ``DataFrame.to_dict("records")``.

    Not on a hot path: it validates every row with pydantic, which is what readers of the
    lake (replays, exports, tests) want.
    """
    return _models(Triple, rows, _triple_row)


def corrections_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[LabelCorrection]:
    """Rebuild label corrections from table rows (see ``triples_from_rows``)."""
    return _models(LabelCorrection, rows, _correction_row)


def quarantine_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[QuarantineRecord]:
    """Rebuild quarantine records from table rows (see ``triples_from_rows``)."""
    return _models(QuarantineRecord, rows, _quarantine_row)


def triples_from_arrow(table: pa.Table) -> list[Triple]:
    """Rebuild triples from an Arrow table with (a superset of) ``TRIPLES_SCHEMA``'s columns."""
    return triples_from_rows(table.to_pylist())


def corrections_from_arrow(table: pa.Table) -> list[LabelCorrection]:
    """Rebuild label corrections from an Arrow table with ``CORRECTIONS_SCHEMA``'s columns."""
    return corrections_from_rows(table.to_pylist())


def quarantine_from_arrow(table: pa.Table) -> list[QuarantineRecord]:
    """Rebuild quarantine records from an Arrow table with ``QUARANTINE_SCHEMA``'s columns."""
    return quarantine_from_rows(table.to_pylist())

