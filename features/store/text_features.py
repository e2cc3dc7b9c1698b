"""Surface features of one assistant response, computed from its text alone.

The same numbers serve two purposes: they are Feast features next to the user statistics,
and they are the covariates that model evaluation checks the reward model against. The
RLUF paper found that a reward model trained on Love reactions drifts toward long answers
that say goodbye or ask a follow-up question (the user is more likely to react when the
answer invites it), and that it can punish valid refusals. Measuring those traits the same
way in the feature store and in the model card keeps the two comparable.

All rules are regular expressions compiled once at import. They are heuristics tuned on
English chat answers: each docstring says what counts and what deliberately does not.

This module is part of the pure core: it imports only the standard library.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Final

__all__ = [
    "FEATURE_NAMES",
    "TextFeatures",
    "asks_follow_up",
    "ends_with_goodbye",
    "is_refusal",
    "text_features",
    "text_features_frame",
    "uses_list",
    "uses_markdown",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------

# Characters that may trail a closing sentence without changing its meaning: whitespace,
# closing brackets, ellipses, emoji / pictographs (smileys, hearts, waving hands) and
# ASCII emoticons such as ":)" or ";-D". Stripped by a backward scan, not a regex: a
# "(noise)*\\Z" pattern is quadratic on long runs of whitespace.
_NOISE_CHARS: Final = frozenset(")]\u2026\ufe0f\u200d")
_PICTOGRAPH_RANGES: Final = ((0x2600, 0x27BF), (0x1F000, 0x1FAFF))
_EMOTICON_RE: Final = re.compile(r"[:;]-?[)(DPp]\Z")

# Sentence boundaries: terminal punctuation followed by space, or a line break.
_SENTENCE_SPLIT_RE: Final = re.compile(r"(?<=[.!?\u2026])\s+|\n+")

_CODE_FENCE_BLOCK_RE: Final = re.compile(r"^[ \t]*(```|~~~).*?(?:^[ \t]*\1[^\n]*$|\Z)", re.MULTILINE | re.DOTALL)

# ---------------------------------------------------------------------------------------
# Goodbye
# ---------------------------------------------------------------------------------------

_GOODBYE_PHRASE = (
    r"(?:"
    r"good[\s-]?bye"
    r"|bye(?:[\s-]?bye)?(?:\s+for\s+now)?"
    r"|take\s+care(?:\s+of\s+yourself)?"
    r"|cheers"
    r"|farewell"
    r"|all\s+the\s+best"
    r"|have\s+an?\s+(?:great|good|nice|wonderful|lovely|fantastic|amazing|awesome|productive|excellent)"
    r"\s+(?:day|one|evening|night|weekend|week|time|afternoon|morning|trip|holiday)"
    r"|talk\s+(?:to\s+you\s+)?(?:soon|later)"
    r"|see\s+you(?:\s+(?:soon|later|next\s+time|around))?"
    r"|until\s+next\s+time"
    r")"
)
# The phrase must open a sentence or a clause ("Hope this helps, and have a great day!"),
# so that "Say goodbye to slow builds" or "The crowd cheers" do not count.
_GOODBYE_LEAD = r"(?:^|[,;:\u2014\u2013]\s*|\s-\s*|\b(?:and|so|now|then|you|thanks|thank\s+you|okay|ok)\s+)"
# ... and must not continue as an ordinary clause ("goodbye is 'au revoir' in French",
# "take care of the dog").
_GOODBYE_NOT_FOLLOWED_BY = (
    r"(?!\s+(?:is|are|was|were|means|meant|in|to|of|when|that|as|from|with|by|message|messages|email|emails)\b)"
)
# A short tail is fine: a name, "for now", "and good luck with your project".
_GOODBYE_RE: Final = re.compile(
    _GOODBYE_LEAD + _GOODBYE_PHRASE + r"\b" + _GOODBYE_NOT_FOLLOWED_BY + r"(?:[\s,]+[\w'\u2019-]+){0,6}[\s,.!]*\Z",
    re.IGNORECASE,
)
_GOODBYE_LAST_SENTENCES: Final = 2

# ---------------------------------------------------------------------------------------
# Follow-up question
# ---------------------------------------------------------------------------------------

# A last sentence ending in "?" counts when it addresses the user or offers more help;
# a rhetorical "Why not give it a try?" does not.
_FOLLOW_UP_CUE_RE: Final = re.compile(
    r"\b(?:you|your|yours|I|me|we|us|anything|something|else|more|further|help|clarify|clarification|"
    r"shall|should|want|like|prefer|need|questions?)\b",
    re.IGNORECASE,
)

# ---------------------------------------------------------------------------------------
# Refusal
# ---------------------------------------------------------------------------------------

_CANT = (
    r"(?:can(?:'|\u2019)?t|cannot|can\s+not|won(?:'|\u2019)?t|will\s+not|am\s+not\s+able\s+to|am\s+unable\s+to|"
    r"(?:'|\u2019)m\s+not\s+able\s+to|(?:'|\u2019)m\s+unable\s+to|"
    r"(?:'|\u2019)ll\s+not\s+be\s+able\s+to|won(?:'|\u2019)?t\s+be\s+able\s+to|will\s+not\s+be\s+able\s+to|"
    r"(?:'|\u2019)m\s+not\s+going\s+to|am\s+not\s+going\s+to|(?:'|\u2019)m\s+not\s+permitted\s+to|"
    r"am\s+not\s+(?:permitted|allowed)\s+to|(?:'|\u2019)m\s+not\s+allowed\s+to)"
)
_REFUSED_ACT = (
    r"(?:help(?!\s+but\b)|assist|provide|comply|fulfil+|do\s+(?:that|this)|support\s+(?:that|this)|answer|share|"
    r"give|create|generate|write|engage|complete|continue|discuss|produce|offer|facilitate|participate|"
    r"disclose|reveal)"
)
_REFUSAL_RES: Final = (
    # A bare apology plus "can't": "I'm sorry, but I can't.", "Sorry, I cannot do that request."
    # ("Sorry, I can't find an attachment" is not a refusal: the verb decides, see below.)
    re.compile(
        r"\b(?:I(?:'|\u2019)m\s+sorry|I\s+am\s+sorry|sorry|I\s+apologi[sz]e|unfortunately)\b[^.!?\n]{0,40}?"
        r"\bI\s*(?:" + _CANT + r")(?:\s+(?:do\s+)?(?:that|this)(?:\s+request)?)?\s*(?:[.!,;]|\Z)",
        re.IGNORECASE,
    ),
    # "I cannot help with that", "I'm not able to provide ...", "I won't assist ..."
    re.compile(r"\bI\s*" + _CANT + r"\s+(?:\w+\s+){0,2}?" + _REFUSED_ACT + r"\b", re.IGNORECASE),
    # "As an AI (language model), I am not able to ...", "As an AI, I don't ..."
    re.compile(
        r"\bas\s+an?\s+(?:AI|artificial\s+intelligence|language\s+model|AI\s+(?:language\s+)?(?:model|assistant))"
        r"\b[^.!?\n]{0,40}?,?\s*I\s*"
        r"(?:" + _CANT + r"|(?:'|\u2019)m\s+not|am\s+not|have\s+no|don(?:'|\u2019)?t\s+have)\b",
        re.IGNORECASE,
    ),
    # "I must decline", "I have to decline this request", "that goes against my guidelines"
    re.compile(
        r"\bI\s+(?:must|have\s+to|need\s+to|will|(?:'|\u2019)ll)\s+(?:respectfully\s+)?decline\b", re.IGNORECASE
    ),
    re.compile(
        r"\b(?:against|violates?|outside)\s+(?:my|our|the)\s+(?:usage\s+|content\s+)?(?:guidelines|policy|policies|"
        r"principles|programming)\b",
        re.IGNORECASE,
    ),
)
# A refusal leads the answer. Helpful answers that mention a limitation further down
# ("... I can't guarantee the exact figure, but here is an estimate") do not count.
_REFUSAL_HEAD_CHARS: Final = 300

# ---------------------------------------------------------------------------------------
# Lists and Markdown
# ---------------------------------------------------------------------------------------

_LIST_ITEM_RE: Final = re.compile(r"^[ \t]*(?:[-*+\u2022\u25aa\u2013]|\d{1,3}[.)]|[a-zA-Z][.)])[ \t]+\S", re.MULTILINE)
_MIN_LIST_ITEMS: Final = 2

_MARKDOWN_RES: Final = (
    re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+\S", re.MULTILINE),  # ATX header
    re.compile(r"(?<=\S)[ \t]*\n[ \t]{0,3}(?:={3,}|-{3,})[ \t]*$", re.MULTILINE),  # setext header underline
    re.compile(r"(?<![*\w])\*\*(?=\S)[^*\n]+?(?<=\S)\*\*(?![*\w])"),  # **bold**
    # __bold text__ needs a space inside, so Python dunders (__init__) do not count
    re.compile(r"(?<![_\w])__(?=\S)[^_\n]*\s[^_\n]*(?<=\S)__(?![_\w])"),
    re.compile(r"^[ \t]*(?:```|~~~)", re.MULTILINE),  # code fence
    # table rule "|---|:---:|"; written so that no two [ \t]* touch (that backtracks quadratically)
    re.compile(r"^[ \t]*(?:\|[ \t]*)?:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)+(?:\|[ \t]*)?$", re.MULTILINE),
)


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """Surface features of one response.

    Attributes:
        length_chars: Number of Unicode code points.
        length_words: Number of whitespace-separated tokens.
        ends_with_goodbye: The closing sentences sign off ("Have a great day!", "Take care").
        asks_follow_up: The answer ends by asking the user a question.
        is_refusal: The answer opens by declining the request.
        uses_list: At least two bulleted or numbered lines (outside code blocks).
        uses_markdown: Headers, bold text, code fences or a table.
    """

    length_chars: int
    length_words: int
    ends_with_goodbye: bool
    asks_follow_up: bool
    is_refusal: bool
    uses_list: bool
    uses_markdown: bool

    def as_dict(self) -> dict[str, int | bool]:
        """Return the features as a plain dict keyed by `FEATURE_NAMES`."""
        return asdict(self)


FEATURE_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in fields(TextFeatures))


def _strip_code_blocks(text: str) -> str:
    """Remove fenced code blocks: their lines are code, not prose, lists or sign-offs."""
    return _CODE_FENCE_BLOCK_RE.sub("\n", text)


def _rstrip_noise(text: str) -> str:
    """Remove trailing whitespace, closing brackets, ellipses, emoji and emoticons."""
    end = len(text)
    while end:
        emoticon = _EMOTICON_RE.search(text, max(0, end - 3), end)
        if emoticon:
            end = emoticon.start()
            continue
        ch = text[end - 1]
        code = ord(ch)
        if ch.isspace() or ch in _NOISE_CHARS or any(lo <= code <= hi for lo, hi in _PICTOGRAPH_RANGES):
            end -= 1
            continue
        break
    return text[:end]


def _last_sentences(text: str, n: int) -> list[str]:
    """Return the last `n` sentences with some letter or digit, trailing noise removed."""
    found: list[str] = []
    for part in reversed(_SENTENCE_SPLIT_RE.split(text)):
        sentence = _rstrip_noise(part).strip()
        if any(c.isalnum() for c in sentence):
            found.append(sentence)
            if len(found) == n:
                break
    return found[::-1]


def ends_with_goodbye(response: str) -> bool:
    """Return whether one of the last two sentences is a sign-off.

    Counts "Goodbye!", "Bye for now", "Have a great day, Sam!", "Hope this helps, and take
    care.", "Cheers". Does not count a goodbye that is the topic of the answer ("In French,
    goodbye is 'au revoir'.", "Say goodbye to slow builds") or a goodbye earlier on.
    """
    prose = _strip_code_blocks(response)
    return any(_GOODBYE_RE.search(s) for s in _last_sentences(prose, _GOODBYE_LAST_SENTENCES))


def asks_follow_up(response: str) -> bool:
    """Return whether the answer ends by asking the user a question.

    Counts a final sentence ending in "?" that addresses the user or offers more ("Would
    you like an example?", "Shall I convert it to Python?", "Anything else?"). A question
    earlier in the answer, a rhetorical closer without such a cue ("Why not give it a
    try?") and a quoted title ending in '?"' do not count.
    """
    prose = _rstrip_noise(_strip_code_blocks(response))
    if not prose.endswith("?"):
        return False
    last = _last_sentences(prose, 1)
    return bool(last) and _FOLLOW_UP_CUE_RE.search(last[0]) is not None


def is_refusal(response: str) -> bool:
    """Return whether the answer opens by declining the request.

    Counts "I'm sorry, but I can't help with that", "I cannot assist with ...", "As an AI,
    I am not able to ...", "I must decline". Looks only at the first 300 characters, so a
    helpful answer mentioning a limitation later does not count; "I can't believe how easy
    this is" and "I can't help but notice" are not refusals.
    """
    head = response.lstrip()[:_REFUSAL_HEAD_CHARS]
    return any(rx.search(head) for rx in _REFUSAL_RES)


def uses_list(response: str) -> bool:
    """Return whether the answer has at least two bulleted or numbered lines outside code blocks."""
    prose = _strip_code_blocks(response)
    items = _LIST_ITEM_RE.finditer(prose)
    return sum(1 for _ in itertools.islice(items, _MIN_LIST_ITEMS)) >= _MIN_LIST_ITEMS


def uses_markdown(response: str) -> bool:
    """Return whether the answer uses Markdown structure: headers, bold, code fences or a table.

    A "#" without a following space ("#1 priority", "C#") and a lone "*" or "|" in prose
    do not count.
    """
    return any(rx.search(response) for rx in _MARKDOWN_RES)


def text_features(response: str) -> TextFeatures:
    """Compute all surface features of one response."""
    return TextFeatures(
        length_chars=len(response),
        length_words=len(response.split()),
        ends_with_goodbye=ends_with_goodbye(response),
        asks_follow_up=asks_follow_up(response),
        is_refusal=is_refusal(response),
        uses_list=uses_list(response),
        uses_markdown=uses_markdown(response),
    )


def text_features_frame(responses: Sequence[str]) -> dict[str, list[int | bool]]:
    """Compute features for many responses, column-wise.

    The result has one list per name in `FEATURE_NAMES`, each as long as `responses`, so
    it can be handed to ``pandas.DataFrame`` or a Feast push without reshaping.
    """
    columns: dict[str, list[int | bool]] = {name: [] for name in FEATURE_NAMES}
    for response in responses:
        feats = text_features(response)
        for name in FEATURE_NAMES:
            columns[name].append(getattr(feats, name))
    return columns
