"""The retrain loop end to end on a real lake, a real GX gate, DeepSpeed and MLflow.

A tiny BERT saved as a local checkpoint stands in for MiniLM so that a cycle takes seconds;
everything else (backfill into Delta, feature tables, training set, gate, the training child
process through DeepSpeed, evaluation, registry) is the production path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.registry import ModelRegistry
from deploy.retrain import read_history, retrain
from rluf.settings import Settings
from streams.backfill.pipeline import run_backfill
from streams.sources.simulator.simulate import simulate, write_simulation
from streams.sources.simulator.text_corpus import template_corpus
from training.reward_model import PLoveModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VOCAB = Path(__file__).resolve().parents[2] / "fixtures" / "tiny_vocab.txt"


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT and its tokenizer saved as a local Hugging Face checkpoint."""
    out = tmp_path_factory.mktemp("tiny-bert")
    model = PLoveModel.tiny(VOCAB, seed=0)
    model.backbone.save_pretrained(str(out))
    assert model.tokenizer is not None
    model.tokenizer.save_pretrained(str(out))
    return out


def env_for(home: Path, backbone: Path, **extra: str) -> dict[str, str]:
    values = {
        "RLUF_DATA_HOME": str(home), "RLUF_VALIDATION__REPORTS_DIR": str(home / "reports"),
        "RLUF_TRAINING__BACKBONE": str(backbone), "RLUF_TRAINING__MAX_STEPS": "6", "RLUF_TRAINING__ZERO_STAGE": "0",
        "RLUF_TRAINING__BATCH_SIZE": "8", "RLUF_TRAINING__MAX_LENGTH": "64",
        "RLUF_RETRAIN__MIN_AUROC": "0", "RLUF_RETRAIN__MAX_ECE": "1", "RLUF_RETRAIN__MIN_NEW_TRIPLES": "1",
        "RLUF_VALIDATION__MAX_USER_LABEL_SHARE": "1", "RLUF_VALIDATION__MAX_QUARANTINE_RATE": "0.5",
    }
    values.update(extra)
    return values


@pytest.fixture(scope="module")
def lake_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake with ~1,500 simulated triples, landed by the Beam backfill."""
    home = tmp_path_factory.mktemp("home")
    s = Settings(data_home=home)
    cfg = s.simulation.model_copy(update={"responses": 1500, "users": 60, "love_rate": 0.05, "days": 2.0})
    sim = simulate(cfg, s.filters, window_s=s.stream.attribution_window_s, corpus=template_corpus(seed=1, threads=400))
    events = home / "events.jsonl"
    write_simulation(sim, events, home / "truth.json")
    result = run_backfill(s, events)
    assert result.triples == 1500
    return home


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_retrain_promotes_then_refuses_a_model_that_is_not_better(lake_home: Path, tiny_backbone: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings_from(env_for(lake_home, tiny_backbone), monkeypatch)
    first = retrain(s, echo=lambda _: None)
    assert first.status == "promoted", first.reasons
    assert first.version == 1 and first.triples_version is not None and first.metrics["n"] > 0
    registry = ModelRegistry(s.registry, s.data_home)
    prod = registry.production()
    assert prod is not None and prod.version == 1
    assert prod.tags["rluf.triples_version"] == str(first.triples_version)
    assert {"auroc", "ece", "log_loss"} <= set(prod.metrics)
    assert Path(first.model_card or "").read_text().count("data:image/png;base64,") >= 2
    # the registry's production model scores (Python API)
    scores = registry.load_plove("production").score([[{"role": "user", "content": "hi"}]], ["hello there"])
    assert 0.0 <= float(scores[0]) <= 1.0

    # nothing new landed: --if-needed skips
    skipped = retrain(s, if_needed=True, echo=lambda _: None)
    assert skipped.status == "skipped" and "0 new triples" in skipped.reasons[0]

    # an impossible margin: trained, registered, NOT promoted, with the reason recorded
    strict = s.model_copy(update={"retrain": s.retrain.model_copy(update={"promote_margin": 0.9})})
    second = retrain(strict, echo=lambda _: None)
    assert second.status == "rejected" and second.version == 2
    assert "does not beat current" in second.reasons[0]
    assert registry.production().version == 1  # type: ignore[union-attr]
    assert registry.get(2).tags["rluf.status"] == "rejected"
    assert [h["status"] for h in read_history(s)] == ["promoted", "skipped", "rejected"]


def test_failing_gate_never_trains_and_records_why(lake_home: Path, tiny_backbone: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings_from(env_for(lake_home / "gate", tiny_backbone, RLUF_LAKE__ROOT=str(lake_home / "lake"),
                              RLUF_VALIDATION__LOVE_RATE_MAX="0.001"), monkeypatch)
    outcome = retrain(s, echo=lambda _: None)
    assert outcome.status == "gate_failed"
    assert outcome.reasons[0] == "data-quality gate failed: triples"
    assert any("expect_column_mean_to_be_between(label)" in r for r in outcome.reasons)
    assert ModelRegistry(s.registry, s.data_home).list() == []


def test_a_retrain_killed_while_training_leaves_the_registry_as_it_was(lake_home: Path, tiny_backbone: Path,
                                                                      tmp_path: Path) -> None:
    home = tmp_path / "killed"
    env = dict(os.environ, **env_for(home, tiny_backbone, RLUF_LAKE__ROOT=str(lake_home / "lake"),
                                     RLUF_TRAINING__MAX_STEPS="100000"))
    proc = subprocess.Popen([sys.executable, "-m", "rluf", "retrain"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and not list(home.glob("retrain/*/model/checkpoints*")) \
            and not list(home.glob("retrain/*/model/*")):
        assert proc.poll() is None
        time.sleep(0.5)
    time.sleep(3)  # well inside training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    s = Settings(data_home=home, lake={"root": str(lake_home / "lake")})  # type: ignore[arg-type]
    registry = ModelRegistry(s.registry, s.data_home)
    assert registry.list() == [] and registry.production() is None
    assert read_history(s) == []  # the killed cycle recorded nothing half-done
    # the lock died with the process: the next cycle runs to the end
    done = subprocess.run([sys.executable, "-m", "rluf", "retrain"], env={**env, "RLUF_TRAINING__MAX_STEPS": "4"},
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [v.version for v in registry.list()] == [1]
