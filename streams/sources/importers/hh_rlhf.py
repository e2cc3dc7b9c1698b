"""Anthropic hh-rlhf preference pairs to wire events and to typed pairs.

Input: gzip JSONL, one ``{"chosen": "<dialogue>", "rejected": "<dialogue>"}`` per line, where
a dialogue is ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` and the two differ in the final
Assistant turn. Turns are split on ``"\\n\\nHuman:"`` (-> ``user``) and ``"\\n\\nAssistant:"``
(-> ``assistant``); consecutive turns of one speaker are joined (a few raw dialogues repeat
"Assistant:"), after which every pair of the harmless-base test split shares its context
exactly. The context is everything before the final Assistant turn, so it ends with a user turn.

Two consumers:

* :func:`load_pairs` gives :class:`PreferencePair` objects for pairwise reward models
  (Bradley-Terry vs. per-response BCE);
* :func:`hh_rlhf_events` turns each pair ``i`` into one conversation ``hh-{i}`` with two
  ``response`` events (``hh-{i}-chosen``, ``hh-{i}-rejected``) shown to one synthetic owner
  ``hh-user-{i}``, and a ``love`` add by that owner on the chosen one. The data has no times
  or users, so both are synthetic but deterministic: pair ``i`` is shown at
  ``start + i * 5 min`` plus a seeded jitter of up to 4 min (2,312 pairs span ~8 days), the two
  replies a few seconds apart in a seeded order (so position does not give the label away).

A line whose dialogues cannot be split (no final Assistant turn, no user turn before it) or
whose two contexts differ is skipped and counted, never guessed at.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rluf.schemas import Message
from streams.sources.importers.wire_events import (
    ImportResult,
    positives_to_keep,
    reaction_delay,
    reaction_event,
    read_json_lines,
    required,
    response_event,
)

__all__ = ["SOURCE", "POLICY_VERSION", "DEFAULT_START", "PreferencePair", "load_pairs", "hh_rlhf_events"]

logger = logging.getLogger(__name__)

SOURCE = "hh-rlhf"
POLICY_VERSION = "hh-rlhf-harmless-base"
DEFAULT_START = datetime(2026, 10, 1, tzinfo=UTC)

_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}
_PAIR_SPACING = timedelta(minutes=5)
_MAX_PAIR_JITTER_S = 240.0
_MIN_GAP_S, _MAX_GAP_S = 1.0, 20.0


@dataclass(frozen=True)
class PreferencePair:
    """One human comparison: two replies to the same context, ``chosen`` preferred.

    Attributes:
        pair_id: ``hh-{i}``, ``i`` the 0-based line index in the file (stable across skips).
        context: The shared turns before the final reply; ends with a ``user`` turn.
        chosen: The preferred reply text (in harmless-base: the less harmful one).
        rejected: The other reply text.
    """

    pair_id: str
    context: list[Message]
    chosen: str
    rejected: str


def load_pairs(path: Path) -> list[PreferencePair]:
    """Read hh-rlhf pairs (gzip or plain JSONL), skipping lines that cannot be split.

    Args:
        path: e.g. ``shared/data/hh-rlhf/harmless-base/test.jsonl.gz``.

    Raises:
        InputFileError: If the file is missing, a line is not JSON, or ``chosen``/``rejected``
            is missing or not a string.
    """
    pairs, _ = _read_pairs(path)
    return pairs


def hh_rlhf_events(
    path: Path,
    *,
    love_rate: float | None = None,
    seed: int = 0,
    start: datetime = DEFAULT_START,
) -> ImportResult:
    """Build response and reaction events from hh-rlhf pairs.

    Args:
        path: The gzip (or plain) JSONL file of pairs.
        love_rate: Target share of Loved responses; chosen responses beyond it are dropped
            whole (response and Love), leaving their rejected sibling, by a seeded choice (see
            ``positive_quota`` for the rounding). ``None`` keeps one Love per pair (50 %).
        seed: Seed for jitter, reply order, reaction delays and love-rate sampling.
        start: When pair 0 is shown; must carry a zone.

    Returns:
        The events in file order and the counts (skipped lines by reason).

    Raises:
        InputFileError: As :func:`load_pairs`.
        ValueError: If ``start`` is naive or ``love_rate`` is outside ``[0, 1)``.
    """
    if start.tzinfo is None:
        raise ValueError(f"start must carry a UTC offset, got {start!r}")
    pairs, skipped = _read_pairs(path)
    keep = positives_to_keep(
        [f"{p.pair_id}-chosen" for p in pairs], len(pairs), love_rate=love_rate, seed=seed
    )
    events: list[dict[str, Any]] = []
    responses = loves = 0
    for pair in pairs:
        index = int(pair.pair_id.removeprefix("hh-"))
        rng = random.Random(f"rluf-import-hh:{seed}:{pair.pair_id}")
        shown = start + index * _PAIR_SPACING + timedelta(milliseconds=round(rng.uniform(0, _MAX_PAIR_JITTER_S) * 1000))
        gap = timedelta(milliseconds=round(rng.uniform(_MIN_GAP_S, _MAX_GAP_S) * 1000))
        chosen_first = rng.random() < 0.5
        user_id = f"hh-user-{index}"
        chosen_id = f"{pair.pair_id}-chosen"
        sides = [("chosen", pair.chosen), ("rejected", pair.rejected)]
        if not chosen_first:
            sides.reverse()
        for position, (side, text) in enumerate(sides):
            response_id = f"{pair.pair_id}-{side}"
            if response_id not in keep and side == "chosen":
                skipped["love_rate"] += 1
                continue
            ts = shown + position * gap
            events.append(
                response_event(
                    event_id=f"hh-response-{response_id}",
                    response_id=response_id,
                    conversation_id=pair.pair_id,
                    user_id=user_id,
                    context=pair.context,
                    response=text,
                    policy_version=POLICY_VERSION,
                    ts=ts,
                    extra={"source": SOURCE, "pair_id": pair.pair_id, "side": side},
                )
            )
            responses += 1
            if response_id == chosen_id:
                events.append(
                    reaction_event(
                        event_id=f"hh-love-{response_id}",
                        response_id=response_id,
                        user_id=user_id,
                        reaction="love",
                        ts=ts + reaction_delay(response_id, len(text), seed=seed),
                        extra={"source": SOURCE},
                    )
                )
                loves += 1
    result = ImportResult(
        source=SOURCE,
        events=events,
        responses=responses,
        loves=loves,
        thumbs_down=0,
        skipped={k: v for k, v in sorted(skipped.items()) if v},
    )
    logger.info("hh-rlhf import from %s: %s", path, result.counts())
    return result


def _read_pairs(path: Path) -> tuple[list[PreferencePair], Counter[str]]:
    pairs: list[PreferencePair] = []
    skipped: Counter[str] = Counter()
    for line, rec in read_json_lines(path):
        chosen = _split(required(rec, "chosen", str, path, line))
        rejected = _split(required(rec, "rejected", str, path, line))
        if chosen is None or rejected is None:
            skipped["unparseable_dialogue"] += 1
            continue
        if chosen[0] != rejected[0]:
            skipped["context_mismatch"] += 1
            continue
        pairs.append(PreferencePair(f"hh-{line - 1}", chosen[0], chosen[1], rejected[1]))
    if skipped:
        logger.warning("%s: skipped %d of %d pairs: %s", path, skipped.total(), len(pairs) + skipped.total(),
                       dict(skipped))
    return pairs, skipped


def _split(dialogue: str) -> tuple[list[Message], str] | None:
    """``(context, final reply)`` of one dialogue, or None if it has no such shape."""
    parts = _TURN.split(dialogue)
    if parts[0].strip():  # text before the first speaker tag
        return None
    turns: list[tuple[str, str]] = []
    for tag, text in zip(parts[1::2], parts[2::2], strict=True):
        role, content = _ROLES[tag], text.strip()
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]}\n\n{content}")
        else:
            turns.append((role, content))
    if len(turns) < 2 or turns[-1][0] != "assistant" or turns[-2][0] != "user":
        return None
    context = [Message(role=role, content=content) for role, content in turns[:-1]]  # type: ignore[arg-type]
    return context, turns[-1][1]
