from __future__ import annotations

import dataclasses

import pytest
from transformers import HfArgumentParser

from rluf.errors import ConfigError
from rluf.settings import TrainingSettings
from training.reward_config import (
    RewardTrainingConfig,
    bundled_deepspeed_config,
    config_from_settings,
    load_deepspeed_config,
)


def test_every_field_has_help():
    for f in dataclasses.fields(RewardTrainingConfig):
        assert f.metadata.get("help"), f.name


@pytest.mark.parametrize("bad", [
    {"zero_stage": 4},
    {"zero_stage": -1},
    {"positive_rate": 1.0},
    {"positive_rate": -0.1},
    {"max_length": 4},
    {"batch_size": 0},
    {"epochs": 0},
    {"max_steps": 3, "stop_after_steps": 5},
    {"objective": "pairwise"},  # calibration needs probabilities
    {"objective": "pairwise", "calibration": "none"},  # upsampling needs unpaired positives
    {"deepspeed_config": "training/deepspeed/nope.json"},
])
def test_bad_combinations_are_rejected(bad):
    with pytest.raises(ConfigError):
        RewardTrainingConfig(**bad)


def test_good_combinations():
    assert RewardTrainingConfig(positive_rate=0).positive_rate is None
    cfg = RewardTrainingConfig(objective="pairwise", calibration="none", positive_rate=None)
    assert cfg.objective == "pairwise"
    assert RewardTrainingConfig(output_dir="x").checkpoint_path.as_posix() == "x/checkpoints"


def test_config_from_settings_maps_the_slice():
    settings = TrainingSettings(batch_size=4, zero_stage=2, positive_rate=0.2, max_length=64, seed=3)
    cfg = config_from_settings(settings, max_steps=7)
    assert (cfg.batch_size, cfg.zero_stage, cfg.positive_rate, cfg.max_length, cfg.seed, cfg.max_steps) == (
        4, 2, 0.2, 64, 3, 7)
    assert cfg.deepspeed_config is None  # the settings' default file means "bundled file for the stage"
    assert load_deepspeed_config(cfg)["zero_optimization"]["stage"] == 2
    custom = config_from_settings(TrainingSettings(deepspeed_config="training/deepspeed/zero2.json", zero_stage=1))
    assert custom.deepspeed_config == "training/deepspeed/zero2.json"


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_bundled_deepspeed_json_is_filled_at_run_time(stage):
    assert bundled_deepspeed_config(stage).is_file()
    ds = load_deepspeed_config(RewardTrainingConfig(zero_stage=stage, batch_size=5, gradient_accumulation_steps=2))
    assert ds["train_micro_batch_size_per_gpu"] == 5
    assert ds["gradient_accumulation_steps"] == 2
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["gradient_clipping"] == 1.0
    assert not ds["fp16"]["enabled"] and not ds["bf16"]["enabled"]
    assert "auto" not in str(ds)


def test_zero_stage_overrides_the_json_file():
    ds = load_deepspeed_config(RewardTrainingConfig(zero_stage=0, deepspeed_config="training/deepspeed/zero2.json"))
    assert ds["zero_optimization"]["stage"] == 0


def test_cli_flags_come_from_the_dataclass():
    (cfg,) = HfArgumentParser(RewardTrainingConfig).parse_args_into_dataclasses(
        args=["--zero-stage", "0", "--max-steps", "3", "--resume", "--positive_rate", "0.2", "--progress_bar", "false"])
    assert (cfg.zero_stage, cfg.max_steps, cfg.resume, cfg.positive_rate, cfg.progress_bar) == (0, 3, True, 0.2, False)
