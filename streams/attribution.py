"""The attribution core: events in, triples / corrections / quarantine out (pure).

One ``AttributionEngine`` holds the open attribution windows (keyed by response_id), the
reactions that arrived before their response, the recently closed responses (to attribute
late reactions) and the filter state. Drivers (the Faust app, the batch consumer, the Beam
backfill, tests) only feed it records and hand its ``Landing`` to a sink; every rule lives
here or in ``parsing``/``labeling``/``filtering``/``windowing``.

Reactions are handled in two steps, both in event-time order. When the watermark passes a
reaction it is *routed*: to its open window (a Love on a known answer is published to the
burst exchange, ``streams.bursts``), to its closed triple (late), or it waits for its
response (orphan). It is *judged* by the filter once the burst exchange has a final verdict
for it too, i.e. when every shard has published its Loves up to ``burst_window_s`` past it.
Windows close when that judging point passes their end. One engine runs per shard (partition
p of both topics, keyed by the conversation owner), so everything but bursts is shard-local.

Crash safety: every record whose information is still needed (an open response, its
accepted reactions, a reaction waiting for its response) is *held*. ``checkpoint()`` gives,
per topic-partition, the offset of the oldest held record (or the next offset when none
is held): a restarted worker seeks there and rebuilds the open windows by replaying.
Records in that replay region whose effect already landed are recognised through the
closed responses read back from the lake (their response and reaction sources) and skipped.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from rluf.ports import LandedTriple, RestoredState
from rluf.records import InputRecord, Landing, SourceRef, TopicPartition
from rluf.schemas import (
    LabelCorrection,
    QuarantineReason,
    QuarantineRecord,
    ReactionEvent,
    ResponseEvent,
    Triple,
    build_unchecked,
)
from rluf.settings import FilterSettings, StreamSettings
from rluf.shard_state import ShardRestore, ShardStateDelta, StateLog, StateRow
from streams.bursts import BurstOracle, LocalBursts, LoveFact, ShardClock
from streams.filtering import LowInformationTracker, ReactionFacts, ReactionFilter, answer_fingerprint
from streams.labeling import LOVE, ReactionLedger, label_of
from streams.parsing import ParseFailure, parse_event, payload_text
from streams.windowing import Watermark, WindowQueue

__all__ = ["AttributionEngine", "EngineStats"]

logger = logging.getLogger(__name__)

_HOUSEKEEPING_EVERY = 20_000  # events between scans that bound filter memory
_META_SEP = "\x1f"  # a response's light fields in its state row: response_id, owner, event_id, ts, chars


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


@dataclass(slots=True)
class _Reaction:
    event: ReactionEvent
    record: InputRecord
    ts: float
    closed: _Closed | None = None  # the landed triple it was routed to (late), kept until it is judged


@dataclass(slots=True)
class _Open:
    """An open window; the full event is parsed again only when needed (a restore keeps it raw)."""

    record: InputRecord
    ts: float
    end: float
    chars: int
    owner: str
    event_id: str
    _event: ResponseEvent | None = None
    _fingerprint: str | None = None
    ledger: ReactionLedger = field(default_factory=ReactionLedger)
    accepted: dict[str, _Reaction] = field(default_factory=dict)
    overflow: list[_Reaction] = field(default_factory=list)

    @property
    def event(self) -> ResponseEvent:
        if self._event is None:
            parsed = parse_event(self.record.value)  # it was valid when it arrived
            if not isinstance(parsed, ResponseEvent):  # pragma: no cover - only valid responses open windows
                raise ValueError(f"held response {self.record.source} no longer parses")
            self._event = parsed
        return self._event

    @property
    def fingerprint(self) -> str:
        """Hash of the answer text, computed on the first Love (most answers never get one)."""
        if self._fingerprint is None:
            self._fingerprint = answer_fingerprint(self.event.response)
        return self._fingerprint


@dataclass(slots=True)
class _Closed:
    response_id: str
    event_id: str
    user_id: str
    ts: float
    closed_at: float
    label: int
    source: str
    reaction_sources: frozenset[str]
    chars: int


class _HeldOffsets:
    """Offsets of one topic-partition still needed in memory; the oldest is the resume point.

    Records of one partition arrive in offset order, so a deque plus lazy deletion gives the
    minimum in amortised O(1).
    """

    __slots__ = ("_order", "_released", "next")

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._released: set[int] = set()
        self.next: int = 0

    def seen(self, offset: int) -> None:
        if offset + 1 > self.next:
            self.next = offset + 1

    def hold(self, offset: int) -> None:
        self._order.append(offset)

    def release(self, offset: int) -> None:
        self._released.add(offset)

    def safe(self) -> int:
        order, released = self._order, self._released
        while order and order[0] in released:
            released.discard(order.popleft())
        return order[0] if order else self.next


@dataclass(slots=True)
class EngineStats:
    """Counters for `rluf stream stats`; plain numbers, cheap to copy."""

    events_in: int = 0
    responses: int = 0
    reactions: int = 0
    triples_out: int = 0
    corrections_out: int = 0
    downweighted: int = 0
    replayed_skipped: int = 0
    below_checkpoint_skipped: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)

    @classmethod
    def total(cls, parts: Iterable[EngineStats]) -> EngineStats:
        """The sum of several shards' counters."""
        out = cls()
        for part in parts:
            out.events_in += part.events_in
            out.responses += part.responses
            out.reactions += part.reactions
            out.triples_out += part.triples_out
            out.corrections_out += part.corrections_out
            out.downweighted += part.downweighted
            out.replayed_skipped += part.replayed_skipped
            out.below_checkpoint_skipped += part.below_checkpoint_skipped
            out.quarantined.update(part.quarantined)
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "events_in": self.events_in,
            "responses": self.responses,
            "reactions": self.reactions,
            "triples_out": self.triples_out,
            "corrections_out": self.corrections_out,
            "downweighted": self.downweighted,
            "replayed_skipped": self.replayed_skipped,
            "below_checkpoint_skipped": self.below_checkpoint_skipped,
            "quarantined": dict(self.quarantined),
            "quarantined_total": sum(self.quarantined.values()),
        }


class AttributionEngine:
    """Joins reactions to responses in event-time windows and labels them.

    Args:
        stream: Window, lateness and watermark settings.
        filters: Adversarial-filter settings.
        restored: What the lake says already landed (worker restart); None for a fresh start.
        reputation: Optional user reputation lookup (the feature store's online store).
        shard: The shard this engine owns (the partition number of its topic-partitions).
        bursts: The burst exchange shared with the other shards; default: one of its own
            (a lone engine: the Beam backfill, unit tests).
        state: Keep a log of state changes for the state table (`drain_state`); the resume
            position is then the next offset after everything seen, else the oldest held one.
        shard_state: The shard's live state read back from the state table (a restore).
    """

    def __init__(
        self, stream: StreamSettings, filters: FilterSettings, restored: RestoredState | None = None, *,
        reputation: Callable[[str], float] | None = None, shard: int = 0, bursts: BurstOracle | None = None,
        state: bool = False, shard_state: ShardRestore | None = None,
    ) -> None:
        self._cfg = stream
        self._log: StateLog | None = StateLog() if state else None
        self.shard = shard
        self._coordination = filters.coordination_enabled
        self._bursts: BurstOracle = bursts if bursts is not None else LocalBursts(
            filters.burst_users, filters.burst_window_s, [shard])
        self._watermark = Watermark(stream.allowed_lateness_s, stream.idle_advance, stream.idle_source_s)
        self._filter = ReactionFilter(filters, reputation)
        self._low_info = LowInformationTracker(
            filters.low_info_min_events, filters.low_info_love_rate, filters.low_info_weight,
            enabled=filters.low_info_enabled,
        )
        self._open: dict[str, _Open] = {}
        self._windows = WindowQueue()
        self._orphans: dict[str, list[_Reaction]] = {}
        self._orphan_deadlines = WindowQueue()
        self._orphan_owner: dict[str, str] = {}  # orphan event_id -> response_id
        self._pending: list[tuple[float, int, _Reaction]] = []  # reactions waiting for the watermark
        self._judging: list[tuple[float, int, _Reaction]] = []  # routed, waiting for the judging point
        self._seq = 0
        self._closed: dict[str, _Closed] = {}
        self._closed_expiry = WindowQueue()
        self._seen_reactions: set[str] = set()  # reaction event_ids within the lateness horizon
        self._seen_expiry: deque[tuple[float, str]] = deque()
        self._held: dict[TopicPartition, _HeldOffsets] = {}
        self._skip_below: dict[TopicPartition, int] = {}
        self._since_housekeeping = 0
        self.stats = EngineStats()
        if restored is not None:
            self._restore(restored)
        if shard_state is not None:
            self._restore_state(shard_state)

    # ------------------------------------------------------------------ public API

    @property
    def watermark(self) -> float | None:
        return self._watermark.value

    @property
    def judged_through(self) -> float | None:
        """Event time up to which reactions are judged and windows closed."""
        wm = self._watermark.value
        if wm is None or not self._coordination:
            return wm
        final = self._bursts.final_through()
        return None if final is None else min(wm, final)

    @property
    def open_windows(self) -> int:
        return len(self._open)

    @property
    def held_orphans(self) -> int:
        return len(self._orphan_owner)

    def checkpoint(self) -> dict[TopicPartition, int]:
        """Per topic-partition offset to resume from after a crash.

        With a state log, the next offset after everything seen (the held records are in the
        state table); without, the oldest held record (a restart replays from there).
        """
        if self._log is not None:
            return self.positions()
        return {tp: held.safe() for tp, held in self._held.items()}

    def drain_state(self) -> ShardStateDelta:
        """The state changes since the previous call, for the landing that covers them."""
        if self._log is None:
            raise RuntimeError("this engine keeps no state log (state=False)")
        log = self._log
        users = [StateRow("filter", u, json.dumps(self._filter.user_state(u)).encode()) for u in log.touched_users]
        clocks = [StateRow("clock", f"{src[0]}:{src[1]}", json.dumps(ts).encode())  # type: ignore[index]
                  for src, ts in self._watermark.newest_by_source().items() if isinstance(src, tuple)]
        return log.drain(self.shard, users, clocks)

    def expect_sources(self, starts: Mapping[TopicPartition, int | None], wall_now: float) -> None:
        """Partitions assigned to this worker and the offset each is read from.

        The watermark waits for each one's first event. A start offset makes the partition's
        position known before its first record (its backlog is then the high-water mark
        minus that offset); a restored checkpoint, where there is one, takes precedence.
        """
        for tp, start in starts.items():
            self._watermark.expect(tp, wall_now)
            if start is not None and tp not in self._held:
                self._held[tp] = _HeldOffsets()
                self._held[tp].next = start

    def report_backlog(self, backlog: Mapping[TopicPartition, int | None]) -> None:
        """Records per partition the core has not seen yet (None: unknown); see `Watermark.set_backlog`."""
        for tp, left in backlog.items():
            self._watermark.set_backlog(tp, left)

    @property
    def behind(self) -> bool:
        """Whether some reported partition still has records to read (or cannot tell)."""
        return self._watermark.behind()

    def positions(self) -> dict[TopicPartition, int]:
        """Per topic-partition next offset to process (everything below has been seen)."""
        return {tp: held.next for tp, held in self._held.items()}

    def process(self, records: Iterable[InputRecord], wall_now: float) -> Landing:
        """Feed records in arrival order; windows close as the watermark passes them.

        Routing, judging and closing run once per call, after the records: they follow
        event time (a merged timeline up to the watermark), not arrival, so the outcome does
        not depend on how records are batched, and a batch costs one pass, not one per record.

        Args:
            records: Raw messages with their source positions.
            wall_now: Wall-clock time in epoch seconds (idle advance, quarantine stamps).
        """
        out = Landing()
        for record in records:
            self._one(record, wall_now, out)
        self._close_due(wall_now, out)  # routes first: the Loves the heartbeat vouches for are published
        self._heartbeat()
        self._close_due(wall_now, out)
        self._housekeeping(wall_now)
        return out

    def tick(self, wall_now: float) -> Landing:
        """Processing-time timer: advance an idle watermark and close what it passes."""
        out = Landing()
        self._watermark.tick(wall_now)
        self._close_due(wall_now, out)
        self._heartbeat()
        self._close_due(wall_now, out)
        self._housekeeping(wall_now, force=True)
        return out

    def advance(self, wall_now: float) -> Landing:
        """Judge and close what the judging point passed (another shard's heartbeat may move it)."""
        out = Landing()
        self._close_due(wall_now, out)
        return out

    def flush(self, wall_now: float) -> Landing:
        """Close every open window now and give up on reactions still waiting for a response.

        Bursts are judged with what the exchange knows at this moment. With several shards
        in one exchange, call `flush_route` on every engine before `flush_close` on any.
        """
        self.flush_route(wall_now)
        return self.flush_close(wall_now)

    def flush_route(self, wall_now: float) -> None:
        """First half of `flush`: route every pending reaction and publish this shard's last Loves."""
        self._watermark.tick(wall_now)
        facts: list[LoveFact] = []
        while self._pending:
            self._route(heapq.heappop(self._pending)[2], facts)
        if facts:
            self._bursts.publish(facts)
        if self._coordination:  # this shard has published everything it will
            self._bursts.heartbeat(ShardClock(self.shard, math.inf))

    def flush_close(self, wall_now: float) -> Landing:
        """Second half of `flush`: judge every routed reaction, close every window, expire orphans."""
        out = Landing()
        while self._judging:
            self._judge(heapq.heappop(self._judging)[2], wall_now, out)
        for rid in self._windows.pop_all():
            self._close(self._open.pop(rid), "flush", wall_now, out)
        for eid in self._orphan_deadlines.pop_all():
            self._expire_orphan(eid, wall_now, out)
        return out

    def _heartbeat(self) -> None:
        """Tell the burst exchange how far this shard has published its Loves."""
        if self._coordination:
            wm = self._watermark.value
            self._bursts.heartbeat(ShardClock(self.shard, wm, idle=wm is None and not self._watermark.behind()
                                              and not self._open and not self._pending))

    # ------------------------------------------------------------------ restart

    def _restore(self, restored: RestoredState) -> None:
        self._skip_below = dict(restored.checkpoint)
        for tp, offset in restored.checkpoint.items():
            held = self._held[tp] = _HeldOffsets()
            held.next = offset
        for landed in restored.closed:
            self._remember_closed(_closed_from_landed(landed))
        self._low_info.seed(restored.user_windows)

    def _restore_state(self, live: ShardRestore) -> None:
        """Rebuild open windows, held reactions, filter state and clocks from the state table.

        Windows and accepted reactions come back as they were (no filter is run again: the
        verdicts and the tokens they used are in the table); reactions not judged yet wait
        for the watermark again, and their Loves are published to the burst exchange again
        when it passes them (the exchange drops repeats).
        """
        parsed: list[tuple[str, ReactionEvent, InputRecord]] = []
        window_s = self._cfg.attribution_window_s
        for source, payload in live.holds.items():
            topic, part, offset = source.rsplit(":", 2)
            record = InputRecord(SourceRef(topic, int(part), int(offset)), payload)
            meta = live.meta.get(source)
            if meta is not None:  # a response: its window comes back without parsing the event
                rid, owner, eid, ts_text, chars = meta.split(_META_SEP)
                ts = float(ts_text)
                self._open[rid] = _Open(record=record, ts=ts, end=ts + window_s, chars=int(chars), owner=owner,
                                        event_id=eid)
                self._windows.push(rid, ts + window_s)
                self._held.setdefault(record.source.tp, _HeldOffsets()).hold(record.source.offset)
                continue
            event = parse_event(payload)
            if isinstance(event, ResponseEvent):  # a row written without its light fields
                ts = event.ts.timestamp()
                self._open[event.response_id] = _Open(record=record, ts=ts, end=ts + window_s,
                                                      chars=len(event.response), owner=event.user_id,
                                                      event_id=event.event_id, _event=event)
                self._windows.push(event.response_id, ts + window_s)
                self._held.setdefault(record.source.tp, _HeldOffsets()).hold(record.source.offset)
            elif isinstance(event, ReactionEvent):
                parsed.append((source, event, record))
            else:  # pragma: no cover - only valid events are held
                logger.warning("state row %s does not parse (%s); dropped", source, event.detail)
        parsed.sort(key=lambda item: (item[1].ts, item[2].source.offset))
        for source, event, record in parsed:
            ts = event.ts.timestamp()
            r = _Reaction(event=event, record=record, ts=ts)
            self._held.setdefault(record.source.tp, _HeldOffsets()).hold(record.source.offset)
            self._seen_reactions.add(event.event_id)
            self._seen_expiry.append((ts + self._cfg.attribution_window_s + self._cfg.max_lateness_s, event.event_id))
            window = self._open.get(event.response_id)
            if source in live.accepted and window is not None:
                window.ledger.apply(event.user_id, event.reaction, event.action, ts, source, event.event_id)
                window.accepted[event.event_id] = r
                if self._coordination and event.reaction == LOVE and event.action == "add":
                    self._bursts.publish([LoveFact(ts=ts, event_id=event.event_id, fingerprint=window.fingerprint,
                                                   user_id=event.user_id, shard=self.shard)])
            else:
                heapq.heappush(self._pending, (ts, self._next_seq(), r))
        for eid, until in sorted(live.seen.items(), key=lambda item: item[1]):
            if eid not in self._seen_reactions:
                self._seen_reactions.add(eid)
                self._seen_expiry.append((until, eid))
        self._seen_expiry = deque(sorted(self._seen_expiry))
        for user, state in live.filters.items():
            self._filter.restore_user(user, state)
        for key, ts in live.clocks.items():
            topic, part = key.rsplit(":", 1)
            self._watermark.restore_newest((topic, int(part)), ts)
        if self._log is not None:
            self._log.restored(live.holds.keys(), live.seq)

    # ------------------------------------------------------------------ per record

    def _one(self, record: InputRecord, wall_now: float, out: Landing) -> None:
        source = record.source
        tp = source.tp
        skip = self._skip_below.get(tp)
        if skip is not None and source.offset < skip:
            self.stats.below_checkpoint_skipped += 1
            self._watermark.heard(tp, wall_now)  # still being read: keeps holding the watermark
            return
        held = self._held.get(tp)
        if held is None:
            held = self._held[tp] = _HeldOffsets()
        held.seen(source.offset)
        self.stats.events_in += 1
        self._watermark.heard(tp, wall_now)

        event = parse_event(record.value)
        if isinstance(event, ParseFailure):
            self._quarantine(out, record, event.reason, event.detail, wall_now)
            return
        ts = event.ts.timestamp()
        if ts > wall_now + self._cfg.max_future_skew_s:
            self._quarantine(
                out, record, "future_timestamp",
                f"ts: {event.ts.isoformat()} is {ts - wall_now:.0f} s ahead of the clock", wall_now, event,
            )
            return
        if isinstance(event, ResponseEvent):
            self.stats.responses += 1
            self._on_response(event, record, ts, wall_now, out)
        else:
            self.stats.reactions += 1
            self._on_reaction(event, record, ts, wall_now, out)
        self._since_housekeeping += 1

    def _on_response(self, event: ResponseEvent, record: InputRecord, ts: float, wall_now: float,
                     out: Landing) -> None:
        rid = event.response_id
        other = self._open.get(rid)
        closed = self._closed.get(rid) if other is None else None
        if other is not None or closed is not None:
            if closed is not None and closed.source == str(record.source):
                self.stats.replayed_skipped += 1  # replay of a response whose triple landed
                self._watermark.observe(ts, wall_now, record.source.tp)
                return
            first_event = other.event_id if other is not None else closed.event_id  # type: ignore[union-attr]
            if first_event == event.event_id:
                self._quarantine(out, record, "duplicate_event", f"event_id: {event.event_id} seen before",
                                 wall_now, event)
            else:
                self._quarantine(out, record, "duplicate_response",
                                 f"response_id: {rid} already has event {first_event}", wall_now, event)
            return
        self._watermark.observe(ts, wall_now, record.source.tp)
        end = ts + self._cfg.attribution_window_s
        window_chars = len(event.response)
        window = _Open(record=record, ts=ts, end=end, chars=window_chars, owner=event.user_id,
                       event_id=event.event_id, _event=event)
        self._open[rid] = window
        self._hold(record, _META_SEP.join((rid, event.user_id, event.event_id, repr(ts), str(window_chars))))
        self._windows.push(rid, end)
        waiting_list = self._orphans.pop(rid, ())
        if waiting_list:
            facts: list[LoveFact] = []
            for waiting in waiting_list:
                self._orphan_deadlines.discard(waiting.event.event_id)
                del self._orphan_owner[waiting.event.event_id]
                self._to_window(window, waiting, facts)
            if facts:
                self._bursts.publish(facts)

    def _on_reaction(self, event: ReactionEvent, record: InputRecord, ts: float, wall_now: float,
                     out: Landing) -> None:
        eid = event.event_id
        rid = event.response_id
        closed = self._closed.get(rid)
        if closed is not None and str(record.source) in closed.reaction_sources:
            self.stats.replayed_skipped += 1  # replay of a reaction already counted in a landed triple
            self._watermark.observe(ts, wall_now, record.source.tp)
            return
        if eid in self._seen_reactions:
            self._quarantine(out, record, "duplicate_event", f"event_id: {eid} seen before", wall_now, event)
            return
        self._seen_reactions.add(eid)
        until = ts + self._cfg.attribution_window_s + self._cfg.max_lateness_s
        self._seen_expiry.append((until, eid))
        if self._log is not None:
            self._log.seen(eid, until)
        self._watermark.observe(ts, wall_now, record.source.tp)
        # Judged when the watermark passes its event time, in event-time order across all
        # partitions: per-user rules (token bucket, daily cap, bursts) then see a user's
        # reactions in the order they happened, however the partitions were interleaved.
        self._hold(record)
        self._seq += 1
        heapq.heappush(self._pending, (ts, self._seq, _Reaction(event=event, record=record, ts=ts)))

    def _route(self, r: _Reaction, facts: list[LoveFact] | None = None) -> None:
        """A reaction the watermark passed: to its window, to its closed triple, or wait for its response."""
        rid = r.event.response_id
        window = self._open.get(rid)
        if window is not None:
            if facts is None:
                facts = []
                self._to_window(window, r, facts)
                if facts:
                    self._bursts.publish(facts)
            else:
                self._to_window(window, r, facts)
            return
        closed = self._closed.get(rid)
        if closed is not None:  # late: judged in order with the rest, against this triple
            r.closed = closed
            heapq.heappush(self._judging, (r.ts, self._next_seq(), r))
            return
        eid = r.event.event_id  # before its response: hold until the response arrives or cannot anymore
        self._orphans.setdefault(rid, []).append(r)
        self._orphan_owner[eid] = rid
        self._orphan_deadlines.push(eid, r.ts + self._cfg.attribution_window_s)

    def _to_window(self, window: _Open, r: _Reaction, facts: list[LoveFact]) -> None:
        """A reaction meets its open window: queue it for judging (a Love on it is published)."""
        if r.ts > window.end:  # outside the attribution window: judged as late once it closes
            window.overflow.append(r)
            return
        e = r.event
        if self._coordination and e.reaction == LOVE and e.action == "add":
            facts.append(LoveFact(ts=r.ts, event_id=e.event_id, fingerprint=window.fingerprint,
                                  user_id=e.user_id, shard=self.shard))
        heapq.heappush(self._judging, (r.ts, self._next_seq(), r))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _judge(self, r: _Reaction, wall_now: float, out: Landing) -> None:
        """The filter's verdict on a routed reaction, once its burst verdict is final."""
        rid = r.event.response_id
        window = self._open.get(rid)
        if window is not None:
            self._attach(window, r, wall_now, out)
            return
        closed = r.closed or self._closed.get(rid)
        if closed is not None:
            self._release(r.record)
            self._late(closed, r, wall_now, out)
            return
        self._route(r)  # pragma: no cover - routed to a window or a triple, never neither

    # ------------------------------------------------------------------ joining

    def _facts(self, r: _Reaction, owner: str, response_ts: float, chars: int, window: _Open | None
               ) -> ReactionFacts:
        e = r.event
        love_add = e.reaction == LOVE and e.action == "add"
        fingerprint = window.fingerprint if window is not None and love_add else None
        coordinated = fingerprint is not None and self._coordination and self._bursts.coordinated(e.event_id)
        return ReactionFacts(event_id=e.event_id, user_id=e.user_id, kind=e.reaction, action=e.action,
                             ts=r.ts, owner_id=owner, response_ts=response_ts, response_chars=chars,
                             fingerprint=fingerprint, coordinated=coordinated)

    def _hold(self, record: InputRecord, meta: str = "") -> None:
        self._held[record.source.tp].hold(record.source.offset)
        if self._log is not None:
            self._log.hold(str(record.source), record.value, meta)

    def _release(self, record: InputRecord) -> None:
        self._held[record.source.tp].release(record.source.offset)
        if self._log is not None:
            self._log.release(str(record.source))

    def _attach(self, window: _Open, r: _Reaction, wall_now: float, out: Landing) -> None:
        if self._log is not None:
            self._log.touch_user(r.event.user_id)
        verdict = self._filter.check(self._facts(r, window.owner, window.ts, window.chars, window))
        source = r.record.source
        if verdict is not None:
            self._release(r.record)
            self._quarantine(out, r.record, verdict, self._reason_detail(verdict, r, window), wall_now, r.event)
            return
        e = r.event
        window.ledger.apply(e.user_id, e.reaction, e.action, r.ts, str(source), e.event_id)
        window.accepted[e.event_id] = r
        if self._log is not None:
            self._log.accept(str(source))

    def _reason_detail(self, reason: QuarantineReason, r: _Reaction, window: _Open | None) -> str:
        user = r.event.user_id
        if reason == "not_owner" and window is not None:
            return f"user_id: {user} is not the conversation owner {window.owner}"
        if reason == "too_fast" and window is not None:
            return f"ts: reacted {r.ts - window.ts:.2f} s after a {window.chars}-char answer"
        if reason == "coordinated":
            return "part of a burst of Loves on the same answer text"
        if reason == "low_reputation":
            return f"user_id: {user} has a reputation below the minimum"
        return f"user_id: {user} exceeded the {reason.replace('_', ' ')}"

    # ------------------------------------------------------------------ closing

    def _close_due(self, wall_now: float, out: Landing) -> None:
        """Route what the watermark passed, then judge and close what the judging point passed."""
        wm = self._watermark.value
        if wm is None:
            return
        pending = self._pending
        if pending and pending[0][0] <= wm:
            facts: list[LoveFact] = []
            while pending and pending[0][0] <= wm:
                self._route(heapq.heappop(pending)[2], facts)
            if facts:
                self._bursts.publish(facts)
        judged = self.judged_through
        if judged is None:
            return
        # Judge, close and expire in event-time order up to the judging point: a reaction at a
        # window's end still counts in it, one stamped after it is judged late after the close.
        judging, windows, orphans = self._judging, self._windows, self._orphan_deadlines
        while True:
            next_judge = judging[0][0] if judging else math.inf
            next_close = windows.next_deadline()
            next_orphan = orphans.next_deadline()
            close_at = math.inf if next_close is None else next_close
            orphan_at = math.inf if next_orphan is None else next_orphan
            step = min(next_judge, close_at, orphan_at)
            if step > judged:
                break
            if next_judge == step:
                self._judge(heapq.heappop(judging)[2], wall_now, out)
            elif close_at == step:
                rid = windows.pop_first()
                self._close(self._open.pop(rid), "watermark", wall_now, out)
            else:
                self._expire_orphan(orphans.pop_first(), wall_now, out)
        for rid in self._closed_expiry.pop_due(judged):
            self._closed.pop(rid, None)
        seen = self._seen_expiry
        while seen and seen[0][0] <= judged:
            self._seen_reactions.discard(seen.popleft()[1])

    def _close(self, window: _Open, reason: Literal["watermark", "flush"], wall_now: float, out: Landing) -> None:
        e = window.event
        if reason == "watermark":
            closed_at = window.end
        else:
            wm = self._watermark.value
            closed_at = max(window.ts, min(window.end, wm if wm is not None else window.ts))
        label = label_of(window.ledger, e.user_id)
        self._low_info.record(e.user_id, label)
        weight = self._low_info.weight_for(e.user_id)
        if weight < 1.0:
            self.stats.downweighted += 1
        reaction_sources = [str(r.record.source) for r in window.accepted.values()]
        out.triples.append(build_unchecked(Triple, {
            "response_id": e.response_id, "event_id": e.event_id, "conversation_id": e.conversation_id,
            "user_id": e.user_id, "context": e.context, "response": e.response,
            "policy_version": e.policy_version, "ts": e.ts, "label": label,
            "reactions": window.ledger.summary(), "window_closed_at": _dt(closed_at), "close_reason": reason,
            "weight": weight, "source_topic": window.record.source.topic,
            "source_partition": window.record.source.partition, "source_offset": window.record.source.offset,
            "reaction_sources": reaction_sources, "extra": e.extra,
        }))
        self.stats.triples_out += 1
        src = window.record.source
        self._release(window.record)
        for r in window.accepted.values():
            self._release(r.record)
        closed = _Closed(response_id=e.response_id, event_id=e.event_id, user_id=e.user_id, ts=window.ts,
                         closed_at=closed_at, label=label, source=str(src),
                         reaction_sources=frozenset(reaction_sources), chars=window.chars)
        self._remember_closed(closed)
        for r in window.overflow:  # stamped after the window: judged as late, in event-time order
            r.closed = closed
            heapq.heappush(self._judging, (r.ts, self._next_seq(), r))

    def _remember_closed(self, closed: _Closed) -> None:
        self._closed[closed.response_id] = closed
        self._closed_expiry.push(closed.response_id, closed.closed_at + self._cfg.max_lateness_s)

    def _late(self, closed: _Closed, r: _Reaction, wall_now: float, out: Landing) -> None:
        """A reaction to a response whose triple landed: a label correction or a reject."""
        if self._log is not None:
            self._log.touch_user(r.event.user_id)
        verdict = self._filter.check(self._facts(r, closed.user_id, closed.ts, closed.chars, None))
        if verdict is not None:
            self._quarantine(out, r.record, verdict, self._reason_detail(verdict, r, None), wall_now, r.event)
            return
        e = r.event
        lateness = r.ts - closed.closed_at
        if lateness > self._cfg.max_lateness_s:
            self._quarantine(out, r.record, "beyond_max_lateness",
                             f"ts: {lateness:.0f} s after the window closed (max {self._cfg.max_lateness_s:.0f})",
                             wall_now, e)
            return
        if e.reaction != LOVE:
            self._quarantine(out, r.record, "late_reaction",
                             f"reaction: a late {e.reaction} cannot change the label", wall_now, e)
            return
        new_label = 1 if e.action == "add" else 0
        if new_label == closed.label:
            self._quarantine(out, r.record, "late_reaction",
                             f"action: late love {e.action} leaves the label at {new_label}", wall_now, e)
            return
        src = r.record.source
        out.corrections.append(LabelCorrection.model_construct(
            correction_id=f"{src}", response_id=closed.response_id, user_id=e.user_id,
            reaction_event_id=e.event_id, action=e.action, old_label=closed.label, new_label=new_label,
            reaction_ts=e.ts, window_closed_at=_dt(closed.closed_at), lateness_s=lateness,
            source_topic=src.topic, source_partition=src.partition, source_offset=src.offset,
        ))
        closed.label = new_label
        closed.reaction_sources = closed.reaction_sources | {str(src)}  # a replay recognises it
        self.stats.corrections_out += 1

    def _expire_orphan(self, event_id: str, wall_now: float, out: Landing) -> None:
        rid = self._orphan_owner.pop(event_id)
        waiting = self._orphans.get(rid, [])
        for i, r in enumerate(waiting):
            if r.event.event_id == event_id:
                del waiting[i]
                break
        else:  # pragma: no cover - the maps are kept in step
            raise AssertionError(f"orphan {event_id} not found")
        if not waiting:
            self._orphans.pop(rid, None)
        self._release(r.record)
        self._quarantine(out, r.record, "unknown_response",
                         f"response_id: {rid} never arrived within the attribution window", wall_now, r.event)

    # ------------------------------------------------------------------ helpers

    def _quarantine(self, out: Landing, record: InputRecord, reason: QuarantineReason, detail: str, wall_now: float,
                    event: ResponseEvent | ReactionEvent | None = None) -> None:
        self.stats.quarantined[reason] += 1
        src = record.source
        out.quarantine.append(QuarantineRecord.model_construct(
            quarantine_id=str(src), reason=reason, detail=detail, raw=payload_text(record.value),
            event_type=event.type if event is not None else None,
            event_id=event.event_id if event is not None else None,
            response_id=event.response_id if event is not None else None,
            user_id=event.user_id if event is not None else None,
            event_ts=event.ts if event is not None else None,
            quarantined_at=_dt(wall_now), source_topic=src.topic, source_partition=src.partition,
            source_offset=src.offset,
        ))

    def _housekeeping(self, wall_now: float, *, force: bool = False) -> None:
        if not force and self._since_housekeeping < _HOUSEKEEPING_EVERY:
            return
        self._since_housekeeping = 0
        wm = self._watermark.value
        if wm is not None:
            self._filter.forget_before(wm)


def _closed_from_landed(t: LandedTriple) -> _Closed:
    return _Closed(response_id=t.response_id, event_id=t.event_id, user_id=t.user_id, ts=t.ts,
                   closed_at=t.window_closed_at, label=t.label, source=t.source,
                   reaction_sources=t.reaction_sources, chars=t.response_chars)
