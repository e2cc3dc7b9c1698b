"""Signed, expiring tokens: who the user is (user tokens) and dev-mode page sessions.

A token is ``<payload>.<signature>``, both base64url without padding: the payload is compact
JSON ``{"typ": "u"|"s", "sub": <user id or "">, "iat": <s>, "exp": <s>}`` and the signature
HMAC-SHA256 over the payload's base64 text. Any gateway instance holding the signing key can
check a token without shared state; the application that holds an API key is the only party
that can get one for a user (``POST /v1/tokens``), so a client cannot pick whom it acts as.

Keys rotate without logging anyone out: tokens are signed with the first key and accepted
under any configured key. Time arrives as an argument (pure module, no clock, no I/O).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["MIN_KEY_BYTES", "TokenKind", "TokenClaims", "TokenError", "issue", "verify"]

MIN_KEY_BYTES = 32
"""Shortest signing key accepted: HMAC-SHA256 gains nothing from more than 64 bytes, and keys
under 32 bytes are guessable offline from one captured token."""

TokenKind = Literal["user", "session"]
_TYP: dict[TokenKind, str] = {"user": "u", "session": "s"}
_MAX_TOKEN_CHARS = 2048


class TokenError(ValueError):
    """Raised when a token is malformed, forged, of the wrong kind or expired; the message says which."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid token says.

    Attributes:
        kind: "user" (acts as `subject`) or "session" (a dev-mode chat page).
        subject: The user id of a user token; empty for a session token.
        issued_at: Seconds since the epoch.
        expires_at: Seconds since the epoch; the token is refused from this instant on.
    """

    kind: TokenKind
    subject: str
    issued_at: int
    expires_at: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def _check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"signing key has {len(key)} bytes; use at least {MIN_KEY_BYTES}")


def issue(kind: TokenKind, subject: str, *, key: bytes, now: float, ttl_s: float) -> tuple[str, TokenClaims]:
    """Make a token of `kind` for `subject`, valid from `now` for `ttl_s` seconds.

    Args:
        kind: "user" or "session".
        subject: The user id (user tokens); "" for a session token.
        key: The signing key (at least `MIN_KEY_BYTES` bytes).
        now: Current time, seconds since the epoch.
        ttl_s: Lifetime in seconds.

    Returns:
        The token text and its claims.
    """
    _check_key(key)
    iat = int(now)
    claims = TokenClaims(kind=kind, subject=subject, issued_at=iat, expires_at=iat + max(1, int(ttl_s)))
    body = {"typ": _TYP[kind], "sub": subject, "iat": claims.issued_at, "exp": claims.expires_at}
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    return f"{payload}.{_sign(key, payload)}", claims


def verify(token: str, *, kind: TokenKind, keys: Sequence[bytes], now: float) -> TokenClaims:
    """Check a token's signature, kind and expiry; return its claims.

    The signature is compared in constant time against every key (no early exit on the first
    match), so timing tells nothing about which key or how many bytes matched.

    Args:
        token: The token text as received.
        kind: The kind the caller needs; a session token is never accepted as a user token.
        keys: Accepted signing keys (current first, then retired ones still honoured).
        now: Current time, seconds since the epoch.

    Raises:
        TokenError: malformed, bad signature, wrong kind or expired (the message says which).
    """
    if not token or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 1:
        raise TokenError("malformed token")
    payload, signature = token.split(".")
    try:
        payload.encode("ascii")
        signature.encode("ascii")
    except UnicodeEncodeError as exc:
        raise TokenError("malformed token") from exc
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(_sign(key, payload), signature)
    if not matched:
        raise TokenError("bad signature (forged, altered, or signed with a key no longer configured)")
    try:
        body = json.loads(_unb64(payload))
        typ, sub, iat, exp = body["typ"], body["sub"], body["iat"], body["exp"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise TokenError("malformed token payload") from exc
    if typ != _TYP[kind] or not isinstance(sub, str) or not isinstance(exp, int) or not isinstance(iat, int):
        raise TokenError(f"not a {kind} token")
    if now >= exp:
        raise TokenError(f"expired {int(now) - exp} s ago; get a new one")
    return TokenClaims(kind=kind, subject=sub, issued_at=iat, expires_at=exp)
