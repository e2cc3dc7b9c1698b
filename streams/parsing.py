"""Raw bytes to a wire event, or a quarantine reason with a one-line detail (pure).

Both the stream worker and the backfill call this, so a malformed line is rejected with
the same reason wherever it shows up.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from rluf.schemas import EVENT_ADAPTER, QuarantineReason, ReactionEvent, ResponseEvent, first_error

__all__ = ["ParseFailure", "parse_event", "payload_text"]


@dataclass(frozen=True, slots=True)
class ParseFailure:
    reason: QuarantineReason  # "malformed_json" | "schema_violation"
    detail: str


def payload_text(value: bytes) -> str:
    """The raw payload as text for the quarantine table (undecodable bytes escaped)."""
    return value.decode("utf-8", errors="backslashreplace")


def parse_event(value: bytes) -> ResponseEvent | ReactionEvent | ParseFailure:
    """Validate one message against the wire contract."""
    try:
        return EVENT_ADAPTER.validate_json(value)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        if err.get("type") in ("json_invalid", "json_type", "dict_type", "model_attributes_type"):
            return ParseFailure("malformed_json", f"not a JSON object: {err.get('msg', '')}")
        return ParseFailure("schema_violation", first_error(exc))
