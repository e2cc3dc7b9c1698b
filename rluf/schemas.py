"""The wire contract: one JSON object per Kafka message and per JSONL line.

Two event types come in (``response``, ``reaction``); three record types go out
(``Triple``, ``LabelCorrection``, ``QuarantineRecord``). The same models are used by the
stream worker, the Beam backfill, the importers and the tests, so a field means the same
thing everywhere. Unknown input fields are kept in ``extra`` instead of being rejected:
producers evolve faster than consumers, and silently losing a field is worse than
carrying it along.

This module is part of the pure core: it imports only the standard library and pydantic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

__all__ = [
    "REACTION_KINDS",
    "QUARANTINE_REASONS",
    "Message",
    "ResponseEvent",
    "ReactionEvent",
    "Event",
    "EVENT_ADAPTER",
    "Triple",
    "LabelCorrection",
    "QuarantineRecord",
    "QuarantineReason",
    "ReactionKind",
    "build_unchecked",
    "first_error",
    "ValidationError",
]

ReactionKind = Literal["love", "like", "laugh", "wow", "sad", "angry", "thumbs_up", "thumbs_down"]
REACTION_KINDS: tuple[str, ...] = (
    "love", "like", "laugh", "wow", "sad", "angry", "thumbs_up", "thumbs_down",
)

QuarantineReason = Literal[
    "malformed_json",        # payload is not a JSON object
    "schema_violation",      # JSON, but not a valid response/reaction event
    "future_timestamp",      # event time further ahead of the wall clock than allowed
    "duplicate_event",       # an event_id seen before (counts once)
    "duplicate_response",    # a second response event for a response_id already open/landed
    "unknown_response",      # a reaction whose response never arrived within the window
    "beyond_max_lateness",   # a reaction to a closed window, later than the maximum lateness
    "late_reaction",         # a non-Love reaction to a closed window (cannot change the label)
    "not_owner",             # reaction from a user who does not own the conversation
    "rate_limited",          # per-user token bucket empty
    "too_fast",              # faster than a human could read the answer
    "daily_cap",             # per-user daily reaction cap exceeded
    "coordinated",           # part of a burst of many users Loving the same answer
    "low_reputation",        # the user's reputation in the feature store is below the minimum
]
QUARANTINE_REASONS: tuple[str, ...] = QuarantineReason.__args__  # type: ignore[attr-defined]

Id = Annotated[str, Field(min_length=1, max_length=256)]


class _Wire(BaseModel):
    """Base for input events: unknown fields are moved into ``extra``."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)

    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keep_unknown_fields(self) -> _Wire:
        # pydantic stores unknown keys in __pydantic_extra__; the contract names that map `extra`.
        unknown = self.__pydantic_extra__
        if unknown:
            self.extra.update(unknown)
            unknown.clear()
        return self


class Message(BaseModel):
    """One turn of the conversation context."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class ResponseEvent(_Wire):
    """An assistant answer shown to a user; opens an attribution window."""

    type: Literal["response"] = "response"
    event_id: Id
    response_id: Id
    conversation_id: Id
    user_id: Id
    context: list[Message]
    response: str
    policy_version: str = Field(min_length=1)
    ts: AwareDatetime


class ReactionEvent(_Wire):
    """A user's emoji reaction (or its removal) on a response."""

    type: Literal["reaction"] = "reaction"
    event_id: Id
    response_id: Id
    user_id: Id
    reaction: ReactionKind
    action: Literal["add", "remove"] = "add"
    ts: AwareDatetime


Event = Annotated[ResponseEvent | ReactionEvent, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[ResponseEvent | ReactionEvent] = TypeAdapter(Event)


class Triple(BaseModel):
    """What lands: one labeled (context, response) per response_id.

    ``label`` is 1 when the conversation's own user holds a Love on the response when its
    attribution window closes. ``weight`` is below 1 for low-information users.
    ``source_*`` name the response event's position in its topic (or file and line for a
    batch backfill); ``reaction_sources`` ("topic:partition:offset") the accepted reactions
    that decided the label, so a replay after a crash recognises them.
    """

    response_id: str
    event_id: str
    conversation_id: str
    user_id: str
    context: list[Message]
    response: str
    policy_version: str
    ts: datetime
    label: int = Field(ge=0, le=1)
    reactions: dict[str, int]
    window_closed_at: datetime
    close_reason: Literal["watermark", "flush"] = "watermark"
    weight: float = Field(default=1.0, ge=0.0, le=1.0)
    source_topic: str
    source_partition: int
    source_offset: int
    reaction_sources: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)


class LabelCorrection(BaseModel):
    """A late reaction that changes a landed triple's label (delayed-feedback "fake negative")."""

    correction_id: str
    response_id: str
    user_id: str
    reaction_event_id: str
    action: Literal["add", "remove"]
    old_label: int
    new_label: int
    reaction_ts: datetime
    window_closed_at: datetime
    lateness_s: float
    source_topic: str
    source_partition: int
    source_offset: int


class QuarantineRecord(BaseModel):
    """An input the pipeline refused, with a machine-readable reason and the raw payload."""

    quarantine_id: str
    reason: QuarantineReason
    detail: str
    raw: str
    event_type: str | None = None
    event_id: str | None = None
    response_id: str | None = None
    user_id: str | None = None
    event_ts: datetime | None = None
    quarantined_at: datetime
    source_topic: str
    source_partition: int
    source_offset: int


_M = TypeVar("_M", bound=BaseModel)


def build_unchecked(cls: type[_M], values: dict[str, Any]) -> _M:
    """Build a model from values the caller already validated, without any checks.

    The ingest core makes one ``Triple`` per response on its hot path from fields of an
    event that pydantic just validated; ``model_construct`` costs ~12 µs there (it walks
    defaults), this ~2 µs. ``values`` must name every field.
    """
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def first_error(exc: ValidationError) -> str:
    """Return pydantic's first error as one line: ``field: message (value)``."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
    if err.get("type") == "missing":
        return f"{loc}: field required"
    shown = repr(err.get("input"))
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{loc}: {err.get('msg', 'invalid')} (got {shown})"
