from __future__ import annotations

import json

import pytest
import torch

from rluf.errors import ConfigError
from training.calibration import Calibration
from training.datasets import encode_inputs, pad_inputs
from training.reward_model import PLoveModel, default_backbone

CONTEXTS = [[{"role": "user", "content": "what is the capital of france"}], "user: hello"]
RESPONSES = ["paris is the capital", "hi there how can i help you with the code"]


def batch_for(model, max_length=64):
    return pad_inputs(encode_inputs(CONTEXTS, RESPONSES, model.tokenizer, max_length=max_length),
                      model.tokenizer.pad_token_id)


def test_tiny_forward_returns_one_logit_per_row(tiny_model):
    tiny_model.eval()
    with torch.no_grad():
        logits = tiny_model(**batch_for(tiny_model))
    assert logits.shape == (2,)
    assert torch.isfinite(logits).all()
    assert sum(p.numel() for p in tiny_model.parameters()) < 100_000


def test_padding_does_not_change_the_logit(tiny_model):
    tiny_model.eval()
    enc = encode_inputs(CONTEXTS, RESPONSES, tiny_model.tokenizer, max_length=64)
    pad = tiny_model.tokenizer.pad_token_id
    with torch.no_grad():
        alone = tiny_model(**pad_inputs(enc[:1], pad))
        padded = tiny_model(**pad_inputs(enc, pad, pad_to_multiple_of=32))[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_tiny_is_seeded(vocab_file):
    a, b = PLoveModel.tiny(vocab_file, seed=3), PLoveModel.tiny(vocab_file, seed=3)
    for (na, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), na


def test_save_load_roundtrip_keeps_weights_calibration_and_tokenizer(tiny_model, tmp_path):
    tiny_model.calibration = Calibration(train_rate=0.1, true_rate=0.02, temperature=1.7)
    out = tiny_model.save(tmp_path / "m", extra={"data": {"delta_version": 4}})
    loaded = PLoveModel.load(out)
    tiny_model.eval()
    with torch.no_grad():
        assert torch.allclose(tiny_model(**batch_for(tiny_model)), loaded(**batch_for(loaded)))
    assert loaded.calibration == tiny_model.calibration
    assert loaded.max_length == tiny_model.max_length
    assert loaded.tokenizer is not None and loaded.tokenizer.get_vocab() == tiny_model.tokenizer.get_vocab()
    assert loaded.extra_config["data"] == {"delta_version": 4}
    cfg = json.loads((out / "plove_config.json").read_text())
    assert cfg["calibration"]["temperature"] == 1.7 and cfg["pooling"] == "mean"


def test_load_refuses_a_directory_without_a_model(tmp_path):
    with pytest.raises(ConfigError, match="no P\\[Love\\] model"):
        PLoveModel.load(tmp_path)
    with pytest.raises(ConfigError, match="not a local directory"):
        PLoveModel.from_backbone("sentence-transformers/all-MiniLM-L6-v2")


def test_any_local_hf_checkpoint_works_as_backbone(tiny_model, tmp_path):
    tiny_model.backbone.save_pretrained(tmp_path / "ckpt")
    tiny_model.tokenizer.save_pretrained(tmp_path / "ckpt")
    model = PLoveModel.from_backbone(tmp_path / "ckpt", max_length=32)
    model.eval()
    with torch.no_grad():
        assert model(**batch_for(model, 32)).shape == (2,)
    assert default_backbone().endswith("model")
