"""User and session tokens: signature, kind, expiry, tampering, key rotation."""

from __future__ import annotations

import base64
import json

import pytest

from deploy.gateway.tokens import TokenError, issue, verify

KEY = b"k" * 32
OTHER = b"o" * 32
T0 = 1_800_000_000.0


def test_a_token_round_trips_until_it_expires() -> None:
    token, claims = issue("user", "alice", key=KEY, now=T0, ttl_s=60)
    assert (claims.subject, claims.issued_at, claims.expires_at) == ("alice", int(T0), int(T0) + 60)
    assert verify(token, kind="user", keys=[KEY], now=T0 + 59.9).subject == "alice"
    with pytest.raises(TokenError, match="expired 0 s ago"):
        verify(token, kind="user", keys=[KEY], now=T0 + 60)
    with pytest.raises(TokenError, match="expired 100 s ago"):
        verify(token, kind="user", keys=[KEY], now=T0 + 160)


def test_a_tampered_payload_or_signature_is_refused() -> None:
    token, _ = issue("user", "alice", key=KEY, now=T0, ttl_s=60)
    payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["sub"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="bad signature"):
        verify(f"{forged}.{signature}", kind="user", keys=[KEY], now=T0)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    with pytest.raises(TokenError, match="bad signature"):
        verify(f"{payload}.{flipped}", kind="user", keys=[KEY], now=T0)
    with pytest.raises(TokenError, match="bad signature"):
        verify(token, kind="user", keys=[OTHER], now=T0)


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "é.é", "x" * 3000])
def test_malformed_tokens_are_refused(junk: str) -> None:
    with pytest.raises(TokenError, match="malformed"):
        verify(junk, kind="user", keys=[KEY], now=T0)


def test_a_session_token_is_not_a_user_token_and_vice_versa() -> None:
    session, _ = issue("session", "", key=KEY, now=T0, ttl_s=60)
    user, _ = issue("user", "alice", key=KEY, now=T0, ttl_s=60)
    with pytest.raises(TokenError, match="not a user token"):
        verify(session, kind="user", keys=[KEY], now=T0)
    with pytest.raises(TokenError, match="not a session token"):
        verify(user, kind="session", keys=[KEY], now=T0)


def test_rotated_keys_keep_old_tokens_valid_and_short_keys_are_refused() -> None:
    old, _ = issue("user", "bob", key=OTHER, now=T0, ttl_s=60)
    assert verify(old, kind="user", keys=[KEY, OTHER], now=T0).subject == "bob"
    with pytest.raises(ValueError, match="at least 32"):
        issue("user", "bob", key=b"short", now=T0, ttl_s=60)


def test_non_ascii_user_ids_survive() -> None:
    token, _ = issue("user", "zoë ✓", key=KEY, now=T0, ttl_s=60)
    assert verify(token, kind="user", keys=[KEY], now=T0).subject == "zoë ✓"
