"""Restart-to-current with many open windows: state table restore vs replaying the window.

Run: ``python -m bench.recovery [--windows 1000000] [--shards 4]``

Builds a lake whose shards hold ``--windows`` open attribution windows (one response each,
~300-byte events, all inside one 24 h window, with a Love on every 50th), landed through the
real ``DeltaLandingSink`` and its ``stream_state`` table. Then measures what a restarted (or
newly assigned) worker does before it is current again:
* **restore** (rluf): read each shard's live rows from the state table and rebuild the
  engines (`IngestLoop.take_partitions`), then nothing is left to read;
* **replay** (the strongest alternative without a state table, what rluf did before): feed
  every event of the open windows through a fresh engine again, as a restart from the oldest
  open offset does (the Kafka read itself is left out, which flatters the replay).
Prints both times, their ratio, the state table's size and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from features.lake.delta_sink import DeltaLandingSink
from rluf.records import InputRecord, SourceRef
from rluf.settings import FilterSettings, StreamSettings
from streams.ingest_loop import IngestLoop, tune_gc_for_streaming

TOPICS = ("responses", "reactions")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def events(n: int, shards: int) -> list[InputRecord]:
    """``n`` responses over ``shards`` partitions, one Love per 50 responses, all within 6 h."""
    offsets = {(t, p): 0 for t in TOPICS for p in range(shards)}
    out: list[InputRecord] = []
    for i in range(n):
        shard, user = i % shards, f"u{i % 50_000}"
        ts = T0 + timedelta(seconds=i * 21_600 / n)
        response = {"type": "response", "event_id": f"e{i}", "response_id": f"r{i}", "conversation_id": f"c{i}",
                    "user_id": user, "context": [{"role": "user", "content": f"question number {i} about things"}],
                    "response": f"answer {i}: " + "a helpful sentence. " * 8, "policy_version": "p1",
                    "ts": ts.isoformat()}
        tp = ("responses", shard)
        out.append(InputRecord(SourceRef(*tp, offsets[tp]), json.dumps(response).encode()))
        offsets[tp] += 1
        if i % 50 == 0:
            love = {"type": "reaction", "event_id": f"l{i}", "response_id": f"r{i}", "user_id": user,
                    "reaction": "love", "action": "add", "ts": (ts + timedelta(seconds=60)).isoformat()}
            tp = ("reactions", shard)
            out.append(InputRecord(SourceRef(*tp, offsets[tp]), json.dumps(love).encode()))
            offsets[tp] += 1
    return out


def loop_for(lake: str, stream: StreamSettings, filters: FilterSettings) -> IngestLoop:
    return IngestLoop(stream, filters, DeltaLandingSink(lake, app_id="bench-recovery"), topics=TOPICS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    stream = StreamSettings(attribution_window_s=86_400, idle_advance=False, land_max_rows=200_000)
    filters = FilterSettings(reputation_enabled=False, rate_enabled=False, daily_cap_enabled=False)
    lake = str(Path(tempfile.mkdtemp(prefix="rluf-recovery-")) / "lake")
    records = events(args.windows, args.shards)
    tune_gc_for_streaming()

    build = loop_for(lake, stream, filters)
    tps = [(t, p) for t in TOPICS for p in range(args.shards)]
    build.take_partitions(tps)
    build.assigned(dict.fromkeys(tps, 0))
    started = time.perf_counter()
    for i in range(0, len(records), 20_000):
        build.feed(records[i:i + 20_000])
        build.write(build.cut())
    fed = time.perf_counter() - started
    open_windows = sum(e.open_windows for e in build.engines.values())
    size = sum(f.stat().st_size for f in (Path(lake) / "stream_state").rglob("*.parquet"))
    print(f"built {open_windows:,} open windows from {len(records):,} events in {fed:.1f} s "
          f"(state table {size / 1e6:,.0f} MB)")
    del build

    started = time.perf_counter()
    restored = loop_for(lake, stream, filters)
    restored.take_partitions(tps)
    restore_s = time.perf_counter() - started
    assert sum(e.open_windows for e in restored.engines.values()) == open_windows
    del restored

    started = time.perf_counter()
    replay = IngestLoop(stream, filters, DeltaLandingSink(lake + "-replay", app_id="bench-replay"), topics=TOPICS)
    replay.take_partitions(tps)
    replay.assigned(dict.fromkeys(tps, 0))
    for i in range(0, len(records), 20_000):
        replay.feed(records[i:i + 20_000])
    replay_s = time.perf_counter() - started
    assert sum(e.open_windows for e in replay.engines.values()) == open_windows
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"restart to current with {open_windows:,} open windows: restore from the state table {restore_s:.1f} s; "
          f"replaying the window through the engine {replay_s:.1f} s (Kafka read not counted); "
          f"{replay_s / restore_s:.1f}x faster; peak RSS {peak:.1f} GB")


if __name__ == "__main__":
    main()
