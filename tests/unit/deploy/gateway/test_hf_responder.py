"""The transformers responder on a tiny chat LM built in code, and per-arm policy resolution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from deploy.gateway.hf_responder import HFResponder
from deploy.gateway.responder import ArmPolicies, LocalPolicySource, PolicyUnavailableError, ResolvedPolicy
from deploy.rollout import Arm
from rluf.schemas import Message
from rluf.settings import GatewaySettings
from tests.tiny_lm import build_tiny_chat_lm

ASK = [Message(role="system", content="be helpful"), Message(role="user", content="what is the capital of france")]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_lm(tmp_path_factory.mktemp("policy") / "tinypolicy")


def test_greedy_answers_are_deterministic_and_bounded(tiny_folder: Path) -> None:
    responder = HFResponder(lambda version: tiny_folder, GatewaySettings(temperature=0.0, max_new_tokens=5))
    first = responder.respond(ASK, "local-tinypolicy")
    assert first == responder.respond(ASK, "local-tinypolicy")
    assert 1 <= len(first.split()) <= 5  # tiny-vocab words, at most max_new_tokens of them
    sampled = HFResponder(lambda version: tiny_folder, GatewaySettings(temperature=1.0, max_new_tokens=8))
    answers = {sampled.respond(ASK, "v") for _ in range(4)}
    assert len(answers) > 1  # sampling varies


def test_models_are_loaded_once_and_the_least_recent_is_unloaded(tiny_folder: Path) -> None:
    located: list[str] = []

    def locate(version: str) -> Path:
        located.append(version)
        return tiny_folder

    responder = HFResponder(locate, GatewaySettings(temperature=0.0, max_new_tokens=2), max_loaded=1)
    responder.preload("a")
    responder.respond(ASK, "a")
    responder.respond(ASK, "b")
    responder.respond(ASK, "a")
    assert located == ["a", "b", "a"]


def test_a_folder_without_a_chat_template_is_refused(tiny_folder: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "notemplate"
    shutil.copytree(tiny_folder, broken)
    for name in ("chat_template.jinja", "chat_template.json"):
        (broken / name).unlink(missing_ok=True)
    config = (broken / "tokenizer_config.json").read_text()
    (broken / "tokenizer_config.json").write_text(config.replace('"chat_template"', '"_no_template"'))
    responder = HFResponder(lambda v: broken, GatewaySettings())
    with pytest.raises(PolicyUnavailableError, match="the tokenizer has no chat template"):
        responder.respond(ASK, "v")


class FlakySource:
    def __init__(self) -> None:
        self.version, self.fail, self.calls = 1, False, 0

    def resolve(self, ref: str) -> ResolvedPolicy:
        self.calls += 1
        if self.fail:
            raise OSError("registry unreachable")
        return ResolvedPolicy(version=f"policy-v{self.version}", path=Path(f"/p/{self.version}"))


def test_arm_policies_follow_promotions_and_survive_registry_outages() -> None:
    now = [0.0]
    source = FlakySource()
    policies = ArmPolicies(source, refresh_s=60.0, clock=lambda: now[0])
    arm = Arm(name="control", weight=1.0, policy="production", low=0.0, high=1.0)
    assert policies.fresh(arm) is None  # never resolved: the caller must resolve off the event loop
    assert policies.policy_for(arm).version == "policy-v1"
    assert policies.fresh(arm) == policies.policy_for(arm)
    source.version = 2
    now[0] = 59.0
    assert policies.policy_for(arm).version == "policy-v1" and source.calls == 1  # cached
    now[0] = 60.0
    assert policies.fresh(arm) is None  # stale
    assert policies.policy_for(arm).version == "policy-v2"  # the promotion arrives
    assert policies.path_of("policy-v2") == Path("/p/2")
    source.fail, now[0] = True, 200.0
    assert policies.policy_for(arm).version == "policy-v2"  # outage: keep serving the last one
    with pytest.raises(PolicyUnavailableError, match="no policy for arm 'x' \\(7\\): registry unreachable"):
        policies.policy_for(Arm(name="x", weight=0.0, policy="7", low=0.0, high=0.0))


def test_a_local_folder_serves_every_reference(tiny_folder: Path, tmp_path: Path) -> None:
    assert LocalPolicySource(tiny_folder).resolve("production") == ResolvedPolicy("local-tinypolicy", tiny_folder)
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model folder"):
        LocalPolicySource(tmp_path).resolve("production")
