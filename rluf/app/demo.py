"""`rluf demo`: the whole pipeline end to end on the embedded defaults.

Everything runs for real on this machine: a Kafka-protocol broker (Tansu) on a free local
port, the stream worker (Faust by default) landing Delta tables under the data home, and
every later stage built so far. Each step prints what it did; the demo exits non-zero if a
step fails, so `make demo` is also a smoke test of a fresh install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rluf.errors import RlufError
from rluf.settings import BrokerSettings, Settings

__all__ = ["DemoRun", "run_demo"]


@dataclass
class DemoRun:
    """What the demo did, for the closing summary."""

    settings: Settings
    echo: Callable[[str], None]
    work: Path
    timings: dict[str, float] = field(default_factory=dict)

    def step(self, title: str) -> _Step:
        return _Step(self, title)


class _Step:
    def __init__(self, run: DemoRun, title: str) -> None:
        self.run, self.title = run, title

    def __enter__(self) -> None:
        self.run.echo(f"\n== {self.title}")
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.run.timings[self.title] = time.perf_counter() - self.started
        if exc[0] is None:
            self.run.echo(f"   done in {self.run.timings[self.title]:.1f} s")


def _rluf(settings: Settings, *args: str, env: dict[str, str] | None = None) -> None:
    """Run one `rluf` command as a child process, streaming its output (as a user would)."""
    child_env = dict(os.environ, **(env or {}))
    child_env["RLUF_DATA_HOME"] = str(settings.data_home)
    child_env["RLUF_KAFKA__BOOTSTRAP_SERVERS"] = settings.kafka.bootstrap_servers
    done = subprocess.run([sys.executable, "-m", "rluf", *args], env=child_env, check=False)
    if done.returncode != 0:
        raise RlufError(f"demo step `rluf {' '.join(args)}` failed with exit code {done.returncode}")


def run_demo(settings: Settings, echo: Callable[[str], None], *, responses: int | None = None) -> DemoRun:
    """Run every stage built so far; returns timings. The broker is stopped at the end."""
    from streams.broker_process import free_port, start_broker, stop_broker

    work = settings.data_home / "demo"
    work.mkdir(parents=True, exist_ok=True)
    broker_dir = settings.data_home / "broker"
    run = DemoRun(settings=settings, echo=echo, work=work)
    with run.step("1. start the embedded Kafka-protocol broker"):
        info = start_broker(BrokerSettings(port=free_port()), broker_dir)
        settings = settings.model_copy(update={
            "kafka": settings.kafka.model_copy(update={"bootstrap_servers": info.bootstrap_servers})})
        run.settings = settings
        echo(f"   Tansu pid {info.pid} at {info.bootstrap_servers} (memory storage; log {info.log_path})")
    try:
        _stream_stage(run, responses)
        _feature_stage(run)
        _model_stage(run)
    finally:
        stop_broker(broker_dir, timeout_s=settings.broker.stop_timeout_s)
        echo("\n== broker stopped")
    total = sum(run.timings.values())
    echo(f"\ndemo finished in {total:.0f} s; data home: {settings.data_home.resolve()}")
    return run


def _stream_stage(run: DemoRun, responses: int | None) -> None:
    s, echo, work = run.settings, run.echo, run.work
    events, truth = work / "events.jsonl", work / "events.truth.json"
    with run.step("2. simulate chat traffic (real oasst/hh-rlhf text, bots, coordinated attackers, trolls)"):
        extra = ["--responses", str(responses)] if responses else []
        _rluf(s, "simulate", "--out", str(events), "--truth", str(truth), *extra)
    with run.step("3. replay the events into Kafka, keyed by response_id"):
        _rluf(s, "replay", str(events))
    with run.step(f"4. stream worker ({s.stream.driver}): join, label, filter, land in Delta exactly once"):
        _rluf(s, "stream", "run", "--until-idle", "3", "--flush")
        _rluf(s, "stream", "stats")
    with run.step("5. filter precision/recall against the simulation's ground truth"):
        from features.lake.reader import read_table
        from streams.filter_eval import score_filter

        facts = json.loads(truth.read_text())
        q = read_table(s.lake_root, "quarantine", columns=["event_id", "reason"])
        t = read_table(s.lake_root, "triples", columns=["user_id", "weight", "label"])
        scores = score_filter(zip(q["event_id"], q["reason"], strict=True), facts["adversarial"],
                              downweighted_users=set(t.loc[t["weight"] < 1, "user_id"]),
                              low_info_users=facts["low_information_users"])
        for line in scores.lines():
            echo(f"   {line}")
        echo(f"   triples {len(t)}, Love rate {t['label'].mean():.4f}, quarantined {len(q)}")


def _feature_stage(run: DemoRun) -> None:
    s, work = run.settings, run.work
    oasst = work / "oasst.events.jsonl"
    with run.step("6. real data: OpenAssistant replies and their +1 reactions, as wire events"):
        _rluf(s, "import", "oasst", "--out", str(oasst))
    with run.step("7. Beam backfill of the real data through the same attribution code, into the same lake"):
        _rluf(s, "backfill", str(oasst))
    with run.step("8. feature store: apply the Feast repo, materialize, query online"):
        _rluf(s, "features", "apply")
        _rluf(s, "features", "materialize")
        from features.lake.reader import read_table

        t = read_table(s.lake_root, "triples", columns=["user_id", "label"])
        top = t[t["label"] == 1]["user_id"].value_counts().index[:2].tolist()
        _rluf(s, "features", "query", "--online", "user", *top)
    with run.step("9. data-quality gate (Great Expectations; HTML Data Docs)"):
        _rluf(s, "validate", "data")
    with run.step("10. point-in-time training set at the current Delta version"):
        _rluf(s, "features", "training-set", "--out", str(s.data_home / "training_sets" / "demo"))


# A CPU demo trains a few dozen steps on short inputs; `rluf retrain` without these
# overrides trains the configured epochs (docs/training.md).
_DEMO_TRAINING = {"RLUF_TRAINING__MAX_STEPS": "60", "RLUF_TRAINING__MAX_LENGTH": "96",
                  "RLUF_TRAINING__BATCH_SIZE": "16"}


def _model_stage(run: DemoRun) -> None:
    s, echo, work = run.settings, run.echo, run.work
    env = {k: os.environ.get(k, v) for k, v in _DEMO_TRAINING.items()}
    with run.step("11. retrain: gate, train P[Love] with DeepSpeed (CPU), evaluate, register, promote if better"):
        _rluf(s, "retrain", env=env)
        _rluf(s, "models", "list")
    with run.step("12. score answers with the served model"):
        from deploy.registry import ModelRegistry
        from features.lake.reader import read_table

        served = "production" if ModelRegistry(s.registry, s.data_home).production() is not None else "latest"
        if served == "latest":
            echo("   no version passed the promotion gate (see the reasons above): scoring with the latest one")
        sample = read_table(s.lake_root, "triples", columns=["context", "response", "label"]).head(5)
        lines = work / "to_score.jsonl"
        lines.write_text("".join(json.dumps({"context": list(c), "response": r, "label": int(y)}, default=_plain)
                                 + "\n" for c, r, y in zip(sample["context"], sample["response"], sample["label"],
                                                            strict=True)))
        _rluf(s, "score", str(lines), "--model", served)


def _plain(value: object) -> object:
    """JSON for the numpy/pandas values a Delta read returns (context turns come back as dicts)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
