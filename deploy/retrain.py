"""The periodic retrain loop: gate, training set, train, evaluate, register, maybe promote.

`retrain` runs one cycle. Every cycle ends in one recorded outcome (appended to
``<data_home>/retrain/history.jsonl``): skipped (not enough new data), refused by the
data-quality gate, trained and rejected (the reasons from the promotion gate), promoted, or
failed. A failing gate or a worse model is never promoted. Training runs as a child process
(`python -m training.reward_entrypoint`, or torchrun for several processes), so a kill of the
cycle at any point leaves the registry as it was: a version is registered only after its
files and evaluation exist, and promotion is one alias move.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from deploy.registry import ModelRegistry
from rluf.errors import RlufError
from rluf.localhost import free_port
from rluf.settings import Settings

__all__ = ["RetrainOutcome", "read_history", "retrain", "retrain_needed", "run_scheduler"]

logger = logging.getLogger(__name__)

Status = Literal["skipped", "gate_failed", "rejected", "promoted", "failed"]


@dataclass
class RetrainOutcome:
    """One cycle's result, as recorded in the history file."""

    status: Status
    reasons: list[str] = field(default_factory=list)
    started_at: str = ""
    seconds: float = 0.0
    version: int | None = None
    training_set: str | None = None
    triples_version: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    current_metrics: dict[str, Any] = field(default_factory=dict)
    model_card: str | None = None

    def summary(self) -> str:
        head = {"skipped": "retrain skipped", "gate_failed": "retrain refused by the data-quality gate",
                "rejected": f"version {self.version} trained and NOT promoted",
                "promoted": f"version {self.version} promoted to production", "failed": "retrain failed"}[self.status]
        return head + (": " + "; ".join(self.reasons) if self.reasons else "")


def _dir(settings: Settings) -> Path:
    d = settings.data_home / "retrain"
    d.mkdir(parents=True, exist_ok=True)
    return d


def read_history(settings: Settings) -> list[dict[str, Any]]:
    """Every recorded cycle, oldest first."""
    path = _dir(settings) / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _record(settings: Settings, outcome: RetrainOutcome) -> RetrainOutcome:
    with (_dir(settings) / "history.jsonl").open("a") as fh:
        fh.write(json.dumps(asdict(outcome), default=str) + "\n")
    logger.info("retrain outcome: %s", outcome.summary())
    return outcome


@contextlib.contextmanager
def _exclusive(settings: Settings) -> Iterator[None]:
    """One cycle at a time per data home (the scheduler and a manual run must not overlap)."""
    with (_dir(settings) / "lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RlufError(f"another retrain is running for {settings.data_home}; try again later") from exc
        yield


def _new_triples_since(settings: Settings, version: int | None) -> tuple[int, int | None]:
    """Rows appended to the triples table after ``version`` (all rows when None), and the newest version."""
    from features.lake.admin import lake_history
    from features.lake.reader import table_exists

    if not table_exists(settings.lake_root, "triples", storage_options=settings.lake.storage_options):
        return 0, None
    commits = lake_history(settings.lake_root, "triples", limit=None, storage_options=settings.lake.storage_options)
    newest = max(int(c["version"]) for c in commits)
    added = sum(int(c["rows_added"] or 0) for c in commits
                if c["operation"] == "WRITE" and (version is None or int(c["version"]) > version))
    return added, newest


def retrain_needed(settings: Settings, registry: ModelRegistry, *, now: float) -> tuple[bool, str]:
    """Whether enough new triples landed, or the newest model is old enough, to train again."""
    latest = registry.list()[:1]
    since = int(latest[0].tags["rluf.triples_version"]) if latest and "rluf.triples_version" in latest[0].tags \
        else None
    added, newest = _new_triples_since(settings, since)
    cfg = settings.retrain
    if newest is None:
        return False, "no triples table yet"
    if added >= cfg.min_new_triples:
        return True, f"{added} new triples since triples v{since} (threshold {cfg.min_new_triples})"
    if latest and now - latest[0].created_at >= cfg.max_age_s and added > 0:
        return True, f"newest model is {(now - latest[0].created_at) / 3600:.1f} h old and {added} triples are new"
    return False, f"only {added} new triples since triples v{since} (threshold {cfg.min_new_triples})"


def _train_command(settings: Settings, train_set: Path, out: Path) -> list[str]:
    t = settings.training
    args = ["-m", "training.reward_entrypoint", "--train-set", str(train_set), "--out", str(out),
            "--zero-stage", str(t.zero_stage)]
    if t.max_steps is not None:
        args += ["--max-steps", str(t.max_steps)]
    if t.processes > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(t.processes),
                "--master_port", str(free_port()), *args]
    return [sys.executable, *args]


def _train(settings: Settings, train_set: Path, out: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.setdefault("DS_ACCELERATOR", "cpu")
    env.setdefault("HF_HUB_OFFLINE", "1")
    done = subprocess.run(_train_command(settings, train_set, out), env=env, stdout=subprocess.PIPE, text=True,
                          check=False)
    if done.returncode != 0:
        raise RlufError(f"training failed with exit code {done.returncode}; see the output above")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    if not isinstance(summary, dict):
        raise RlufError("training printed no summary")
    return summary


def retrain(settings: Settings, *, if_needed: bool = False, echo: Callable[[str], None] = logger.info,
            now: float | None = None) -> RetrainOutcome:
    """Run one retrain cycle and record its outcome (see the module docstring)."""
    started = time.time()
    outcome = RetrainOutcome(status="failed", started_at=datetime.fromtimestamp(started, tz=UTC).isoformat())
    registry = ModelRegistry(settings.registry, settings.data_home)
    with _exclusive(settings):
        try:
            _cycle(settings, registry, outcome, if_needed=if_needed, echo=echo, now=now or started)
        except RlufError as exc:
            outcome.status, outcome.reasons = "failed", [str(exc)]
        outcome.seconds = round(time.time() - started, 2)
        return _record(settings, outcome)


def _cycle(settings: Settings, registry: ModelRegistry, outcome: RetrainOutcome, *, if_needed: bool,
           echo: Callable[[str], None], now: float) -> None:
    from features.training_set import build_training_set
    from validation.lake_gate import validate_lake

    if if_needed:
        needed, why = retrain_needed(settings, registry, now=now)
        echo(f"retrain needed? {'yes' if needed else 'no'}: {why}")
        if not needed:
            outcome.status, outcome.reasons = "skipped", [why]
            return
    run_dir = _dir(settings) / datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%dT%H%M%S")
    echo("building the point-in-time training set")
    ts = build_training_set(settings, out=run_dir / "training_set", refresh_features=True)
    outcome.training_set, outcome.triples_version = str(ts.path), ts.versions.get("triples")
    echo("data-quality gate on the lake and the training set")
    gate = validate_lake(settings.lake_root, settings.validation, now=datetime.fromtimestamp(now, tz=UTC),
                         storage_options=settings.lake.storage_options, training_set=ts.path)
    echo(gate.report())
    if not gate.success:
        outcome.status = "gate_failed"
        outcome.reasons = [f"data-quality gate failed: {', '.join(gate.failed_suites)}", *gate.failures[:5]]
        return
    echo(f"training P[Love] with DeepSpeed (ZeRO {settings.training.zero_stage}, "
         f"{settings.training.processes} process(es))")
    summary = _train(settings, ts.path, run_dir / "model")
    echo(f"trained {summary.get('steps')} steps at {summary.get('samples_per_s', 0):.1f} samples/s")
    _evaluate_register_decide(settings, registry, outcome, ts, run_dir, echo)


def _evaluate_register_decide(settings: Settings, registry: ModelRegistry, outcome: RetrainOutcome, ts: Any,
                              run_dir: Path, echo: Callable[[str], None]) -> None:
    from training.plove_scorer import PLove
    from training.reward_config import config_from_settings
    from validation.model_eval import evaluate_model, write_card
    from validation.promotion_gate import promotion_decision

    config = config_from_settings(settings.training).to_dict()
    test = ts.frame("test")
    if test.empty:
        raise RlufError("the training set has an empty test split; land more triples first")
    echo(f"evaluating the candidate on the held-out test split ({len(test)} rows)")
    candidate = evaluate_model(PLove.load(run_dir / "model"), test, run_dir / "eval")
    outcome.metrics = candidate.metrics
    current = registry.production()
    if current is not None:
        echo(f"evaluating production version {current.version} on the same split")
        outcome.current_metrics = evaluate_model(registry.load_plove(current.version), test).metrics
    decision = promotion_decision(candidate.metrics, outcome.current_metrics or None,
                                  margin=settings.retrain.promote_margin, max_ece=settings.retrain.max_ece,
                                  min_auroc=settings.retrain.min_auroc)
    card = write_card(run_dir / "model_card.html", name=settings.registry.model_name, version="candidate",
                      evaluation=candidate, config=config,
                      data={"training_set": str(ts.path), **{f"{k} version": v for k, v in ts.versions.items()},
                            **{f"rows {k}": v for k, v in ts.rows.items()}},
                      notes=[*decision.passed, *decision.reasons],
                      loss_curve_png=run_dir / "model" / "loss_curve.png")
    outcome.model_card = str(card)
    reports = [card, *candidate.images.values()]
    info = registry.register(run_dir / "model" / "model", metrics=candidate.metrics,
                             params=config,
                             tags={"rluf.triples_version": str(ts.versions.get("triples")),
                                   "rluf.training_set": str(ts.path),
                                   "rluf.training_set_hash": ts.content_hash,
                                   **{f"rluf.{k}_version": str(v) for k, v in ts.versions.items()}},
                             reports=reports)
    outcome.version = info.version
    registry.record_decision(info.version, promote=decision.promote, reasons=decision.reasons or decision.passed)
    if decision.promote:
        registry.promote(info.version, reason="; ".join(decision.passed))
        outcome.status, outcome.reasons = "promoted", list(decision.passed)
    else:
        outcome.status, outcome.reasons = "rejected", list(decision.reasons)


def run_scheduler(settings: Settings, *, interval_s: float, echo: Callable[[str], None],
                  max_cycles: int | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """Run `retrain(if_needed=True)` every ``interval_s`` seconds; returns the cycles run."""
    cycles = 0
    while max_cycles is None or cycles < max_cycles:
        outcome = retrain(settings, if_needed=True, echo=echo)
        cycles += 1
        echo(f"[{datetime.now(UTC):%Y-%m-%d %H:%M:%S}] cycle {cycles}: {outcome.summary()}")
        if max_cycles is not None and cycles >= max_cycles:
            break
        sleep(interval_s)
    return cycles
