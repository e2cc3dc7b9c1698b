"""Per-user rate limiting and the bounded response-owner record."""

from __future__ import annotations

from deploy.gateway.ownership import OwnershipLedger
from deploy.gateway.rate_limit import UserRateLimiter


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    limiter = UserRateLimiter(per_s=2.0, burst=3, max_users=10)
    assert [limiter.take("a", now=0.0).allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.take("a", now=0.1)  # 0.2 tokens back; 0.8 missing at 2/s -> 0.4 s -> Retry-After 1
    assert (refused.allowed, refused.retry_after_s) == (False, 1)
    assert limiter.take("a", now=0.5).allowed  # 1.0 token back by now
    assert limiter.take("b", now=0.5).allowed  # other users are not affected


def test_the_limiter_keeps_at_most_max_users_buckets() -> None:
    limiter = UserRateLimiter(per_s=0.001, burst=1, max_users=2)
    for user in ("a", "b", "c"):
        assert limiter.take(user, now=0.0).allowed
    assert len(limiter) == 2
    assert limiter.take("c", now=0.0).allowed is False  # still remembered
    assert limiter.take("a", now=0.0).allowed is True  # dropped as least recent: a full bucket again


def test_owners_expire_after_their_ttl_and_the_record_is_bounded() -> None:
    now = [0.0]
    ledger = OwnershipLedger(max_entries=2, ttl_s=100.0, clock=lambda: now[0])
    ledger.record_response("r1", "c1", "alice")
    assert ledger.response("r1", "alice") == "owner"
    assert ledger.response("r1", "bob") == "other"
    assert ledger.response("nope", "alice") == "unknown"
    assert ledger.conversation("c1", "bob") == "other"
    now[0] = 100.0
    assert ledger.response("r1", "alice") == "unknown"  # expired
    ledger.record_response("r2", "c2", "alice")
    ledger.record_response("r3", "c3", "alice")
    ledger.record_response("r4", "c4", "alice")
    assert [ledger.response(r, "alice") for r in ("r2", "r3", "r4")] == ["unknown", "owner", "owner"]
