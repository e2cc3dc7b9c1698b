"""Run one Faust worker in its own process, for the integration tests.

Faust apps keep process-global state (the app registry, the event loop, signal handlers),
so each test run starts this script: ``python -m tests.integration.faust.faust_worker CONFIG``.
``CONFIG`` is a JSON file with ``kafka`` and ``stream`` (settings fields), ``lake_root``,
``metrics_path``, ``outcome_path``, ``until_idle_s`` and ``flush``. The worker lands into
the real ``DeltaLandingSink`` (app id = the consumer group) and writes its ``RunOutcome``
as JSON to ``outcome_path`` when it stops by itself or on SIGTERM.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

from features.lake.delta_sink import DeltaLandingSink
from rluf.settings import FilterSettings, KafkaSettings, StreamSettings
from streams.burst_channel import KafkaBursts
from streams.faust_app import run_faust_worker
from streams.ingest_loop import IngestLoop
from streams.kafka_admin import copartitioned_shards
from streams.metrics import IngestMetrics


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("streams").setLevel(logging.INFO)
    kafka = KafkaSettings(**config["kafka"])
    stream = StreamSettings(**config["stream"])
    sink = DeltaLandingSink(config["lake_root"], app_id=kafka.consumer_group)
    metrics = IngestMetrics(path=Path(config["metrics_path"]), started_at=time.time())
    filters = FilterSettings(**config.get("filters", {}))
    bursts = KafkaBursts(kafka, filters, copartitioned_shards(kafka)) if filters.coordination_enabled else None
    loop = IngestLoop(stream, filters, sink, metrics=metrics, bursts=bursts, topics=kafka.data_topics)
    outcome = run_faust_worker(kafka, stream, loop, until_idle_s=config.get("until_idle_s"),
                               flush=bool(config.get("flush", False)), bursts=bursts)
    Path(config["outcome_path"]).write_text(json.dumps(asdict(outcome)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
