"""The stream worker's open state in Delta: the ``stream_state`` table next to the triples.

Each landing appends the state changes of every shard it covers (``rluf.shard_state``)
in one commit *before* the triples commit, and the triples commit records, per shard, the
landing number those changes carry (a Delta app transaction ``<app>:state:<shard>``). A
restore reads only rows up to that number, so the rows of a landing that crashed before its
triples commit are ignored (its records are read again from Kafka). The table is
partitioned by (``app_id``, ``shard``): a worker taking over a shard in a rebalance reads one
partition, and the shard's owner rewrites that partition alone when it compacts it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import pyarrow as pa
import pyarrow.dataset as pds
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from features.lake.reader import lake_error, open_table, table_exists
from features.lake.schema import TRIPLES_TABLE, table_uri
from rluf.errors import LakeError, TableMissingError
from rluf.shard_state import ShardRestore, ShardStateDelta, StateRow, replay_rows

__all__ = ["STATE_SCHEMA", "STATE_TABLE", "StateTable", "state_app_id"]

logger = logging.getLogger(__name__)

STATE_TABLE: Final = "stream_state"
STATE_SCHEMA: Final = pa.schema([
    pa.field("app_id", pa.string(), nullable=False),
    pa.field("shard", pa.int32(), nullable=False),
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("idx", pa.int32(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("key", pa.string(), nullable=False),
    pa.field("payload", pa.binary(), nullable=False),
    pa.field("meta", pa.string(), nullable=False),
])


def state_app_id(app_id: str, shard: int) -> str:
    """The app transaction under which a shard's newest landed state number is recorded."""
    return f"{app_id}:state:{shard}"


class StateTable:
    """Append, read back and compact the state rows of one writer (``app_id``).

    Args:
        root: Lake root (path or object-store URI).
        app_id: The consumer group: a shard's rows belong to it, whichever worker wrote them.
        storage_options: Object-store options for delta-rs.
        compact_min_rows: Rewrite a shard's partition once it holds at least this many rows
            and three times more rows than live ones.
    """

    def __init__(self, root: str, *, app_id: str, storage_options: Mapping[str, str] | None = None,
                 compact_min_rows: int = 20_000) -> None:
        self._root = root
        self._uri = table_uri(root, STATE_TABLE)
        self._app_id = app_id
        self._storage_options = dict(storage_options or {}) or None
        self._compact_min_rows = compact_min_rows
        self._rows_in: dict[int, int] = {}  # shard -> rows in its partition (approximate, since start)
        self._table: DeltaTable | None = None

    # ------------------------------------------------------------------ writing

    def append(self, deltas: Sequence[ShardStateDelta]) -> None:
        """Write every shard's changes of one landing in one commit (before the triples commit)."""
        rows = [(d.shard, d.seq, i, row) for d in deltas for i, row in enumerate(d.rows)]
        if not rows:
            return
        data = pa.table({
            "app_id": pa.array([self._app_id] * len(rows), pa.string()),
            "shard": pa.array([r[0] for r in rows], pa.int32()),
            "seq": pa.array([r[1] for r in rows], pa.int64()),
            "idx": pa.array([r[2] for r in rows], pa.int32()),
            "kind": pa.array([r[3].kind for r in rows], pa.string()),
            "key": pa.array([r[3].key for r in rows], pa.string()),
            "payload": pa.array([r[3].payload for r in rows], pa.binary()),
            "meta": pa.array([r[3].meta for r in rows], pa.string()),
        }, schema=STATE_SCHEMA)
        self._write(data, mode="append")
        for d in deltas:
            self._rows_in[d.shard] = self._rows_in.get(d.shard, 0) + len(d.rows)

    def _write(self, data: pa.Table, *, mode: str, predicate: str | None = None) -> None:
        # Appends of different writers never conflict on the data, only on a stale snapshot
        # (another worker committed since we opened the table): one retry on the newest version.
        for attempt in (1, 2):
            target: DeltaTable | str = self._table or self._uri
            try:
                write_deltalake(target, data, mode=mode, predicate=predicate,  # type: ignore[call-overload]
                                partition_by=["app_id", "shard"], storage_options=self._storage_options,
                                commit_properties=CommitProperties(custom_metadata={"rluf.writer": self._app_id}))
                break
            except CommitFailedError as exc:
                self._table = None
                if attempt == 2 or mode != "append":
                    raise lake_error(exc, uri=self._uri, action="write the stream state to") from exc
                logger.warning("state commit lost to another writer (%s); retrying", str(exc).splitlines()[0])
            except Exception as exc:
                self._table = None
                raise lake_error(exc, uri=self._uri, action="write the stream state to") from exc
        if self._table is None:
            try:
                self._table = DeltaTable(self._uri, storage_options=self._storage_options)
            except Exception as exc:  # the write succeeded; keep writing by URI
                logger.debug("cannot keep %s open: %s", self._uri, exc)

    def maybe_compact(self, shard: int, *, committed_seq: int, live: int) -> bool:
        """Rewrite a shard's partition with only its live rows when dead ones dominate.

        Call it right after a triples commit recorded ``committed_seq``: no row above that
        number exists then, and only the shard's owner writes its partition.
        """
        rows = self._rows_in.get(shard, 0)
        if rows < self._compact_min_rows or rows < 3 * max(live, 1):
            return False
        state = self.read(shard, up_to_seq=committed_seq)
        table = _live_rows(self._app_id, shard, committed_seq, state)
        predicate = f"app_id = '{_sql(self._app_id)}' AND shard = {int(shard)}"
        try:
            self._write(table, mode="overwrite", predicate=predicate)
        except LakeError as exc:  # compaction is an optimisation: the next landing tries again
            logger.warning("state compaction of shard %d skipped: %s", shard, exc)
            return False
        self._rows_in[shard] = table.num_rows
        logger.info("compacted the state of shard %d: %d rows -> %d live", shard, rows, table.num_rows)
        return True

    # ------------------------------------------------------------------ reading

    def read(self, shard: int, *, up_to_seq: int | None) -> ShardRestore:
        """A shard's live state as of landing ``up_to_seq`` (None: nothing was ever committed)."""
        if up_to_seq is None or not table_exists(self._root, STATE_TABLE, storage_options=self._storage_options):
            return ShardRestore()
        try:
            dt = DeltaTable(self._uri, storage_options=self._storage_options)
            dataset = dt.to_pyarrow_dataset()
            where = ((pds.field("app_id") == self._app_id) & (pds.field("shard") == shard)
                     & (pds.field("seq") <= up_to_seq))
            table = dataset.to_table(columns=["seq", "idx", "kind", "key", "payload", "meta"], filter=where)
        except TableMissingError:
            return ShardRestore()
        except Exception as exc:
            raise lake_error(exc, uri=self._uri, action="read the stream state from") from exc
        table = table.sort_by([("seq", "ascending"), ("idx", "ascending")])
        self._rows_in[shard] = table.num_rows
        seqs = table.column("seq").to_pylist()
        kinds = table.column("kind").to_pylist()
        keys = table.column("key").to_pylist()
        payloads = table.column("payload").to_pylist()
        metas = table.column("meta").to_pylist()
        del table, dataset
        state = replay_rows((seq, StateRow(kind, key, payload, meta))  # type: ignore[arg-type]
                            for seq, kind, key, payload, meta in zip(seqs, kinds, keys, payloads, metas, strict=True))
        state.seq = up_to_seq
        return state

    def committed_seqs(self, shards: Iterable[int]) -> dict[int, int]:
        """Each shard's newest state number recorded by a triples commit (absent: none)."""
        if not table_exists(self._root, TRIPLES_TABLE, storage_options=self._storage_options):
            return {}
        dt = open_table(self._root, TRIPLES_TABLE, storage_options=self._storage_options)
        out: dict[int, int] = {}
        for shard in shards:
            version = dt.transaction_version(state_app_id(self._app_id, shard))
            if version is not None:
                out[shard] = int(version)
        return out


def _live_rows(app_id: str, shard: int, seq: int, state: ShardRestore) -> pa.Table:
    """One landing's worth of rows that rebuild ``state`` exactly (holds, accepts, filters, clocks)."""
    rows: list[StateRow] = [StateRow("hold", k, v, state.meta.get(k, "")) for k, v in state.holds.items()]
    rows += [StateRow("accept", k) for k in state.accepted]
    rows += [StateRow("filter", u, json.dumps(v).encode()) for u, v in state.filters.items()]
    rows += [StateRow("clock", k, json.dumps(v).encode()) for k, v in state.clocks.items()]
    rows += [StateRow("seen", k, json.dumps(v).encode()) for k, v in state.seen.items()]
    n = len(rows)
    return pa.table({
        "app_id": pa.array([app_id] * n, pa.string()),
        "shard": pa.array([shard] * n, pa.int32()),
        "seq": pa.array([seq] * n, pa.int64()),
        "idx": pa.array(range(n), pa.int32()),
        "kind": pa.array([r.kind for r in rows], pa.string()),
        "key": pa.array([r.key for r in rows], pa.string()),
        "payload": pa.array([r.payload for r in rows], pa.binary()),
        "meta": pa.array([r.meta for r in rows], pa.string()),
    }, schema=STATE_SCHEMA)


def _sql(text: str) -> str:
    return text.replace("'", "''")

