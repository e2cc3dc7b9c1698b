"""DeltaLandingSink on real Delta tables: checkpoints, replays, crashes, restore."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from deltalake import DeltaTable

import features.lake.delta_sink as delta_sink
from features.lake.delta_sink import CHECKPOINT_METADATA_KEY, DeltaLandingSink, transaction_app_id
from features.lake.reader import history, read_table, table_exists, table_version
from features.lake.schema import CORRECTIONS_TABLE, QUARANTINE_TABLE, TRIPLES_TABLE, table_uri
from rluf.errors import LakeError, TableMissingError
from rluf.ports import LandedTriple
from rluf.records import Landing
from rluf.schemas import LabelCorrection, Message, QuarantineRecord, Triple

pytestmark = pytest.mark.integration

APP = "rluf-test"
RESP = "rluf.responses"
REAC = "rluf.reactions"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[3]


def triple(n: int, *, offset: int | None = None, label: int = 0, closed: datetime | None = None,
           user: str = "u1", partition: int = 0) -> Triple:
    return Triple(
        response_id=f"r{n}",
        event_id=f"e{n}",
        conversation_id=f"c{n}",
        user_id=user,
        context=[Message(role="user", content=f"question {n}")],
        response="x" * (10 + n),
        policy_version="p1",
        ts=T0 + timedelta(seconds=n),
        label=label,
        reactions={"love": 1} if label else {},
        window_closed_at=closed or T0 + timedelta(seconds=n + 300),
        source_topic=RESP,
        source_partition=partition,
        source_offset=n if offset is None else offset,
        reaction_sources=[f"{REAC}:0:{100 + n}"] if label else [],
    )


def correction(n: int, response: int, *, new_label: int, offset: int, at: datetime) -> LabelCorrection:
    return LabelCorrection(
        correction_id=f"k{n}",
        response_id=f"r{response}",
        user_id="u1",
        reaction_event_id=f"re{n}",
        action="add" if new_label else "remove",
        old_label=1 - new_label,
        new_label=new_label,
        reaction_ts=at,
        window_closed_at=T0 + timedelta(seconds=response + 300),
        lateness_s=60.0,
        source_topic=REAC,
        source_partition=0,
        source_offset=offset,
    )


def quarantined(n: int, *, offset: int) -> QuarantineRecord:
    return QuarantineRecord(
        quarantine_id=f"q{n}",
        reason="not_owner",
        detail="reaction from a non-owner",
        raw="{}",
        quarantined_at=T0,
        source_topic=REAC,
        source_partition=0,
        source_offset=offset,
    )


def counts(root: str) -> dict[str, list[str]]:
    out = {}
    for name, key in ((TRIPLES_TABLE, "response_id"), (CORRECTIONS_TABLE, "correction_id"),
                      (QUARANTINE_TABLE, "quarantine_id")):
        out[name] = sorted(read_table(root, name, columns=[key])[key]) if table_exists(root, name) else []
    return out


def txn(root: str, topic: str, partition: int) -> int | None:
    return DeltaTable(table_uri(root, TRIPLES_TABLE)).transaction_version(
        transaction_app_id(APP, (topic, partition))
    )


def test_land_then_restore_gives_the_checkpoint(tmp_path) -> None:
    root = str(tmp_path)
    landing = Landing(
        triples=[triple(0), triple(1)],
        corrections=[correction(1, 0, new_label=1, offset=105, at=T0 + timedelta(hours=1))],
        quarantine=[quarantined(1, offset=106)],
    )
    DeltaLandingSink(root, app_id=APP).land(landing, checkpoint={(RESP, 0): 2, (REAC, 0): 107, (REAC, 1): 3})

    assert counts(root) == {TRIPLES_TABLE: ["r0", "r1"], CORRECTIONS_TABLE: ["k1"], QUARANTINE_TABLE: ["q1"]}
    assert (txn(root, RESP, 0), txn(root, REAC, 0), txn(root, REAC, 1)) == (2, 107, 3)
    # REAC:1 has no row anywhere: the restart finds it in the triples commit's metadata.
    state = DeltaLandingSink(root, app_id=APP).restore(horizon_s=86_400)
    assert state.checkpoint == {(RESP, 0): 2, (REAC, 0): 107, (REAC, 1): 3}
    assert history(root, TRIPLES_TABLE, limit=1)[0][CHECKPOINT_METADATA_KEY] == {
        "app_id": APP, "offsets": [[REAC, 0, 107], [REAC, 1, 3], [RESP, 0, 2]],
    }
    # Another app id sees no checkpoint of its own.
    assert DeltaLandingSink(root, app_id="other").restore(horizon_s=60).checkpoint == {}


def test_restore_of_an_empty_lake(tmp_path) -> None:
    state = DeltaLandingSink(str(tmp_path), app_id=APP).restore(horizon_s=60, topic_partitions=[(RESP, 0)])
    assert (state.checkpoint, state.closed, state.user_windows) == ({}, [], {})


def test_replayed_landing_after_restore_lands_once(tmp_path) -> None:
    root = str(tmp_path)
    # Everything is still in the replay region: the checkpoint is at the oldest row.
    landing = Landing(
        triples=[triple(5), triple(6)],
        corrections=[correction(1, 0, new_label=1, offset=110, at=T0)],
        quarantine=[quarantined(1, offset=111), quarantined(2, offset=112)],
    )
    checkpoint = {(RESP, 0): 5, (REAC, 0): 110}
    DeltaLandingSink(root, app_id=APP).land(landing, checkpoint=checkpoint)
    v_before = table_version(root, TRIPLES_TABLE)

    restarted = DeltaLandingSink(root, app_id=APP)
    restarted.restore(horizon_s=86_400)
    assert restarted.replay_keys(TRIPLES_TABLE) == {"r5", "r6"}
    assert restarted.replay_keys(QUARANTINE_TABLE) == {"q1", "q2"}
    restarted.land(landing, checkpoint=checkpoint)
    assert table_version(root, TRIPLES_TABLE) == v_before  # nothing new, same checkpoint: no commit
    restarted.land(landing, checkpoint={(RESP, 0): 7, (REAC, 0): 113})

    assert counts(root) == {TRIPLES_TABLE: ["r5", "r6"], CORRECTIONS_TABLE: ["k1"], QUARANTINE_TABLE: ["q1", "q2"]}
    assert (txn(root, RESP, 0), txn(root, REAC, 0)) == (7, 113)
    # The checkpoint passed every key: the sets are pruned.
    assert restarted.replay_keys(TRIPLES_TABLE) == frozenset()
    assert restarted.replay_keys(QUARANTINE_TABLE) == frozenset()


def test_only_the_replay_region_is_loaded(tmp_path) -> None:
    root = str(tmp_path)
    sink = DeltaLandingSink(root, app_id=APP)
    sink.land(Landing(triples=[triple(0), triple(1)]), checkpoint={(RESP, 0): 2})
    sink.land(Landing(triples=[triple(2), triple(3)]), checkpoint={(RESP, 0): 3})
    restarted = DeltaLandingSink(root, app_id=APP)
    restarted.restore(horizon_s=86_400)
    assert restarted.replay_keys(TRIPLES_TABLE) == {"r3"}


def test_duplicates_within_a_batch_land_once(tmp_path) -> None:
    root = str(tmp_path)
    landing = Landing(
        triples=[triple(1), triple(2), triple(1)],
        quarantine=[quarantined(1, offset=3), quarantined(1, offset=3)],
    )
    DeltaLandingSink(root, app_id=APP).land(landing, checkpoint={(RESP, 0): 3})
    assert counts(root) == {TRIPLES_TABLE: ["r1", "r2"], CORRECTIONS_TABLE: [], QUARANTINE_TABLE: ["q1"]}


def _crash_triples_writes(monkeypatch) -> None:
    real = delta_sink.write_deltalake

    def write(uri, data, **kwargs):
        if str(uri).endswith("/" + TRIPLES_TABLE):
            raise RuntimeError("simulated crash before the triples commit")
        return real(uri, data, **kwargs)

    monkeypatch.setattr(delta_sink, "write_deltalake", write)


def test_crash_before_the_triples_commit_then_restart(tmp_path, monkeypatch) -> None:
    root = str(tmp_path)
    first = Landing(triples=[triple(0)], quarantine=[quarantined(1, offset=100)])
    DeltaLandingSink(root, app_id=APP).land(first, checkpoint={(RESP, 0): 1, (REAC, 0): 101})

    step = Landing(
        triples=[triple(1), triple(2)],
        corrections=[correction(1, 0, new_label=1, offset=101, at=T0 + timedelta(hours=1))],
        quarantine=[quarantined(2, offset=102)],
    )
    crashing = DeltaLandingSink(root, app_id=APP)
    crashing.restore(horizon_s=86_400)
    with monkeypatch.context() as patch:
        _crash_triples_writes(patch)
        with pytest.raises(LakeError, match="simulated crash"):
            crashing.land(step, checkpoint={(RESP, 0): 3, (REAC, 0): 103})
    # Quarantine and corrections landed, the triples and the new checkpoint did not.
    assert counts(root) == {TRIPLES_TABLE: ["r0"], CORRECTIONS_TABLE: ["k1"], QUARANTINE_TABLE: ["q1", "q2"]}
    assert (txn(root, RESP, 0), txn(root, REAC, 0)) == (1, 101)

    restarted = DeltaLandingSink(root, app_id=APP)
    state = restarted.restore(horizon_s=86_400)
    assert state.checkpoint == {(RESP, 0): 1, (REAC, 0): 101}
    restarted.land(step, checkpoint={(RESP, 0): 3, (REAC, 0): 103})

    assert counts(root) == {
        TRIPLES_TABLE: ["r0", "r1", "r2"], CORRECTIONS_TABLE: ["k1"], QUARANTINE_TABLE: ["q1", "q2"],
    }
    assert (txn(root, RESP, 0), txn(root, REAC, 0)) == (3, 103)


def test_retry_in_the_same_process_after_a_failed_step(tmp_path, monkeypatch) -> None:
    root = str(tmp_path)
    sink = DeltaLandingSink(root, app_id=APP)
    step = Landing(triples=[triple(0)], quarantine=[quarantined(1, offset=5)])
    with monkeypatch.context() as patch:
        _crash_triples_writes(patch)
        with pytest.raises(LakeError):
            sink.land(step, checkpoint={(RESP, 0): 1, (REAC, 0): 6})
    sink.land(step, checkpoint={(RESP, 0): 1, (REAC, 0): 6})
    assert counts(root) == {TRIPLES_TABLE: ["r0"], CORRECTIONS_TABLE: [], QUARANTINE_TABLE: ["q1"]}


def test_restore_applies_the_newest_correction(tmp_path) -> None:
    root = str(tmp_path)
    sink = DeltaLandingSink(root, app_id=APP)
    sink.land(
        Landing(triples=[triple(0, label=0), triple(1, label=1), triple(2, label=0, user="u2")]),
        checkpoint={(RESP, 0): 3},
    )
    sink.land(
        Landing(corrections=[
            correction(1, 0, new_label=1, offset=200, at=T0 + timedelta(hours=1)),
            correction(2, 1, new_label=0, offset=201, at=T0 + timedelta(hours=1)),
            correction(4, 2, new_label=1, offset=201, at=T0 + timedelta(hours=1)),
        ]),
        checkpoint={(REAC, 0): 202},
    )
    # A later removal of the Love on r0: the newest correction wins.
    sink.land(
        Landing(corrections=[correction(3, 0, new_label=0, offset=202, at=T0 + timedelta(hours=2))]),
        checkpoint={(REAC, 0): 203},
    )

    state = DeltaLandingSink(root, app_id=APP).restore(horizon_s=86_400)
    assert {lt.response_id: lt.label for lt in state.closed} == {"r0": 0, "r1": 0, "r2": 1}
    assert state.checkpoint == {(RESP, 0): 3, (REAC, 0): 203}
    # Counted with the label at close, as the worker counts them live.
    assert state.user_windows == {"u1": (2, 1), "u2": (1, 0)}
    r1 = next(lt for lt in state.closed if lt.response_id == "r1")
    assert r1 == LandedTriple(
        response_id="r1",
        event_id="e1",
        user_id="u1",
        ts=(T0 + timedelta(seconds=1)).timestamp(),
        window_closed_at=(T0 + timedelta(seconds=301)).timestamp(),
        label=0,
        source=f"{RESP}:0:1",
        reaction_sources=frozenset({f"{REAC}:0:101", f"{REAC}:0:201"}),  # + its correction's source
        response_chars=11,
    )


def test_empty_landing_advances_the_checkpoint(tmp_path) -> None:
    root = str(tmp_path)
    sink = DeltaLandingSink(root, app_id=APP)
    sink.land(Landing(), checkpoint={(RESP, 0): 10, (RESP, 1): 4})  # creates the table, no rows
    assert (txn(root, RESP, 0), txn(root, RESP, 1)) == (10, 4)
    v = table_version(root, TRIPLES_TABLE)
    sink.land(Landing(), checkpoint={(RESP, 0): 10, (RESP, 1): 4})
    assert table_version(root, TRIPLES_TABLE) == v
    sink.land(Landing(), checkpoint={(RESP, 0): 12})
    assert table_version(root, TRIPLES_TABLE) == v + 1
    assert (txn(root, RESP, 0), txn(root, RESP, 1)) == (12, 4)
    assert read_table(root, TRIPLES_TABLE).empty
    assert not table_exists(root, QUARANTINE_TABLE)
    assert DeltaLandingSink(root, app_id=APP).restore(horizon_s=60).checkpoint == {(RESP, 0): 12, (RESP, 1): 4}


def test_restore_keeps_only_the_horizon(tmp_path) -> None:
    root = str(tmp_path)
    newest = datetime(2026, 11, 3, 0, 30, tzinfo=UTC)
    triples = [
        triple(0, closed=newest - timedelta(days=2)),
        triple(1, closed=newest - timedelta(seconds=3601)),
        triple(2, closed=newest - timedelta(seconds=3600)),  # exactly at the horizon: kept
        triple(3, closed=newest - timedelta(minutes=45)),  # previous UTC day
        triple(4, closed=newest),
    ]
    DeltaLandingSink(root, app_id=APP).land(Landing(triples=triples), checkpoint={(RESP, 0): 5})
    state = DeltaLandingSink(root, app_id=APP).restore(horizon_s=3600)
    assert [lt.response_id for lt in state.closed] == ["r2", "r3", "r4"]
    assert state.closed[-1].window_closed_at == newest.timestamp()
    assert state.user_windows == {"u1": (5, 0)}


def test_read_table_of_a_missing_table(tmp_path) -> None:
    with pytest.raises(TableMissingError, match="no Delta table at"):
        read_table(str(tmp_path), TRIPLES_TABLE)
    with pytest.raises(TableMissingError):
        table_version(str(tmp_path), TRIPLES_TABLE)
    assert not table_exists(str(tmp_path), TRIPLES_TABLE)


def test_reading_a_table_in_a_short_script_exits_cleanly(tmp_path) -> None:
    root = str(tmp_path)
    DeltaLandingSink(root, app_id=APP).land(
        Landing(triples=[triple(n) for n in range(50)], quarantine=[quarantined(1, offset=7)]),
        checkpoint={(RESP, 0): 50},
    )
    script = textwrap.dedent(
        f"""
        import sys
        from features.lake.reader import read_table
        frame = read_table({root!r}, "triples", columns=["response_id", "context", "reactions"])
        quarantine = read_table({root!r}, "quarantine")
        sys.stdout.write(f"{{len(frame)}} {{len(quarantine)}}")
        """
    )
    codes = []
    for _ in range(20):
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.stdout == "50 1", done.stderr
        codes.append(done.returncode)
    assert codes == [0] * 20


def test_a_rebalance_handover_commit_retries_on_the_newest_version(tmp_path) -> None:
    """The new owner's table snapshot predates the old owner's last landing (both one app id)."""
    root = str(tmp_path)
    new_owner, old_owner = DeltaLandingSink(root, app_id=APP), DeltaLandingSink(root, app_id=APP)
    new_owner.land(Landing(triples=[triple(1, partition=1)]), checkpoint={(RESP, 1): 2})  # keeps its table open
    old_owner.land(Landing(triples=[triple(2, partition=0)]), checkpoint={(RESP, 0): 3})  # the revoke's landing
    # The shard changes hands: the new owner writes partition 0's offset past the old owner's.
    new_owner.land(Landing(triples=[triple(3, partition=0)]), checkpoint={(RESP, 0): 4, (RESP, 1): 2})
    assert counts(root)[TRIPLES_TABLE] == ["r1", "r2", "r3"]
    assert (txn(root, RESP, 0), txn(root, RESP, 1)) == (4, 2)


def test_a_stale_owner_is_fenced_off(tmp_path) -> None:
    """A worker that lost its partition must not move its offset back over the new owner's."""
    root = str(tmp_path)
    stale, owner = DeltaLandingSink(root, app_id=APP), DeltaLandingSink(root, app_id=APP)
    stale.land(Landing(triples=[triple(1)]), checkpoint={(RESP, 0): 2})
    owner.land(Landing(triples=[triple(2)]), checkpoint={(RESP, 0): 9})
    with pytest.raises(LakeError, match=r"rluf.responses:0 is recorded at offset 9, past this worker's 5"):
        stale.land(Landing(triples=[triple(3)]), checkpoint={(RESP, 0): 5})
    assert counts(root)[TRIPLES_TABLE] == ["r1", "r2"]
    assert txn(root, RESP, 0) == 9
