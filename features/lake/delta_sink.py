"""The exactly-once landing sink: three Delta tables, resume positions in Delta app transactions.

Kafka delivers at least once and the worker may be killed at any instruction, so a step's
output can be written twice (a replay after a restart) or half-written (a crash between
two table commits). The sink absorbs both:

* Each ``land`` writes quarantine rows, then label corrections, then triples, and the
  triples commit carries the step's checkpoint as Delta app transactions
  (``"<app_id>:<topic>:<partition>"`` -> offset to resume from). That commit is atomic,
  so a recorded checkpoint always means every row before it has landed.
* On restart, ``restore`` reads the checkpoint back and loads the keys of rows that
  already landed from the replay region (source offset >= checkpoint): a replay from the
  checkpoint re-emits exactly those rows, and ``land`` drops them. Rows of a step that
  crashed before its triples commit are in that region too, so they land once.

The key sets only cover the replay region and are pruned as the checkpoint advances, so
memory stays bounded by one replay window.

Why one module of ~430 lines: the invariant above spans ``land``, ``restore`` and the pruning of
the key sets, all state of one ``DeltaLandingSink``; keeping them in one class in one file keeps
the invariant checkable in one read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from features.lake.reader import history, lake_error, open_table, read_table, table_exists
from features.lake.schema import (
    CORRECTIONS_TABLE,
    PARTITION_COLUMN,
    QUARANTINE_TABLE,
    TABLE_KEYS,
    TRIPLES_TABLE,
    corrections_to_arrow,
    quarantine_to_arrow,
    table_uri,
    triples_to_arrow,
)
from features.lake.stream_state import StateTable, state_app_id
from rluf.errors import LakeError, TableMissingError
from rluf.ports import LandedTriple, RestoredState
from rluf.records import Landing, TopicPartition
from rluf.shard_state import ShardRestore, ShardStateDelta

__all__ = ["CHECKPOINT_METADATA_KEY", "DeltaLandingSink", "transaction_app_id"]

logger = logging.getLogger(__name__)

CHECKPOINT_METADATA_KEY: Final = "rluf.checkpoint"
"""Commit-info key of the triples commits: ``{"app_id": ..., "offsets": [[topic, partition, offset], ...]}``."""

_HISTORY_SCAN: Final = 50  # recent triples commits searched for this app's topic-partitions
_TS_TYPE = pa.timestamp("us", tz="UTC")
_R = TypeVar("_R")


def transaction_app_id(app_id: str, tp: TopicPartition) -> str:
    """Return the Delta app-transaction id under which ``tp``'s resume offset is recorded."""
    return f"{app_id}:{tp[0]}:{tp[1]}"


class DeltaLandingSink:
    """Lands ``Landing`` batches in ``<root>/{triples,label_corrections,quarantine}`` exactly once.

    Implements ``rluf.ports.LandingSink``. Construction touches no storage; call
    ``restore`` when the worker starts (``land`` restores the resume state itself if it
    was not called, but then cannot hand back the closed responses).

    Args:
        root: Lake root, a local path or an object-store URI (``Settings.lake_root``).
        app_id: Names this writer's app transactions; keep it stable across restarts of
            the same consumer group, and distinct between writers of one lake.
        storage_options: Object-store options as delta-rs takes them (``LakeSettings``).
        commit_attempts: Tries of a triples commit that another writer beat; between tries
            the sink checks that no other writer recorded offsets past its own (fencing).
        topic_partitions: Topic-partitions this writer consumes. Those whose events have
            never produced a row (e.g. a reactions partition with no corrections) can only
            be found here or in the recent triples commits.
    """

    def __init__(
        self,
        root: str,
        *,
        app_id: str,
        storage_options: Mapping[str, str] | None = None,
        topic_partitions: Iterable[TopicPartition] = (),
        commit_attempts: int = 5,
    ) -> None:
        if not app_id:
            raise ValueError("app_id must not be empty")
        self._root = root
        self._app_id = app_id
        self._commit_attempts = max(1, commit_attempts)
        self._storage_options: dict[str, str] | None = dict(storage_options or {}) or None
        self._topic_partitions: set[TopicPartition] = {(t, int(p)) for t, p in topic_partitions}
        self._checkpoint: dict[TopicPartition, int] = {}
        # table -> key -> (topic-partition, source offset), only for the replay region.
        self._keys: dict[str, dict[str, tuple[TopicPartition, int]]] = {name: {} for name in TABLE_KEYS}
        self._loaded = False
        # Open tables kept between appends: writing through a DeltaTable object updates it
        # incrementally instead of replaying the log on every commit (3.6 vs 14.9 ms a commit
        # on a fresh table, measured), which matters at several commits per second.
        self._tables: dict[str, DeltaTable] = {}
        self.state = StateTable(root, app_id=app_id, storage_options=storage_options)

    # ------------------------------------------------------------------ public API

    @property
    def checkpoint(self) -> dict[TopicPartition, int]:
        """The resume offsets recorded by the newest triples commit this sink knows of."""
        return dict(self._checkpoint)

    def replay_keys(self, table: str) -> frozenset[str]:
        """Return the keys of ``table``'s rows in the replay region that ``land`` will drop."""
        return frozenset(self._keys[table])

    def land(self, landing: Landing, *, checkpoint: Mapping[TopicPartition, int],
             state: Sequence[ShardStateDelta] = ()) -> None:
        """Append the rows not landed before and record ``checkpoint`` in the triples commit.

        Writes quarantine, then corrections, then triples: the checkpoint is only true
        once all three are in, so it rides on the last commit. A batch without new rows
        still commits (empty) when the checkpoint moved, so the resume position advances
        through quiet stretches.

        Args:
            landing: One core step's output; rows whose key already landed in the replay
                region, or repeats within the batch, are dropped.
            checkpoint: Offset to resume from per topic-partition (the first offset not
                fully reflected in the lake).
            state: The shards' open-state changes that go with this checkpoint: written to
                the state table first, their landing numbers recorded in the triples commit.

        Raises:
            LakeError: a Delta write failed; the step may be retried or replayed.
        """
        if not self._loaded:
            self._load_resume_state(self._discover_topic_partitions(()))
        cp = {(t, int(p)): int(o) for (t, p), o in checkpoint.items()}
        quarantine = self._fresh(QUARANTINE_TABLE, landing.quarantine, _quarantine_key)
        corrections = self._fresh(CORRECTIONS_TABLE, landing.corrections, _correction_key)
        triples = self._fresh(TRIPLES_TABLE, landing.triples, _triple_key)
        changes = [d for d in state if d.rows]
        if not (quarantine or corrections or triples or changes) and self._is_recorded(cp):
            logger.debug("nothing to land and checkpoint unchanged; no commit")
            return
        for tp, offset in cp.items():
            old = self._checkpoint.get(tp)
            if old is not None and offset < old:
                logger.warning("checkpoint for %s:%d moves back from %d to %d", tp[0], tp[1], old, offset)

        if changes:
            self.state.append(changes)
        if quarantine:
            self._append(QUARANTINE_TABLE, quarantine_to_arrow(quarantine))
            self._remember(QUARANTINE_TABLE, quarantine, _quarantine_key)
        if corrections:
            self._append(CORRECTIONS_TABLE, corrections_to_arrow(corrections))
            self._remember(CORRECTIONS_TABLE, corrections, _correction_key)
        seqs = {d.shard: d.seq for d in changes}
        self._append(TRIPLES_TABLE, triples_to_arrow(triples), checkpoint=cp, state_seqs=seqs)
        self._remember(TRIPLES_TABLE, triples, _triple_key)
        for d in changes:
            self.state.maybe_compact(d.shard, committed_seq=d.seq, live=d.live)
        self._checkpoint.update(cp)
        self._topic_partitions.update(cp)
        self._prune(cp)
        logger.debug(
            "landed %d triples, %d corrections, %d quarantined; checkpoint %s",
            len(triples), len(corrections), len(quarantine), _fmt(cp),
        )

    def restore(
        self, *, horizon_s: float, topic_partitions: Iterable[TopicPartition] = ()
    ) -> RestoredState:
        """Read the resume state back from the lake (worker start).

        Args:
            horizon_s: Return the triples whose window closed within this many seconds
                of the newest close (event time), so late reactions to them can still be
                attributed and a replay recognises them.
            topic_partitions: More topic-partitions to look up (added to the constructor's).

        Returns:
            The checkpoint of this ``app_id``; the closed responses within the horizon,
            labels after every landed correction (the newest correction per response
            wins); and per user (closed windows, Loves) over the whole triples table,
            counted with the label at close, as the worker counted them live.

        Raises:
            LakeError: a table cannot be read.
        """
        tps = self._discover_topic_partitions(topic_partitions)
        self._load_resume_state(tps)
        state = RestoredState(checkpoint=dict(self._checkpoint))
        light = self._read(TRIPLES_TABLE, columns=["user_id", "label", "window_closed_at"])
        if light is None or light.empty:
            logger.info("restored empty lake state for %s (checkpoint %s)", self._app_id, _fmt(state.checkpoint))
            return state
        grouped = light.groupby("user_id", sort=False)["label"].agg(["size", "sum"])
        state.user_windows = {
            str(u): (int(n), int(s)) for u, n, s in zip(grouped.index, grouped["size"], grouped["sum"], strict=True)
        }
        newest = light["window_closed_at"].max().to_pydatetime()
        del light
        state.closed = self._closed_since(newest - timedelta(seconds=horizon_s))
        logger.info(
            "restored %s: checkpoint %s, %d closed within %.0f s, %d users, replay keys %d/%d/%d",
            self._app_id, _fmt(state.checkpoint), len(state.closed), horizon_s, len(state.user_windows),
            *(len(self._keys[t]) for t in (TRIPLES_TABLE, CORRECTIONS_TABLE, QUARANTINE_TABLE)),
        )
        return state

    # ------------------------------------------------------------------ writing

    def restore_shard(self, shard: int, topic_partitions: Iterable[TopicPartition]
                      ) -> tuple[ShardRestore, dict[TopicPartition, int]]:
        """A shard's live open state and its partitions' resume offsets, from one triples commit.

        Both come from the same table version, so the state and the offsets where reading
        resumes always match (the closed-response index may be read from a newer version
        afterwards: that only adds responses a replay recognises).
        """
        if not table_exists(self._root, TRIPLES_TABLE, storage_options=self._storage_options):
            return ShardRestore(), {}
        dt = open_table(self._root, TRIPLES_TABLE, storage_options=self._storage_options)
        try:
            seq = dt.transaction_version(state_app_id(self._app_id, shard))
            offsets = {tp: dt.transaction_version(transaction_app_id(self._app_id, tp)) for tp in topic_partitions}
        except Exception as exc:
            uri = table_uri(self._root, TRIPLES_TABLE)
            raise lake_error(exc, uri=uri, action="read the app transactions of") from exc
        state = self.state.read(shard, up_to_seq=None if seq is None else int(seq))
        return state, {tp: int(o) for tp, o in offsets.items() if o is not None}

    def _append(self, name: str, data: pa.Table, *, checkpoint: Mapping[TopicPartition, int] | None = None,
                state_seqs: Mapping[int, int] | None = None) -> None:
        uri = table_uri(self._root, name)
        props = None
        if checkpoint is not None:
            txns = [Transaction(transaction_app_id(self._app_id, tp), o) for tp, o in checkpoint.items()]
            txns += [Transaction(state_app_id(self._app_id, shard), seq) for shard, seq in (state_seqs or {}).items()]
            props = CommitProperties(
                app_transactions=txns,
                custom_metadata={
                    CHECKPOINT_METADATA_KEY: {
                        "app_id": self._app_id,
                        "offsets": [[t, p, o] for (t, p), o in sorted(checkpoint.items())],
                    }
                },
            )
        for attempt in range(1, self._commit_attempts + 1):
            target: DeltaTable | str = self._tables.get(name) or uri
            try:
                write_deltalake(
                    target,
                    data,
                    mode="append",
                    partition_by=[PARTITION_COLUMN],
                    schema_mode="merge",
                    storage_options=self._storage_options,
                    commit_properties=props,
                )
                break
            except CommitFailedError as exc:
                # Another writer committed since our snapshot: during a rebalance the shard's
                # previous owner lands its last step after we opened the table. Retry on the
                # newest version unless that writer recorded offsets past ours (then it owns
                # the partition and we are the stale one).
                self._tables.pop(name, None)
                if attempt == self._commit_attempts:
                    raise lake_error(exc, uri=uri, action="append to") from exc
                if checkpoint is not None:
                    self._fence(uri, checkpoint)
                logger.warning("commit to %s lost to another writer (%s); retry %d on the newest version",
                               uri, str(exc).splitlines()[0], attempt)
            except Exception as exc:
                self._tables.pop(name, None)  # reload from the log next time
                raise lake_error(exc, uri=uri, action="append to") from exc
        if name not in self._tables:
            try:
                self._tables[name] = DeltaTable(uri, storage_options=self._storage_options)
            except Exception as exc:  # the write succeeded; keep writing by URI
                logger.debug("cannot keep %s open: %s", uri, exc)

    def _fence(self, uri: str, checkpoint: Mapping[TopicPartition, int]) -> None:
        """Refuse to commit offsets that another writer of this app id already moved past."""
        try:
            dt = DeltaTable(uri, storage_options=self._storage_options)
            recorded = {tp: dt.transaction_version(transaction_app_id(self._app_id, tp)) for tp in checkpoint}
        except Exception as exc:
            raise lake_error(exc, uri=uri, action="read the app transactions of") from exc
        ahead = {tp: int(v) for tp, v in recorded.items() if v is not None and int(v) > checkpoint[tp]}
        if ahead:
            tp, v = sorted(ahead.items())[0]
            raise LakeError(uri, "append to", f"{tp[0]}:{tp[1]} is recorded at offset {v}, past this "
                            f"worker's {checkpoint[tp]}", "another worker owns the partition now; restart this one")

    def _is_recorded(self, cp: Mapping[TopicPartition, int]) -> bool:
        return all(self._checkpoint.get(tp) == o for tp, o in cp.items())

    def _fresh(self, name: str, rows: Sequence[_R], key: Callable[[_R], str]) -> list[_R]:
        known = self._keys[name]
        seen: set[str] = set()
        out: list[_R] = []
        for row in rows:
            k = key(row)
            if k in known or k in seen:
                continue
            seen.add(k)
            out.append(row)
        dropped = len(rows) - len(out)
        if dropped:
            logger.info("dropped %d %s rows already landed or repeated in the batch", dropped, name)
        return out

    def _remember(self, name: str, rows: Sequence[Any], key: Callable[[Any], str]) -> None:
        # Kept until the checkpoint passes them, so an in-process retry of a half-landed step
        # does not write them again either.
        known = self._keys[name]
        for row in rows:
            known[key(row)] = ((row.source_topic, row.source_partition), row.source_offset)

    def _prune(self, cp: Mapping[TopicPartition, int]) -> None:
        for known in self._keys.values():
            stale = [k for k, (tp, off) in known.items() if tp in cp and off < cp[tp]]
            for k in stale:
                del known[k]

    # ------------------------------------------------------------------ reading back

    def _read(
        self, name: str, *, columns: Sequence[str], filters: pds.Expression | None = None
    ) -> pd.DataFrame | None:
        try:
            return read_table(self._root, name, columns=columns, filters=filters, storage_options=self._storage_options)
        except TableMissingError:
            return None

    def _discover_topic_partitions(self, extra: Iterable[TopicPartition]) -> set[TopicPartition]:
        tps = set(self._topic_partitions)
        tps.update((t, int(p)) for t, p in extra)
        for name in TABLE_KEYS:
            frame = self._read(name, columns=["source_topic", "source_partition"])
            if frame is not None and not frame.empty:
                pairs = frame.drop_duplicates()
                tps.update(zip(pairs["source_topic"].astype(str), pairs["source_partition"].astype(int), strict=True))
        tps.update(self._recorded_topic_partitions())
        self._topic_partitions = tps
        return tps

    def _recorded_topic_partitions(self) -> set[TopicPartition]:
        if not table_exists(self._root, TRIPLES_TABLE, storage_options=self._storage_options):
            return set()
        found: set[TopicPartition] = set()
        for commit in history(self._root, TRIPLES_TABLE, limit=_HISTORY_SCAN, storage_options=self._storage_options):
            meta = commit.get(CHECKPOINT_METADATA_KEY)
            if isinstance(meta, str):
                meta = json.loads(meta)
            if isinstance(meta, dict) and meta.get("app_id") == self._app_id:
                found.update((str(t), int(p)) for t, p, _ in meta.get("offsets", ()))
        return found

    def _load_resume_state(self, tps: set[TopicPartition]) -> None:
        self._checkpoint = {}
        if table_exists(self._root, TRIPLES_TABLE, storage_options=self._storage_options):
            dt = open_table(self._root, TRIPLES_TABLE, storage_options=self._storage_options)
            try:
                versions = {tp: dt.transaction_version(transaction_app_id(self._app_id, tp)) for tp in sorted(tps)}
            except Exception as exc:
                uri = table_uri(self._root, TRIPLES_TABLE)
                raise lake_error(exc, uri=uri, action="read the app transactions of") from exc
            self._checkpoint = {tp: int(v) for tp, v in versions.items() if v is not None}
        for name, key in TABLE_KEYS.items():
            self._keys[name] = self._load_replay_keys(name, key)
        self._loaded = True

    def _replay_filter(self) -> pds.Expression | None:
        # Rows at or after the checkpoint of their topic-partition, or of a topic-partition
        # without one (a replay would start from its beginning).
        if not self._checkpoint:
            return None
        topic, part, off = pds.field("source_topic"), pds.field("source_partition"), pds.field("source_offset")
        items = list(self._checkpoint.items())
        replay = known = pds.scalar(False)
        for (t, p), o in items:
            same_tp = (topic == t) & (part == p)
            replay = replay | (same_tp & (off >= o))
            known = known | same_tp
        return replay | ~known

    def _load_replay_keys(self, name: str, key: str) -> dict[str, tuple[TopicPartition, int]]:
        frame = self._read(
            name, columns=[key, "source_topic", "source_partition", "source_offset"], filters=self._replay_filter()
        )
        if frame is None or frame.empty:
            return {}
        return {
            str(k): ((str(t), int(p)), int(o))
            for k, t, p, o in zip(
                frame[key], frame["source_topic"], frame["source_partition"], frame["source_offset"], strict=True
            )
        }

    def _closed_since(self, cutoff: datetime) -> list[LandedTriple]:
        cutoff = cutoff.astimezone(UTC)
        recent = (pds.field(PARTITION_COLUMN) >= cutoff.strftime("%Y-%m-%d")) & (
            pds.field("window_closed_at") >= pa.scalar(cutoff, type=_TS_TYPE)
        )
        frame = self._read(
            TRIPLES_TABLE,
            columns=[
                "response_id", "event_id", "user_id", "ts", "window_closed_at", "label", "response",
                "source_topic", "source_partition", "source_offset", "reaction_sources",
            ],
            filters=recent,
        )
        if frame is None or frame.empty:
            return []
        labels, correction_sources = self._corrections_of(frame["response_id"].astype(str).tolist())
        ts_s = _epoch_seconds(frame["ts"])
        closed_s = _epoch_seconds(frame["window_closed_at"])
        out = []
        for i, (rid, eid, uid, label, response, topic, part, off, sources) in enumerate(
            zip(
                frame["response_id"], frame["event_id"], frame["user_id"], frame["label"], frame["response"],
                frame["source_topic"], frame["source_partition"], frame["source_offset"], frame["reaction_sources"],
                strict=True,
            )
        ):
            out.append(
                LandedTriple(
                    response_id=str(rid),
                    event_id=str(eid),
                    user_id=str(uid),
                    ts=float(ts_s[i]),
                    window_closed_at=float(closed_s[i]),
                    label=labels.get(str(rid), int(label)),
                    source=f"{topic}:{int(part)}:{int(off)}",
                    # a replay must also recognise the late reactions that became corrections
                    reaction_sources=frozenset(str(s) for s in (sources if sources is not None else ()))
                    | correction_sources.get(str(rid), frozenset()),
                    response_chars=len(response) if isinstance(response, str) else 0,
                )
            )
        out.sort(key=lambda lt: (lt.window_closed_at, lt.source))
        return out

    def _corrections_of(self, response_ids: list[str]) -> tuple[dict[str, int], dict[str, frozenset[str]]]:
        """Newest corrected label and the sources of all landed corrections, per response."""
        if not response_ids:
            return {}, {}
        frame = self._read(
            CORRECTIONS_TABLE,
            columns=["response_id", "new_label", "reaction_ts", "source_topic", "source_partition", "source_offset"],
            filters=pds.field("response_id").isin(response_ids),
        )
        if frame is None or frame.empty:
            return {}, {}
        where = (frame["source_topic"].astype(str) + ":" + frame["source_partition"].astype("int64").astype(str)
                 + ":" + frame["source_offset"].astype("int64").astype(str))
        sources = {str(r): frozenset(g) for r, g in where.groupby(frame["response_id"])}
        newest = frame.sort_values(["reaction_ts", "source_offset"]).drop_duplicates("response_id", keep="last")
        labels = {str(r): int(v) for r, v in zip(newest["response_id"], newest["new_label"], strict=True)}
        return labels, sources


def _triple_key(row: Any) -> str:
    return str(row.response_id)


def _correction_key(row: Any) -> str:
    return str(row.correction_id)


def _quarantine_key(row: Any) -> str:
    return str(row.quarantine_id)


def _epoch_seconds(stamps: pd.Series) -> Any:
    return stamps.dt.as_unit("us").astype("int64").to_numpy() / 1e6


def _fmt(cp: Mapping[TopicPartition, int]) -> str:
    return ",".join(f"{t}:{p}={o}" for (t, p), o in sorted(cp.items())) or "-"
