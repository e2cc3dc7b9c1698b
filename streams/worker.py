"""Assemble a stream worker from settings: topics, sink, publisher, loop, driver.

This is the one place that knows which adapters make up the production worker, so the
CLI, the benchmark and the integration tests start exactly the same thing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from features.lake.delta_sink import DeltaLandingSink
from rluf.ports import LandingObserver
from rluf.records import Landing
from rluf.settings import KafkaSettings, Settings, StreamSettings
from streams.batch_worker import RunOutcome, run_batch_worker
from streams.burst_channel import KafkaBursts
from streams.ingest_loop import IngestLoop, tune_gc_for_streaming
from streams.kafka_admin import copartitioned_shards, ensure_topics, wait_for_kafka
from streams.kafka_producer import EventPublisher
from streams.metrics import IngestMetrics, read_metrics

__all__ = ["FeatureStorePush", "QuarantineMirror", "feature_hooks", "metrics_path", "run_stream", "worker_metrics"]

logger = logging.getLogger(__name__)


class QuarantineMirror:
    """Mirrors landed quarantine rows to the quarantine topic before offsets are acknowledged."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    def publish(self, records: Sequence[object]) -> None:
        self._publisher.publish_quarantine(records)  # type: ignore[arg-type]
        self._publisher.flush()


class FeatureStorePush:
    """Keeps the feature store's user statistics fresh from each landing (its push source)."""

    def __init__(self, settings: Settings) -> None:
        from features.store.push import UserStatsPusher

        self._pusher = UserStatsPusher(settings)
        restored = self._pusher.restore()
        logger.info("feature push: %d recent activities restored", restored)

    def on_landing(self, landing: Landing, *, watermark: float | None) -> None:
        at = datetime.fromtimestamp(watermark, tz=UTC) if watermark is not None else None
        self._pusher.on_landing(landing, watermark=at)


def feature_hooks(settings: Settings) -> tuple[list[LandingObserver], Callable[[str], float] | None]:
    """The feature-store push and the reputation lookup, when a feature repo has been applied.

    Without one (`rluf features apply` not run) the worker ingests as before; it says so.
    """
    if not (settings.feature_repo_dir / "feature_store.yaml").is_file():
        logger.warning("no feature repository at %s: no user-stats push, no reputation rule "
                       "(run `rluf features apply`)", settings.feature_repo_dir)
        return [], None
    observers: list[LandingObserver] = []
    reputation: Callable[[str], float] | None = None
    if settings.features.push_enabled:
        observers.append(FeatureStorePush(settings))
    if settings.filters.reputation_enabled:
        from features.store.reputation import ReputationLookup

        reputation = ReputationLookup.from_settings(settings)
    return observers, reputation


def metrics_path(settings: Settings, worker: str | None = None) -> Path:
    """Where a worker of this consumer group writes its metrics snapshot.

    Several workers of one group may run on one host: each writes its own file
    (``worker`` = host and pid); without ``worker``, the group's newest file.
    """
    folder = settings.data_home / "metrics"
    group = settings.kafka.consumer_group
    if worker is not None:
        return folder / f"stream-{group}.{worker}.json"
    files = sorted(folder.glob(f"stream-{group}.*.json"), key=lambda f: f.stat().st_mtime)
    return files[-1] if files else folder / f"stream-{group}.json"


def worker_metrics(settings: Settings, *, within_s: float = 60.0) -> list[dict[str, object]]:
    """The snapshots of the group's workers updated within the last ``within_s`` seconds."""
    now = time.time()
    out = []
    for path in (settings.data_home / "metrics").glob(f"stream-{settings.kafka.consumer_group}.*.json"):
        snap = read_metrics(path)
        if snap is not None and now - float(snap.get("updated_at", 0)) <= within_s:
            out.append(snap)
    return out


def run_stream(settings: Settings, *, driver: Literal["faust", "batch"] | None = None,
               until_idle_s: float | None = None, flush: bool = False,
               on_progress: Callable[[dict[str, object]], None] | None = None) -> RunOutcome:
    """Run the stream worker until idle (or forever) and return how it ended."""
    kafka, stream = settings.kafka, settings.stream
    chosen = driver or stream.driver
    wait_for_kafka(kafka, timeout_s=10.0)
    extra: list[str] = []
    if chosen == "faust":
        from streams.faust_app import internal_topics

        extra = internal_topics(kafka.consumer_group)
    ensure_topics(kafka, extra)
    shards = copartitioned_shards(kafka)
    bursts = KafkaBursts(kafka, settings.filters, shards) if settings.filters.coordination_enabled else None
    sink = DeltaLandingSink(settings.lake_root, storage_options=settings.lake.storage_options,
                            app_id=kafka.consumer_group, commit_attempts=settings.lake.commit_attempts)
    with EventPublisher(kafka) as publisher:
        metrics = IngestMetrics(path=metrics_path(settings, f"{socket.gethostname()}-{os.getpid()}"),
                                started_at=time.time())
        observers, reputation = feature_hooks(settings)
        loop = IngestLoop(stream, settings.filters, sink, publisher=QuarantineMirror(publisher), metrics=metrics,
                          observers=observers, reputation=reputation, bursts=bursts, topics=kafka.data_topics)
        tune_gc_for_streaming()
        if chosen == "faust":
            from streams.faust_app import run_faust_worker

            return run_faust_worker(kafka, stream, loop, until_idle_s=until_idle_s, flush=flush,
                                    on_progress=on_progress, bursts=bursts)
        return asyncio.run(_batch_until_signalled(kafka, stream, loop, until_idle_s=until_idle_s, flush=flush,
                                                  on_progress=on_progress, bursts=bursts))


async def _batch_until_signalled(kafka: KafkaSettings, stream: StreamSettings, loop: IngestLoop, *,
                                 until_idle_s: float | None, flush: bool,
                                 on_progress: Callable[[dict[str, object]], None] | None,
                                 bursts: KafkaBursts | None) -> RunOutcome:
    """The batch driver with SIGTERM/SIGINT as a graceful stop (land, commit, leave the group)."""
    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        running.add_signal_handler(sig, stop.set)
    try:
        return await run_batch_worker(kafka, stream, loop, until_idle_s=until_idle_s, flush=flush,
                                      on_progress=on_progress, stop=stop, bursts=bursts)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            running.remove_signal_handler(sig)
