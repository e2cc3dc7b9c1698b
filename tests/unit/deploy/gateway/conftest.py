"""A gateway wired to in-memory fakes (responder, policy source, event sink) and a settable clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deploy.gateway.app import create_app
from deploy.gateway.credentials import load_credentials
from deploy.gateway.kafka_publisher import PublishError
from deploy.gateway.responder import ArmPolicies, ResolvedPolicy
from deploy.gateway.service import Gateway, Topics
from deploy.rollout import RolloutPlan
from rluf.schemas import Message
from rluf.settings import GatewaySettings

API_KEY = "test-api-key-0123456789"
SIGNING_KEY = "s" * 40
T0 = 1_800_000_000.0


class EchoResponder:
    """Deterministic answers that name the policy and the last user message."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Message], str]] = []

    def respond(self, messages: Sequence[Message], policy_version: str) -> str:
        self.calls.append((list(messages), policy_version))
        return f"{policy_version} answers {messages[-1].content!r}"


class VersionSource:
    """"production" -> policy-v1, a number N -> policy-vN; "broken" fails."""

    def resolve(self, ref: str) -> ResolvedPolicy:
        if ref == "broken":
            raise FileNotFoundError("no such policy folder")
        return ResolvedPolicy(version=f"policy-v{1 if ref == 'production' else ref}", path=Path("/unused"))


@dataclass
class ListSink:
    """Records what was published; `down=True` fails like an unreachable Kafka (after recording the try)."""

    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    tried: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    down: bool = False

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        self.tried.append((topic, key, value))
        if self.down:
            raise PublishError("Kafka did not acknowledge the record (test)")
        self.sent.append((topic, key, value))


@dataclass
class Rig:
    client: TestClient
    gateway: Gateway
    sink: ListSink
    responder: EchoResponder
    clock: list[float]

    def token(self, user: str) -> str:
        reply = self.client.post("/v1/tokens", json={"user_id": user}, headers=self.app_headers())
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["token"]
        return token

    @staticmethod
    def app_headers() -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def headers(self, user: str) -> dict[str, str]:
        return {**self.app_headers(), "X-RLUF-User": self.token(user)}


def make_rig(split: dict[str, tuple[float, str]] | None = None, **overrides: Any) -> Rig:
    gw = GatewaySettings(api_keys=(API_KEY,), signing_key=SIGNING_KEY, **overrides)  # type: ignore[arg-type]
    clock = [T0]
    plan = RolloutPlan.of("exp-a", split or {"control": (1.0, "production")})
    policies = ArmPolicies(VersionSource(), refresh_s=60.0, clock=lambda: clock[0])
    sink, responder = ListSink(), EchoResponder()
    gateway = Gateway(gw, Topics("responses", "reactions"), plan=plan, policies=policies, responder=responder,
                      sink=sink, credentials=load_credentials(gw), clock=lambda: clock[0],
                      monotonic=lambda: clock[0])
    app = create_app(gateway, max_body_bytes=gw.max_body_bytes, dev_mode=gw.dev_mode)
    return Rig(TestClient(app), gateway, sink, responder, clock)


@pytest.fixture
def rig_factory() -> Callable[..., Rig]:
    return make_rig


@pytest.fixture
def rig() -> Rig:
    return make_rig()
