"""Routing of raw lines, the event-time pacing schedule and `replay_file` on fakes (no network)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from rluf.errors import InputFileError
from streams.kafka_producer import PublishStats, Route, route_line
from streams.replay import Pacer, event_time, replay_file
from tests.factories import T0, reaction, response


def _line(event: dict) -> bytes:
    return json.dumps(event).encode()


# -- routing ---------------------------------------------------------------------------------


def test_response_routes_to_responses_keyed_by_its_owner() -> None:
    assert route_line(_line(response("r1", "u1", 0))) == Route("response", b"u1", True, "r1")


def test_reaction_is_keyed_by_the_owner_of_its_response_when_known() -> None:
    owners = {"r7": "owner7"}
    assert route_line(_line(reaction("e1", "r7", "troll", 5)), owners) == Route("reaction", b"owner7", True, "r7")
    # a response this publisher never saw: the reacting user, the owner of every reaction that counts
    assert route_line(_line(reaction("e2", "r8", "u1", 5)), owners) == Route("reaction", b"u1", True, "r8")


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2, 3]", b'"a string"', b"42", b"null", b"\xff\xfe{}", b"[" * 100_000],
    ids=["broken", "array", "string", "number", "null", "bad-utf8", "deep-nesting"],
)
def test_unreadable_lines_go_to_responses_without_key(raw: bytes) -> None:
    assert route_line(raw) == Route("response", None, False)


def test_reaction_without_user_or_response_keeps_its_topic_but_has_no_key() -> None:
    event = reaction("e1", "r1", "u1", 0)
    del event["response_id"], event["user_id"]
    assert route_line(_line(event)) == Route("reaction", None, True)


@pytest.mark.parametrize("user", [17, "", None, ["u1"]])
def test_non_string_or_empty_user_id_gives_no_key(user: object) -> None:
    assert route_line(_line({**response("r1", "u1", 0), "user_id": user})).key is None


def test_unknown_or_missing_type_routes_to_responses() -> None:
    assert route_line(_line({**response("r1", "u1", 0), "type": "Reaction"})) == Route("response", b"u1", True, "r1")
    assert route_line(b'{"response_id": "r2"}') == Route("response", None, True, "r2")


def test_non_ascii_owner_is_keyed_as_utf8() -> None:
    assert route_line(_line(response("r1", "réponse-😀", 0))).key == "réponse-😀".encode()


# -- event time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-01T00:00:10+00:00", T0.timestamp() + 10),
        ("2026-11-01T00:00:10Z", T0.timestamp() + 10),
        ("2026-11-01T02:00:10+02:00", T0.timestamp() + 10),
        ("2026-11-01T00:00:10", T0.timestamp() + 10),  # naive: taken as UTC for pacing
        (1_793_491_210, 1_793_491_210.0),
        (1.5, 1.5),
    ],
)
def test_event_time_reads_iso_and_epoch_seconds(ts: object, expected: float) -> None:
    assert event_time(json.dumps({"ts": ts}).encode()) == pytest.approx(expected)


@pytest.mark.parametrize("raw", [b'{"ts": "yesterday"}', b'{"ts": true}', b'{"ts": null}', b"{}", b"[]", b"{oops"])
def test_event_time_is_none_when_unreadable(raw: bytes) -> None:
    assert event_time(raw) is None


# -- pacing schedule -------------------------------------------------------------------------


def test_pacer_reproduces_gaps_divided_by_speedup() -> None:
    pacer = Pacer(speedup=10.0)
    assert pacer.delay(1000.0, now=50.0) == 0.0          # first timed event anchors
    assert pacer.delay(1010.0, now=50.0) == pytest.approx(1.0)
    assert pacer.delay(1030.0, now=51.0) == pytest.approx(2.0)


def test_pacer_does_not_accumulate_oversleep() -> None:
    pacer = Pacer(speedup=1.0)
    pacer.delay(0.0, now=0.0)
    # The caller overslept: it is already 5.3 s in when it asks about the event due at 5 s.
    assert pacer.delay(5.0, now=5.3) == 0.0
    # The next event is due at 6 s on the original schedule, not 6.3 s.
    assert pacer.delay(6.0, now=5.3) == pytest.approx(0.7)


def test_pacer_sends_out_of_order_and_untimed_events_at_once() -> None:
    pacer = Pacer(speedup=2.0)
    assert pacer.delay(None, now=0.0) == 0.0             # does not anchor
    assert pacer.delay(100.0, now=1.0) == 0.0
    assert pacer.delay(90.0, now=1.0) == 0.0             # before the anchor
    assert pacer.delay(None, now=1.0) == 0.0
    assert pacer.delay(104.0, now=1.0) == pytest.approx(2.0)


@pytest.mark.parametrize("speedup", [0.0, -1.0, float("inf"), float("nan")])
def test_pacer_rejects_bad_speedup(speedup: float) -> None:
    with pytest.raises(ValueError, match="speedup"):
        Pacer(speedup)


# -- replay_file on fakes --------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ListPublisher:
    """Routes like `EventPublisher` and keeps what it was given."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, float | None]] = []
        self.flushes = 0
        self._clock = clock

    def publish(self, raw_lines: Iterable[bytes]) -> PublishStats:
        stats = PublishStats()
        for line in raw_lines:
            route = route_line(line, {"r1": "u1"})
            topic = "reactions" if route.kind == "reaction" else "responses"
            self.sent.append((topic, line, route.key, self._clock() if self._clock else None))
            stats.per_topic[topic] = stats.per_topic.get(topic, 0) + 1
            stats.unreadable += not route.readable
        return stats

    def flush(self) -> None:
        self.flushes += 1


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def test_replay_publishes_each_line_verbatim_and_counts_per_topic(tmp_path: Path) -> None:
    r1, r2 = _line(response("r1", "u1", 0)), _line(response("r2", "u2", 1))
    love = _line(reaction("e1", "r1", "u1", 2))
    src = _write(tmp_path / "events.jsonl", [
        r1 + b"\n", b"\n", love + b"\r\n", b"   \n", b"not json at all\n", r2,  # no final newline
    ])
    pub = ListPublisher()
    progress: list[int] = []

    stats = replay_file(src, pub, speedup=None, on_progress=progress.append)

    assert [(t, line, key) for t, line, key, _ in pub.sent] == [
        ("responses", r1, b"u1"),
        ("reactions", love, b"u1"),
        ("responses", b"not json at all", None),
        ("responses", r2, b"u2"),
    ]
    assert (stats.lines_read, stats.blank_lines, stats.unreadable, stats.untimed) == (4, 2, 1, 0)
    assert stats.published == {"responses": 3, "reactions": 1}
    assert stats.total_published == 4
    assert progress == [4]
    assert pub.flushes == 1


def test_replay_reports_progress_in_steps_of_1000(tmp_path: Path) -> None:
    src = _write(tmp_path / "many.jsonl", [_line(response(f"r{i}", "u", i)) + b"\n" for i in range(2_345)])
    progress: list[int] = []
    stats = replay_file(src, ListPublisher(), speedup=None, on_progress=progress.append)
    assert progress == [1000, 1000, 345]
    assert stats.published == {"responses": 2_345}


def test_replay_keeps_event_time_gaps_divided_by_speedup(tmp_path: Path) -> None:
    events = [
        _line(response("r1", "u1", 0)),
        _line(reaction("e1", "r1", "u1", 30)),
        b"garbage",                                        # untimed: sent at once
        _line(reaction("e2", "r1", "u1", 20)),             # out of order: sent at once
        _line(response("r2", "u2", 90)),
    ]
    src = _write(tmp_path / "paced.jsonl", [e + b"\n" for e in events])
    clock = FakeClock()
    pub = ListPublisher(clock)

    stats = replay_file(src, pub, speedup=10.0, clock=clock, sleep=clock.sleep)

    assert clock.sleeps == pytest.approx([3.0, 6.0])
    assert [t for *_, t in pub.sent] == pytest.approx([100.0, 103.0, 103.0, 103.0, 109.0])
    assert stats.seconds == pytest.approx(9.0)
    assert (stats.lines_read, stats.untimed, stats.unreadable) == (5, 1, 1)
    assert stats.published == {"responses": 3, "reactions": 2}


def test_replay_without_speedup_never_sleeps(tmp_path: Path) -> None:
    src = _write(tmp_path / "fast.jsonl", [_line(response(f"r{i}", "u", i * 3600)) + b"\n" for i in range(5)])
    clock = FakeClock()
    replay_file(src, ListPublisher(), speedup=None, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InputFileError) as err:
        replay_file(missing, ListPublisher(), speedup=None)
    assert str(err.value) == f"{missing}: file not found"


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="is a directory"):
        replay_file(tmp_path, ListPublisher(), speedup=None)


def test_publish_stats_add_merges_topics() -> None:
    total = PublishStats()
    total.add(PublishStats({"a": 2}, unreadable=1))
    total.add(PublishStats({"a": 1, "b": 4}))
    assert (total.per_topic, total.unreadable, total.total) == ({"a": 3, "b": 4}, 1, 7)
