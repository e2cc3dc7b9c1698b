"""Faust's own ceiling: a bare agent that only decodes the messages (run by bench/ingest.py).

Run: ``python -m bench.faust_ceiling CONFIG.json`` where the file holds ``kafka`` (settings
fields), ``total`` (messages to read) and ``out`` (where the result JSON goes). The app has
the same settings as the rluf Faust driver (raw serializers, manual acks off, the local-broker
profile), reads both event topics with one agent and ``json.loads`` every value, and stops
after ``total`` messages. Faust apps are process-global, hence a process of its own.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faust

from rluf.settings import KafkaSettings
from streams.faust_app import broker_urls


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    kafka = KafkaSettings(**config["kafka"])
    total = int(config["total"])
    datadir = tempfile.mkdtemp(prefix="rluf-faust-ceiling-")
    app = faust.App(f"{kafka.consumer_group}-ceiling", broker=broker_urls(kafka), datadir=datadir,
                    processing_guarantee="at_least_once", broker_session_timeout=kafka.session_timeout_ms / 1000,
                    broker_heartbeat_interval=kafka.heartbeat_interval_ms / 1000, topic_allow_declare=False,
                    web_enabled=False, consumer_auto_offset_reset="earliest", key_serializer="raw",
                    value_serializer="raw", autodiscover=False, producer_max_batch_size=1)
    topic = app.topic(*kafka.data_topics, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    state: dict[str, Any] = {"n": 0, "first": None, "last": None}

    async def decode(stream: Any) -> None:
        async for events in stream.take_events(2000, within=0.5):
            now = time.perf_counter()
            if state["first"] is None:
                state["first"] = now
            for event in events:
                with contextlib.suppress(ValueError):  # malformed lines are in the stream too
                    json.loads(event.message.value)
            state["n"] += len(events)
            state["last"] = time.perf_counter()
            if state["n"] >= total:
                Path(config["out"]).write_text(json.dumps(
                    {"messages": state["n"], "rate": (state["n"] - 1) / (state["last"] - state["first"])}))
                await app.stop()

    app.agent(topic, name="decode")(decode)
    worker = faust.Worker(app, loglevel="warning", quiet=True, override_logging=False, redirect_stdouts=False)
    worker.spinner = None
    with contextlib.suppress(SystemExit):  # the worker exits the process's way when the app stops
        worker.execute_from_commandline()
    return 0 if Path(config["out"]).is_file() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
