"""Small Delta lakes for the data-quality gate: a clean one, and builders for bad batches.

Rows go in through ``DeltaLandingSink`` like the stream writes them. Bad batches that the
sink itself would refuse (a repeated response_id, a null context) are appended with
``write_deltalake`` directly, as a buggy second writer or a backfill run twice would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from features.lake.delta_sink import DeltaLandingSink
from features.lake.schema import TRIPLES_TABLE, table_uri, triples_to_arrow
from rluf.records import Landing
from rluf.schemas import Message, QuarantineRecord, Triple
from rluf.settings import ValidationSettings

START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 8
PER_DAY = 150
NOW = START + timedelta(days=DAYS + 1)
"""The gate's clock: one day after the newest window closed."""
USERS = 30
BASE_RATE = 0.06


def make_triples(
    *,
    days: int = DAYS,
    per_day: int = PER_DAY,
    rate: float = BASE_RATE,
    newest_rate: float | None = None,
    seed: int = 7,
    prefix: str = "r",
) -> list[Triple]:
    """Triples over ``days`` UTC days, Loves spread over ``USERS`` users at ``rate``.

    ``newest_rate`` overrides the Love rate of the last day (the spike).
    """
    rng = np.random.default_rng(seed)
    out: list[Triple] = []
    n = 0
    for day in range(days):
        day_rate = newest_rate if newest_rate is not None and day == days - 1 else rate
        loves = set(rng.choice(per_day, size=round(per_day * day_rate), replace=False).tolist())
        for i in range(per_day):
            ts = START + timedelta(days=day, seconds=60 * i)
            label = int(i in loves)
            out.append(Triple(
                response_id=f"{prefix}{n}", event_id=f"e{prefix}{n}", conversation_id=f"c{prefix}{n}",
                user_id=f"u{n % USERS}", context=[Message(role="user", content=f"question {n}")],
                response="a careful answer " * (1 + n % 5), policy_version="p1", ts=ts, label=label,
                reactions={"love": 1} if label else {},
                window_closed_at=ts + timedelta(minutes=30), weight=1.0,
                source_topic="rluf.responses", source_partition=0, source_offset=n,
                reaction_sources=[f"rluf.reactions:0:{n}"] if label else [],
            ))
            n += 1
    return out


def quarantined(n: int, *, start: int = 0) -> list[QuarantineRecord]:
    return [
        QuarantineRecord(
            quarantine_id=f"rluf.reactions:1:{start + i}", reason="not_owner", detail="reaction from a non-owner",
            raw="{}", event_type="reaction", quarantined_at=START + timedelta(hours=1),
            source_topic="rluf.reactions", source_partition=1, source_offset=start + i,
        )
        for i in range(n)
    ]


def land(root: str, triples: Sequence[Triple], quarantine: Sequence[QuarantineRecord] = ()) -> None:
    """Land rows the way the stream worker does (one sink, one commit per table)."""
    sink = DeltaLandingSink(root, app_id=f"test-{uuid4().hex[:8]}")
    sink.land(Landing(triples=list(triples), quarantine=list(quarantine)),
              checkpoint={("rluf.responses", 0): len(triples)})


def append_raw(root: str, table: pa.Table) -> None:
    """Append Arrow rows to the triples table past the sink (a buggy writer)."""
    write_deltalake(table_uri(root, TRIPLES_TABLE), table, mode="append", partition_by=["date"])


def with_null_contexts(triples: Sequence[Triple], rows: Sequence[int]) -> pa.Table:
    table = triples_to_arrow(triples)
    context = table.column("context").to_pylist()
    for i in rows:
        context[i] = None
    field = table.schema.field("context")
    return table.set_column(table.schema.get_field_index("context"), field, pa.array(context, type=field.type))


def training_frame(triples: Sequence[Triple]) -> pd.DataFrame:
    """A training set as the feature-store export writes it: one split per conversation."""
    splits = ["train"] * 8 + ["validation", "test"]
    return pd.DataFrame({
        "conversation_id": [t.conversation_id for t in triples],
        "context": [f"user: {t.context[0].content}" if t.context else "" for t in triples],
        "response": [t.response for t in triples],
        "label": [t.label for t in triples],
        "weight": [t.weight for t in triples],
        "split": [splits[i % len(splits)] for i in range(len(triples))],
    })


@pytest.fixture
def settings(tmp_path: Path) -> ValidationSettings:
    return ValidationSettings(reports_dir=str(tmp_path / "reports"))


@pytest.fixture
def lake(tmp_path: Path) -> str:
    """A clean lake: 8 days x 150 triples at a 6% Love rate, 30 users, 10 quarantined inputs."""
    root = str(tmp_path / "lake")
    land(root, make_triples(), quarantined(10))
    return root


LakeFactory = Callable[..., str]
