"""Kafka administration with kafka-python: client options, topics, reachability and lag.

Works the same against a real cluster and the embedded Tansu broker. The one place where
they differ is end offsets: Tansu answers ListOffsets(LATEST) with the base offset + 1 of
the newest *batch* (short of the true end whenever producers batch), so `consumer_lag`
takes the high watermark from a Fetch response instead, which both brokers get right.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.net.compat import KafkaNetClient

from rluf.errors import ConfigError, KafkaUnavailableError
from rluf.settings import KafkaSettings

__all__ = [
    "ClientRole",
    "LagInfo",
    "client_options",
    "ensure_topics",
    "wait_for_kafka",
    "consumer_lag",
    "kafka_unavailable",
    "connect",
]

logger = logging.getLogger(__name__)

ClientRole = Literal["admin", "producer", "consumer"]

C = TypeVar("C")

_TOPIC_ALREADY_EXISTS = 36
_DEFAULT_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class LagInfo:
    """How far a consumer group trails one partition.

    Attributes:
        committed: The group's committed offset (the next offset it will read); None when the
            group never committed on this partition.
        highwater: The offset the next produced record will get (one past the newest record).
        lag: Records not yet consumed: ``highwater - committed``, or ``highwater - log start``
            when nothing was committed.
    """

    committed: int | None
    highwater: int
    lag: int


def client_options(kafka: KafkaSettings, *, role: ClientRole = "admin") -> dict[str, Any]:
    """Return the kafka-python keyword arguments every rluf client of `role` shares.

    One function, so that bootstrap servers, TLS/SASL and the local-broker work-arounds are
    spelled once. kafka-python rejects unknown keyword arguments per client class, which is
    why the role matters: only producers get producer options, only consumers consumer ones.
    The connection and security keys (``bootstrap_servers``, ``security_protocol``,
    ``sasl_*``) use the same names in aiokafka, so the ``"admin"`` set also suits it.

    Args:
        kafka: Connection and profile settings.
        role: Which kafka-python client the options are for.

    Returns:
        Keyword arguments for ``KafkaAdminClient``/``KafkaProducer``/``KafkaConsumer``.
    """
    opts: dict[str, Any] = {
        "bootstrap_servers": kafka.servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        opts["sasl_mechanism"] = kafka.sasl_mechanism
    if kafka.sasl_username is not None:
        opts["sasl_plain_username"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        opts["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    if role == "producer":
        # Tansu's InitProducerId breaks after a broker restart, so the local profile turns
        # idempotence off. kafka-python refuses acks=1 with explicit idempotence, so a real
        # cluster gets acks="all" with it (the stronger setting).
        opts["enable_idempotence"] = not kafka.local_profile
        opts["acks"] = 1 if kafka.local_profile else "all"
    elif role == "consumer":
        opts["session_timeout_ms"] = kafka.session_timeout_ms
        opts["heartbeat_interval_ms"] = kafka.heartbeat_interval_ms
    return opts


def connect(client_cls: Callable[..., C], kafka: KafkaSettings, *, role: ClientRole, **overrides: Any) -> C:
    """Build a kafka-python client from `client_options` plus `overrides`.

    kafka-python 3.x bootstraps inside the constructor and, when that fails, leaves its I/O
    thread running with no object to close it through. This passes a ``kafka_client``
    factory that remembers the network client, so a failed start closes it again.

    Args:
        client_cls: ``KafkaAdminClient``, ``KafkaProducer`` or ``KafkaConsumer``.
        kafka: Connection and profile settings.
        role: Which options `client_options` adds; must match `client_cls`.
        overrides: More keyword arguments for the client (they win over `client_options`).

    Raises:
        KafkaUnavailableError: the client could not bootstrap.
    """
    made: list[KafkaNetClient] = []

    def net_client(**configs: Any) -> KafkaNetClient:
        client = KafkaNetClient(**configs)
        made.append(client)
        return client

    try:
        return client_cls(**{**client_options(kafka, role=role), **overrides, "kafka_client": net_client})
    except KafkaError as exc:
        for client in made:
            with contextlib.suppress(KafkaError, OSError):  # best effort; the bootstrap error matters more
                client.close()
        raise kafka_unavailable(kafka, exc) from exc


@contextlib.contextmanager
def _admin(kafka: KafkaSettings, timeout_s: float) -> Iterator[KafkaAdminClient]:
    """An admin client whose connection failures surface as `KafkaUnavailableError`."""
    admin = connect(
        KafkaAdminClient, kafka, role="admin",
        client_id="rluf-admin",
        bootstrap_timeout_ms=int(timeout_s * 1000),
        request_timeout_ms=int(max(timeout_s, 1.0) * 1000),
    )
    try:
        yield admin
    finally:
        admin.close()


def kafka_unavailable(kafka: KafkaSettings, exc: BaseException, *, prefix: str = "") -> KafkaUnavailableError:
    """Translate a kafka-python error into rluf's one-line `KafkaUnavailableError`.

    Use as ``raise kafka_unavailable(settings, exc) from exc``; the message names the servers
    and the error's class and first line (kafka-python messages can span many lines).
    """
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    # kafka-python's str() already starts with the class name; do not repeat it.
    reason = text if text.startswith(name) else f"{name}: {text}" if text else name
    return KafkaUnavailableError(kafka.bootstrap_servers, prefix + reason)


def wait_for_kafka(kafka: KafkaSettings, timeout_s: float = 15.0) -> None:
    """Block until a broker at ``kafka.bootstrap_servers`` answers a metadata request.

    Args:
        kafka: Where to look.
        timeout_s: Seconds to keep trying.

    Raises:
        KafkaUnavailableError: nothing answered within `timeout_s`.
    """
    started = time.monotonic()
    with _admin(kafka, timeout_s) as admin:
        try:
            admin.list_topics()
        except KafkaError as exc:
            raise kafka_unavailable(kafka, exc) from exc
    logger.debug("kafka at %s answered after %.2f s", kafka.bootstrap_servers, time.monotonic() - started)


def ensure_topics(
    kafka: KafkaSettings, extra_topics: Sequence[str] = (), *, timeout_s: float = _DEFAULT_TIMEOUT_S
) -> list[str]:
    """Create the responses, reactions and quarantine topics (plus `extra_topics`) if missing.

    Topics are created explicitly, with ``kafka.partitions`` partitions and
    ``kafka.replication_factor`` replicas, because auto-creation would pick the broker's
    default partition count (4 on Tansu), which decides how far the worker can scale out.
    A topic that already exists is left as it is (a warning is logged when its partition
    count differs from the setting).

    Args:
        kafka: Topic names, partition count, replication factor, connection.
        extra_topics: More topic names to create with the same layout.
        timeout_s: Seconds to wait for the broker.

    Returns:
        The names this call created, in request order; empty when all existed.

    Raises:
        KafkaUnavailableError: no broker answers.
        ConfigError: the broker refused a topic (e.g. a replication factor above the broker count).
    """
    names = list(dict.fromkeys([kafka.responses_topic, kafka.reactions_topic, kafka.quarantine_topic,
                                kafka.bursts_topic_name, *extra_topics]))
    spec = {n: {"num_partitions": 1 if n == kafka.bursts_topic_name else kafka.partitions,
                "replication_factor": kafka.replication_factor} for n in names}
    with _admin(kafka, timeout_s) as admin:
        try:
            result = admin.create_topics(spec, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        except KafkaError as exc:
            raise kafka_unavailable(kafka, exc) from exc
        created: list[str] = []
        existing: list[str] = []
        for topic in result["topics"]:
            code = topic["error_code"]
            if code == 0:
                created.append(topic["name"])
            elif code == _TOPIC_ALREADY_EXISTS:
                existing.append(topic["name"])
            else:
                message = topic.get("error_message") or f"error code {code}"
                raise ConfigError(
                    f"the broker refused to create topic {topic['name']!r}: {message}",
                    "check RLUF_KAFKA__PARTITIONS and RLUF_KAFKA__REPLICATION_FACTOR",
                )
        try:
            if created:
                admin.wait_for_topics(created, timeout_ms=int(timeout_s * 1000))
            if existing:
                data = [t for t in existing if t != kafka.bursts_topic_name]
                _warn_partition_mismatch(admin, data, kafka.partitions)
        except KafkaError as exc:
            raise kafka_unavailable(kafka, exc) from exc
    logger.info("topics created: %s; already present: %s", created or "none", existing or "none")
    created.sort(key=names.index)
    return created


def _warn_partition_mismatch(admin: KafkaAdminClient, topics: list[str], wanted: int) -> None:
    for desc in admin.describe_topics(topics):
        have = len(desc.get("partitions") or [])
        if have != wanted:
            logger.warning(
                "topic %s exists with %d partitions, settings ask for %d; it is left as it is",
                desc.get("name"), have, wanted,
            )


def copartitioned_shards(kafka: KafkaSettings, *, timeout_s: float = _DEFAULT_TIMEOUT_S) -> int:
    """The number of shards: the partition count both event topics must share.

    A response and its reactions are keyed by the same owner, so they reach the same
    partition *number* of their topics only when both topics have as many partitions.

    Raises:
        ConfigError: the counts differ, or a topic is missing.
        KafkaUnavailableError: no broker answers.
    """
    topics = list(kafka.data_topics)
    with _admin(kafka, timeout_s) as admin:
        try:
            described = admin.describe_topics(topics)
        except KafkaError as exc:
            raise kafka_unavailable(kafka, exc) from exc
    counts = {d.get("name"): len(d.get("partitions") or []) for d in described}
    have = [counts.get(t, 0) for t in topics]
    if 0 in have:
        missing = [t for t, n in zip(topics, have, strict=True) if not n]
        raise ConfigError(f"topic {missing[0]!r} does not exist", "run `rluf topics create`")
    if have[0] != have[1]:
        raise ConfigError(
            f"{topics[0]} has {have[0]} partitions but {topics[1]} has {have[1]}: responses and their "
            "reactions are co-partitioned by owner, so both topics need the same partition count",
            "recreate one of them with RLUF_KAFKA__PARTITIONS partitions (docs/streams.md)",
        )
    return have[0]


def consumer_lag(
    kafka: KafkaSettings,
    group: str,
    topics: Sequence[str],
    *,
    timeout_s: float = 10.0,
) -> dict[tuple[str, int], LagInfo]:
    """Report a consumer group's committed offset, the high watermark and the lag per partition.

    The committed offsets come from the group coordinator (OffsetFetch). The high watermark
    comes from a Fetch response: a standalone consumer (no group, so no join delay and no
    effect on `group`) ``assign``s every partition, seeks to the (claimed) end and polls until
    each partition reported its watermark. ListOffsets/``end_offsets`` is not used because
    Tansu answers it wrongly for batched writes.

    Args:
        kafka: Connection settings.
        group: Consumer group id.
        topics: Topics to report on; every partition of each is included.
        timeout_s: Seconds to wait for the watermarks.

    Returns:
        ``{(topic, partition): LagInfo}`` for every partition of `topics`.

    Raises:
        KafkaUnavailableError: no broker answers, a topic does not exist, or a watermark did not
            arrive within `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    consumer = _lag_consumer(kafka, timeout_s)
    try:
        partitions = _partitions(consumer, kafka, topics, deadline)
        highwater = _highwaters(consumer, kafka, partitions, deadline)
        starts = consumer.beginning_offsets(partitions, timeout_ms=int(max(deadline - time.monotonic(), 1) * 1000))
    except KafkaError as exc:
        raise kafka_unavailable(kafka, exc) from exc
    finally:
        consumer.close(autocommit=False)

    with _admin(kafka, timeout_s) as admin:
        try:
            offsets = admin.list_group_offsets({group: partitions}).get(group, {})
        except KafkaError as exc:
            raise kafka_unavailable(kafka, exc) from exc

    report: dict[tuple[str, int], LagInfo] = {}
    for tp in partitions:
        meta = offsets.get(tp)
        committed = meta.offset if meta is not None and meta.offset >= 0 else None
        high = highwater[tp]
        base = committed if committed is not None else starts.get(tp, 0)
        report[(tp.topic, tp.partition)] = LagInfo(committed=committed, highwater=high, lag=max(0, high - base))
    return report


def _lag_consumer(kafka: KafkaSettings, timeout_s: float) -> KafkaConsumer:
    return connect(
        KafkaConsumer, kafka, role="consumer",
        client_id="rluf-lag",
        group_id=None,
        enable_auto_commit=False,
        # Only the watermark matters; keep the records a poll drags along small.
        max_partition_fetch_bytes=64 * 1024,
        fetch_max_bytes=1024 * 1024,
        request_timeout_ms=int(max(timeout_s, 1.0) * 1000) + 1000,
    )


def _partitions(
    consumer: KafkaConsumer, kafka: KafkaSettings, topics: Sequence[str], deadline: float
) -> list[TopicPartition]:
    partitions: list[TopicPartition] = []
    for topic in topics:
        ids = consumer.partitions_for_topic(topic)
        while not ids and time.monotonic() < deadline:
            time.sleep(0.1)
            ids = consumer.partitions_for_topic(topic)
        if not ids:
            raise KafkaUnavailableError(kafka.bootstrap_servers, f"topic {topic!r} does not exist")
        partitions.extend(TopicPartition(topic, p) for p in sorted(ids))
    return partitions


def _highwaters(
    consumer: KafkaConsumer, kafka: KafkaSettings, partitions: list[TopicPartition], deadline: float
) -> dict[TopicPartition, int]:
    consumer.assign(partitions)
    # seek_to_end lands at or before the true end (on Tansu: before it), so the fetch carries
    # few records; every fetch response carries the true watermark either way.
    consumer.seek_to_end(*partitions)
    highwater: dict[TopicPartition, int] = {}
    while True:
        consumer.poll(timeout_ms=200)
        for tp in partitions:
            hw = consumer.highwater(tp) if tp not in highwater else None
            if hw is not None:
                highwater[tp] = hw
                consumer.pause(tp)  # known: stop fetching it and drop what is buffered
        if len(highwater) == len(partitions):
            return highwater
        if time.monotonic() >= deadline:
            missing = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions if tp not in highwater)
            raise KafkaUnavailableError(kafka.bootstrap_servers, f"no fetch watermark for {missing}")
