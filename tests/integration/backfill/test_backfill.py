"""`rluf backfill` on Beam's DirectRunner: the same triples as the stream worker, exactly once.

The equivalence test publishes one event set to the test broker, runs the stream worker
(`rluf stream run --driver batch --until-idle 3 --flush`, a subprocess) into one lake and
the backfill over the same lines, as a JSONL file, into another, and compares the tables.

The events are arranged so the outcome does not depend on how the consumer interleaves
the two topics (one partition each): every phase-one reaction lies well inside its window,
and a "clock" response and reaction far ahead in event time move the watermark of BOTH
topics past every phase-one window. The stream's watermark follows the slower topic, so
it stops at the clock response (t=10,000 s) while the backfill's single file source goes
on to the newest event (t=11,000 s); both are past every phase-one window end (3,600 s)
and short of the clock window's end (13,600 s), so the phase-one windows close by
watermark in both, at their end, and only the clock window closes by flush, at a time
that depends on the watermark when the run ends. Late reactions after the clock are
judged against those closed windows in both drivers, by the stream at its flush.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest

from features.lake.reader import read_table, table_exists, table_version
from features.lake.schema import corrections_from_rows, quarantine_from_rows, triples_from_rows
from rluf.errors import InputFileError
from rluf.schemas import LabelCorrection, QuarantineRecord, Triple
from rluf.settings import FilterSettings, KafkaSettings, LakeSettings, Settings, SimulationSettings, StreamSettings
from streams.backfill.inputs import inspect_input
from streams.backfill.pipeline import build_pipeline, run_backfill
from streams.filter_eval import score_filter
from streams.kafka_producer import EventPublisher
from streams.sources.simulator.simulate import simulate, write_simulation
from streams.sources.simulator.text_corpus import template_corpus
from tests.cli_env import worker_env
from tests.factories import MALFORMED, edge_case_events, reaction, response

pytestmark = pytest.mark.integration

RLUF = [sys.executable, "-m", "rluf"]
WINDOW = {"attribution_window_s": 3600.0, "allowed_lateness_s": 0.0, "max_lateness_s": 7200.0}
COMPARED = ("response_id", "label", "reactions", "weight", "user_id", "conversation_id", "context", "response",
            "extra", "close_reason")


# ---------------------------------------------------------------------------- helpers


def equivalence_events() -> list[bytes]:
    """Phase one (t <= 300 s, windows of 3,600 s), the clock (t = 10,000 s), late reactions."""
    events: list[dict[str, Any] | bytes] = [
        *edge_case_events(),
        response("r7", "u7", 10), reaction("ha", "r7", "u7", 70, kind="laugh"),
        reaction("ghost", "nope", "u1", 200),                                                       # no response
        # The clock: both topics move far ahead; every phase-one window closes by watermark.
        response("rc", "uc", 10_000), reaction("xc", "rc", "uc", 10_060),
        reaction("late", "r6", "u6", 10_100),                       # late Love: correction r6 0 -> 1
        reaction("lol", "r1", "u1", 10_200, kind="laugh"),          # late, not a Love: quarantined
        reaction("tooold", "r2", "u2", 11_000),                     # 7,400 s after close > max lateness
    ]
    return [e if isinstance(e, bytes) else json.dumps(e).encode() for e in events]


EXPECTED_QUARANTINE = sorted([
    ("x1", "duplicate_event"), ("-", "malformed_json"), ("-", "schema_violation"), ("troll", "not_owner"),
    ("bot", "too_fast"), *[(f"cl{i}", "coordinated") for i in range(5)], ("ghost", "unknown_response"),
    ("lol", "late_reaction"), ("tooold", "beyond_max_lateness"),
])
EXPECTED_LABELS = {"r1": 1, "r2": 0, "r3": 1, "r4": 0, "r5": 0, "r6": 0, "r7": 0, "rc": 1,
                   **{f"c{i}": 0 for i in range(5)}}


def write_jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def backfill_settings(home: Path, **stream: float) -> Settings:
    return Settings(data_home=home, stream=StreamSettings(**stream), filters=FilterSettings(),
                    lake=LakeSettings())


def stream_env(kafka: KafkaSettings, home: Path) -> dict[str, str]:
    return worker_env(kafka, home, **{f"stream__{k}": v for k, v in WINDOW.items()})


def triples(root: str) -> list[Triple]:
    return triples_from_rows(read_table(root, "triples").to_dict("records"))


def corrections(root: str) -> list[LabelCorrection]:
    if not table_exists(root, "label_corrections"):
        return []
    return corrections_from_rows(read_table(root, "label_corrections").to_dict("records"))


def quarantine(root: str) -> list[QuarantineRecord]:
    if not table_exists(root, "quarantine"):
        return []
    return quarantine_from_rows(read_table(root, "quarantine").to_dict("records"))


def compared(rows: list[Triple]) -> dict[str, dict[str, Any]]:
    out = {}
    for t in rows:
        d = t.model_dump(include=set(COMPARED))
        out[t.response_id] = d
    return out


def quarantine_keys(rows: list[QuarantineRecord]) -> list[tuple[str, str]]:
    return sorted((q.event_id or "-", q.reason) for q in rows)


def correction_keys(rows: list[LabelCorrection]) -> list[tuple[Any, ...]]:
    return sorted((c.response_id, c.reaction_event_id, c.action, c.old_label, c.new_label, c.window_closed_at,
                   round(c.lateness_s, 6)) for c in rows)


def effective(rows: list[Triple], fixes: list[LabelCorrection]) -> dict[str, int]:
    labels = {t.response_id: t.label for t in rows}
    for c in sorted(fixes, key=lambda c: (c.reaction_ts, c.source_offset)):
        labels[c.response_id] = c.new_label
    return labels


def lake_versions(root: str) -> dict[str, int]:
    return {name: table_version(root, name) for name in ("triples", "label_corrections", "quarantine")
            if table_exists(root, name)}


# ---------------------------------------------------------------------------- (a) stream == backfill


@pytest.mark.kafka_partitions(1)
def test_stream_and_backfill_land_identical_triples(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    lines = equivalence_events()
    with EventPublisher(kafka_settings) as pub:
        pub.publish(lines)
        pub.flush()
    stream_home = tmp_path / "stream"
    cmd = [*RLUF, "stream", "run", "--driver", "batch", "--until-idle", "3", "--flush"]
    done = subprocess.run(cmd, env=stream_env(kafka_settings, stream_home), capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    events = write_jsonl(tmp_path / "events.jsonl", lines)
    settings = backfill_settings(tmp_path / "backfill", **WINDOW)
    result = run_backfill(settings, events)
    assert (result.lines, result.skipped, result.triples, result.corrections) == (len(lines), 0, 13, 1)

    s_root, b_root = str(stream_home / "lake"), settings.lake_root
    streamed, backfilled = triples(s_root), triples(b_root)
    assert compared(backfilled) == compared(streamed)
    assert {t.response_id: t.label for t in backfilled} == EXPECTED_LABELS
    closed_by = {t.response_id: t.close_reason for t in backfilled}
    assert [rid for rid, why in closed_by.items() if why == "flush"] == ["rc"]
    s_closed = {t.response_id: t.window_closed_at for t in streamed if t.close_reason == "watermark"}
    b_closed = {t.response_id: t.window_closed_at for t in backfilled if t.close_reason == "watermark"}
    assert len(b_closed) == 12 and b_closed == s_closed

    assert correction_keys(corrections(b_root)) == correction_keys(corrections(s_root))
    assert [(c.response_id, c.old_label, c.new_label) for c in corrections(b_root)] == [("r6", 0, 1)]
    assert quarantine_keys(quarantine(b_root)) == quarantine_keys(quarantine(s_root)) == EXPECTED_QUARANTINE
    assert result.quarantined == dict(Counter(reason for _, reason in EXPECTED_QUARANTINE))

    # Backfill rows carry file positions: topic = file name, partition 0, offset = line number.
    r3 = next(t for t in backfilled if t.response_id == "r3")
    assert (r3.source_topic, r3.source_partition, r3.source_offset) == ("events.jsonl", 0, 7)
    assert r3.reaction_sources == ["events.jsonl:0:6"]


# ---------------------------------------------------------------------------- (c) exactly once, (d) parquet


def test_rerun_lands_nothing_and_chunked_or_parquet_input_lands_the_same(tmp_path: Path) -> None:
    lines = equivalence_events()
    events = write_jsonl(tmp_path / "events.jsonl", lines)
    settings = backfill_settings(tmp_path / "jsonl", **WINDOW)
    first = run_backfill(settings, events)
    root = settings.lake_root
    versions, rows = lake_versions(root), (triples(root), corrections(root), quarantine(root))

    again = run_backfill(settings, events)
    assert (again.triples, again.corrections, again.quarantined, again.events) == (0, 0, {}, 0)
    assert again.skipped == len(lines) and again.app_id == first.app_id
    assert lake_versions(root) == versions
    assert (triples(root), corrections(root), quarantine(root)) == rows

    def same_as_jsonl(other_root: str, *, positions: bool) -> None:
        def view(t: Triple) -> dict[str, Any]:
            d = t.model_dump(include=set(COMPARED))
            if positions:  # line numbers; the topic is the file's name, which differs
                d["offsets"] = (t.source_offset, [int(s.rsplit(":", 1)[1]) for s in t.reaction_sources])
            return d

        assert {t.response_id: view(t) for t in triples(other_root)} == {t.response_id: view(t) for t in rows[0]}
        assert correction_keys(corrections(other_root)) == correction_keys(rows[1])
        want_q = quarantine_keys(rows[2])
        if not positions:  # the column form cannot hold the line that is not JSON
            want_q = [q for q in want_q if q[1] != "malformed_json"]
        assert quarantine_keys(quarantine(other_root)) == want_q

    # Many small chunks, read in any order, give the same rows at the same positions.
    chunked = backfill_settings(tmp_path / "chunked", **WINDOW)
    import apache_beam as beam

    info = inspect_input(events, chunk_bytes=97)
    assert len(info.chunks) > 10
    with beam.Pipeline(runner="DirectRunner") as p:
        build_pipeline(p, info, stream=chunked.stream, filters=chunked.filters, lake_root=chunked.lake_root)
    same_as_jsonl(chunked.lake_root, positions=True)

    # Parquet with the raw payload in a `value` column (a Kafka topic dump): rows are lines.
    value_file = tmp_path / "events.parquet"
    pq.write_table(pa.table({"key": [None] * len(lines), "value": lines}), value_file, row_group_size=7)
    by_value = backfill_settings(tmp_path / "value", **WINDOW)
    assert run_backfill(by_value, value_file).lines == len(lines)
    same_as_jsonl(by_value.lake_root, positions=True)

    # Parquet with the event fields as columns (timestamps typed), serialised back to JSON per row.
    valid = [line for line in lines if line != MALFORMED]
    table = pa_json.read_json(pa.py_buffer(b"\n".join(valid)))
    ts = pa.array(pd.to_datetime(table.column("ts").to_pandas(), utc=True, format="ISO8601"))
    table = table.set_column(table.schema.get_field_index("ts"), "ts", ts)
    columns_file = tmp_path / "columns.parquet"
    pq.write_table(table, columns_file)
    by_columns = backfill_settings(tmp_path / "columns", **WINDOW)
    run_backfill(by_columns, columns_file)
    same_as_jsonl(by_columns.lake_root, positions=False)


# ---------------------------------------------------------------------------- (b) simulator ground truth


def test_backfill_of_the_simulator_output_matches_its_ground_truth(tmp_path: Path) -> None:
    settings = backfill_settings(tmp_path / "home")
    cfg = SimulationSettings(users=40, responses=2000, seed=5, love_rate=0.05, late_love_rate=0.3, days=2.0)
    sim = simulate(cfg, settings.filters, window_s=settings.stream.attribution_window_s,
                   corpus=template_corpus(seed=0, threads=300))
    events, truth_file = tmp_path / "sim.jsonl", tmp_path / "sim.truth.json"
    write_simulation(sim, events, truth_file)
    truth = sim.truth
    assert truth.expected_corrections, "the simulation should plant late Loves"

    progress: list[dict[str, object]] = []
    result = run_backfill(settings, events, on_progress=progress.append)
    assert result.lines == len(sim.lines) and result.triples == len(truth.labels)
    assert progress and progress[-1]["done"] is True and progress[-1]["lines"] == len(sim.lines)

    root = settings.lake_root
    landed, fixes, refused = triples(root), corrections(root), quarantine(root)
    assert {t.response_id: t.label for t in landed} == truth.labels
    assert sorted((c.response_id, c.reaction_event_id, c.old_label, c.new_label) for c in fixes) == sorted(
        (c.response_id, c.reaction_event_id, c.old_label, c.new_label) for c in truth.expected_corrections)
    want = dict(truth.labels)
    want.update({c.response_id: c.new_label for c in truth.expected_corrections})
    assert effective(landed, fixes) == want

    scores = score_filter([(q.event_id, q.reason) for q in refused], truth.adversarial,
                          downweighted_users={t.user_id for t in landed if t.weight < 1.0},
                          low_info_users=truth.low_information_users)
    assert (scores.precision, scores.recall) == (1.0, 1.0), scores.lines()
    assert (scores.low_info_precision, scores.low_info_recall) == (1.0, 1.0), scores.lines()
    reasons = Counter(q.reason for q in refused)
    assert reasons["duplicate_event"] == truth.counts["duplicates"]
    assert reasons["malformed_json"] + reasons["schema_violation"] == truth.counts["malformed"]


# ---------------------------------------------------------------------------- errors


def test_missing_or_foreign_input_is_a_one_line_error(tmp_path: Path) -> None:
    settings = backfill_settings(tmp_path / "home")
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InputFileError, match=r"nope\.jsonl: file not found"):
        run_backfill(settings, missing)
    csv = tmp_path / "events.csv"
    csv.write_text("type,event_id\nresponse,e1\n")
    with pytest.raises(InputFileError) as err:
        run_backfill(settings, csv)
    assert "events.csv: not a JSONL or parquet file" in str(err.value) and "\n" not in str(err.value)
    fake = tmp_path / "fake.parquet"
    fake.write_text('{"type": "response"}\n')
    with pytest.raises(InputFileError, match="not a parquet file"):
        run_backfill(settings, fake)
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"value": [1, 2]}), numbers)
    with pytest.raises(InputFileError, match="column `value` must hold the raw JSON"):
        run_backfill(settings, numbers)
    with pytest.raises(InputFileError, match="is a directory"):
        run_backfill(settings, tmp_path)
    assert not (tmp_path / "home" / "lake").exists()
