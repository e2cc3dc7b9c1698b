"""Who answers a chat: the `Responder` port and where each arm's policy comes from.

The gateway asks `ArmPolicies` which concrete policy version serves an arm (the arm names a
registry reference such as "production"; the version is what every response event records)
and then asks a `Responder` for the text. The real responder is
`deploy.gateway.hf_responder.HFResponder`; unit tests of the gateway's own logic use a fake.

Aliases move (``rluf models promote``, a canary ramp): `ArmPolicies` re-resolves each arm's
reference at most every ``refresh_s`` seconds, so a promotion reaches running gateways
without a restart, and a registry that is briefly unreachable keeps the last resolution.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from deploy.registry import ModelRegistry
from deploy.rollout import Arm
from rluf.errors import RlufError
from rluf.schemas import Message

__all__ = [
    "Responder",
    "ResolvedPolicy",
    "PolicySource",
    "PolicyUnavailableError",
    "RegistryPolicySource",
    "LocalPolicySource",
    "ArmPolicies",
]

logger = logging.getLogger(__name__)


class Responder(Protocol):
    """Generates the assistant's answer to a conversation with one policy version."""

    def respond(self, messages: Sequence[Message], policy_version: str) -> str: ...


@dataclass(frozen=True, slots=True)
class ResolvedPolicy:
    """A concrete policy: the version recorded on events and the HF folder that holds it."""

    version: str
    path: Path


class PolicySource(Protocol):
    """Turns an arm's policy reference into a concrete, loadable policy."""

    def resolve(self, ref: str) -> ResolvedPolicy: ...


class PolicyUnavailableError(RlufError):
    """Raised when an arm's policy cannot be resolved or loaded; the gateway answers 503."""

    def __init__(self, arm: str, ref: str, reason: str) -> None:
        super().__init__(
            f"no policy for arm {arm!r} ({ref}): {reason}; register one (`rluf policy init`) or set "
            "RLUF_GATEWAY__POLICY_DIR"
        )


class RegistryPolicySource:
    """Policies registered in the MLflow registry under the policy's model name.

    Version strings are ``<model name>-v<version>`` (e.g. ``policy-v3``); the files are
    downloaded once into the registry's cache.

    Args:
        registry: The registry of the policy model (``model_name=rollout.model_name``).
    """

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def resolve(self, ref: str) -> ResolvedPolicy:
        info = self._registry.resolve(ref)
        path = self._registry.model_path(info.version)
        return ResolvedPolicy(version=f"{self._registry.model_name}-v{info.version}", path=path)


class LocalPolicySource:
    """Every reference resolves to one local HF folder (development, tests, air-gapped hosts).

    The version string is ``local-<folder name>``.
    """

    def __init__(self, folder: Path) -> None:
        self._policy = ResolvedPolicy(version=f"local-{folder.name}", path=folder)

    def resolve(self, ref: str) -> ResolvedPolicy:
        if not (self._policy.path / "config.json").is_file():
            raise FileNotFoundError(f"{self._policy.path} is not a Hugging Face model folder (no config.json)")
        return self._policy


class ArmPolicies:
    """Each arm's current policy, re-resolved at most every `refresh_s` seconds.

    Args:
        source: Where references resolve.
        refresh_s: Seconds a resolution is trusted before it is checked again.
        clock: Monotone time source in seconds.
    """

    def __init__(self, source: PolicySource, *, refresh_s: float, clock: Callable[[], float]) -> None:
        self._source = source
        self._refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_ref: dict[str, tuple[ResolvedPolicy, float]] = {}
        self._paths: dict[str, Path] = {}

    def fresh(self, arm: Arm) -> ResolvedPolicy | None:
        """The arm's policy when its resolution is still fresh, else None (non-blocking: no registry call)."""
        cached = self._by_ref.get(arm.policy)  # a dict read is atomic; the lock guards updates
        if cached is not None and self._clock() - cached[1] < self._refresh_s:
            return cached[0]
        return None

    def policy_for(self, arm: Arm) -> ResolvedPolicy:
        """The policy that answers `arm` now (blocking: may query the registry; run off the event loop).

        Raises:
            PolicyUnavailableError: the reference never resolved (a later failure keeps the
                previous resolution and is logged).
        """
        now = self._clock()
        with self._lock:
            cached = self._by_ref.get(arm.policy)
            if cached is not None and now - cached[1] < self._refresh_s:
                return cached[0]
            try:
                resolved = self._source.resolve(arm.policy)
            except (RlufError, OSError) as exc:
                if cached is not None:
                    logger.warning("keeping %s for arm %s: re-resolving %r failed (%s)",
                                   cached[0].version, arm.name, arm.policy, exc)
                    self._by_ref[arm.policy] = (cached[0], now)
                    return cached[0]
                reason = str(exc).split("; ")[0]  # the registry's own next step is replaced by ours
                raise PolicyUnavailableError(arm.name, arm.policy, reason) from exc
            if cached is None or cached[0] != resolved:
                logger.info("arm %s (%s) is served by %s", arm.name, arm.policy, resolved.version)
            self._by_ref[arm.policy] = (resolved, now)
            self._paths[resolved.version] = resolved.path
            return resolved

    def path_of(self, version: str) -> Path:
        """The folder of a version this object resolved before.

        Raises:
            KeyError: the version was never resolved here.
        """
        with self._lock:
            return self._paths[version]
