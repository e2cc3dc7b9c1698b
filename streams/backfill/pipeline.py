"""`rluf backfill`: build the Beam pipeline over one file, run it, and report what it did.

The pipeline::

    Create(chunks) -> Reshuffle -> ReadChunk -> GroupByKey(one key) -> Attribute -> tagged
        triples / corrections / quarantine (+ summary) -> Flatten -> GroupByKey(one key) ->
        Land (DeltaLandingSink, one call)

Beam is imported when a backfill is built or run, not when this module is: its import logs
optional-dependency notes (one of them on the root logger), which ``_import_beam`` keeps out
of the caller's log, and its runners log every stage at INFO, so its loggers are set to
WARNING then.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.lake.delta_sink import DeltaLandingSink
from rluf.errors import ConfigError, RlufError
from rluf.records import TopicPartition
from rluf.settings import FilterSettings, Settings, StreamSettings
from streams.backfill.inputs import BackfillInput, inspect_input

if TYPE_CHECKING:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.pvalue import PCollection

    from streams.backfill.transforms import ProgressCallback

__all__ = ["BackfillOutputs", "BackfillResult", "build_pipeline", "run_backfill"]

logger = logging.getLogger(__name__)


class _DropImportNoise(logging.Filter):
    """Beam's BigQuery client logs a warning on the root logger at import when apitools is absent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


@contextmanager
def _quiet_beam_import() -> Iterator[None]:
    """While Beam is first imported: drop its apitools note, and never let it configure logging."""
    root = logging.getLogger()
    noise = _DropImportNoise()
    root.addFilter(noise)
    null = None
    if not root.handlers:  # logging.warning() would otherwise call basicConfig() behind the caller's back
        null = logging.NullHandler()
        root.addHandler(null)
    try:
        yield
    finally:
        root.removeFilter(noise)
        if null is not None:
            root.removeHandler(null)


def _import_beam() -> None:
    """Import Beam and the backfill's transforms (once per process) without noise in the caller's log."""
    # Beam's runners log every stage at INFO (and its import logs optional-dependency notes):
    # keep the backfill's own progress readable with `rluf -v`.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    with _quiet_beam_import():
        import apache_beam  # noqa: F401

        import streams.backfill.transforms  # noqa: F401


@dataclass(frozen=True)
class BackfillOutputs:
    """The pipeline's PCollections, for callers that add their own sinks next to Delta.

    Each row collection holds ``RowBatch`` elements, one per core step
    (``beam.FlatMap(lambda b: b.rows)`` gives single rows).

    Attributes:
        triples: Batches of ``Triple`` rows; one row per response.
        corrections: Batches of ``LabelCorrection`` rows.
        quarantine: Batches of ``QuarantineRecord`` rows.
        landed: One attribution summary once the Delta landing is done.
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
            from streams.backfill.transforms import release_progress

            release_progress(self.progress_token)


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
    _import_beam()
    import apache_beam as beam

    from streams.backfill.transforms import TAGS, Attribute, Land, ReadChunk, RowBatch, keyed, register_progress

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
        | "ReadChunk" >> beam.ParDo(ReadChunk(info.path, info.format))
        | "OneKey" >> beam.GroupByKey()
    )
    token = register_progress(on_progress) if on_progress is not None else None
    tagged = records | "Attribute" >> beam.ParDo(
        Attribute(info.topic, stream, filters, checkpoint, token)
    ).with_outputs(*TAGS)
    for tag in TAGS:
        tagged[tag].element_type = RowBatch  # picks the RowBatch coder
    # One group again for the landing: a Delta commit carries the checkpoint, so one writer
    # lands everything (a GroupByKey, not side inputs: those are size-walked per element).
    landed = (
        [tagged[tag] | f"Key{tag.title()}" >> beam.Map(keyed, tag).with_output_types(
            tuple[str, tuple[str, RowBatch]])
         for tag in TAGS]
        | "AllOutputs" >> beam.Flatten()
        | "OneLanding" >> beam.GroupByKey()
        | "Land" >> beam.ParDo(Land(lake_root, info.app_id, options, info.tp))
    )
    triples, corrections, quarantine, _ = TAGS
    return BackfillOutputs(triples=tagged[triples], corrections=tagged[corrections],
                           quarantine=tagged[quarantine], landed=landed, progress_token=token)


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
    from apache_beam.metrics.metric import MetricsFilter

    from streams.backfill.transforms import COUNTER_NAMESPACE

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
    from apache_beam.options.pipeline_options import PipelineOptions

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
    _import_beam()
    import apache_beam as beam

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
