"""Ingest counters, landing latency and lag, written to a JSON file for `rluf stream stats`.

A file (rewritten atomically every few seconds) rather than an HTTP endpoint: the worker
may run under Faust, as a plain consumer or in a test, and `rluf stream stats` must work
from another shell without a web server. Production scrapes the same numbers (see docs).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rluf.records import TopicPartition

__all__ = ["IngestMetrics", "percentile", "read_metrics"]

_LATENCY_SAMPLES = 200_000


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class IngestMetrics:
    """Numbers a running worker exposes; the engine's own counters are merged in at snapshot."""

    path: Path | None
    started_at: float
    landings: int = 0
    rows_landed: dict[str, int] = field(default_factory=lambda: {"triples": 0, "corrections": 0, "quarantine": 0})
    land_seconds: float = 0.0
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_SAMPLES))
    lag: dict[TopicPartition, int] = field(default_factory=dict)
    checkpoint: dict[TopicPartition, int] = field(default_factory=dict)
    first_event_at: float | None = None  # wall clock, for throughput without start-up time
    last_landing_at: float | None = None
    caught_up_at: float | None = None  # the landing that made the newest event read durable (rows or state)

    def record_landing(self, triples: int, corrections: int, quarantine: int, seconds: float,
                       latencies: list[float], checkpoint: dict[TopicPartition, int], landed_at: float) -> None:
        self.landings += 1
        self.rows_landed["triples"] += triples
        self.rows_landed["corrections"] += corrections
        self.rows_landed["quarantine"] += quarantine
        self.land_seconds += seconds
        self.latencies_s.extend(latencies)
        self.checkpoint = dict(checkpoint)
        if triples or corrections or quarantine:
            self.last_landing_at = landed_at

    def snapshot(self, engine_stats: dict[str, Any], gauges: dict[str, Any], now: float) -> dict[str, Any]:
        lat = list(self.latencies_s)
        return {
            "updated_at": now,
            "uptime_s": round(now - self.started_at, 3),
            **engine_stats,
            **gauges,
            "landings": self.landings,
            "rows_landed": dict(self.rows_landed),
            "land_seconds": round(self.land_seconds, 3),
            "close_to_landed_p50_s": percentile(lat, 50),
            "close_to_landed_p99_s": percentile(lat, 99),
            "consumer_lag": {f"{t}:{p}": v for (t, p), v in sorted(self.lag.items())},
            "consumer_lag_total": sum(self.lag.values()),
            "checkpoint": {f"{t}:{p}": v for (t, p), v in sorted(self.checkpoint.items())},
            "first_event_at": self.first_event_at,
            "last_landing_at": self.last_landing_at,
            "caught_up_at": self.caught_up_at,
        }

    def write(self, snapshot: dict[str, Any]) -> None:
        """Replace the metrics file atomically, so a reader never sees half a file."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".metrics-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(snapshot, fh, indent=2, sort_keys=True)
        os.replace(tmp, self.path)


def read_metrics(path: Path) -> dict[str, Any] | None:
    """The last snapshot a worker wrote, or None when no worker has run here."""
    if not path.is_file():
        return None
    with path.open() as fh:
        data: dict[str, Any] = json.load(fh)
    return data
