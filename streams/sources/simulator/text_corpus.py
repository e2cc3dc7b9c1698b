"""Conversation text for `rluf simulate`: real dialogues when the shared data is there, templates otherwise.

Simulated traffic is only useful for the reward model and the demo if the text looks like a
chat product's: multi-turn threads, answers of very different lengths (the too-fast filter
scales with answer length), lists and markdown, refusals. The shared data directory holds two
real sources (OpenAssistant oasst1 validation threads and Anthropic hh-rlhf harmless-base test
dialogues); when it is absent (a fresh CI box, a wheel install) a seeded template generator
produces varied, real-looking threads instead. Nothing is ever downloaded.

Each :class:`Exchange` carries a ``quality`` in [0, 1] taken from the human signal in the data
(oasst ``+1``/``-1`` emoji and quality labels, hh-rlhf chosen vs rejected, or the template
style), so the simulator can make Loves depend on the answer and the trained reward model has
something real to learn.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from streams.sources.simulator.text_templates import (
    FOLLOW_UPS,
    GOODBYES,
    GREETINGS,
    INTROS,
    OUTROS,
    REFUSALS,
    TOPICS,
    VAGUE_ANSWERS,
    Topic,
)

__all__ = [
    "OASST_FILE",
    "HH_FILE",
    "MAX_ANSWER_CHARS",
    "Turn",
    "Exchange",
    "Corpus",
    "load_corpus",
    "template_corpus",
]

logger = logging.getLogger(__name__)

OASST_FILE = Path("oasst1-en-validation") / "en-validation.jsonl"
HH_FILE = Path("hh-rlhf") / "harmless-base" / "test.jsonl.gz"
MAX_ANSWER_CHARS = 4000
"""Longer answers are left out: a chat UI rarely shows them and they dominate file size."""
_MAX_CONTEXT_TURNS = 4

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Exchange:
    """One assistant answer with the turns shown before it.

    Attributes:
        context: The last 1–4 turns before the answer; the last one is the user's.
        answer: The assistant's answer text.
        quality: How much people liked the answer, 0 (bad) to 1 (good); the simulator scales
            the Love probability with it.
        source: ``"oasst1"``, ``"hh-rlhf"`` or ``"template"``.
    """

    context: tuple[Turn, ...]
    answer: str
    quality: float
    source: str


@dataclass(frozen=True, slots=True)
class Corpus:
    """Conversation threads; each thread is the answers of one conversation, in order."""

    threads: tuple[tuple[Exchange, ...], ...]
    source: str

    @property
    def exchanges(self) -> int:
        """Number of answers over all threads."""
        return sum(len(t) for t in self.threads)

    def pick(self, rng: random.Random) -> tuple[Exchange, ...]:
        """Return one thread chosen uniformly with the caller's seeded generator."""
        return self.threads[rng.randrange(len(self.threads))]


def load_corpus(
    shared_data_dir: Path | None, *, seed: int = 0, template_threads: int = 3000
) -> Corpus:
    """Load real dialogues from ``shared_data_dir``, or generate template threads.

    Args:
        shared_data_dir: The ``shared/data`` folder (``oasst1-en-validation/`` and
            ``hh-rlhf/`` inside); ``None`` or a folder without either file selects templates.
        seed: Seed of the template generator; real data does not use it (file order is fixed).
        template_threads: How many template threads to generate when no data is found.

    Returns:
        A corpus whose content depends only on the files and ``seed``.
    """
    threads: list[tuple[Exchange, ...]] = []
    sources: list[str] = []
    if shared_data_dir is not None:
        oasst = shared_data_dir / OASST_FILE
        if oasst.is_file():
            found = list(_oasst_threads(oasst))
            threads.extend(found)
            sources.append("oasst1")
            logger.info("corpus: %d oasst1 threads from %s", len(found), oasst)
        hh = shared_data_dir / HH_FILE
        if hh.is_file():
            found = list(_hh_threads(hh))
            threads.extend(found)
            sources.append("hh-rlhf")
            logger.info("corpus: %d hh-rlhf threads from %s", len(found), hh)
    if threads:
        return Corpus(threads=tuple(threads), source="+".join(sources))
    logger.info("corpus: no shared data under %s; generating %d template threads", shared_data_dir,
                template_threads)
    return template_corpus(seed=seed, threads=template_threads)


def _exchanges(turns: list[Turn], qualities: dict[int, float], source: str) -> tuple[Exchange, ...]:
    """Cut a turn list into exchanges, one per assistant turn that has a user turn before it."""
    out: list[Exchange] = []
    for i, turn in enumerate(turns):
        if turn.role != "assistant" or i == 0 or turns[i - 1].role != "user":
            continue
        if not turn.content or len(turn.content) > MAX_ANSWER_CHARS:
            break  # keep threads contiguous: stop at the first unusable answer
        context = tuple(turns[max(0, i - _MAX_CONTEXT_TURNS) : i])
        out.append(Exchange(context=context, answer=turn.content, quality=qualities.get(i, 0.5),
                            source=source))
    return tuple(out)


def _oasst_quality(msg: dict[str, Any]) -> float:
    """Blend the README's +1/-1 label with the crowd quality score, both in [0, 1]."""
    emojis = msg.get("emojis") or {}
    counts = dict(zip(emojis.get("name", []), emojis.get("count", []), strict=False))
    plus, minus = counts.get("+1", 0), counts.get("-1", 0)
    liked = 1.0 if plus >= 1 and plus > minus else 0.0
    labels = msg.get("labels") or {}
    scores = dict(zip(labels.get("name", []), labels.get("value", []), strict=False))
    quality = scores.get("quality")
    return liked if quality is None else 0.5 * liked + 0.5 * float(quality)


def _oasst_threads(path: Path) -> Iterator[tuple[Exchange, ...]]:
    """Rebuild oasst1 trees by ``parent_id`` and yield one thread per root-to-leaf path."""
    msgs: dict[str, dict[str, Any]] = {}
    children: dict[str | None, list[str]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            msg = json.loads(line)
            if msg.get("deleted") or msg.get("review_result") is False or not msg.get("text"):
                continue  # moderated away: children of a dropped message become unreachable too
            msgs[msg["message_id"]] = msg
            children.setdefault(msg.get("parent_id"), []).append(msg["message_id"])

    def paths(node: str, prefix: list[str]) -> Iterator[list[str]]:
        here = [*prefix, node]
        kids = children.get(node, [])
        if not kids:
            yield here
        for kid in kids:
            yield from paths(kid, here)

    for root in children.get(None, []):
        for ids in paths(root, []):
            turns = [
                Turn("user" if msgs[m]["role"] == "prompter" else "assistant", msgs[m]["text"].strip())
                for m in ids
            ]
            qualities = {i: _oasst_quality(msgs[m]) for i, m in enumerate(ids)}
            thread = _exchanges(turns, qualities, "oasst1")
            if thread:
                yield thread


_HH_SPLIT = re.compile(r"\n\n(Human|Assistant): ")


def _hh_turns(dialogue: str) -> list[Turn] | None:
    """Split an hh-rlhf dialogue into turns; ``None`` when it does not alternate cleanly."""
    parts = _HH_SPLIT.split(dialogue)
    if parts[0].strip():
        return None
    turns: list[Turn] = []
    for speaker, text in zip(parts[1::2], parts[2::2], strict=True):
        role: Role = "user" if speaker == "Human" else "assistant"
        if turns and turns[-1].role == role:
            return None
        turns.append(Turn(role, text.strip()))
    while turns and turns[-1].role != "assistant":
        turns.pop()
    if not turns or turns[0].role != "user" or any(not t.content for t in turns):
        return None
    return turns


def _hh_threads(path: Path) -> Iterator[tuple[Exchange, ...]]:
    """Yield the chosen and the rejected dialogue of every hh-rlhf pair as two threads.

    The final answer's quality follows the crowd's preference (chosen = less harmful); the
    shared earlier answers get a neutral 0.5.
    """
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            pair = json.loads(line)
            for key, final_quality in (("chosen", 0.7), ("rejected", 0.3)):
                turns = _hh_turns(pair[key])
                if turns is None:
                    continue
                thread = _exchanges(turns, {len(turns) - 1: final_quality}, "hh-rlhf")
                if thread:
                    yield thread


def template_corpus(*, seed: int, threads: int = 3000) -> Corpus:
    """Generate ``threads`` template conversations; the same seed gives the same corpus.

    Threads mix greetings, a topical question answered as a list, markdown or prose (or
    vaguely, or refused), follow-up questions and goodbyes, over a few dozen topics.
    """
    rng = random.Random(seed)
    return Corpus(threads=tuple(_template_thread(rng) for _ in range(threads)), source="template")


def _template_thread(rng: random.Random) -> tuple[Exchange, ...]:
    turns: list[Turn] = []
    qualities: dict[int, float] = {}

    def say(user: str, answer: str, quality: float) -> None:
        turns.append(Turn("user", user))
        qualities[len(turns)] = quality
        turns.append(Turn("assistant", answer))

    if rng.random() < 0.25:
        say(*rng.choice(GREETINGS), quality=0.35)
    if rng.random() < 0.06:
        question, answer = rng.choice(REFUSALS)
        say(question, answer, quality=0.25)
        if rng.random() < 0.5:
            say(*rng.choice(GOODBYES), quality=0.4)
        return _exchanges(turns, qualities, "template")
    topic = rng.choice(TOPICS)
    question = rng.choice(topic.questions)
    style = rng.random()
    if style < 0.08:
        say(question, rng.choice(VAGUE_ANSWERS), quality=0.1)
    else:
        answer, quality = _topical_answer(rng, topic, style)
        say(question, answer, quality=quality)
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        ask, lead = rng.choice(FOLLOW_UPS)
        point = rng.choice(topic.points)
        say(ask, f"{lead} {point} {rng.choice(topic.details)}", quality=0.6)
    if rng.random() < 0.3:
        thanks, reply = rng.choice(GOODBYES)
        say(thanks, reply.replace("{topic}", topic.name), quality=0.5)
    return _exchanges(turns, qualities, "template")


def _topical_answer(rng: random.Random, topic: Topic, style: float) -> tuple[str, float]:
    """Build a list, markdown or prose answer from a topic's points; return it with its quality."""
    points = rng.sample(topic.points, k=min(len(topic.points), rng.randint(3, 5)))
    intro = rng.choice(INTROS).replace("{topic}", topic.name)
    outro = rng.choice(OUTROS).replace("{topic}", topic.name)
    if style < 0.55:
        body = "\n".join(f"{i}. {p}" for i, p in enumerate(points, start=1))
        return f"{intro}\n\n{body}\n\n{outro}", 0.75
    if style < 0.8:
        body = "\n".join(f"- {p}" for p in points[1:])
        return f"**Short answer:** {points[0]}\n\n**In more detail:**\n{body}\n\n{outro}", 0.7
    return f"{intro} {' '.join(points[:3])} {rng.choice(topic.details)}", 0.55
