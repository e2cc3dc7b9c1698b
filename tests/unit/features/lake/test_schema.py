"""Round trips of the three record types through Arrow (and a Delta table) and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
from deltalake import write_deltalake

from features.lake.reader import read_table
from features.lake.schema import (
    CORRECTIONS_SCHEMA,
    QUARANTINE_SCHEMA,
    TRIPLES_SCHEMA,
    TRIPLES_TABLE,
    corrections_from_arrow,
    corrections_from_rows,
    corrections_to_arrow,
    quarantine_from_arrow,
    quarantine_from_rows,
    quarantine_to_arrow,
    table_uri,
    triples_from_arrow,
    triples_from_rows,
    triples_to_arrow,
)
from rluf.schemas import LabelCorrection, Message, QuarantineRecord, Triple

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
MINUS_2H = timezone(timedelta(hours=-2))


def _triples() -> list[Triple]:
    return [
        Triple(
            response_id="r1",
            event_id="e1",
            conversation_id="c1",
            user_id="u1",
            context=[
                Message(role="system", content="be brief"),
                Message(role="user", content="héllo ✓"),
            ],
            response="hi there",
            policy_version="p7",
            ts=T0,
            label=1,
            reactions={"love": 1, "like": 2},
            # 23:30 at UTC-2 is 01:30 UTC the next day: the partition is the UTC day.
            window_closed_at=datetime(2026, 11, 1, 23, 30, tzinfo=MINUS_2H),
            close_reason="flush",
            weight=0.1,
            source_topic="rluf.responses",
            source_partition=3,
            source_offset=2**40,
            reaction_sources=["rluf.reactions:3:17", "rluf.reactions:3:18"],
            extra={"client": {"os": "ios", "v": [1, 2]}, "ab": None},
        ),
        Triple(
            response_id="r2",
            event_id="e2",
            conversation_id="c2",
            user_id="u2",
            context=[],
            response="",
            policy_version="p7",
            ts=T0 + timedelta(microseconds=1),
            label=0,
            reactions={},
            window_closed_at=T0 + timedelta(days=1),
            source_topic="rluf.responses",
            source_partition=0,
            source_offset=0,
        ),
    ]


def _corrections() -> list[LabelCorrection]:
    return [
        LabelCorrection(
            correction_id="k1",
            response_id="r2",
            user_id="u2",
            reaction_event_id="e9",
            action="add",
            old_label=0,
            new_label=1,
            reaction_ts=datetime(2026, 11, 3, 0, 0, 1, tzinfo=UTC),
            window_closed_at=T0 + timedelta(days=1),
            lateness_s=43201.5,
            source_topic="rluf.reactions",
            source_partition=1,
            source_offset=99,
        )
    ]


def _quarantine() -> list[QuarantineRecord]:
    return [
        QuarantineRecord(
            quarantine_id="q1",
            reason="malformed_json",
            detail="expecting value: line 1 column 1",
            raw="{not json",
            quarantined_at=datetime(2026, 10, 31, 23, 59, 59, 999999, tzinfo=UTC),
            source_topic="rluf.reactions",
            source_partition=2,
            source_offset=5,
        ),
        QuarantineRecord(
            quarantine_id="q2",
            reason="not_owner",
            detail="user u9 does not own c1",
            raw='{"type":"reaction"}',
            event_type="reaction",
            event_id="e10",
            response_id="r1",
            user_id="u9",
            event_ts=T0,
            quarantined_at=T0,
            source_topic="rluf.reactions",
            source_partition=2,
            source_offset=6,
        ),
    ]


def test_triples_round_trip_through_arrow() -> None:
    triples = _triples()
    table = triples_to_arrow(triples)
    assert table.schema == TRIPLES_SCHEMA
    assert table.column("date").to_pylist() == ["2026-11-02", "2026-11-02"]
    assert table.column("extra_json").to_pylist() == ['{"ab":null,"client":{"os":"ios","v":[1,2]}}', "{}"]
    assert table.column("reactions").to_pylist() == [[("love", 1), ("like", 2)], []]
    assert table.column("context").to_pylist()[0] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "héllo ✓"},
    ]
    assert triples_from_arrow(table) == triples
    back = triples_from_arrow(table)[0]
    assert back.window_closed_at == datetime(2026, 11, 2, 1, 30, tzinfo=UTC)
    assert back.window_closed_at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_taken_as_utc() -> None:
    naive = _triples()[1].model_copy(update={"window_closed_at": datetime(2026, 11, 5, 0, 0)})
    table = triples_to_arrow([naive])
    assert table.column("date").to_pylist() == ["2026-11-05"]
    assert triples_from_arrow(table)[0].window_closed_at == datetime(2026, 11, 5, tzinfo=UTC)


def test_corrections_round_trip_through_arrow() -> None:
    corrections = _corrections()
    table = corrections_to_arrow(corrections)
    assert table.schema == CORRECTIONS_SCHEMA
    assert table.column("date").to_pylist() == ["2026-11-03"]
    assert corrections_from_arrow(table) == corrections


def test_quarantine_round_trip_through_arrow_keeps_nulls() -> None:
    records = _quarantine()
    table = quarantine_to_arrow(records)
    assert table.schema == QUARANTINE_SCHEMA
    assert table.column("date").to_pylist() == ["2026-10-31", "2026-11-01"]
    assert table.column("event_ts").to_pylist()[0] is None
    assert quarantine_from_arrow(table) == records


def test_empty_batches_have_the_schema() -> None:
    assert triples_to_arrow([]).schema == TRIPLES_SCHEMA
    assert corrections_to_arrow([]).num_rows == 0
    assert quarantine_to_arrow([]).num_rows == 0


def test_round_trip_through_a_delta_table_and_pandas(tmp_path) -> None:
    root = str(tmp_path)
    for name, table in (
        (TRIPLES_TABLE, triples_to_arrow(_triples())),
        ("label_corrections", corrections_to_arrow(_corrections())),
        ("quarantine", quarantine_to_arrow(_quarantine())),
    ):
        write_deltalake(table_uri(root, name), table, mode="append", partition_by=["date"])

    frame = read_table(root, TRIPLES_TABLE).sort_values("response_id")
    assert sorted(frame["date"]) == ["2026-11-02", "2026-11-02"]
    assert triples_from_rows(frame.to_dict("records")) == _triples()
    corrections = read_table(root, "label_corrections")
    assert corrections_from_rows(corrections.to_dict("records")) == _corrections()
    quarantine = read_table(root, "quarantine").sort_values("quarantine_id")
    assert quarantine_from_rows(quarantine.to_dict("records")) == _quarantine()


def test_partition_filter_reads_one_day(tmp_path) -> None:
    root = str(tmp_path)
    write_deltalake(
        table_uri(root, TRIPLES_TABLE), triples_to_arrow(_triples()), mode="append", partition_by=["date"]
    )
    day = read_table(root, TRIPLES_TABLE, columns=["response_id"], filters=[("date", "=", "2026-11-02")])
    assert sorted(day["response_id"]) == ["r1", "r2"]
    assert read_table(root, TRIPLES_TABLE, filters=[("date", "=", "2026-11-03")]).empty
    assert pa.types.is_string(TRIPLES_SCHEMA.field("date").type)
