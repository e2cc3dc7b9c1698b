"""`rluf backfill`: the stream worker's core run over a JSONL or parquet file on Apache Beam.

One implementation, two drivers: the backfill feeds the same ``AttributionEngine`` that the
stream worker feeds (parsing, filtering, windowing and labeling all live there) and lands
its output through the same ``DeltaLandingSink``, so a file of events and the same events
read from Kafka give the same triples. This module only reads, orders, batches and hands off.

The pipeline::

    Create(chunks) -> Reshuffle -> ReadChunk -> GroupByKey(one key) -> Attribute -> tagged
        triples / corrections / quarantine (+ summary) -> Flatten -> GroupByKey(one key) ->
        Land (DeltaLandingSink, one call)

* Reading parallelises: a JSONL file is cut into byte ranges (a line belongs to the range
  its first byte is in), a parquet file into row groups, and each chunk is read by any
  worker, from a local path or any Beam file system (``gs://``, ``s3://``).
* ``Attribute`` runs as ONE keyed group on ONE worker. The engine's watermark and its
  per-user filter state (token buckets, daily caps, Love bursts, low-information counts)
  are global, so the records must pass through a single engine in file order. Beam gives no
  order guarantee, so this step collects the file's chunks (memory: about the file's size)
  and sorts them. Parsing happens inside the engine, so it is part of this serial step too:
  this step bounds the backfill's throughput, whatever the runner's parallelism.
* ``Land`` is one ``DeltaLandingSink.land`` call (quarantine, corrections, then triples
  with the checkpoint), as the stream worker lands one step: a Delta table takes one writer
  per checkpoint. The Parquet encoding inside delta-rs is multi-threaded.

Positions: a record's topic is the file's name, its partition 0 and its offset the
0-based line number (parquet: row number), so backfill rows carry source positions just as
stream rows do. The app id (``backfill-<hash of path, size, mtime>``) and the checkpoint
``{(file name, 0): number of lines}`` make a re-run of the same file land nothing: the
engine is restored with the recorded checkpoint and skips every line below it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import pickle
import posixpath
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Final, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from features.lake.delta_sink import DeltaLandingSink
from rluf.errors import ConfigError, InputFileError, RlufError
from rluf.ports import RestoredState
from rluf.records import InputRecord, Landing, SourceRef, TopicPartition
from rluf.schemas import LabelCorrection, QuarantineRecord, Triple
from rluf.settings import FilterSettings, Settings, StreamSettings
from streams.attribution import AttributionEngine
from streams.ingest_loop import tune_gc_for_streaming


class _DropImportNoise(logging.Filter):
    """Beam's BigQuery client logs a warning on the root logger at import when apitools is absent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


# Beam's runners log every stage at INFO (and its import logs optional-dependency notes):
# keep the backfill's own progress readable with `rluf -v`.
logging.getLogger("apache_beam").setLevel(logging.WARNING)
_root_logger = logging.getLogger()
_noise = _DropImportNoise()
_root_logger.addFilter(_noise)
_no_handler = not _root_logger.handlers
if _no_handler:  # logging.warning() would otherwise call basicConfig() behind the caller's back
    _null = logging.NullHandler()
    _root_logger.addHandler(_null)
try:
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.metrics import Metrics
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.pvalue import PCollection, TaggedOutput
finally:
    _root_logger.removeFilter(_noise)
    if _no_handler:
        _root_logger.removeHandler(_null)

__all__ = [
    "COUNTER_NAMESPACE",
    "BackfillInput",
    "BackfillOutputs",
    "BackfillResult",
    "InputFormat",
    "ProgressCallback",
    "RowBatch",
    "backfill_app_id",
    "build_pipeline",
    "inspect_input",
    "row_to_json",
    "run_backfill",
]

logger = logging.getLogger(__name__)

InputFormat = Literal["jsonl", "parquet"]
ProgressCallback = Callable[[dict[str, object]], None]

COUNTER_NAMESPACE: Final = "rluf.backfill"
"""Beam metrics namespace of the backfill's counters (lines, skipped, triples, ...)."""

_KEY: Final = "backfill"  # the one key of the single-group attribution step
_CHUNK_BYTES: Final = 16 * 1024 * 1024
_PROGRESS_EVERY: Final = 50_000  # records between progress callbacks
_JSONL_SUFFIXES: Final = (".jsonl", ".ndjson")
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_PARQUET_MAGIC: Final = b"PAR1"
_VALUE_COLUMN: Final = "value"
_ROW_SIZE_ESTIMATE: Final = 1024  # bytes per pickled row, for Beam's size metrics only
# Progress callbacks by token: a DoFn is pickled, so it carries the token and finds the
# callback here when it runs in this process (DirectRunner); on a remote worker it finds none.
_PROGRESS_CALLBACKS: dict[str, ProgressCallback] = {}
_TRIPLES, _CORRECTIONS, _QUARANTINE, _SUMMARY = "triples", "corrections", "quarantine", "summary"

Chunk = tuple[int, int, int]  # (chunk index, start, stop): byte range (JSONL) or row group (parquet, start=stop)
Lines = tuple[bytes | None, ...]  # one chunk's records in order; None keeps the place of a blank line


# ---------------------------------------------------------------------------- the input


@dataclass(frozen=True)
class BackfillInput:
    """What the driver learned about the input file before building the pipeline.

    Attributes:
        path: The file, a local path or a Beam file-system URI (``gs://…``, ``s3://…``).
        topic: The file's name; the ``source_topic`` of every row it produces.
        format: How records are read from it.
        size: Bytes.
        app_id: Names the backfill's Delta app transactions (stable for the same file).
        chunks: Units of parallel reading, in file order.
    """

    path: str
    topic: str
    format: InputFormat
    size: int
    app_id: str
    chunks: tuple[Chunk, ...]

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, 0)


def _is_uri(path: str) -> bool:
    return "://" in path


def _open(path: str) -> IO[bytes]:
    if _is_uri(path):
        from apache_beam.io.filesystem import CompressionTypes

        handle: IO[bytes] = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        return handle
    return open(path, "rb")


def _stat(path: str) -> tuple[int, float, str]:
    """Return (size in bytes, mtime in epoch seconds, identity) or raise InputFileError."""
    if _is_uri(path):
        try:
            found = FileSystems.match([path])[0].metadata_list
        except Exception as exc:  # Beam raises BeamIOError or a file-system specific error
            raise InputFileError(path, f"cannot look it up: {str(exc).splitlines()[0]}") from exc
        if not found:
            raise InputFileError(path, "file not found")
        meta = found[0]
        return int(meta.size_in_bytes), float(meta.last_updated_in_seconds or 0.0), path
    local = Path(path)
    if not local.exists():
        raise InputFileError(path, "file not found")
    if local.is_dir():
        raise InputFileError(path, "is a directory, expected a .jsonl or .parquet file")
    st = local.stat()
    return st.st_size, st.st_mtime_ns / 1e9, str(local.resolve())


def backfill_app_id(identity: str, size: int, mtime: float) -> str:
    """Return the Delta app id of a backfill of one file version.

    Stable for the same path, size and modification time, so a re-run finds the checkpoint
    of the earlier run; a rewritten file is a new backfill (its rows still land once: the
    sink drops rows whose key is already in the lake).

    Args:
        identity: Absolute path or URI of the file.
        size: Bytes.
        mtime: Modification time, epoch seconds.
    """
    digest = hashlib.sha256(f"{identity}\n{size}\n{mtime:.6f}".encode()).hexdigest()[:16]
    return f"backfill-{digest}"


def _sniff(path: str, head: bytes) -> InputFormat:
    name = posixpath.basename(path).lower()
    if name.endswith(_PARQUET_SUFFIXES):
        if head[:4] != _PARQUET_MAGIC:
            raise InputFileError(path, "not a parquet file (no PAR1 header)")
        return "parquet"
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if head[:4] == _PARQUET_MAGIC:
        return "parquet"
    if head.lstrip()[:1] in (b"{", b""):
        return "jsonl"
    raise InputFileError(path, "not a JSONL or parquet file; give a .jsonl (one JSON event per line) or .parquet file")


def inspect_input(source: Path | str, *, chunk_bytes: int = _CHUNK_BYTES) -> BackfillInput:
    """Check the input file and plan how it is read.

    Args:
        source: A ``.jsonl`` file (one wire event per line) or a ``.parquet`` file (one
            event per row: a ``value`` column holding the raw JSON, e.g. a Kafka topic dump,
            or else the event fields as columns; see ``row_to_json``). Other names are
            sniffed: parquet by its magic bytes, JSONL when it starts with ``{``.
        chunk_bytes: Size of a JSONL read chunk; parquet is read by row group.

    Raises:
        InputFileError: the file is missing, a directory, unreadable or of another format.
    """
    path = str(source)
    size, mtime, identity = _stat(path)
    try:
        with _open(path) as fh:
            head = fh.read(64)
            fmt = _sniff(path, head)
            if fmt == "parquet":
                parquet = _parquet_file(fh, path)
                schema = parquet.schema_arrow
                if _VALUE_COLUMN in schema.names:
                    kind = schema.field(_VALUE_COLUMN).type
                    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_string(kind)
                            or pa.types.is_large_string(kind)):
                        raise InputFileError(path, f"column `value` must hold the raw JSON as binary or string, "
                                                   f"not {kind}; rename it to read the columns as event fields")
                chunks = tuple((i, i, i) for i in range(parquet.metadata.num_row_groups))
            else:
                step = max(1, chunk_bytes)
                chunks = tuple((i, start, min(size, start + step)) for i, start in enumerate(range(0, size, step)))
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    return BackfillInput(path=path, topic=posixpath.basename(path.rstrip("/")), format=fmt, size=size,
                         app_id=backfill_app_id(identity, size, mtime), chunks=chunks)


def _parquet_file(fh: IO[bytes], path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(fh)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFileError(path, f"not a readable parquet file: {str(exc).splitlines()[0]}") from exc


def _read_jsonl_chunk(path: str, start: int, stop: int) -> Lines:
    """Lines whose first byte lies in ``[start, stop)``, trailing newline removed; blank ones as None."""
    out: list[bytes | None] = []
    with _open(path) as fh:
        if start > 0:
            fh.seek(start - 1)
            if fh.read(1) != b"\n":
                fh.readline()  # this line began in the previous chunk, which reads it whole
        pos = fh.tell()
        while pos < stop:
            raw = fh.readline()
            if not raw:
                break
            pos += len(raw)
            line = raw.rstrip(b"\r\n")
            out.append(line if line.strip() else None)
    return tuple(out)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def row_to_json(row: Mapping[str, Any]) -> bytes:
    """Serialise one parquet row (event fields as columns) back to a wire event.

    Null columns are left out, since a file holding both event types has every column of
    both, null where a type lacks it; an explicit JSON ``null`` in the original event is
    therefore not preserved. Timestamps become ISO-8601 strings; timestamps stored without
    a time zone are taken as UTC.
    """
    return json.dumps({k: v for k, v in row.items() if v is not None}, default=_json_default,
                      ensure_ascii=False).encode("utf-8")


def _read_parquet_chunk(path: str, row_group: int) -> Lines:
    """One row group's records; a ``value`` column is taken as the raw payload, else rows as JSON."""
    with _open(path) as fh:
        table = _parquet_file(fh, path).read_row_group(row_group)
    if _VALUE_COLUMN in table.column_names:
        out: list[bytes | None] = []
        for value in table.column(_VALUE_COLUMN).to_pylist():
            if isinstance(value, str):
                value = value.encode("utf-8")
            out.append(value if value else None)  # a null payload is skipped, like a blank line
        return tuple(out)
    return tuple(row_to_json(row) for row in table.to_pylist())


# ---------------------------------------------------------------------------- the transforms


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


class _ReadChunk(beam.DoFn):  # type: ignore[misc]
    """Reads one chunk of the file; emits it under the single key with its index."""

    def __init__(self, path: str, fmt: InputFormat) -> None:
        self._path = path
        self._format = fmt

    def process(self, chunk: Chunk) -> Iterator[tuple[str, tuple[int, Lines]]]:
        index, start, stop = chunk
        lines = _read_parquet_chunk(self._path, start) if self._format == "parquet" else \
            _read_jsonl_chunk(self._path, start, stop)
        Metrics.counter(COUNTER_NAMESPACE, "chunks_read").inc()
        yield _KEY, (index, lines)


class _Attribute(beam.DoFn):  # type: ignore[misc]
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


class _Land(beam.DoFn):  # type: ignore[misc]
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


def _under_key(batch: RowBatch, tag: str) -> tuple[str, tuple[str, RowBatch]]:
    return _KEY, (tag, batch)


@dataclass(frozen=True)
class BackfillOutputs:
    """The pipeline's PCollections, for callers that add their own sinks next to Delta.

    Each row collection holds ``RowBatch`` elements, one per core step
    (``beam.FlatMap(lambda b: b.rows)`` gives single rows).

    Attributes:
        triples: Batches of ``Triple`` rows; one row per response.
        corrections: Batches of ``LabelCorrection`` rows.
        quarantine: Batches of ``QuarantineRecord`` rows.
        landed: One ``_Summary`` once the Delta landing is done.
        progress_token: Where ``on_progress`` is registered; ``release_progress`` drops it.
    """

    triples: PCollection
    corrections: PCollection
    quarantine: PCollection
    landed: PCollection
    progress_token: str | None = None

    def release_progress(self) -> None:
        """Forget the progress callback once the pipeline has run."""
        if self.progress_token is not None:
            _PROGRESS_CALLBACKS.pop(self.progress_token, None)


def _recorded_checkpoint(root: str, app_id: str, tp: TopicPartition,
                         storage_options: Mapping[str, str]) -> dict[TopicPartition, int]:
    sink = DeltaLandingSink(root, app_id=app_id, storage_options=storage_options, topic_partitions=[tp])
    restored = sink.restore(horizon_s=0.0, topic_partitions=[tp])
    return {k: v for k, v in restored.checkpoint.items() if k == tp}


def build_pipeline(
    p: beam.Pipeline,
    source: Path | str | BackfillInput,
    *,
    stream: StreamSettings,
    filters: FilterSettings,
    lake_root: str,
    storage_options: Mapping[str, str] | None = None,
    on_progress: ProgressCallback | None = None,
) -> BackfillOutputs:
    """Add the backfill of one file to ``p``: read, attribute on one key, land in Delta.

    Reads the backfill's checkpoint from the lake now (driver side), so the pipeline of a
    file that already landed skips every line and commits nothing.

    Args:
        p: The pipeline to add to.
        source: The input file, or what ``inspect_input`` found out about it.
        stream: Window, watermark and batch settings; the same as the stream worker's.
        filters: Adversarial-filter settings; the same as the stream worker's.
        lake_root: Delta lake root, a local path or an object-store URI.
        storage_options: Object-store options for the lake, as delta-rs takes them.
        on_progress: Called from the attribution step every ~50,000 lines and once at the
            end with the engine's counters plus ``lines``, ``open_windows``, ``elapsed_s``
            and ``done``. Only where that step runs in this process (the DirectRunner's
            default in-memory mode); on a cluster, watch the runner's UI and the
            ``rluf.backfill`` counters, and the step logs its progress at INFO. It is not
            pickled, so any callable works.

    Raises:
        InputFileError: the file is missing or not JSONL/parquet.
        LakeError: the lake cannot be read.
    """
    info = source if isinstance(source, BackfillInput) else inspect_input(source)
    options = dict(storage_options or {})
    checkpoint = _recorded_checkpoint(lake_root, info.app_id, info.tp, options)
    if checkpoint:
        logger.info("%s was backfilled before (app %s, checkpoint %s): lines below it are skipped",
                    info.path, info.app_id, checkpoint[info.tp])
    records = (
        p
        | "PlanChunks" >> beam.Create(list(info.chunks))
        | "SpreadChunks" >> beam.Reshuffle()
        | "ReadChunk" >> beam.ParDo(_ReadChunk(info.path, info.format))
        | "OneKey" >> beam.GroupByKey()
    )
    token = None
    if on_progress is not None:
        token = uuid.uuid4().hex
        _PROGRESS_CALLBACKS[token] = on_progress
    tagged = records | "Attribute" >> beam.ParDo(
        _Attribute(info.topic, stream, filters, checkpoint, token)
    ).with_outputs(_TRIPLES, _CORRECTIONS, _QUARANTINE, _SUMMARY)
    for tag in (_TRIPLES, _CORRECTIONS, _QUARANTINE, _SUMMARY):
        tagged[tag].element_type = RowBatch  # picks _RowBatchCoder
    # One group again for the landing: a Delta commit carries the checkpoint, so one writer
    # lands everything (a GroupByKey, not side inputs: those are size-walked per element).
    landed = (
        [tagged[tag] | f"Key{tag.title()}" >> beam.Map(_under_key, tag).with_output_types(
            tuple[str, tuple[str, RowBatch]])
         for tag in (_TRIPLES, _CORRECTIONS, _QUARANTINE, _SUMMARY)]
        | "AllOutputs" >> beam.Flatten()
        | "OneLanding" >> beam.GroupByKey()
        | "Land" >> beam.ParDo(_Land(lake_root, info.app_id, options, info.tp))
    )
    return BackfillOutputs(triples=tagged[_TRIPLES], corrections=tagged[_CORRECTIONS],
                           quarantine=tagged[_QUARANTINE], landed=landed, progress_token=token)


# ---------------------------------------------------------------------------- running it


@dataclass(frozen=True)
class BackfillResult:
    """What one backfill did, from the runner's metrics.

    Attributes:
        source: The input file.
        app_id: The Delta app id its checkpoint is recorded under.
        runner: The Beam runner it ran on.
        lines: Lines (parquet: rows) in the file, blank ones included.
        skipped: Lines below the checkpoint of an earlier run of the same file (not reprocessed).
        events: Records the core processed.
        triples: Triples the core produced (rows whose key already was in the lake are not landed again).
        corrections: Label corrections produced.
        downweighted: Triples of low-information users (weight below 1).
        quarantined: Quarantined records per reason.
        seconds: Wall-clock time of the whole run, pipeline start-up included.
    """

    source: str
    app_id: str
    runner: str
    lines: int
    skipped: int
    events: int
    triples: int
    corrections: int
    downweighted: int
    quarantined: dict[str, int]
    seconds: float

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())


def _counters(result: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(COUNTER_NAMESPACE))["counters"]
    except (NotImplementedError, AttributeError, KeyError):  # a runner without metrics support
        logger.warning("the runner reports no metrics; backfill counts are not available")
        return out
    for c in found:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return out


def _original_error(exc: BaseException) -> RlufError | None:
    """The ``RlufError`` a step raised, before Beam rebuilt it with "[while running ...]" appended.

    In-process runners chain the original (``__context__``); from a cluster only the text comes back.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RlufError) and not getattr(current, "_tagged_with_step", False):
            return current
        current = current.__cause__ or current.__context__
    return None


def _options(runner: str, pipeline_args: Sequence[str]) -> PipelineOptions:
    return PipelineOptions(["--runner", runner, *pipeline_args])


def run_backfill(
    settings: Settings,
    source: Path | str,
    *,
    runner: str = "DirectRunner",
    pipeline_args: Sequence[str] = (),
    on_progress: ProgressCallback | None = None,
) -> BackfillResult:
    """Backfill one file of wire events into the lake, exactly once.

    Args:
        settings: Uses ``stream``, ``filters``, ``lake_root`` and ``lake.storage_options``.
        source: JSONL or parquet file (see ``inspect_input``); local or a Beam file-system URI.
        runner: Beam runner: ``DirectRunner`` (this process), ``FlinkRunner``,
            ``SparkRunner``, ``DataflowRunner``, ``PortableRunner`` (see docs/backfill.md).
        pipeline_args: More Beam options, e.g. ``["--flink_master=host:8081"]``.
        on_progress: Progress callback; see ``build_pipeline``.

    Returns:
        Counts from the runner's metrics and the wall-clock time.

    Raises:
        InputFileError: the file is missing or not JSONL/parquet.
        ConfigError: Beam does not know the runner or its options.
        RlufError: the pipeline failed (the first line of the cause); a re-run is safe.
    """
    started = time.perf_counter()
    info = inspect_input(source)
    logger.info("backfill %s (%s, %d bytes, %d chunks) on %s as %s", info.path, info.format, info.size,
                len(info.chunks), runner, info.app_id)
    try:
        pipeline = beam.Pipeline(options=_options(runner, pipeline_args))
    except ValueError as exc:
        raise ConfigError(f"cannot start Beam runner {runner!r}: {str(exc).splitlines()[0]}",
                          "use DirectRunner, FlinkRunner, SparkRunner, DataflowRunner or PortableRunner") from exc
    outputs = build_pipeline(pipeline, info, stream=settings.stream, filters=settings.filters,
                             lake_root=settings.lake_root, storage_options=settings.lake.storage_options,
                             on_progress=on_progress)
    gc_threshold = gc.get_threshold()  # the steps tune the collector; on the DirectRunner that is this process
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as exc:  # Beam re-raises a failing step's error with the step name added
        original = _original_error(exc)
        if original is not None:
            raise original from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RlufError(f"backfill of {info.path} failed on {runner}: {first}; re-running it is safe") from exc
    finally:
        outputs.release_progress()
        gc.set_threshold(*gc_threshold)
        gc.unfreeze()
    counts = _counters(result)
    prefix = "quarantined."
    out = BackfillResult(
        source=info.path, app_id=info.app_id, runner=runner, lines=counts.get("lines", 0),
        skipped=counts.get("skipped", 0), events=counts.get("events", 0), triples=counts.get("triples", 0),
        corrections=counts.get("corrections", 0), downweighted=counts.get("downweighted", 0),
        quarantined=dict(sorted(Counter({k[len(prefix):]: v for k, v in counts.items()
                                         if k.startswith(prefix) and v}).items())),
        seconds=time.perf_counter() - started,
    )
    logger.info("backfill of %s done in %.1f s: %d lines (%d skipped), %d triples, %d corrections, %d quarantined",
                out.source, out.seconds, out.lines, out.skipped, out.triples, out.corrections, out.quarantined_total)
    return out
