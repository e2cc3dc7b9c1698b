"""Building blocks shared by the importers of `rluf import`: real feedback data turned into wire events.

The importers (``oasst``, ``hh_rlhf`` beside this module) read public human-feedback data
and emit exactly what a chat product's producer would send: ``response``
events and ``reaction`` events, one JSON object per line. Everything downstream (stream
worker, Beam backfill, Delta triples, training) then runs on real text and real reactions
without a special code path for "imported" data.

Three things are decided here once, so both sources behave the same:

* **Reaction timing.** A reaction arrives a seeded, human-plausible delay after its response:
  log-uniform between 30 s and 2 h, plus three times the reading time the ``too_fast`` filter
  demands (8 ms per response character, at least 300 ms). So no imported reaction is ever
  quarantined as too fast, and all land far inside a 24 h attribution window.
* **Love-rate sampling.** Real Love rates are ~0.1-2 % of responses; the public data is ~50 %
  positive. :func:`positives_to_keep` drops whole positive responses (and their reactions)
  until positives make up ``love_rate`` of the responses that remain.
* **The output file.** :func:`write_events` sorts by event time and writes UTF-8 JSONL with a
  fixed tie-break, so the same input and seed give the same bytes.

This module does no I/O except in :func:`write_events` (and reading input in :func:`read_json_lines`).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zlib import error as zlib_error

from rluf.errors import InputFileError
from rluf.schemas import Message

__all__ = [
    "ImportResult",
    "read_json_lines",
    "required",
    "iso_ts",
    "reaction_delay",
    "positive_quota",
    "positives_to_keep",
    "response_event",
    "reaction_event",
    "write_events",
]

logger = logging.getLogger(__name__)

# Reading time the `too_fast` filter demands (FilterSettings defaults), and the safety factor
# on top of it: an imported reaction must never look like a bot.
_MS_PER_CHAR = 8.0
_MIN_READ_MS = 300.0
_READ_MARGIN = 3.0
# Human reaction delay after reading: log-uniform in [30 s, 2 h].
_MIN_DELAY_S = 30.0
_MAX_DELAY_S = 2 * 3600.0


@dataclass(frozen=True)
class ImportResult:
    """Wire events built from one source file, with what was counted on the way.

    Attributes:
        source: ``"oasst1"`` or ``"hh-rlhf"`` (the ``extra.source`` of every event).
        events: Wire-format event dicts (``response`` and ``reaction``), in build order;
            :func:`write_events` sorts them by event time.
        responses: Number of ``response`` events.
        loves: Number of ``love`` reaction events (each by the response's owner).
        thumbs_down: Number of ``thumbs_down`` reaction events.
        skipped: Candidate responses not emitted, by reason (``deleted``, ``missing_parent``,
            ``love_rate``, ...). Reasons with a zero count are left out.
    """

    source: str
    events: list[dict[str, Any]]
    responses: int
    loves: int
    thumbs_down: int
    skipped: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Flat counts for a one-line CLI summary: responses, loves, thumbs_down, skipped_<reason>."""
        out = {"responses": self.responses, "loves": self.loves, "thumbs_down": self.thumbs_down}
        out.update({f"skipped_{reason}": n for reason, n in sorted(self.skipped.items())})
        return out


def read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file, gzip or plain.

    Gzip is recognised by its magic bytes, not the file name, so a test can hand in a plain
    file and a user a renamed one. Lines are read one at a time (the file is never loaded
    whole) and numbered from 1, as an editor shows them.

    Raises:
        InputFileError: ``no such file``; ``not a readable gzip file``; ``not UTF-8 text``,
            ``not valid JSON: ...`` or ``not a JSON object`` with the line number.
    """
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
    except FileNotFoundError:
        raise InputFileError(str(path), "no such file") from None
    except OSError as exc:
        raise InputFileError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    opener = gzip.open if magic == b"\x1f\x8b" else open
    line_no = 0
    try:
        with opener(path, "rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise InputFileError(str(path), "not UTF-8 text", line=line_no) from None
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise InputFileError(
                        str(path), f"not valid JSON: {exc.msg} at column {exc.colno}", line=line_no
                    ) from None
                if not isinstance(obj, dict):
                    raise InputFileError(str(path), f"not a JSON object (got {type(obj).__name__})", line=line_no)
                yield line_no, obj
    except (gzip.BadGzipFile, EOFError, zlib_error) as exc:
        raise InputFileError(str(path), f"not a readable gzip file ({exc})", line=line_no + 1) from exc


def required(record: Mapping[str, Any], name: str, kind: type | tuple[type, ...], path: Path, line: int) -> Any:
    """Return ``record[name]``, or raise an error naming the field and the line.

    Raises:
        InputFileError: If the field is missing or not of ``kind``.
    """
    if name not in record:
        raise InputFileError(str(path), f"missing field {name!r}", line=line)
    value = record[name]
    if not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise InputFileError(str(path), f"field {name!r} must be {expected} (got {type(value).__name__})", line=line)
    return value


def iso_ts(ts: datetime) -> str:
    """Format an aware time as UTC ISO-8601 with milliseconds, like the simulator does."""
    if ts.tzinfo is None:
        raise ValueError(f"timestamp must carry a UTC offset, got {ts!r}")
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")


def reaction_delay(key: str, response_chars: int, *, seed: int) -> timedelta:
    """Seeded, human-plausible time from showing a response to its owner's reaction.

    Three times the minimum reading time of the ``too_fast`` filter (8 ms per character, at
    least 300 ms), plus a log-uniform pause in [30 s, 2 h]: most people react within minutes,
    a few come back later. The random stream is derived from ``(seed, key)`` only, so one
    response's delay does not change when other responses are dropped or reordered.

    Args:
        key: A stable id of the reaction (e.g. the response id).
        response_chars: Length of the response text, in characters.
        seed: Import seed.

    Returns:
        The delay; at most ~2 h plus 24 ms per character, far inside a 24 h window.
    """
    rng = random.Random(f"rluf-import-delay:{seed}:{key}")
    read_s = _READ_MARGIN * max(_MIN_READ_MS, _MS_PER_CHAR * response_chars) / 1000.0
    pause_s = math.exp(rng.uniform(math.log(_MIN_DELAY_S), math.log(_MAX_DELAY_S)))
    # Whole milliseconds, so the formatted timestamp is exact.
    return timedelta(milliseconds=round((read_s + pause_s) * 1000))


def positive_quota(positives: int, negatives: int, love_rate: float | None) -> int:
    """How many positive responses to keep so that they make up ``love_rate`` of all kept.

    With ``N`` non-positive responses (all of which are kept) and ``k`` kept positives the
    share is ``k / (N + k)``; solving for the target gives ``k = rate * N / (1 - rate)``,
    rounded to the nearest integer (Python's ``round``, ties to even) and capped at
    ``positives``. ``None`` keeps every positive.

    Raises:
        ValueError: If ``love_rate`` is outside ``[0, 1)``.
    """
    if love_rate is None:
        return positives
    if not 0.0 <= love_rate < 1.0:
        raise ValueError(f"love_rate must be in [0, 1), got {love_rate!r}")
    return min(positives, round(love_rate * negatives / (1.0 - love_rate)))


def positives_to_keep(
    positive_ids: Iterable[str], negatives: int, *, love_rate: float | None, seed: int
) -> set[str]:
    """Seeded choice of the positive responses that survive love-rate sampling.

    The ids are sorted before sampling, so the choice depends on the set of ids and the seed,
    not on the order of lines in the input file.

    Args:
        positive_ids: Response ids whose owner Loves them.
        negatives: Number of responses without a Love (kept in full).
        love_rate: Target share of positives among kept responses; ``None`` keeps all.
        seed: Import seed.
    """
    ids = sorted(set(positive_ids))
    k = positive_quota(len(ids), negatives, love_rate)
    if k >= len(ids):
        return set(ids)
    return set(random.Random(f"rluf-import-sample:{seed}").sample(ids, k))


def response_event(
    *,
    event_id: str,
    response_id: str,
    conversation_id: str,
    user_id: str,
    context: Sequence[Message],
    response: str,
    policy_version: str,
    ts: datetime,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """A ``response`` event in wire format (see ``rluf.schemas.ResponseEvent``)."""
    return {
        "type": "response",
        "event_id": event_id,
        "response_id": response_id,
        "conversation_id": conversation_id,
        "user_id": user_id,
        "context": [{"role": m.role, "content": m.content} for m in context],
        "response": response,
        "policy_version": policy_version,
        "ts": iso_ts(ts),
        "extra": dict(extra),
    }


def reaction_event(
    *,
    event_id: str,
    response_id: str,
    user_id: str,
    reaction: Literal["love", "thumbs_down"],
    ts: datetime,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """An ``add`` reaction event in wire format (see ``rluf.schemas.ReactionEvent``)."""
    return {
        "type": "reaction",
        "event_id": event_id,
        "response_id": response_id,
        "user_id": user_id,
        "reaction": reaction,
        "action": "add",
        "ts": iso_ts(ts),
        "extra": dict(extra),
    }


def _sort_key(event: Mapping[str, Any]) -> tuple[datetime, int, str]:
    # Event time first; a response before a reaction at the same instant; then the id.
    return (datetime.fromisoformat(event["ts"]), 0 if event["type"] == "response" else 1, event["event_id"])


def write_events(result: ImportResult, out: Path) -> int:
    """Write the events as JSONL sorted by event time; return the number of lines.

    The file is written next to ``out`` and renamed into place, so a reader (or a crashed
    import) never sees half a file. Parent folders are created.

    Args:
        result: What an importer built.
        out: Destination ``.jsonl`` path; replaced if it exists.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    events = sorted(result.events, key=_sort_key)
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        for event in events:
            fh.write(json.dumps(event, ensure_ascii=False))
            fh.write("\n")
    tmp.replace(out)
    logger.info("wrote %d %s events to %s", len(events), result.source, out)
    return len(events)
