"""Sticky assignment of users to rollout arms by hashing: which policy answers whom.

A user's arm is a pure function of ``(experiment, user_id, split)``: SHA-256 of the
experiment name (the salt) and the user id gives a point in [0, 1); arms own consecutive
ranges of that interval. No state, no clock, no randomness, so every gateway instance, every
process and every later analysis (the A/B report) computes the same arm for the same user
without talking to each other. Users, not requests, are the randomisation unit: a user sees
one policy for the whole experiment, and their reactions are independent of other arms.

Range layout: the non-control arms take ranges from 0 upwards in the configured order and the
control (holdout) arm takes the top of the interval. Growing the *last* non-control arm at the
expense of control (a canary ramp: 5 % → 20 % → 50 %) therefore only moves control users into
it; nobody already in the canary flips back. Reordering arms or changing an earlier arm's
weight moves users between arms; start a new experiment name for an unrelated test, which
reshuffles everyone independently of the previous experiment.

This module is part of the pure core: it imports only the standard library and settings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from rluf.settings import RolloutSettings

__all__ = ["Arm", "RolloutPlan", "bucket"]

_BUCKET_BITS = 64
_SCALE = float(1 << _BUCKET_BITS)
_WEIGHT_TOLERANCE = 1e-6


def bucket(user_id: str, experiment: str) -> float:
    """The user's point in [0, 1) for one experiment; stable across processes and machines.

    Python's ``hash()`` is salted per process, so it cannot be used; SHA-256 is stable, uniform
    and cheap (~1 µs). The first 64 bits of the digest, divided by 2**64, give the point.

    Args:
        user_id: The user as the gateway knows them (the token's user).
        experiment: The experiment name, the salt: a different name gives an independent draw.
    """
    digest = hashlib.sha256(f"{experiment}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[: _BUCKET_BITS // 8], "big") / _SCALE


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm: its name, its share of users, the policy reference that answers them.

    Attributes:
        name: Arm name, e.g. "control" or "candidate".
        weight: Share of users in [0, 1].
        policy: Registry reference of the policy ("production", "latest" or a version number).
        low: Start of the arm's range in [0, 1) (inclusive).
        high: End of the arm's range (exclusive).
    """

    name: str
    weight: float
    policy: str
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """The split of one experiment: arms laid out on [0, 1), control on top.

    Build it with `RolloutPlan.of` (from a mapping) or `RolloutPlan.from_settings`.
    """

    experiment: str
    control: str
    arms: tuple[Arm, ...]

    @classmethod
    def of(cls, experiment: str, split: Mapping[str, tuple[float, str]], *, control: str = "control") -> RolloutPlan:
        """Lay out `split` (arm → (weight, policy)) on [0, 1).

        Raises:
            ValueError: the weights do not sum to 1, a weight is outside [0, 1], or `control`
                is not an arm.
        """
        if control not in split:
            raise ValueError(f"control arm {control!r} is not one of the arms {sorted(split)}")
        for name, (weight, _) in split.items():
            if not 0.0 <= weight <= 1.0:
                raise ValueError(f"arm {name!r} has weight {weight}; weights are shares in [0, 1]")
        total = sum(weight for weight, _ in split.values())
        if abs(total - 1.0) > _WEIGHT_TOLERANCE:
            raise ValueError(f"arm weights must sum to 1, got {total:g}")
        order = [name for name in split if name != control] + [control]
        arms: list[Arm] = []
        low = 0.0
        for i, name in enumerate(order):
            weight, policy = split[name]
            # The last arm (control) always ends at 1.0, so rounding never leaves a gap.
            high = 1.0 if i == len(order) - 1 else min(1.0, low + weight)
            arms.append(Arm(name=name, weight=weight, policy=policy, low=low, high=high))
            low = high
        return cls(experiment=experiment, control=control, arms=tuple(arms))

    @classmethod
    def from_settings(cls, rollout: RolloutSettings) -> RolloutPlan:
        """The plan the settings describe (``rollout.arms`` in their configured order)."""
        split = {name: (arm.weight, arm.policy) for name, arm in rollout.arms.items()}
        return cls.of(rollout.experiment, split, control=rollout.control_arm)

    def assign(self, user_id: str) -> Arm:
        """The user's arm: the one whose range holds the user's bucket point."""
        point = bucket(user_id, self.experiment)
        for arm in self.arms:
            if arm.low <= point < arm.high:
                return arm
        return self.arms[-1]  # unreachable: the control arm's range ends at 1.0 and point < 1

    def arm(self, name: str) -> Arm:
        """The arm called `name`.

        Raises:
            KeyError: no arm has that name.
        """
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)
