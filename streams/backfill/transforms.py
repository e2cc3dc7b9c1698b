"""The backfill's Beam transforms: read a chunk, attribute every record on one key, land once.

``ReadChunk`` reads any chunk on any worker; ``Attribute`` runs as ONE keyed group on ONE
worker, because the engine's watermark and its per-user filter state are global, so the
records must pass through a single ``AttributionEngine`` in file order (Beam gives no order
guarantee, so it sorts the file's chunks first); ``Land`` is one ``DeltaLandingSink.land``
call, as the stream worker lands one step. Rows travel between the steps as ``RowBatch``
elements with their own coder.
"""

from __future__ import annotations

import logging
import pickle
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from features.lake.delta_sink import DeltaLandingSink
from rluf.ports import RestoredState
from rluf.records import InputRecord, Landing, SourceRef, TopicPartition
from rluf.schemas import LabelCorrection, QuarantineRecord, Triple
from rluf.settings import FilterSettings, StreamSettings
from streams.attribution import AttributionEngine
from streams.backfill.inputs import Chunk, InputFormat, Lines, read_chunk
from streams.ingest_loop import tune_gc_for_streaming

__all__ = [
    "COUNTER_NAMESPACE",
    "TAGS",
    "Attribute",
    "Land",
    "ProgressCallback",
    "ReadChunk",
    "RowBatch",
    "keyed",
    "register_progress",
    "release_progress",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[dict[str, object]], None]

COUNTER_NAMESPACE: Final = "rluf.backfill"
"""Beam metrics namespace of the backfill's counters (lines, skipped, triples, ...)."""

_KEY: Final = "backfill"  # the one key of the single-group attribution step
_PROGRESS_EVERY: Final = 50_000  # records between progress callbacks
_ROW_SIZE_ESTIMATE: Final = 1024  # bytes per pickled row, for Beam's size metrics only
# Progress callbacks by token: a DoFn is pickled, so it carries the token and finds the
# callback here when it runs in this process (DirectRunner); on a remote worker it finds none.
_PROGRESS_CALLBACKS: dict[str, ProgressCallback] = {}
_TRIPLES, _CORRECTIONS, _QUARANTINE, _SUMMARY = "triples", "corrections", "quarantine", "summary"
TAGS: Final = (_TRIPLES, _CORRECTIONS, _QUARANTINE, _SUMMARY)
"""The tagged outputs of ``Attribute``: rows by kind, then one summary."""


def register_progress(callback: ProgressCallback) -> str:
    """Keep ``callback`` where ``Attribute`` finds it in this process; return its token."""
    token = uuid.uuid4().hex
    _PROGRESS_CALLBACKS[token] = callback
    return token


def release_progress(token: str) -> None:
    """Forget a registered progress callback."""
    _PROGRESS_CALLBACKS.pop(token, None)


@dataclass(frozen=True)
class _Summary:
    """What the attribution step tells the landing step (and the counters) when done."""

    lines: int
    skipped: int
    checkpoint: dict[TopicPartition, int]
    stats: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class RowBatch:
    """Rows of one kind (triples, corrections, quarantine) from one core step.

    Rows travel between pipeline steps in batches, pickled as one list: Beam's default
    coder pickles a list item by item and costs more per row than the core's own work.
    """

    rows: tuple[Any, ...]


class _RowBatchCoder(beam.coders.Coder):  # type: ignore[misc]
    """Encodes a ``RowBatch`` as one pickle (rows are the pydantic models of ``rluf.schemas``)."""

    def encode(self, value: RowBatch) -> bytes:
        return pickle.dumps(value.rows, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> RowBatch:
        return RowBatch(pickle.loads(encoded))  # written by the step before, in the same pipeline

    def estimate_size(self, value: RowBatch, nested: bool = False) -> int:
        # Beam samples sizes for its metrics; the default encodes the batch once more to measure it.
        return _ROW_SIZE_ESTIMATE * len(value.rows)

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self) -> type[RowBatch]:
        return RowBatch


beam.coders.registry.register_coder(RowBatch, _RowBatchCoder)


class ReadChunk(beam.DoFn):  # type: ignore[misc]
    """Reads one chunk of the file; emits it under the single key with its index."""

    def __init__(self, path: str, fmt: InputFormat) -> None:
        self._path = path
        self._format = fmt

    def process(self, chunk: Chunk) -> Iterator[tuple[str, tuple[int, Lines]]]:
        index = chunk[0]
        lines = read_chunk(self._path, self._format, chunk)
        Metrics.counter(COUNTER_NAMESPACE, "chunks_read").inc()
        yield _KEY, (index, lines)


class Attribute(beam.DoFn):  # type: ignore[misc]
    """The single-key step: feeds every record, in file order, to one engine, then flushes.

    Quarantine stamps use the wall clock (``time.time()``), as the stream worker's do.
    """

    def __init__(self, topic: str, stream: StreamSettings, filters: FilterSettings,
                 checkpoint: Mapping[TopicPartition, int], progress_token: str | None) -> None:
        self._topic = topic
        self._stream = stream
        self._filters = filters
        self._checkpoint = dict(checkpoint)
        self._progress_token = progress_token

    def setup(self) -> None:
        # As in the stream worker: open windows are many long-lived objects, and frequent
        # full collections over them cost more than the core's work.
        tune_gc_for_streaming()

    def process(self, element: tuple[str, Iterable[tuple[int, Lines]]]) -> Iterator[Any]:
        _, chunks = element
        started = time.perf_counter()
        engine = AttributionEngine(self._stream, self._filters, RestoredState(checkpoint=dict(self._checkpoint)))
        topic, batch_size = self._topic, self._stream.batch_size
        batch: list[InputRecord] = []
        offset = next_report = 0
        for _, lines in sorted(chunks, key=lambda c: c[0]):
            for value in lines:
                if value is not None:
                    batch.append(InputRecord(SourceRef(topic, 0, offset), value))
                offset += 1
                if len(batch) >= batch_size:
                    yield from _tagged(engine.process(batch, time.time()))
                    batch = []
                    if offset >= next_report:
                        next_report = offset + _PROGRESS_EVERY
                        self._progress(engine, offset, started, done=False)
        if batch:
            yield from _tagged(engine.process(batch, time.time()))
        yield from _tagged(engine.flush(time.time()))
        stats = engine.stats
        for name, count in (("lines", offset), ("skipped", stats.below_checkpoint_skipped),
                            ("events", stats.events_in), ("triples", stats.triples_out),
                            ("corrections", stats.corrections_out), ("downweighted", stats.downweighted)):
            Metrics.counter(COUNTER_NAMESPACE, name).inc(count)
        for reason, n in stats.quarantined.items():
            Metrics.counter(COUNTER_NAMESPACE, f"quarantined.{reason}").inc(n)
        self._progress(engine, offset, started, done=True)
        summary = _Summary(lines=offset, skipped=stats.below_checkpoint_skipped, checkpoint={(topic, 0): offset},
                           stats=stats.as_dict())
        yield TaggedOutput(_SUMMARY, RowBatch((summary,)))

    def _progress(self, engine: AttributionEngine, lines: int, started: float, *, done: bool) -> None:
        snap: dict[str, object] = {**engine.stats.as_dict(), "lines": lines, "open_windows": engine.open_windows,
                                   "elapsed_s": time.perf_counter() - started, "done": done}
        logger.info("backfill %s: %d lines, %s triples, %s quarantined%s", self._topic, lines,
                    snap["triples_out"], snap["quarantined_total"], " (done)" if done else "")
        callback = _PROGRESS_CALLBACKS.get(self._progress_token) if self._progress_token else None
        if callback is not None:
            callback(snap)


def _tagged(landing: Landing) -> Iterator[TaggedOutput]:
    for tag, rows in ((_TRIPLES, landing.triples), (_CORRECTIONS, landing.corrections),
                      (_QUARANTINE, landing.quarantine)):
        if rows:
            yield TaggedOutput(tag, RowBatch(tuple(rows)))


class Land(beam.DoFn):  # type: ignore[misc]
    """Lands everything in one ``DeltaLandingSink.land`` call, the checkpoint on the triples commit."""

    def __init__(self, root: str, app_id: str, storage_options: Mapping[str, str], tp: TopicPartition) -> None:
        self._root = root
        self._app_id = app_id
        self._storage_options = dict(storage_options)
        self._tp = tp

    def setup(self) -> None:
        # Unpickling the batches creates every row at once; with the default thresholds the
        # collector walked them over and over (measured: 7 s instead of 0.4 s for 20,000 triples).
        tune_gc_for_streaming()

    def process(self, element: tuple[str, Iterable[tuple[str, RowBatch]]]) -> Iterator[_Summary]:
        rows: dict[str, list[Any]] = {_TRIPLES: [], _CORRECTIONS: [], _QUARANTINE: [], _SUMMARY: []}
        for tag, batch in element[1]:
            rows[tag].extend(batch.rows)
        if len(rows[_SUMMARY]) != 1:  # pragma: no cover - the attribution step emits exactly one
            raise RuntimeError(f"expected one attribution summary, got {len(rows[_SUMMARY])}")
        summary: _Summary = rows[_SUMMARY][0]
        triples: list[Triple] = rows[_TRIPLES]
        corrections: list[LabelCorrection] = rows[_CORRECTIONS]
        quarantine: list[QuarantineRecord] = rows[_QUARANTINE]
        landing = Landing(  # file order, so the tables read back in the order the events came
            triples=sorted(triples, key=lambda r: r.source_offset),
            corrections=sorted(corrections, key=lambda r: r.source_offset),
            quarantine=sorted(quarantine, key=lambda r: r.source_offset),
        )
        sink = DeltaLandingSink(self._root, app_id=self._app_id, storage_options=self._storage_options,
                                topic_partitions=[self._tp])
        sink.land(landing, checkpoint=summary.checkpoint)
        yield summary


def keyed(batch: RowBatch, tag: str) -> tuple[str, tuple[str, RowBatch]]:
    """Put one tagged batch under the single key, so one ``Land`` receives every batch."""
    return _KEY, (tag, batch)
