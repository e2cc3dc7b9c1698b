"""The gateway's arms resolve policies through the MLflow registry and answer with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.gateway.hf_responder import HFResponder
from deploy.gateway.responder import ArmPolicies, PolicyUnavailableError, RegistryPolicySource
from deploy.registry import ModelRegistry
from deploy.rollout import RolloutPlan
from rluf.schemas import Message
from rluf.settings import GatewaySettings, RegistrySettings
from tests.tiny_lm import build_tiny_chat_lm

pytestmark = pytest.mark.integration


def test_arms_follow_the_registry(tmp_path: Path) -> None:
    registry = ModelRegistry(RegistrySettings(), tmp_path / "home", model_name="policy")
    now = [0.0]
    policies = ArmPolicies(RegistryPolicySource(registry), refresh_s=60.0, clock=lambda: now[0])
    plan = RolloutPlan.of("exp", {"control": (0.5, "production"), "candidate": (0.5, "2")})
    control, candidate = plan.arm("control"), plan.arm("candidate")
    with pytest.raises(PolicyUnavailableError, match="no policy for arm 'control' \\(production\\)"):
        policies.policy_for(control)

    weights = {}
    for seed in (1, 2):
        folder = build_tiny_chat_lm(tmp_path / f"policy-{seed}", seed=seed)
        weights[f"policy-v{seed}"] = (folder / "model.safetensors").read_bytes()
        registry.register(folder, metrics={}, params={"seed": seed}, tags={"rluf.kind": "policy"})
    assert weights["policy-v1"] != weights["policy-v2"]
    registry.promote(1, reason="reference")
    assert policies.policy_for(control).version == "policy-v1"
    assert policies.policy_for(candidate).version == "policy-v2"
    responder = HFResponder(policies.path_of, GatewaySettings(temperature=0.0, max_new_tokens=6))
    ask = [Message(role="user", content="hello what is the capital of france")]
    for version in ("policy-v1", "policy-v2"):  # each arm serves the files registered under its version
        assert (policies.path_of(version) / "model.safetensors").read_bytes() == weights[version]
        assert responder.respond(ask, version)

    registry.promote(2, reason="won the A/B")
    now[0] = 61.0  # after gateway.policy_refresh_s the promotion reaches the control arm
    resolved = policies.policy_for(control)
    assert resolved.version == "policy-v2" and (resolved.path / "model.safetensors").read_bytes() == weights[
        "policy-v2"]
