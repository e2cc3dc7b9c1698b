"""Environment for running the real `rluf` command against the test broker and a temp lake."""

from __future__ import annotations

import os
from typing import Any

from rluf.settings import KafkaSettings


def worker_env(kafka: KafkaSettings, home: Any, **settings: Any) -> dict[str, str]:
    """`os.environ` plus RLUF_* pointing at ``kafka``'s topics and group and the data home ``home``.

    Extra settings are given as ``section__field=value`` (e.g. ``stream__attribution_window_s=600``).
    """
    env = dict(os.environ)
    env.update({
        "RLUF_DATA_HOME": str(home),
        "RLUF_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "RLUF_KAFKA__RESPONSES_TOPIC": kafka.responses_topic,
        "RLUF_KAFKA__REACTIONS_TOPIC": kafka.reactions_topic,
        "RLUF_KAFKA__QUARANTINE_TOPIC": kafka.quarantine_topic,
        "RLUF_KAFKA__CONSUMER_GROUP": kafka.consumer_group,
        "RLUF_KAFKA__PARTITIONS": str(kafka.partitions),
        "RLUF_STREAM__TICK_INTERVAL_S": "0.5",
        "RLUF_STREAM__STATS_INTERVAL_S": "0.5",
    })
    env.update({f"RLUF_{key.upper()}": str(value) for key, value in settings.items()})
    return env
