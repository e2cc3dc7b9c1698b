"""The gateway's HTTP bodies: what clients send and get back.

Requests forbid unknown fields, so a client that sends ``user_id`` in a chat or a reaction is
told so (422) instead of believing it chose the user: the user always comes from the token.
Message and reaction fields reuse the wire contract's types (`rluf.schemas`), so anything the
gateway accepts is a valid event for the stream worker.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rluf.schemas import Message, ReactionKind

__all__ = ["ChatRequest", "ChatReply", "ReactionRequest", "ReactionAccepted", "TokenRequest", "TokenReply",
           "ErrorBody"]

Id = Annotated[str, Field(min_length=1, max_length=256)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenRequest(_Request):
    """``POST /v1/tokens``: the application vouches for one of its users."""

    user_id: Id


class TokenReply(BaseModel):
    """A user token for ``X-RLUF-User`` and when it stops working."""

    token: str
    user_id: str
    expires_at: str = Field(description="ISO-8601, UTC")


class ChatRequest(_Request):
    """``POST /v1/chat``: the conversation so far; its last turn is the user's."""

    conversation_id: Id | None = None
    messages: list[Message] = Field(min_length=1, max_length=200)

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role != "user":
            raise ValueError(f"the last message must have role 'user', got {messages[-1].role!r}")
        return messages


class ChatReply(BaseModel):
    """The answer, and the ids to react to it with."""

    response_id: str
    conversation_id: str
    policy_version: str
    text: str


class ReactionRequest(_Request):
    """``POST /v1/reactions``: one emoji added to (or removed from) an answer."""

    response_id: Id
    reaction: ReactionKind
    action: Literal["add", "remove"] = "add"


class ReactionAccepted(BaseModel):
    """The reaction is on Kafka (acknowledged) under this event id."""

    event_id: str
    response_id: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: one line, and the request field at fault when there is one."""

    detail: str
    field: str | None = None
