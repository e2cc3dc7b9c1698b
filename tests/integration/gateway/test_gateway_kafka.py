"""`rluf serve` against the real embedded broker: the exact events land, and Kafka outages lose nothing acked."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from rluf.schemas import EVENT_ADAPTER, ReactionEvent, ResponseEvent
from rluf.settings import BrokerSettings, KafkaSettings
from streams.broker_process import free_port, start_broker, stop_broker
from streams.kafka_admin import ensure_topics
from tests.integration.gateway.conftest import API_KEY, gateway_env, read_topic, running_gateway

pytestmark = pytest.mark.integration
APP = {"Authorization": f"Bearer {API_KEY}"}


def user_headers(base: str, user: str) -> dict[str, str]:
    reply = httpx.post(f"{base}/v1/tokens", json={"user_id": user}, headers=APP)
    assert reply.status_code == 200, reply.text
    return {**APP, "X-RLUF-User": reply.json()["token"]}


def test_http_calls_publish_the_exact_events(kafka_settings: KafkaSettings, tmp_path: Path, tiny_policy: Path):
    env = gateway_env(kafka_settings, tmp_path, tiny_policy)
    with running_gateway(env, tmp_path / "gateway.log") as base:
        alice, bob = user_headers(base, "alice"), user_headers(base, "bob")
        context = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello what is python"}]
        before = time.time()
        chat = httpx.post(f"{base}/v1/chat", json={"messages": context}, headers=alice, timeout=30)
        assert chat.status_code == 200, chat.text
        answer = chat.json()
        assert answer["policy_version"] == "local-tinypolicy" and answer["text"]
        loved = httpx.post(f"{base}/v1/reactions", json={"response_id": answer["response_id"], "reaction": "love"},
                           headers=alice)
        removed = httpx.post(f"{base}/v1/reactions", headers=alice, json={
            "response_id": answer["response_id"], "reaction": "love", "action": "remove"})
        assert (loved.status_code, removed.status_code) == (202, 202)
        refused = [
            httpx.post(f"{base}/v1/reactions", json={"response_id": answer["response_id"], "reaction": "sad"},
                       headers=bob).status_code,
            httpx.post(f"{base}/v1/reactions", json={"response_id": "unknown", "reaction": "sad"},
                       headers=alice).status_code,
            httpx.post(f"{base}/v1/reactions", json={"response_id": answer["response_id"], "reaction": "meh"},
                       headers=alice).status_code,
            httpx.post(f"{base}/v1/chat", json={"messages": context}, headers={**alice, "X-RLUF-User": "x.y"}
                       ).status_code,
        ]
        assert refused == [403, 404, 422, 401]
        after = time.time()

    responses = read_topic(kafka_settings, kafka_settings.responses_topic)
    reactions = read_topic(kafka_settings, kafka_settings.reactions_topic)
    assert len(responses) == 1 and len(reactions) == 2  # the refused calls published nothing
    key, raw = responses[0]
    event = EVENT_ADAPTER.validate_python(raw)
    assert isinstance(event, ResponseEvent) and key == b"alice"  # keyed by the conversation owner
    assert (event.response_id, event.conversation_id, event.user_id, event.response, event.policy_version) == (
        answer["response_id"], answer["conversation_id"], "alice", answer["text"], "local-tinypolicy")
    assert [m.model_dump() for m in event.context] == context
    assert event.extra == {"arm": "control", "experiment": "rollout-1"}
    assert before <= event.ts.timestamp() <= after
    got = [EVENT_ADAPTER.validate_python(v) for _, v in reactions]
    assert all(isinstance(r, ReactionEvent) for r in got)
    assert [(r.event_id, r.user_id, r.reaction, r.action) for r in got] == [  # type: ignore[union-attr]
        (loved.json()["event_id"], "alice", "love", "add"), (removed.json()["event_id"], "alice", "love", "remove")]
    assert {k for k, _ in reactions} == {b"alice"}  # the owner (only she may react to her answer)
    assert isinstance(got[0].ts, datetime) and event.ts <= got[0].ts <= got[1].ts  # type: ignore[union-attr]


def test_kafka_down_gives_503_and_loses_nothing_acknowledged(tmp_path: Path, tiny_policy: Path):
    run_dir = tmp_path / "broker"
    broker = BrokerSettings(host="127.0.0.1", port=free_port(), start_timeout_s=20.0)
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{broker.port}")
    start_broker(broker, run_dir)
    try:
        ensure_topics(kafka)
        env = gateway_env(kafka, tmp_path, tiny_policy)
        with running_gateway(env, tmp_path / "gateway.log") as base:
            alice = user_headers(base, "alice")
            ask = {"messages": [{"role": "user", "content": "hello"}]}
            answer = httpx.post(f"{base}/v1/chat", json=ask, headers=alice, timeout=30).json()
            kinds = ["love", "like", "laugh", "wow", "sad", "angry", "thumbs_up", "thumbs_down"]
            acked = []
            for kind in kinds:
                reply = httpx.post(f"{base}/v1/reactions", json={"response_id": answer["response_id"],
                                                                  "reaction": kind}, headers=alice)
                assert reply.status_code == 202
                acked.append(reply.json()["event_id"])
            landed = [v["event_id"] for _, v in read_topic(kafka, kafka.reactions_topic)]
            assert sorted(landed) == sorted(acked)  # every 202 is on the topic

            stop_broker(run_dir, timeout_s=10.0)
            started = time.monotonic()
            down = [httpx.post(f"{base}/v1/reactions", json={"response_id": answer["response_id"],
                                                              "reaction": "love"}, headers=alice, timeout=30),
                    httpx.post(f"{base}/v1/chat", json=ask, headers=alice, timeout=30)]
            assert [r.status_code for r in down] == [503, 503]
            assert all("the event store is unavailable" in r.json()["detail"] for r in down)
            assert time.monotonic() - started < 2 * (2 + 3)  # publish_timeout_s (2) per call, plus slack

            start_broker(broker, run_dir)  # an empty broker on the same address (memory storage)
            ensure_topics(kafka)
            deadline, status = time.monotonic() + 30, 0
            while status != 202 and time.monotonic() < deadline:
                reply = httpx.post(f"{base}/v1/reactions", json={"response_id": answer["response_id"],
                                                                  "reaction": "wow"}, headers=alice, timeout=30)
                status = reply.status_code
                assert status in (202, 503)
            assert status == 202, "the gateway did not recover after the broker came back"
            after_restart = [v["event_id"] for _, v in read_topic(kafka, kafka.reactions_topic)]
            assert reply.json()["event_id"] in after_restart
    finally:
        stop_broker(run_dir, timeout_s=10.0)
