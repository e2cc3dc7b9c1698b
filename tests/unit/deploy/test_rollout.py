"""Sticky hash assignment of users to rollout arms."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from collections import Counter

import pytest

from deploy.rollout import RolloutPlan, bucket
from rluf.settings import ArmSettings, RolloutSettings

HALF = {"control": (0.5, "production"), "candidate": (0.5, "7")}


def test_bucket_is_the_documented_sha256_formula() -> None:
    digest = hashlib.sha256(b"exp-a\x00alice").digest()
    assert bucket("alice", "exp-a") == int.from_bytes(digest[:8], "big") / 2**64
    assert bucket("alice", "exp-a") == pytest.approx(0.781383, abs=1e-6)
    assert bucket("alice", "exp-b") == pytest.approx(0.382202, abs=1e-6)  # another salt, another draw


def test_exact_assignments_with_control_on_top() -> None:
    plan = RolloutPlan.of("exp-a", HALF)
    assert [(a.name, a.low, a.high) for a in plan.arms] == [("candidate", 0.0, 0.5), ("control", 0.5, 1.0)]
    got = {u: plan.assign(u).name for u in ["alice", "bob", "carol", "dave", "erin", "u-1", "u-2", "u-3"]}
    assert got == {"alice": "control", "bob": "control", "carol": "candidate", "dave": "candidate",
                   "erin": "candidate", "u-1": "control", "u-2": "candidate", "u-3": "candidate"}
    assert plan.assign("carol").policy == "7" and plan.assign("alice").policy == "production"


def test_assignment_is_stable_across_processes_with_different_hash_seeds() -> None:
    code = ("from deploy.rollout import RolloutPlan; p = RolloutPlan.of('exp-a', "
            "{'control': (0.5, 'production'), 'candidate': (0.5, '7')}); "
            "print(','.join(p.assign(f'user-{i}').name for i in range(200)))")
    here = RolloutPlan.of("exp-a", HALF)
    expected = ",".join(here.assign(f"user-{i}").name for i in range(200))
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


@pytest.mark.parametrize("split", [
    {"control": (0.5, "production"), "candidate": (0.5, "7")},
    {"control": (0.9, "production"), "canary": (0.1, "8")},
    {"control": (0.2, "production"), "a": (0.3, "5"), "b": (0.5, "6")},
])
def test_split_proportions_on_100k_users(split: dict[str, tuple[float, str]]) -> None:
    plan = RolloutPlan.of("exp-proportions", split)
    n = 100_000
    counts = Counter(plan.assign(f"user-{i}").name for i in range(n))
    for name, (weight, _) in split.items():
        # 4.5 binomial standard deviations: fails by chance about once in 150,000 runs.
        tolerance = 4.5 * (weight * (1 - weight) / n) ** 0.5
        assert abs(counts[name] / n - weight) < tolerance, (name, counts[name])


def test_a_canary_ramp_only_moves_control_users_into_the_canary() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    steps = [0.05, 0.2, 0.5]
    plans = [RolloutPlan.of("ramp", {"control": (1 - w, "production"), "canary": (w, "9")}) for w in steps]
    arms = [{u: p.assign(u).name for u in users} for p in plans]
    for before, after in itertools.pairwise(arms):
        assert all(after[u] == "canary" for u in users if before[u] == "canary")
        assert sum(after[u] == "canary" for u in users) > sum(before[u] == "canary" for u in users)


def test_a_zero_weight_arm_gets_nobody_and_bad_splits_are_refused() -> None:
    plan = RolloutPlan.of("z", {"control": (1.0, "production"), "off": (0.0, "3")})
    assert {plan.assign(f"u{i}").name for i in range(2000)} == {"control"}
    with pytest.raises(ValueError, match="sum to 1"):
        RolloutPlan.of("z", {"control": (0.5, "production"), "b": (0.4, "2")})
    with pytest.raises(ValueError, match="control arm 'control'"):
        RolloutPlan.of("z", {"a": (0.5, "1"), "b": (0.5, "2")})
    with pytest.raises(ValueError, match="weights are shares"):
        RolloutPlan.of("z", {"control": (1.5, "production"), "b": (-0.5, "2")})


def test_plan_from_settings_keeps_the_configured_order() -> None:
    rollout = RolloutSettings(experiment="e1", arms={
        "control": ArmSettings(weight=0.6, policy="production"),
        "a": ArmSettings(weight=0.1, policy="4"), "b": ArmSettings(weight=0.3, policy="5")})
    plan = RolloutPlan.from_settings(rollout)
    assert [(a.name, round(a.low, 9), round(a.high, 9)) for a in plan.arms] == [
        ("a", 0.0, 0.1), ("b", 0.1, 0.4), ("control", 0.4, 1.0)]
    assert plan.experiment == "e1" and plan.arm("b").policy == "5"
    with pytest.raises(ValueError, match="sum to 1"):
        RolloutSettings(arms={"control": ArmSettings(weight=0.6, policy="production")})
