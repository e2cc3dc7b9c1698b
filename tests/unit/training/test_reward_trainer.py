"""DeepSpeed training of the tiny model: a few steps, ZeRO 0/1, checkpoint/kill/resume, pairwise."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rluf.errors import ConfigError, DataQualityError
from tests.unit.training.synthetic import make_pairs, make_triples
from training.datasets import split_frame, upsample_positives
from training.pairwise import PairwiseTrainer, bradley_terry_loss
from training.plove_scorer import PLove
from training.reward_config import RewardTrainingConfig
from training.reward_model import PLoveModel
from training.reward_trainer import RewardTrainer, weighted_bce

pytestmark = pytest.mark.usefixtures("no_shm_comm")


@pytest.fixture(scope="module")
def splits():
    return split_frame(make_triples(96, rate=0.08, seed=3))


def config(tmp_path, **kw):
    base = {"output_dir": str(tmp_path / "out"), "batch_size": 8, "lr": 1e-3, "max_length": 48,
            "progress_bar": False, "save_steps": 0, "seed": 5}
    return RewardTrainingConfig(**{**base, **kw})


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("stage", [0, 1])
def test_three_deepspeed_steps_change_parameters(tmp_path, vocab_file, splits, stage):
    model = PLoveModel.tiny(vocab_file, seed=0)
    before = snapshot(model)
    result = RewardTrainer(config(tmp_path, max_steps=3, zero_stage=stage), model, model.tokenizer).train(
        splits["train"], splits["validation"], provenance={"delta_version": 9})
    assert result.completed and result.steps == 3 and len(result.train_losses) == 3
    assert all(math.isfinite(x) for x in result.train_losses)
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "head.weight" in changed and any(k.startswith("backbone.encoder.") for k in changed)
    # calibration: trained at the upsampled rate, shifted back to the unsampled training rate
    train = splits["train"]
    true_rate = float((train["label"] * train["weight"]).sum() / train["weight"].sum())
    assert result.true_rate == pytest.approx(true_rate)
    upsampled, effective = upsample_positives(train, 0.10, seed=5)
    assert result.train_rate == pytest.approx(effective)  # weighted share of positives after upsampling
    assert upsampled["label"].mean() == pytest.approx(0.10, abs=1 / len(upsampled))
    assert result.calibration.shift == pytest.approx(math.log(true_rate / (1 - true_rate))
                                                     - math.log(result.train_rate / (1 - result.train_rate)))
    assert result.calibration.temperature > 0
    assert set(result.metrics) >= {"val_auroc", "val_log_loss", "val_ece", "val_mean_p"}
    # outputs: model, PNG, metrics, checkpoint
    assert result.loss_curve is not None and result.loss_curve.read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and len(metrics["train_losses"]) == 3
    assert (tmp_path / "out" / "checkpoints" / "latest").read_text().strip() == "global_step3"
    plove = PLove.load(result.model_dir)
    assert plove.calibration == result.calibration
    assert plove.model.extra_config["data"]["delta_version"] == 9
    probs = plove.score(list(splits["validation"]["context"]), list(splits["validation"]["response"]))
    assert probs.shape == (len(splits["validation"]),) and np.all((probs > 0) & (probs < 1))


def test_resume_after_kill_continues_with_identical_losses(tmp_path, vocab_file, splits):
    steps = 6
    full_model = PLoveModel.tiny(vocab_file, seed=0)
    full = RewardTrainer(config(tmp_path / "full", max_steps=steps, zero_stage=1, save_steps=2), full_model,
                         full_model.tokenizer).train(splits["train"], splits["validation"])

    killed_cfg = config(tmp_path / "resumed", max_steps=steps, zero_stage=1, save_steps=2, stop_after_steps=3)
    killed_model = PLoveModel.tiny(vocab_file, seed=0)
    killed = RewardTrainer(killed_cfg, killed_model, killed_model.tokenizer).train(splits["train"],
                                                                                   splits["validation"])
    assert not killed.completed and killed.steps == 3 and killed.model_dir is None
    assert killed.train_losses == pytest.approx(full.train_losses[:3], abs=1e-6)

    fresh = PLoveModel.tiny(vocab_file, seed=1)  # a different init: everything must come from the checkpoint
    resumed = RewardTrainer(killed_cfg.replace(stop_after_steps=None, resume=True), fresh,
                            fresh.tokenizer).train(splits["train"], splits["validation"])
    assert resumed.resumed_from_step == 3 and resumed.completed and resumed.steps == steps
    assert resumed.train_losses == pytest.approx(full.train_losses, abs=1e-6)
    for k, v in full_model.state_dict().items():
        assert torch.allclose(v, fresh.state_dict()[k], atol=1e-6), k
    assert resumed.metrics["val_auroc"] == pytest.approx(full.metrics["val_auroc"])
    # keep_checkpoints=2: only the two newest remain
    kept = sorted(p.name for p in (tmp_path / "resumed" / "out" / "checkpoints").glob("global_step*"))
    assert kept == ["global_step4", "global_step6"]


def test_resume_refuses_a_checkpoint_with_another_data_order(tmp_path, vocab_file, splits):
    model = PLoveModel.tiny(vocab_file, seed=0)
    cfg = config(tmp_path, max_steps=2, zero_stage=0)
    RewardTrainer(cfg, model, model.tokenizer).train(splits["train"], None)
    other = PLoveModel.tiny(vocab_file, seed=0)
    with pytest.raises(ConfigError, match="batch_size"):
        RewardTrainer(cfg.replace(batch_size=4, resume=True), other, other.tokenizer).train(splits["train"], None)


def test_training_split_must_be_clean(tmp_path, vocab_file):
    frame = make_triples(32)
    model = PLoveModel.tiny(vocab_file)
    trainer = RewardTrainer(config(tmp_path, max_steps=1), model, model.tokenizer)
    with pytest.raises(DataQualityError, match="non-training rows"):
        trainer.train(frame)
    with pytest.raises(DataQualityError, match="lacks columns"):
        trainer.train(split_frame(frame)["train"].drop(columns=["label"]))
    no_loves = split_frame(frame)["train"].assign(label=0)
    with pytest.raises(DataQualityError, match="single class"):  # checked before upsampling is attempted
        trainer.train(no_loves)


def test_weighted_bce_and_bradley_terry_losses():
    logits, labels = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    expected = (math.log(2.0) * 1.0 + math.log1p(math.exp(2.0)) * 0.5) / 2
    assert weighted_bce(logits, labels, torch.tensor([1.0, 0.5])).item() == pytest.approx(expected)
    assert bradley_terry_loss(torch.tensor([1.0]), torch.tensor([1.0])).item() == pytest.approx(math.log(2.0))
    assert bradley_terry_loss(torch.tensor([5.0]), torch.tensor([0.0])).item() == pytest.approx(
        math.log1p(math.exp(-5.0)))


def test_pairwise_bradley_terry_steps(tmp_path, vocab_file):
    pairs = split_frame(make_pairs(32))
    model = PLoveModel.tiny(vocab_file, seed=0)
    before = snapshot(model)
    cfg = config(tmp_path, max_steps=3, zero_stage=1, objective="pairwise", calibration="none", positive_rate=None)
    with pytest.raises(ConfigError, match="PairwiseTrainer"):
        RewardTrainer(cfg, model, model.tokenizer)
    result = PairwiseTrainer(cfg, model, model.tokenizer).train(pairs["train"], pairs["validation"])
    assert result.completed and all(math.isfinite(x) for x in result.train_losses)
    assert not torch.equal(before["head.weight"], model.state_dict()["head.weight"])
    assert "val_accuracy" in result.metrics and result.evals[-1]["step"] == 3
    assert result.calibration.shift == 0.0 and result.calibration.temperature == 1.0
    assert PLove.load(tmp_path / "out").model.extra_config["objective"] == "pairwise"
