"""What the gateway does per call, without HTTP: authenticate, limit, answer, publish, remember.

`deploy.gateway.app` maps HTTP onto these methods and `GatewayRequestError` back onto status
codes; this split keeps every rule testable without a server and in one place.

Invariants:
- The acting user is the user of the verified token, never a request field.
- Nothing half-published: a call validates everything, then publishes exactly one event and
  awaits its acknowledgement, then updates local state, then answers. A failed publish (503)
  leaves no trace: the response is not recorded as owned, so it cannot be reacted to.
- A reaction is accepted only for a response this gateway gave to the same user (else 403,
  or 404 when unknown or expired from the bounded record).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import anyio.to_thread

from deploy.gateway.api_models import ChatReply, ChatRequest, ReactionAccepted, ReactionRequest, TokenReply
from deploy.gateway.credentials import Credentials
from deploy.gateway.kafka_publisher import EventSink, PublishError
from deploy.gateway.ownership import OwnershipLedger
from deploy.gateway.rate_limit import UserRateLimiter
from deploy.gateway.responder import ArmPolicies, PolicyUnavailableError, Responder
from deploy.gateway.tokens import TokenError, issue, verify
from deploy.rollout import RolloutPlan
from rluf.errors import GatewayRequestError
from rluf.schemas import ReactionEvent, ResponseEvent
from rluf.settings import GatewaySettings

__all__ = ["Topics", "Gateway", "wire_bytes"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Topics:
    """Where responses and reactions go (``kafka.responses_topic`` / ``kafka.reactions_topic``)."""

    responses: str
    reactions: str


def wire_bytes(event: ResponseEvent | ReactionEvent) -> bytes:
    """The event as one JSON object, unknown fields at the top level (as every producer sends them)."""
    body = event.model_dump(mode="json", exclude={"extra"})
    body.update(event.extra)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class Gateway:
    """The gateway's rules, wired to its collaborators.

    Args:
        gw: Limits, lifetimes and generation workers.
        topics: Kafka topics of the two event types.
        plan: Users → arms.
        policies: Arms → concrete policy versions.
        responder: Generates answers.
        sink: Publishes events and awaits their acknowledgement.
        credentials: API key digests and signing keys.
        clock: Wall clock, seconds since the epoch (event times, token expiry, record expiry).
        monotonic: Monotone clock for the rate limiter.
    """

    def __init__(self, gw: GatewaySettings, topics: Topics, *, plan: RolloutPlan, policies: ArmPolicies,
                 responder: Responder, sink: EventSink, credentials: Credentials,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._gw = gw
        self._topics = topics
        self.plan = plan
        self.policies = policies
        self._responder = responder
        self._sink = sink
        self._credentials = credentials
        self._clock = clock
        self._monotonic = monotonic
        self._limiter = UserRateLimiter(per_s=gw.rate_per_s, burst=gw.rate_burst, max_users=gw.rate_users_max)
        self.owners = OwnershipLedger(max_entries=gw.owners_max, ttl_s=gw.owners_ttl_s, clock=clock)
        self._generation = anyio.CapacityLimiter(gw.generation_workers)

    # ------------------------------------------------------------------ authentication

    def authenticate_app(self, bearer: str | None) -> None:
        """Accept an application API key, or (dev mode only) a page session token.

        Raises:
            GatewayRequestError: 401 naming the Authorization header.
        """
        if not bearer:
            raise GatewayRequestError(401, "Authorization: missing `Bearer <api key>`", field="Authorization")
        if self._credentials.api_key_ok(bearer):
            return
        if self._gw.dev_mode and bearer.count(".") == 1:
            try:
                verify(bearer, kind="session", keys=self._credentials.signing_keys, now=self._clock())
                return
            except TokenError as exc:
                raise GatewayRequestError(401, f"Authorization: page session {exc}; reload the page",
                                          field="Authorization") from exc
        raise GatewayRequestError(401, "Authorization: unknown API key", field="Authorization")

    def user_of(self, token: str | None) -> str:
        """The user a user token names.

        Raises:
            GatewayRequestError: 401 naming the X-RLUF-User header (missing, forged, expired).
        """
        if not token:
            raise GatewayRequestError(401, "X-RLUF-User: missing user token; get one from POST /v1/tokens",
                                      field="X-RLUF-User")
        try:
            claims = verify(token, kind="user", keys=self._credentials.signing_keys, now=self._clock())
        except TokenError as exc:
            raise GatewayRequestError(401, f"X-RLUF-User: {exc}", field="X-RLUF-User") from exc
        return claims.subject

    def take_rate(self, user_id: str) -> None:
        """Charge one call to the user's bucket.

        Raises:
            GatewayRequestError: 429 with the seconds until the next call is allowed.
        """
        decision = self._limiter.take(user_id, now=self._monotonic())
        if not decision.allowed:
            raise GatewayRequestError(
                429, f"rate limit: at most {self._gw.rate_per_s:g} calls/s per user (burst "
                f"{self._gw.rate_burst:g}); retry in {decision.retry_after_s} s",
                retry_after_s=decision.retry_after_s)

    def issue_user_token(self, user_id: str) -> TokenReply:
        """A signed user token for ``X-RLUF-User`` (the caller was authenticated as an application)."""
        token, claims = issue("user", user_id, key=self._credentials.signing_key, now=self._clock(),
                              ttl_s=self._gw.token_ttl_s)
        return TokenReply(token=token, user_id=user_id, expires_at=_iso(claims.expires_at))

    def issue_session_token(self) -> str:
        """A short-lived page session token (dev mode's stand-in for the API key in a browser)."""
        token, _ = issue("session", "", key=self._credentials.signing_key, now=self._clock(),
                         ttl_s=self._gw.session_ttl_s)
        return token

    # ------------------------------------------------------------------ calls

    async def chat(self, user_id: str, request: ChatRequest) -> ChatReply:
        """Answer with the user's arm's policy, publish the response event, then reply."""
        conversation_id = request.conversation_id or uuid.uuid4().hex
        if self.owners.conversation(conversation_id, user_id) == "other":
            raise GatewayRequestError(403, "conversation_id: belongs to another user", field="conversation_id")
        arm = self.plan.assign(user_id)
        try:
            policy = self.policies.fresh(arm)
            if policy is None:  # stale or never resolved: may query the registry, so off the event loop
                policy = await anyio.to_thread.run_sync(self.policies.policy_for, arm)
            text = await anyio.to_thread.run_sync(self._responder.respond, request.messages, policy.version,
                                                  limiter=self._generation)
        except PolicyUnavailableError as exc:
            logger.error("chat refused: %s", exc)
            raise GatewayRequestError(503, f"the policy is unavailable ({exc})") from exc
        event = ResponseEvent(
            event_id=uuid.uuid4().hex, response_id=uuid.uuid4().hex, conversation_id=conversation_id,
            user_id=user_id, context=request.messages, response=text, policy_version=policy.version,
            ts=datetime.fromtimestamp(self._clock(), UTC),
            extra={"arm": arm.name, "experiment": self.plan.experiment},
        )
        await self._publish(self._topics.responses, event)
        self.owners.record_response(event.response_id, conversation_id, user_id)
        return ChatReply(response_id=event.response_id, conversation_id=conversation_id,
                         policy_version=policy.version, text=text)

    async def react(self, user_id: str, request: ReactionRequest) -> ReactionAccepted:
        """Publish a reaction of the user to one of their own responses."""
        owner = self.owners.response(request.response_id, user_id)
        if owner == "unknown":
            raise GatewayRequestError(404, "response_id: no response with this id was given out by this gateway "
                                      "(or it is older than gateway.owners_ttl_s)", field="response_id")
        if owner == "other":
            raise GatewayRequestError(403, "response_id: the response was given to another user",
                                      field="response_id")
        event = ReactionEvent(event_id=uuid.uuid4().hex, response_id=request.response_id, user_id=user_id,
                              reaction=request.reaction, action=request.action,
                              ts=datetime.fromtimestamp(self._clock(), UTC))
        await self._publish(self._topics.reactions, event)
        return ReactionAccepted(event_id=event.event_id, response_id=event.response_id)

    async def _publish(self, topic: str, event: ResponseEvent | ReactionEvent) -> None:
        try:
            # Keyed by the conversation owner (the stream worker's shard key): a reaction here is
            # always the owner's, the ownership check above refused anyone else's.
            await self._sink.publish(topic, event.user_id.encode("utf-8"), wire_bytes(event))
        except PublishError as exc:
            logger.error("%s event not published: %s", event.type, exc)
            raise GatewayRequestError(503, f"the event store is unavailable ({exc}); nothing was recorded, "
                                      "retry later", retry_after_s=1) from exc
