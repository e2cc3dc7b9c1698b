"""The gateway's HTTP contract on fakes: auth, validation errors, ownership, rate limit, Kafka down."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from rluf.schemas import EVENT_ADAPTER, ReactionEvent, ResponseEvent
from tests.unit.deploy.gateway.conftest import API_KEY, SIGNING_KEY, T0, Rig

CHAT = {"messages": [{"role": "user", "content": "How do I boil an egg?"}]}


def error(reply: Any) -> tuple[int, str | None, str]:
    body = reply.json()
    return reply.status_code, body["field"], body["detail"]


def test_healthz_needs_no_credentials(rig: Rig) -> None:
    reply = rig.client.get("/healthz")
    assert (reply.status_code, reply.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize("headers, detail", [
    ({}, "Authorization: missing `Bearer <api key>`"),
    ({"Authorization": "Bearer wrong-key"}, "Authorization: unknown API key"),
    ({"Authorization": f"Basic {API_KEY}"}, "Authorization: missing `Bearer <api key>`"),
    ({"Authorization": f"Bearer {API_KEY}x"}, "Authorization: unknown API key"),
])
def test_v1_calls_need_an_api_key(rig: Rig, headers: dict[str, str], detail: str) -> None:
    for path, body in [("/v1/tokens", {"user_id": "alice"}), ("/v1/chat", CHAT),
                       ("/v1/reactions", {"response_id": "r", "reaction": "love"})]:
        reply = rig.client.post(path, json=body, headers=headers)
        assert error(reply) == (401, "Authorization", detail)
        assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert rig.sink.tried == []


def test_user_tokens_are_required_and_checked(rig: Rig) -> None:
    app = rig.app_headers()
    assert error(rig.client.post("/v1/chat", json=CHAT, headers=app)) == (
        401, "X-RLUF-User", "X-RLUF-User: missing user token; get one from POST /v1/tokens")
    token = rig.token("alice")
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    status, field, detail = error(rig.client.post("/v1/chat", json=CHAT, headers={**app, "X-RLUF-User": tampered}))
    assert (status, field) == (401, "X-RLUF-User") and "bad signature" in detail
    rig.clock[0] = T0 + 3600  # gateway.token_ttl_s
    status, field, detail = error(rig.client.post("/v1/chat", json=CHAT, headers={**app, "X-RLUF-User": token}))
    assert (status, field, detail) == (401, "X-RLUF-User", "X-RLUF-User: expired 0 s ago; get a new one")
    assert rig.sink.tried == []


def test_chat_answers_with_the_users_arm_and_publishes_the_exact_event(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory({"control": (0.5, "production"), "candidate": (0.5, "7")})
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]}
    replies = {user: rig.client.post("/v1/chat", json=body, headers=rig.headers(user)) for user in ("alice", "carol")}
    assert {u: r.status_code for u, r in replies.items()} == {"alice": 200, "carol": 200}
    alice, carol = replies["alice"].json(), replies["carol"].json()
    assert (alice["policy_version"], carol["policy_version"]) == ("policy-v1", "policy-v7")  # control, candidate
    assert alice["text"] == "policy-v1 answers 'Hi?'"
    assert len(rig.sink.sent) == 2
    topic, key, value = rig.sink.sent[0]
    event = EVENT_ADAPTER.validate_json(value)
    assert isinstance(event, ResponseEvent) and topic == "responses" and key == b"alice"
    sent = json.loads(value)
    assert datetime.fromisoformat(sent.pop("ts")) == datetime.fromtimestamp(T0, UTC)
    assert sent == {
        "type": "response", "event_id": event.event_id, "response_id": alice["response_id"],
        "conversation_id": alice["conversation_id"], "user_id": "alice", "context": body["messages"],
        "response": alice["text"], "policy_version": "policy-v1", "arm": "control", "experiment": "exp-a"}
    assert json.loads(rig.sink.sent[1][2])["arm"] == "candidate"


def test_a_reaction_is_published_for_the_owner_only(rig: Rig) -> None:
    alice = rig.headers("alice")
    answer = rig.client.post("/v1/chat", json=CHAT, headers=alice).json()
    rig.clock[0] = T0 + 30
    reply = rig.client.post("/v1/reactions", json={"response_id": answer["response_id"], "reaction": "love"},
                            headers=alice)
    assert reply.status_code == 202
    topic, key, value = rig.sink.sent[-1]
    event = EVENT_ADAPTER.validate_json(value)
    assert isinstance(event, ReactionEvent) and topic == "reactions" and key == b"alice"
    assert reply.json() == {"event_id": event.event_id, "response_id": answer["response_id"]}
    assert (event.user_id, event.reaction, event.action, event.ts.timestamp()) == ("alice", "love", "add", T0 + 30)
    undo = rig.client.post("/v1/reactions", headers=alice,
                           json={"response_id": answer["response_id"], "reaction": "love", "action": "remove"})
    assert undo.status_code == 202 and json.loads(rig.sink.sent[-1][2])["action"] == "remove"

    published = len(rig.sink.tried)
    mallory = rig.client.post("/v1/reactions", json={"response_id": answer["response_id"], "reaction": "angry"},
                              headers=rig.headers("mallory"))
    assert error(mallory) == (403, "response_id", "response_id: the response was given to another user")
    ghost = rig.client.post("/v1/reactions", json={"response_id": "nope", "reaction": "love"}, headers=alice)
    assert error(ghost)[:2] == (404, "response_id")
    assert len(rig.sink.tried) == published  # refused calls publish nothing


def test_a_body_user_id_is_refused_not_trusted(rig: Rig) -> None:
    alice = rig.headers("alice")
    status, field, detail = error(rig.client.post("/v1/chat", json={**CHAT, "user_id": "bob"}, headers=alice))
    assert (status, field) == (422, "user_id") and "X-RLUF-User" in detail
    answer = rig.client.post("/v1/chat", json=CHAT, headers=alice).json()
    reply = rig.client.post("/v1/reactions", headers=alice,
                            json={"response_id": answer["response_id"], "reaction": "love", "user_id": "bob"})
    assert error(reply)[:2] == (422, "user_id")
    assert [json.loads(v)["user_id"] for _, _, v in rig.sink.sent] == ["alice"]


@pytest.mark.parametrize("body, field, detail", [
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role", "messages.0.role: Input should be"),
    ({"messages": [{"role": "user"}]}, "messages.0.content", "messages.0.content: field required"),
    ({"messages": []}, "messages", "messages: List should have at least 1 item"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages",
     "messages: the last message must have role 'user', got 'assistant'"),
    ({}, "messages", "messages: field required"),
    ({**CHAT, "conversation_id": ""}, "conversation_id", "conversation_id: String should have at least 1 character"),
    ({**CHAT, "temperature": 2}, "temperature", "temperature: unknown field"),
])
def test_chat_schema_errors_name_the_field(rig: Rig, body: dict[str, Any], field: str, detail: str) -> None:
    status, got_field, got_detail = error(rig.client.post("/v1/chat", json=body, headers=rig.headers("alice")))
    assert (status, got_field) == (422, field) and got_detail.startswith(detail), got_detail
    assert rig.sink.tried == [] and rig.responder.calls == []


def test_reaction_and_token_schema_errors_name_the_field(rig: Rig) -> None:
    alice = rig.headers("alice")
    status, field, _ = error(rig.client.post("/v1/reactions", json={"response_id": "r", "reaction": "meh"},
                                             headers=alice))
    assert (status, field) == (422, "reaction")
    status, field, _ = error(rig.client.post("/v1/reactions", headers=alice,
                                             json={"response_id": "r", "reaction": "love", "action": "toggle"}))
    assert (status, field) == (422, "action")
    reply = rig.client.post("/v1/reactions", content=b'{"response_id": ', headers={
        **alice, "Content-Type": "application/json"})
    assert error(reply) == (422, "body", "body: not valid JSON")
    assert error(rig.client.post("/v1/tokens", json={"user_id": "x" * 257}, headers=rig.app_headers()))[:2] == (
        422, "user_id")
    assert rig.sink.tried == []


def test_bodies_over_the_limit_get_413_before_anything_else(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(max_body_bytes=1024)
    alice = rig.headers("alice")
    big = {"messages": [{"role": "user", "content": "x" * 2000}]}
    assert error(rig.client.post("/v1/chat", json=big, headers=alice)) == (
        413, "body", "body: larger than the limit of 1024 bytes (gateway.max_body_bytes)")

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"y" * 100
        yield b'"}]}'

    assert error(rig.client.post("/v1/chat", content=chunks(), headers={**alice, "Content-Type": "application/json"}
                                 ))[:2] == (413, "body")
    assert rig.client.post("/v1/chat", json=CHAT, headers=alice).status_code == 200  # under the limit: fine
    assert len(rig.sink.tried) == 1


def test_each_user_has_a_rate_limit(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(rate_per_s=0.5, rate_burst=3)
    alice, bob = rig.headers("alice"), rig.headers("bob")
    codes = [rig.client.post("/v1/chat", json=CHAT, headers=alice).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = rig.client.post("/v1/reactions", json={"response_id": "r", "reaction": "love"}, headers=alice)
    assert error(limited)[0] == 429 and limited.headers["Retry-After"] == "2"
    assert rig.client.post("/v1/chat", json=CHAT, headers=bob).status_code == 200
    rig.clock[0] += 2.0
    assert rig.client.post("/v1/chat", json=CHAT, headers=alice).status_code == 200
    assert len(rig.sink.sent) == 5


def test_kafka_down_gives_503_and_leaves_no_trace(rig: Rig) -> None:
    alice = rig.headers("alice")
    answered = rig.client.post("/v1/chat", json=CHAT, headers=alice).json()
    rig.sink.down = True
    status, _, detail = error(rig.client.post("/v1/chat", json=CHAT, headers=alice))
    assert status == 503 and "nothing was recorded" in detail
    lost_rid = json.loads(rig.sink.tried[-1][2])["response_id"]
    reply = rig.client.post("/v1/reactions", json={"response_id": answered["response_id"], "reaction": "love"},
                            headers=alice)
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "1"
    rig.sink.down = False
    # The answer whose event was not acknowledged was never recorded as alice's: nobody can react to it.
    assert error(rig.client.post("/v1/reactions", json={"response_id": lost_rid, "reaction": "love"},
                                 headers=alice))[0] == 404
    assert rig.client.post("/v1/reactions", json={"response_id": answered["response_id"], "reaction": "love"},
                           headers=alice).status_code == 202
    assert [json.loads(v)["type"] for _, _, v in rig.sink.sent] == ["response", "reaction"]


def test_another_users_conversation_is_refused(rig: Rig) -> None:
    first = rig.client.post("/v1/chat", json=CHAT, headers=rig.headers("alice")).json()
    again = rig.client.post("/v1/chat", json={**CHAT, "conversation_id": first["conversation_id"]},
                            headers=rig.headers("alice"))
    assert again.status_code == 200 and again.json()["conversation_id"] == first["conversation_id"]
    reply = rig.client.post("/v1/chat", json={**CHAT, "conversation_id": first["conversation_id"]},
                            headers=rig.headers("bob"))
    assert error(reply) == (403, "conversation_id", "conversation_id: belongs to another user")


def test_an_unavailable_policy_gives_503(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory({"control": (1.0, "broken")})
    status, _, detail = error(rig.client.post("/v1/chat", json=CHAT, headers=rig.headers("alice")))
    assert status == 503 and "no policy for arm 'control' (broken)" in detail
    assert rig.sink.tried == []


def test_unknown_routes_use_the_same_error_body(rig: Rig) -> None:
    assert error(rig.client.get("/v1/nothing")) == (404, None, "Not Found")
    assert error(rig.client.get("/v1/chat"))[0] == 405


def test_the_page_carries_a_session_only_in_dev_mode(rig_factory: Callable[..., Rig]) -> None:
    plain = rig_factory()
    page = plain.client.get("/")
    assert page.status_code == 200 and 'content=""' in page.text and API_KEY not in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]

    dev = rig_factory(dev_mode=True)
    page = dev.client.get("/")
    session = page.text.split('name="rluf-session" content="')[1].split('"')[0]
    assert session and API_KEY not in page.text and page.headers["Cache-Control"] == "no-store"
    reply = dev.client.post("/v1/tokens", json={"user_id": "demo"}, headers={"Authorization": f"Bearer {session}"})
    assert reply.status_code == 200 and reply.json()["user_id"] == "demo"
    dev.clock[0] = T0 + 900  # gateway.session_ttl_s
    status, field, detail = error(dev.client.post("/v1/tokens", json={"user_id": "demo"},
                                                  headers={"Authorization": f"Bearer {session}"}))
    assert (status, field) == (401, "Authorization") and "expired" in detail
    # Outside dev mode a session token is just an unknown API key.
    assert error(plain.client.post("/v1/tokens", json={"user_id": "demo"},
                                   headers={"Authorization": f"Bearer {session}"}))[0] == 401
    for asset in ("/static/chat.js", "/static/chat.css"):
        assert dev.client.get(asset).status_code == 200


def test_secrets_never_reach_the_log(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = rig.token("alice")
    headers = {**rig.app_headers(), "X-RLUF-User": token}
    rig.client.post("/v1/chat", json=CHAT, headers=headers)
    rig.client.post("/v1/chat", json=CHAT, headers={"Authorization": "Bearer bad"})
    rig.sink.down = True
    rig.client.post("/v1/chat", json=CHAT, headers=headers)
    assert caplog.records, "expected the failed publish to be logged"
    for secret in (API_KEY, SIGNING_KEY, token, "How do I boil an egg?"):
        assert secret not in caplog.text


def test_readyz_waits_for_a_warm_up_that_is_retried_until_it_succeeds(rig: Rig) -> None:
    import time

    from fastapi.testclient import TestClient

    from deploy.gateway.app import create_app
    from deploy.gateway.kafka_publisher import PublishError

    attempts: list[int] = []

    async def warm_up() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise PublishError("no Kafka broker answers at 127.0.0.1:1 (test)")

    app = create_app(rig.gateway, max_body_bytes=65_536, dev_mode=False, warm_up=warm_up, warm_retry_s=0.3)
    with TestClient(app) as client:
        first = client.get("/readyz")
        deadline = time.monotonic() + 5
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get("/readyz").json() == {"status": "ready"} and len(attempts) == 3
        assert client.get("/healthz").status_code == 200
    assert first.status_code == 503 and first.json()["detail"].startswith("not ready: ")
