"""OpenAssistant oasst1 messages to wire events: real replies, real (stand-in) reactions.

Input: the flat Hugging Face oasst1 export, one message per line (``message_id``,
``parent_id``, ``message_tree_id``, ``user_id``, ``role`` = ``prompter``/``assistant``,
``text``, ``created_date``, ``emojis`` and ``labels`` in columnar form, ``rank``, ...).

Every assistant reply becomes one ``response`` event:

* ``response_id`` = ``message_id``; ``conversation_id`` = ``message_tree_id``, so splitting by
  conversation downstream splits by tree, never across one (the data README's rule);
* ``user_id`` = the prompter who wrote the parent message: the person the reply answered,
  i.e. the conversation's owner for that reply, and the only user whose reaction counts;
* ``context`` = the thread from the root down to that parent (prompter -> ``user``,
  assistant -> ``assistant``), rebuilt by following ``parent_id``;
* ``ts`` = ``created_date``; ``policy_version`` = ``model_name`` or ``"oasst-human"`` (all
  oasst1 replies were written by people).

Reactions follow the data README's label recipe. oasst has **no heart emoji**: crowd workers
could only give ``+1``/``-1``, so ``+1`` stands in for Love. Per reply, with
``plus1``/``minus1`` the emoji counts (missing = 0): ``plus1 >= 1 and plus1 > minus1`` -> one
``love`` add by the owner; else ``minus1 > plus1`` -> one ``thumbs_down`` add by the owner;
otherwise no reaction. The counts come from several raters, but the pipeline attributes only
the owner's reaction, so each verdict becomes a single owner reaction.

Skipped replies (counted by reason, first that applies): ``deleted`` (the reply was deleted
by moderators), ``not_english``, ``missing_parent`` (an ancestor is not in the file, so
neither the context nor the owner is known), ``deleted_in_thread`` / ``not_english_in_thread``
(the context would contain such a message), ``parent_not_prompter`` (no owner), and
``love_rate`` (a positive dropped by love-rate sampling).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rluf.errors import InputFileError
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

__all__ = ["SOURCE", "HUMAN_POLICY", "oasst_events", "oasst_label"]

logger = logging.getLogger(__name__)

SOURCE = "oasst1"
HUMAN_POLICY = "oasst-human"
_ROLES = {"prompter": "user", "assistant": "assistant"}


@dataclass(frozen=True, slots=True)
class _Msg:
    """The fields of one oasst message that the importer uses."""

    line: int
    message_id: str
    parent_id: str | None
    tree_id: str
    user_id: str
    role: str
    text: str
    created: datetime
    lang: str | None
    deleted: bool
    model_name: str | None
    rank: int | None
    quality: float | None
    emoji: dict[str, int]


def oasst_label(emoji: Mapping[str, int]) -> str | None:
    """The owner reaction a reply's emoji counts stand for: ``love``, ``thumbs_down`` or None.

    ``+1`` is the stand-in for Love because oasst has no heart emoji (README recipe:
    ``plus1 >= 1 and plus1 > minus1``); a majority of ``-1`` is a thumbs-down.
    """
    plus1 = emoji.get("+1", 0)
    minus1 = emoji.get("-1", 0)
    if plus1 >= 1 and plus1 > minus1:
        return "love"
    if minus1 > plus1:
        return "thumbs_down"
    return None


def oasst_events(path: Path, *, love_rate: float | None = None, seed: int = 0) -> ImportResult:
    """Build response and reaction events from an oasst1 flat-messages JSONL file.

    Args:
        path: The JSONL file (e.g. ``shared/data/oasst1-en-validation/en-validation.jsonl``).
        love_rate: Target share of Loved responses; positives beyond it are dropped whole
            (response and reaction) by a seeded choice, see ``positive_quota`` for the rounding.
            ``None`` keeps the data's ~52 %.
        seed: Seed for reaction delays and love-rate sampling.

    Returns:
        The events in file order and the counts (skipped replies by reason).

    Raises:
        InputFileError: If the file is missing, a line is not JSON, a needed field is missing
            or has the wrong type, or a ``message_id`` repeats.
        ValueError: If ``love_rate`` is outside ``[0, 1)``.
    """
    messages = _read_messages(path)
    skipped: Counter[str] = Counter()
    built: list[tuple[_Msg, _Msg, list[Message], str | None]] = []
    for msg in messages.values():
        if msg.role != "assistant":
            continue
        reason, thread = _thread(msg, messages)
        if reason is not None:
            skipped[reason] += 1
            continue
        parent = thread[-1]
        context = [Message(role=_ROLES[m.role], content=m.text) for m in thread]  # type: ignore[arg-type]
        built.append((msg, parent, context, oasst_label(msg.emoji)))

    positives = [m.message_id for m, _, _, label in built if label == "love"]
    keep = positives_to_keep(positives, len(built) - len(positives), love_rate=love_rate, seed=seed)
    events: list[dict[str, Any]] = []
    loves = thumbs_down = 0
    for msg, parent, context, label in built:
        if label == "love" and msg.message_id not in keep:
            skipped["love_rate"] += 1
            continue
        events.append(_response(msg, parent, context))
        if label is not None:
            when = msg.created + reaction_delay(msg.message_id, len(msg.text), seed=seed)
            events.append(
                reaction_event(
                    event_id=f"oasst-{label.replace('_', '-')}-{msg.message_id}",
                    response_id=msg.message_id,
                    user_id=parent.user_id,
                    reaction="love" if label == "love" else "thumbs_down",
                    ts=when,
                    extra={"source": SOURCE},
                )
            )
            loves += label == "love"
            thumbs_down += label == "thumbs_down"
    responses = len(built) - skipped["love_rate"]
    result = ImportResult(
        source=SOURCE,
        events=events,
        responses=responses,
        loves=loves,
        thumbs_down=thumbs_down,
        skipped={k: v for k, v in sorted(skipped.items()) if v},
    )
    logger.info("oasst import from %s: %s", path, result.counts())
    return result


def _response(msg: _Msg, parent: _Msg, context: list[Message]) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "source": SOURCE,
        "rank": msg.rank,
        "quality": msg.quality,
        "emoji": msg.emoji,
        "parent_id": parent.message_id,
    }
    return response_event(
        event_id=f"oasst-response-{msg.message_id}",
        response_id=msg.message_id,
        conversation_id=msg.tree_id,
        user_id=parent.user_id,
        context=context,
        response=msg.text,
        policy_version=msg.model_name or HUMAN_POLICY,
        ts=msg.created,
        extra=extra,
    )


def _thread(msg: _Msg, messages: Mapping[str, _Msg]) -> tuple[str | None, list[_Msg]]:
    """Skip reason (or None) and the thread root..parent of an assistant reply."""
    if msg.deleted:
        return "deleted", []
    if not _english(msg):
        return "not_english", []
    thread: list[_Msg] = []
    seen = {msg.message_id}
    parent_id = msg.parent_id
    while parent_id is not None:
        parent = messages.get(parent_id)
        if parent is None or parent.message_id in seen:  # absent, or a (corrupt) cycle
            return "missing_parent", []
        seen.add(parent.message_id)
        thread.append(parent)
        parent_id = parent.parent_id
    thread.reverse()
    if not thread:
        return "missing_parent", []
    if any(m.deleted for m in thread):
        return "deleted_in_thread", []
    if not all(_english(m) for m in thread):
        return "not_english_in_thread", []
    if thread[-1].role != "prompter":
        return "parent_not_prompter", []
    return None, thread


def _english(msg: _Msg) -> bool:
    # A file without `lang` is taken as already filtered to one language.
    return msg.lang is None or msg.lang == "en"


def _read_messages(path: Path) -> dict[str, _Msg]:
    messages: dict[str, _Msg] = {}
    for line, rec in read_json_lines(path):
        msg = _parse(rec, path, line)
        if msg.message_id in messages:
            first = messages[msg.message_id].line
            raise InputFileError(str(path), f"message_id repeats line {first}", line=line)
        messages[msg.message_id] = msg
    return messages


def _parse(rec: Mapping[str, Any], path: Path, line: int) -> _Msg:
    role = required(rec, "role", str, path, line)
    if role not in _ROLES:
        raise InputFileError(str(path), f"field 'role' must be prompter or assistant (got {role!r})", line=line)
    created_raw = required(rec, "created_date", str, path, line)
    try:
        created = datetime.fromisoformat(created_raw)
    except ValueError:
        created = None
    if created is None or created.tzinfo is None:
        raise InputFileError(
            str(path), f"field 'created_date' must be ISO-8601 with a zone (got {created_raw[:40]!r})", line=line
        )
    rank = rec.get("rank")
    model_name = rec.get("model_name")
    lang = rec.get("lang")
    return _Msg(
        line=line,
        message_id=required(rec, "message_id", str, path, line),
        parent_id=required(rec, "parent_id", (str, type(None)), path, line),
        tree_id=required(rec, "message_tree_id", str, path, line),
        user_id=required(rec, "user_id", str, path, line),
        role=role,
        text=required(rec, "text", str, path, line),
        created=created,
        lang=lang if isinstance(lang, str) else None,
        deleted=rec.get("deleted") is True,
        model_name=model_name if isinstance(model_name, str) and model_name else None,
        rank=rank if isinstance(rank, int) and not isinstance(rank, bool) else None,
        quality=_quality(rec.get("labels")),
        emoji=_emoji(rec.get("emojis")),
    )


def _emoji(raw: Any) -> dict[str, int]:
    """Emoji counts from HF's columnar ``{"name": [...], "count": [...]}`` (or a plain map).

    ``_skip_*`` names are task-system markers, not sentiment, and are left out.
    """
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), list) and isinstance(raw.get("count"), list):
        pairs = zip(raw["name"], raw["count"], strict=False)
    elif isinstance(raw, Mapping):
        pairs = raw.items()  # type: ignore[assignment]
    else:
        return {}
    return {
        str(name): int(count)
        for name, count in pairs
        if isinstance(count, int) and not str(name).startswith("_")
    }


def _quality(raw: Any) -> float | None:
    """The averaged ``quality`` label from HF's columnar ``labels``, or None."""
    if not isinstance(raw, Mapping):
        return None
    names, values = raw.get("name"), raw.get("value")
    if not isinstance(names, list) or not isinstance(values, list):
        return None
    for name, value in zip(names, values, strict=False):
        if name == "quality" and isinstance(value, int | float):
            return float(value)
    return None
