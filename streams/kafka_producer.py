"""Publish raw wire events and quarantine records to Kafka with kafka-python.

Lines are published as they are (bytes, unmodified): validation is the stream worker's job,
and a malformed line must reach it so that it is quarantined with its reason instead of
vanishing at the edge. The publisher only reads enough of each line to route it: reactions
go to the reactions topic, everything else (responses and anything unparseable) to the
responses topic, both keyed by the **conversation owner** (the response's ``user_id``), so a
response, all its reactions and everything else that user does land on the same partition
number of their topics (both topics have the same partition count): one shard of the stream
worker holds all the state its rules read (docs/streams.md). A reaction's owner is the
``user_id`` of its response, remembered from the responses this publisher sent; for a
response it never saw it is the reacting user, who is the owner of every reaction that can
count (only the owner's Love labels a response).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Literal

from kafka import KafkaProducer
from kafka.errors import KafkaError
from pydantic import BaseModel

from rluf.settings import KafkaSettings
from streams.kafka_admin import connect, kafka_unavailable

__all__ = [
    "RouteKind",
    "Route",
    "PublishStats",
    "route_line",
    "EventPublisher",
]

logger = logging.getLogger(__name__)

RouteKind = Literal["reaction", "response"]


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """Where one raw line goes.

    Attributes:
        kind: ``"reaction"`` for the reactions topic, ``"response"`` for the responses topic.
        key: The conversation owner's ``user_id`` as UTF-8, or None when it cannot be read.
        readable: False when the line is not a JSON object (it still goes to the responses
            topic, for the worker to quarantine).
        response_id: The line's ``response_id`` (to remember a response's owner), if any.
    """

    kind: RouteKind
    key: bytes | None
    readable: bool
    response_id: str | None = None


_UNREADABLE = Route(kind="response", key=None, readable=False)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def route_line(line: bytes, owners: Mapping[str, str] | None = None) -> Route:
    """Decide the topic and key of one raw line; pure, never raises.

    Only ``"type": "reaction"`` routes to the reactions topic. Anything else, including
    invalid JSON, non-object JSON and unknown types, routes to the responses topic: the
    worker consumes it there and quarantines what is not a valid response.

    Args:
        line: One JSONL line without its trailing newline.
        owners: ``response_id`` -> owner ``user_id`` of responses seen before.
    """
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _UNREADABLE
    if not isinstance(obj, dict):
        return _UNREADABLE
    rid, user = _text(obj.get("response_id")), _text(obj.get("user_id"))
    kind: RouteKind = "reaction" if obj.get("type") == "reaction" else "response"
    owner = user if kind == "response" else ((owners or {}).get(rid) if rid else None) or user
    key = owner.encode("utf-8", errors="surrogatepass") if owner else None
    return Route(kind=kind, key=key, readable=True, response_id=rid)


@dataclasses.dataclass
class PublishStats:
    """Counts of what a publisher handed to Kafka.

    Attributes:
        per_topic: Records sent per topic name.
        unreadable: Lines that were not a JSON object (routed to the responses topic).
    """

    per_topic: dict[str, int] = dataclasses.field(default_factory=dict)
    unreadable: int = 0

    @property
    def total(self) -> int:
        return sum(self.per_topic.values())

    def add(self, other: PublishStats) -> None:
        """Fold `other`'s counts into this one."""
        for topic, n in other.per_topic.items():
            self.per_topic[topic] = self.per_topic.get(topic, 0) + n
        self.unreadable += other.unreadable


class EventPublisher:
    """Send raw event lines and quarantine records to their topics.

    Sends are asynchronous (``linger_ms=5`` batches them); `flush` waits for delivery and
    raises if any send failed, so a caller that flushes never loses a line silently. The
    Kafka connection opens on first use.

    Example:
        with EventPublisher(settings.kafka) as pub:
            stats = pub.publish(path.read_bytes().splitlines())
    """

    def __init__(self, kafka: KafkaSettings, *, max_block_s: float = 30.0, remember_owners: int = 1_000_000) -> None:
        """Keep the settings; connect lazily.

        Args:
            kafka: Topics, connection and profile.
            max_block_s: Seconds a send may block on missing metadata or a full buffer before
                it fails.
            remember_owners: Owners of this many recent responses are kept to key their
                reactions (oldest forgotten first).
        """
        self._kafka = kafka
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._remember = remember_owners
        self._max_block_ms = int(max_block_s * 1000)
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._failed = 0
        self._first_error: BaseException | None = None

    @property
    def kafka(self) -> KafkaSettings:
        return self._kafka

    def _ensure(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = connect(
                KafkaProducer, self._kafka, role="producer",
                client_id="rluf-publisher",
                linger_ms=5,
                max_block_ms=self._max_block_ms,
            )
        return self._producer

    def _on_error(self, exc: BaseException) -> None:
        # Runs on the producer's I/O thread.
        with self._lock:
            self._failed += 1
            if self._first_error is None:
                self._first_error = exc

    def _send(self, topic: str, value: bytes, key: bytes | None) -> None:
        producer = self._ensure()
        try:
            future = producer.send(topic, value=value, key=key)
        except KafkaError as exc:
            raise kafka_unavailable(self._kafka, exc) from exc
        future.add_errback(self._on_error)

    def publish(self, raw_lines: Iterable[bytes]) -> PublishStats:
        """Route and send each line as is; returns what was handed to the producer.

        Args:
            raw_lines: JSONL lines without trailing newlines; consumed lazily.

        Raises:
            KafkaUnavailableError: a send failed before it could be queued (no metadata
                within ``max_block_s``, record too large, ...).
        """
        responses, reactions = self._kafka.responses_topic, self._kafka.reactions_topic
        n_responses = n_reactions = unreadable = 0
        owners = self._owners
        for line in raw_lines:
            route = route_line(line, owners)
            if route.kind == "response" and route.response_id and route.key:
                owners[route.response_id] = route.key.decode("utf-8", errors="surrogatepass")
                if len(owners) > self._remember:
                    owners.popitem(last=False)
            if route.kind == "reaction":
                self._send(reactions, line, route.key)
                n_reactions += 1
            else:
                self._send(responses, line, route.key)
                n_responses += 1
                unreadable += not route.readable
        per_topic = {t: n for t, n in ((responses, n_responses), (reactions, n_reactions)) if n}
        return PublishStats(per_topic=per_topic, unreadable=unreadable)

    def publish_quarantine(self, records: Sequence[BaseModel]) -> int:
        """Send records (normally `QuarantineRecord`) to the quarantine topic as JSON.

        The key is the record's ``response_id`` when it has one, so quarantined events of one
        response stay together.

        Returns:
            The number of records handed to the producer.
        """
        topic = self._kafka.quarantine_topic
        for record in records:
            rid = getattr(record, "response_id", None)
            key = rid.encode("utf-8") if isinstance(rid, str) and rid else None
            self._send(topic, record.model_dump_json().encode("utf-8"), key)
        return len(records)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued record is delivered.

        Raises:
            KafkaUnavailableError: a record could not be delivered (reported once, then reset),
                or delivery did not finish within `timeout_s`.
        """
        if self._producer is not None:
            try:
                self._producer.flush(timeout=timeout_s)
            except KafkaError as exc:
                raise kafka_unavailable(self._kafka, exc) from exc
        with self._lock:
            failed, first = self._failed, self._first_error
            self._failed, self._first_error = 0, None
        if failed and first is not None:
            raise kafka_unavailable(self._kafka, first, prefix=f"{failed} record(s) not delivered; first: ")

    def close(self, timeout_s: float | None = 10.0) -> None:
        """Flush and close the producer; safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout_s)  # waits up to timeout_s for queued records

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                self.flush()
            finally:
                self.close()
        else:
            self.close()
