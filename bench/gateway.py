"""Gateway throughput and latency on loopback: /v1/chat and /v1/reactions against a bare baseline.

    python -m bench.gateway [--seconds 3] [--rounds 3] [--concurrency 16] [--policy-dir DIR]

Starts the embedded broker and three uvicorn servers (child processes, one worker each):

- ``gateway``: the real app (`deploy.gateway.server.build_app`) with a fixed, instant
  responder, so auth, token checks, rate limit, validation, event building and the acked
  Kafka publish are measured without generation;
- ``bare`` (the baseline): a FastAPI endpoint that reads the body and publishes event bytes of
  the same size with the same acked producer, and nothing else: the floor any gateway built
  on FastAPI + aiokafka with acks pays;
- ``tiny``: the real app with the transformers responder on a tiny 2-layer chat LM (policy
  generation measured separately; ``--policy-dir`` serves a real policy folder instead).

The client (aiohttp, ``--concurrency`` connections) runs here, on the same 2 cores as the
servers and the broker; baseline and gateway rounds alternate after a warm-up, each round
bounded to ``--seconds``. The first line is the ratio gateway / baseline in requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response  # module level: FastAPI resolves the handlers' annotations here

KEY = "bench-api-key"
SIGNING = "bench-signing-key-0123456789abcdef0123"
FIXED_TEXT = "Put the egg in boiling water for seven minutes, then cool it in cold water."
QUESTION = {"messages": [{"role": "user", "content": "How do I boil an egg?"}]}


# ---------------------------------------------------------------------------- servers (child processes)


class FixedResponder:
    """Answers instantly with the same text: the gateway's cost without generation."""

    def respond(self, messages: Any, policy_version: str) -> str:
        return FIXED_TEXT


def _bare_app() -> Any:
    """The baseline: read the body, publish same-sized event bytes with the acked producer, answer."""
    from contextlib import asynccontextmanager

    from deploy.gateway.kafka_publisher import AckedKafkaPublisher
    from rluf.settings import Settings

    settings = Settings()
    publisher = AckedKafkaPublisher(settings.kafka, timeout_s=settings.gateway.publish_timeout_s)
    rid = uuid.uuid4().hex
    response_event = json.dumps({
        "type": "response", "event_id": rid, "response_id": rid, "conversation_id": rid, "user_id": "w0",
        "context": QUESTION["messages"], "response": FIXED_TEXT, "policy_version": "local-bench",
        "ts": "2026-11-01T12:00:00+00:00", "arm": "control", "experiment": "rollout-1"}).encode()
    reaction_event = json.dumps({
        "type": "reaction", "event_id": rid, "response_id": rid, "user_id": "w0", "reaction": "love",
        "action": "add", "ts": "2026-11-01T12:00:00+00:00"}).encode()
    chat_reply = json.dumps({"response_id": rid, "conversation_id": rid, "policy_version": "local-bench",
                             "text": FIXED_TEXT}).encode()

    @asynccontextmanager
    async def lifespan(_: Any) -> Any:
        await publisher.start()
        yield
        await publisher.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}  # the lifespan connected the producer before serving

    @app.post("/v1/chat")
    async def chat(request: Request) -> Response:
        await request.body()
        await publisher.publish(settings.kafka.responses_topic, uuid.uuid4().hex.encode(), response_event)
        return Response(chat_reply, media_type="application/json")

    @app.post("/v1/reactions")
    async def reactions(request: Request) -> Response:
        body = json.loads(await request.body())
        await publisher.publish(settings.kafka.reactions_topic, body["response_id"].encode(), reaction_event)
        return Response(b'{"event_id":"x","response_id":"x"}', status_code=202, media_type="application/json")

    return app


def serve(kind: str, port: int) -> None:
    import uvicorn

    from deploy.gateway.server import build_app
    from rluf.settings import Settings

    if kind == "bare":
        app = _bare_app()
    else:
        app = build_app(Settings(), responder=FixedResponder() if kind == "gateway" else None)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, limit_concurrency=1000)


# ---------------------------------------------------------------------------- client


async def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"bench server exited with {proc.returncode}")
            try:
                async with session.get(f"{base}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"bench server at {base} not ready after {timeout_s} s")


async def _users(base: str, n: int) -> list[dict[str, str]]:
    """One user token per connection (the gateway's rate limit is per user)."""
    import aiohttp

    out = []
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            async with session.post(f"{base}/v1/tokens", json={"user_id": f"w{i}"},
                                    headers={"Authorization": f"Bearer {KEY}"}) as r:
                out.append({"Authorization": f"Bearer {KEY}", "X-RLUF-User": (await r.json())["token"]})
    return out


async def _owned(base: str, headers: list[dict[str, str]]) -> list[str]:
    """One response per user to react to (reactions need a response the gateway gave that user)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        rids = []
        for h in headers:
            async with session.post(f"{base}/v1/chat", json=QUESTION, headers=h) as r:
                rids.append((await r.json())["response_id"])
        return rids


async def _round(base: str, path: str, headers: list[dict[str, str]], rids: list[str], seconds: float
                 ) -> tuple[int, float, list[float], int]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=len(headers))

    async def worker(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        n = 0
        while time.perf_counter() < stop:
            body = QUESTION if path == "/v1/chat" else {
                "response_id": rids[i], "reaction": "love", "action": "add" if n % 2 == 0 else "remove"}
            t = time.perf_counter()
            async with session.post(base + path, json=body, headers=headers[i]) as r:
                await r.read()
                if r.status >= 300:
                    errors += 1
            latencies.append(time.perf_counter() - t)
            n += 1

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(i, session) for i in range(len(headers))))
    return len(latencies), time.perf_counter() - started, latencies, errors


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _measure(bases: dict[str, str], args: argparse.Namespace) -> None:
    headers = await _users(bases["gateway"], args.concurrency)
    rids = {"gateway": await _owned(bases["gateway"], headers), "bare": [uuid.uuid4().hex] * args.concurrency}
    lines = []
    for path in ("/v1/reactions", "/v1/chat"):
        runs: dict[str, list[tuple[int, float, list[float], int]]] = {"bare": [], "gateway": []}
        for kind in ("bare", "gateway"):  # warm-up
            await _round(bases[kind], path, headers, rids[kind], min(1.0, args.seconds))
        for _ in range(args.rounds):  # interleaved, so drift hits both
            for kind in ("bare", "gateway"):
                runs[kind].append(await _round(bases[kind], path, headers, rids[kind], args.seconds))
        rps = {k: statistics.median(n / s for n, s, _, _ in v) for k, v in runs.items()}
        lat = {k: [x for _, _, ls, _ in v for x in ls] for k, v in runs.items()}
        errors = {k: sum(e for _, _, _, e in v) for k, v in runs.items()}
        lines.append((path, rps, lat, errors, sum(n for n, _, _, _ in runs["gateway"])))
    tiny_headers = headers[: args.tiny_concurrency]
    tiny = await _round(bases["tiny"], "/v1/chat", tiny_headers, [], args.seconds * args.rounds)

    failed = {f"{path} {kind}": n for path, _, _, errors, _ in lines for kind, n in errors.items() if n}
    if failed or tiny[3]:
        raise SystemExit(f"bench.gateway: requests failed ({failed or {'tiny /v1/chat': tiny[3]}}); "
                         "the figures would not mean anything")
    reactions = lines[0]
    print(f"gateway: /v1/reactions {reactions[1]['gateway'] / reactions[1]['bare']:.2f}x the bare acked-publish "
          f"baseline in requests/s (n={reactions[4]}, median of {args.rounds} rounds of {args.seconds:g} s, "
          f"{args.concurrency} connections, loopback, {os.cpu_count()} cores shared by client, server and broker)")
    for path, rps, lat, errors, _ in lines:
        for kind in ("bare", "gateway"):
            label = "baseline (bare FastAPI + acked publish)" if kind == "bare" else "rluf gateway (fixed responder)"
            print(f"  {path:<14} {label:<40} {rps[kind]:8.0f} req/s  p50 {_pct(lat[kind], 0.5):6.1f} ms  "
                  f"p99 {_pct(lat[kind], 0.99):6.1f} ms  errors {errors[kind]}")
        print(f"  {path:<14} ratio gateway/baseline {rps['gateway'] / rps['bare']:.2f}")
    n, s, lat_tiny, err = tiny
    print(f"  /v1/chat       {'rluf gateway + ' + args.policy_label:<40} {n / s:8.1f} req/s  "
          f"p50 {_pct(lat_tiny, 0.5):6.1f} ms  p99 {_pct(lat_tiny, 0.99):6.1f} ms  errors {err}  "
          f"({args.tiny_concurrency} connections, max_new_tokens {args.max_new_tokens}, greedy)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one measured round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tiny-concurrency", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--policy-dir", type=Path, default=None, help="serve this HF folder instead of the tiny LM")
    parser.add_argument("--serve", choices=["gateway", "bare", "tiny"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return

    from rluf.localhost import free_port
    from rluf.settings import BrokerSettings, KafkaSettings
    from streams.broker_process import start_broker, stop_broker
    from streams.kafka_admin import ensure_topics

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="rluf-bench-gateway-") as tmp:
        run_dir = Path(tmp) / "broker"
        broker = BrokerSettings(port=free_port())
        start_broker(broker, run_dir)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{broker.port}")
            ensure_topics(kafka)
            if args.policy_dir is None:
                sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
                from tests.tiny_lm import build_tiny_chat_lm

                policy = build_tiny_chat_lm(Path(tmp) / "tinypolicy")
                args.policy_label = "tiny 2-layer LM"
            else:
                policy = args.policy_dir.resolve()
                args.policy_label = policy.name
            env = {**os.environ, "RLUF_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                   "RLUF_DATA_HOME": tmp, "RLUF_GATEWAY__API_KEYS": KEY, "RLUF_GATEWAY__SIGNING_KEY": SIGNING,
                   "RLUF_GATEWAY__RATE_PER_S": "1000000", "RLUF_GATEWAY__RATE_BURST": "1000000",
                   "RLUF_GATEWAY__POLICY_DIR": str(policy), "RLUF_GATEWAY__TEMPERATURE": "0",
                   "RLUF_GATEWAY__MAX_NEW_TOKENS": str(args.max_new_tokens)}
            bases = {}
            for kind in ("bare", "gateway", "tiny"):
                port = free_port()
                procs.append(subprocess.Popen([sys.executable, "-m", "bench.gateway", "--serve", kind,
                                               "--port", str(port)], env=env))
                bases[kind] = f"http://127.0.0.1:{port}"
            for proc, base in zip(procs, bases.values(), strict=True):
                asyncio.run(_wait_ready(base, proc))
            asyncio.run(_measure(bases, args))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            stop_broker(run_dir)


if __name__ == "__main__":
    main()
