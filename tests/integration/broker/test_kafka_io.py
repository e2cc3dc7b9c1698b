"""Topics, publishing and lag against the real embedded broker."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from pydantic import SecretStr

from rluf.errors import KafkaUnavailableError
from rluf.schemas import QuarantineRecord
from rluf.settings import KafkaSettings
from streams.broker_process import free_port
from streams.kafka_admin import LagInfo, client_options, consumer_lag, ensure_topics, wait_for_kafka
from streams.kafka_producer import EventPublisher
from streams.replay import replay_file
from tests.factories import reaction, response

Record = tuple[int, bytes | None, bytes]  # partition, key, value


def _consume_all(kafka: KafkaSettings, topic: str, expected: int, timeout_s: float = 20.0) -> list[Record]:
    """Read `expected` records of every partition of `topic` from the beginning (no group)."""
    consumer = KafkaConsumer(**client_options(kafka, role="consumer"), group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                out.extend((tp.partition, r.key, r.value) for r in records)
        # One more short poll: anything beyond `expected` would be a duplicate.
        for records in consumer.poll(timeout_ms=300).values():
            out.extend((r.partition, r.key, r.value) for r in records)
        return out
    finally:
        consumer.close(autocommit=False)


def _admin(kafka: KafkaSettings) -> KafkaAdminClient:
    return KafkaAdminClient(**client_options(kafka))


# -- client options (pure) -------------------------------------------------------------------


def test_client_options_per_role_and_profile() -> None:
    local = KafkaSettings(bootstrap_servers="a:1, b:2")
    assert client_options(local) == {"bootstrap_servers": ["a:1", "b:2"], "security_protocol": "PLAINTEXT"}
    assert client_options(local, role="producer")["enable_idempotence"] is False
    assert client_options(local, role="producer")["acks"] == 1
    assert client_options(local, role="consumer")["session_timeout_ms"] == 6000

    real = KafkaSettings(
        bootstrap_servers="k:9093", local_profile=False, security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512", sasl_username="rluf", sasl_password=SecretStr("s3cret"),
    )
    producer = client_options(real, role="producer")
    assert (producer["enable_idempotence"], producer["acks"]) == (True, "all")
    assert producer["sasl_plain_password"] == "s3cret"
    assert (producer["security_protocol"], producer["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    # Every option is one the kafka-python client of that role accepts.
    assert set(client_options(real)) <= set(KafkaAdminClient.DEFAULT_CONFIG)
    assert set(client_options(real, role="consumer")) <= set(KafkaConsumer.DEFAULT_CONFIG)
    assert set(client_options(real, role="producer")) <= set(KafkaProducer.DEFAULT_CONFIG)


# -- reachability and topics -----------------------------------------------------------------


@pytest.mark.integration
def test_wait_for_kafka_answers_on_the_broker_and_fails_in_one_line_elsewhere(kafka_broker: KafkaSettings) -> None:
    wait_for_kafka(kafka_broker, timeout_s=5.0)
    nowhere = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError) as err:
        wait_for_kafka(nowhere, timeout_s=1.0)
    assert time.monotonic() - started < 10.0
    assert nowhere.bootstrap_servers in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.integration
def test_ensure_topics_creates_the_partition_count_asked_and_is_idempotent(kafka_broker: KafkaSettings) -> None:
    suffix = uuid4().hex[:8]
    settings = kafka_broker.model_copy(update={
        "responses_topic": f"resp-{suffix}", "reactions_topic": f"react-{suffix}",
        "quarantine_topic": f"quar-{suffix}", "partitions": 3, "consumer_group": f"group-{suffix}",
    })
    extra = f"extra-{suffix}"

    created = ensure_topics(settings, extra_topics=[extra])

    bursts = f"rluf.bursts.group-{suffix}"  # the group's burst exchange: one partition
    assert created == [f"resp-{suffix}", f"react-{suffix}", f"quar-{suffix}", bursts, extra]
    with _admin(settings) as admin:
        described = {d["name"]: len(d["partitions"]) for d in admin.describe_topics(created)}
    assert described == {**dict.fromkeys(created, 3), bursts: 1}
    assert ensure_topics(settings, extra_topics=[extra]) == []
    # A new extra topic next to existing ones: only it is created.
    assert ensure_topics(settings, extra_topics=[extra, f"extra2-{suffix}"]) == [f"extra2-{suffix}"]


# -- publishing ------------------------------------------------------------------------------


def _mixed_lines(n_responses: int, n_reactions: int) -> tuple[list[bytes], list[bytes]]:
    """Valid responses and reactions plus ten kinds of broken lines, 1,000 lines in all."""
    lines: list[bytes] = []
    for i in range(n_responses):
        lines.append(json.dumps(response(f"r{i}", f"u{i % 17}", i)).encode())
        if i < n_reactions:
            lines.append(json.dumps(reaction(f"e{i}", f"r{i}", f"u{i % 17}", i + 5)).encode())
    broken = [
        b"{not json", b"[1,2]", b'"text"', b"\xff\xfe\x00", b"null",        # 5 not a JSON object
        b"{}",                                                               # object, no id
        json.dumps({"type": "reaction", "event_id": "x"}).encode(),        # reaction without response_id
        json.dumps({"type": "response", "response_id": 5}).encode(),       # non-string id
        json.dumps({"type": "mystery", "response_id": "r3"}).encode(),    # unknown type, readable id
        json.dumps({**response("r0", "u0", 1), "ts": "not-a-time"}).encode(),
    ]
    # Pad with more broken JSON, each line unique so every value can be matched back to its line.
    broken += [b"{not json #%d" % k for k in range(1000 - len(lines) - len(broken))]
    return lines + broken, broken


@pytest.mark.integration
def test_publish_routes_and_keys_1000_lines_exactly(kafka_settings: KafkaSettings) -> None:
    lines, broken = _mixed_lines(n_responses=600, n_reactions=300)
    assert len(lines) == 1000 and len(set(lines)) == 1000
    expected_reactions = [ln for ln in lines if b'"type": "reaction"' in ln]
    expected_responses = [ln for ln in lines if ln not in set(expected_reactions)]
    assert (len(expected_responses), len(expected_reactions)) == (699, 301)

    with EventPublisher(kafka_settings) as pub:
        stats = pub.publish(iter(lines))

    assert stats.per_topic == {kafka_settings.responses_topic: 699, kafka_settings.reactions_topic: 301}
    assert stats.unreadable == 5 + (len(broken) - 10)  # broken JSON, array, string, bad bytes, null
    responses = _consume_all(kafka_settings, kafka_settings.responses_topic, 699)
    reactions = _consume_all(kafka_settings, kafka_settings.reactions_topic, 301)
    assert Counter(v for _, _, v in responses) == Counter(expected_responses)
    assert Counter(v for _, _, v in reactions) == Counter(expected_reactions)

    owners = {f"r{i}": f"u{i % 17}" for i in range(600)}

    def expected_key(value: bytes) -> bytes | None:
        """The conversation owner: a response's user; a reaction's response's user (else the reactor)."""
        try:
            obj = json.loads(value)
            user, rid = obj.get("user_id"), obj.get("response_id")
        except (ValueError, AttributeError):
            return None
        owner = owners.get(rid, user) if obj.get("type") == "reaction" else user
        return owner.encode() if isinstance(owner, str) and owner else None

    assert all(key == expected_key(value) for _, key, value in responses + reactions)
    assert sum(key is None for _, key, _ in responses) == 5 + (len(broken) - 10) + 3  # + {}, id 5, mystery
    assert sum(key is None for _, key, _ in reactions) == 1

    # Same key, same partition count: a reaction lands on the partition number of its response.
    response_partition = {key: p for p, key, _ in responses if key is not None}
    assert {p for p, _, _ in responses} == set(range(kafka_settings.partitions))
    assert all(p == response_partition[key] for p, key, _ in reactions if key is not None)


@pytest.mark.integration
def test_publish_quarantine_sends_json_keyed_by_response_id(kafka_settings: KafkaSettings) -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    records = [
        QuarantineRecord(quarantine_id=f"q{i}", reason="malformed_json", detail="not json", raw="{x",
                         response_id=f"r{i}" if i % 2 else None, quarantined_at=now,
                         source_topic="t", source_partition=0, source_offset=i)
        for i in range(10)
    ]
    with EventPublisher(kafka_settings) as pub:
        assert pub.publish_quarantine(records) == 10

    got = _consume_all(kafka_settings, kafka_settings.quarantine_topic, 10)
    assert len(got) == 10
    by_id = {json.loads(v)["quarantine_id"]: (k, QuarantineRecord.model_validate_json(v)) for _, k, v in got}
    assert {q: k for q, (k, _) in by_id.items()} == {f"q{i}": (f"r{i}".encode() if i % 2 else None)
                                                     for i in range(10)}
    assert [by_id[f"q{i}"][1] for i in range(10)] == records


@pytest.mark.integration
def test_replay_file_into_the_broker(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    events = [json.dumps(response(f"r{i}", "u1", i)) for i in range(50)]
    events += [json.dumps(reaction(f"e{i}", f"r{i}", "u1", i + 1)) for i in range(20)]
    src = tmp_path / "events.jsonl"
    src.write_text("\n".join([*events, "", "garbage"]) + "\n")

    with EventPublisher(kafka_settings) as pub:
        stats = replay_file(src, pub, speedup=None)

    assert (stats.lines_read, stats.blank_lines, stats.unreadable) == (71, 1, 1)
    assert stats.published == {kafka_settings.responses_topic: 51, kafka_settings.reactions_topic: 20}
    assert len(_consume_all(kafka_settings, kafka_settings.responses_topic, 51)) == 51
    assert len(_consume_all(kafka_settings, kafka_settings.reactions_topic, 20)) == 20


# -- lag -------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.kafka_partitions(3)
def test_consumer_lag_reports_committed_and_true_highwater(kafka_settings: KafkaSettings) -> None:
    topic, group = kafka_settings.responses_topic, f"lag-{uuid4().hex[:8]}"
    sizes = {0: 3000, 1: 1200, 2: 0}
    producer = KafkaProducer(**client_options(kafka_settings, role="producer"), linger_ms=5)
    try:
        for partition, n in sizes.items():
            for i in range(n):  # batched sends: the case where Tansu's ListOffsets is short
                producer.send(topic, value=b'{"n": %d}' % i, partition=partition)
        producer.flush()
    finally:
        producer.close()

    before = consumer_lag(kafka_settings, group, [topic])
    assert before == {
        (topic, 0): LagInfo(committed=None, highwater=3000, lag=3000),
        (topic, 1): LagInfo(committed=None, highwater=1200, lag=1200),
        (topic, 2): LagInfo(committed=None, highwater=0, lag=0),
    }

    committer = KafkaConsumer(**client_options(kafka_settings, role="consumer"), group_id=group,
                              enable_auto_commit=False)
    try:
        committer.commit({
            TopicPartition(topic, 0): OffsetAndMetadata(1234, "", -1),
            TopicPartition(topic, 1): OffsetAndMetadata(1200, "", -1),
        })
    finally:
        committer.close(autocommit=False)

    after = consumer_lag(kafka_settings, group, [topic])
    assert after == {
        (topic, 0): LagInfo(committed=1234, highwater=3000, lag=1766),
        (topic, 1): LagInfo(committed=1200, highwater=1200, lag=0),
        (topic, 2): LagInfo(committed=None, highwater=0, lag=0),
    }


@pytest.mark.integration
def test_consumer_lag_on_a_missing_topic_is_one_line(kafka_settings: KafkaSettings) -> None:
    with pytest.raises(KafkaUnavailableError, match="does not exist"):
        consumer_lag(kafka_settings, "g", [f"missing-{uuid4().hex[:8]}"], timeout_s=1.0)
