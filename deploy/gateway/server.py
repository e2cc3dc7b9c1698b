"""Compose the gateway from the settings and run it under uvicorn (``rluf serve``).

This is the gateway's composition root: it reads the secrets, builds the rollout plan, the
policy source (registry or local folder), the transformers responder and the acked Kafka
publisher, and hands them to `Gateway` and `create_app`. Startup is fast because nothing
heavy happens before uvicorn listens: Kafka connects and the policies load in the background
(`/readyz` turns 200 when both are done), and torch/transformers are imported only then.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI

from deploy.gateway.app import create_app
from deploy.gateway.credentials import load_credentials
from deploy.gateway.hf_responder import HFResponder
from deploy.gateway.kafka_publisher import AckedKafkaPublisher
from deploy.gateway.responder import ArmPolicies, LocalPolicySource, PolicySource, RegistryPolicySource, Responder
from deploy.gateway.service import Gateway, Topics
from deploy.rollout import RolloutPlan
from rluf.errors import ConfigError
from rluf.settings import Settings

__all__ = ["build_app", "serve", "is_loopback"]

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _policy_source(settings: Settings) -> PolicySource:
    if settings.gateway.policy_dir:
        return LocalPolicySource(Path(settings.gateway.policy_dir).expanduser().resolve())
    from deploy.registry import ModelRegistry

    return RegistryPolicySource(ModelRegistry(settings.registry, settings.data_home,
                                              model_name=settings.rollout.model_name))


def build_app(settings: Settings, *, responder: Responder | None = None) -> FastAPI:
    """The gateway app for `settings` (not started; uvicorn or a test client runs it).

    Args:
        settings: Everything; the gateway uses the kafka, rollout, gateway and registry slices.
        responder: Answer with this instead of the policies' transformers models (bench/gateway.py
            measures the gateway without generation this way); None for the real one.

    Raises:
        ConfigError: missing secrets, or dev mode on a host that is not loopback.
    """
    gw = settings.gateway
    if gw.dev_mode and not is_loopback(gw.host):
        raise ConfigError(f"dev mode hands a session to anyone who opens the page, and {gw.host} is not loopback",
                          "bind to 127.0.0.1 or drop --dev (docs/gateway.md: dev mode)")
    credentials = load_credentials(gw)
    plan = RolloutPlan.from_settings(settings.rollout)
    policies = ArmPolicies(_policy_source(settings), refresh_s=gw.policy_refresh_s, clock=time.monotonic)
    hf: HFResponder | None = None
    if responder is None:
        hf = responder = HFResponder(policies.path_of, gw, max_loaded=len(plan.arms))
    publisher = AckedKafkaPublisher(settings.kafka, timeout_s=gw.publish_timeout_s)
    gateway = Gateway(gw, Topics(settings.kafka.responses_topic, settings.kafka.reactions_topic), plan=plan,
                      policies=policies, responder=responder, sink=publisher, credentials=credentials)

    async def warm_up() -> None:
        started = time.perf_counter()
        await publisher.start()
        for arm in plan.arms:
            if arm.weight > 0:
                policy = await anyio.to_thread.run_sync(policies.policy_for, arm)
                if hf is not None:
                    await anyio.to_thread.run_sync(hf.preload, policy.version)
        logger.info("gateway ready in %.1f s", time.perf_counter() - started)

    return create_app(gateway, max_body_bytes=gw.max_body_bytes, dev_mode=gw.dev_mode, warm_up=warm_up,
                      close=publisher.close)


def serve(settings: Settings, *, log_level: str = "warning") -> None:
    """Run the gateway until interrupted (SIGINT/SIGTERM shut it down cleanly)."""
    import uvicorn

    app = build_app(settings)
    gw = settings.gateway
    uvicorn.run(app, host=gw.host, port=gw.port, limit_concurrency=gw.max_concurrency, log_level=log_level,
                access_log=log_level in ("info", "debug"), server_header=False, proxy_headers=False)
