"""Spark (delta-spark) reads the tables delta-rs wrote: the documented scale path.

Runs only where the optional `[spark]` extra is installed and Spark can resolve the Delta
JARs (they come from Maven); on machines without that it is skipped, saying why.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from features.lake.delta_sink import DeltaLandingSink
from rluf.records import Landing
from rluf.schemas import Message, Triple

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _spark():  # type: ignore[no-untyped-def]
    delta = pytest.importorskip("delta", reason="the optional [spark] extra (delta-spark) is not installed")
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.appName("rluf-test").master("local[1]")
               .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
               .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"))
    try:
        return delta.configure_spark_with_delta_pip(builder).getOrCreate()
    except Exception as exc:  # JARs unresolvable (no Maven access)
        pytest.skip(f"Spark cannot start with the Delta JARs here: {str(exc).splitlines()[0][:160]}")


def test_spark_reads_triples_and_time_travels(tmp_path: Path) -> None:
    root = str(tmp_path)
    sink = DeltaLandingSink(root, app_id="spark-test")
    for i in range(3):
        sink.land(Landing(triples=[Triple(
            response_id=f"r{i}", event_id=f"e{i}", conversation_id="c", user_id="u",
            context=[Message(role="user", content="hi")], response="hello", policy_version="p", ts=T0, label=i % 2,
            reactions={"love": i % 2}, window_closed_at=T0 + timedelta(days=1), source_topic="t",
            source_partition=0, source_offset=i)]), checkpoint={("t", 0): i + 1})
    spark = _spark()
    df = spark.read.format("delta").load(f"{root}/triples")
    assert sorted(r.response_id for r in df.select("response_id").collect()) == ["r0", "r1", "r2"]
    v0 = spark.read.format("delta").option("versionAsOf", 0).load(f"{root}/triples")
    assert v0.count() == 1
