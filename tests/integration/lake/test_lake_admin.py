"""`rluf lake optimize|vacuum|history` on real Delta tables."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from features.lake.admin import lake_history, optimize_tables, vacuum_tables
from features.lake.delta_sink import DeltaLandingSink
from features.lake.reader import open_table, read_table
from rluf.records import Landing
from rluf.schemas import Message, Triple

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def triple(i: int) -> Triple:
    return Triple(response_id=f"r{i}", event_id=f"e{i}", conversation_id=f"c{i}", user_id="u", context=[
        Message(role="user", content="hi")], response="hello", policy_version="p", ts=T0, label=i % 2, reactions={},
        window_closed_at=T0 + timedelta(days=1), weight=1.0, source_topic="t", source_partition=0, source_offset=i)


def land_small_batches(root: str, n: int) -> None:
    sink = DeltaLandingSink(root, app_id="admin-test")
    for i in range(n):
        sink.land(Landing(triples=[triple(i)]), checkpoint={("t", 0): i + 1})


def test_optimize_compacts_keeps_rows_and_vacuum_deletes_old_files(tmp_path: Path) -> None:
    root = str(tmp_path)
    land_small_batches(root, 12)
    files_before = len(open_table(root, "triples").file_uris())
    assert files_before == 12
    (result,) = optimize_tables(root, ["triples"])
    assert (result.files_removed, result.files_added) == (12, 1)
    assert result.version_after == result.version_before + 1
    assert len(open_table(root, "triples").file_uris()) == 1
    assert sorted(read_table(root, "triples")["response_id"]) == sorted(f"r{i}" for i in range(12))
    # the compacted-away files are still needed for time travel until vacuumed
    assert len(read_table(root, "triples", version=5)) == 6
    dry = vacuum_tables(root, ["triples"], retention_hours=0, dry_run=True)
    assert dry[0].files_removed == 12
    assert vacuum_tables(root, ["triples"], retention_hours=0)[0].files_removed == 12
    on_disk = [p for p in (tmp_path / "triples").rglob("*.parquet")]
    assert len(on_disk) == 1
    with pytest.raises(ValueError, match="unknown table"):
        optimize_tables(root, ["nope"])


def test_history_shows_operations_and_recorded_checkpoints(tmp_path: Path) -> None:
    root = str(tmp_path)
    land_small_batches(root, 3)
    optimize_tables(root, ["triples"])
    rows = lake_history(root, "triples")
    assert [r["operation"] for r in rows] == ["OPTIMIZE", "WRITE", "WRITE", "WRITE"]
    assert rows[1]["checkpoint"] == [["t", 0, 3]] and rows[1]["rows_added"] == 1
    env = dict(os.environ, RLUF_LAKE__ROOT=root)
    done = subprocess.run([sys.executable, "-m", "rluf", "lake", "history", "triples", "--limit", "2"], env=env,
                          capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and "OPTIMIZE" in lines[0] and "checkpoint t:0=3" in lines[1]
