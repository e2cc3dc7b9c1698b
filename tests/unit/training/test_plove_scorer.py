from __future__ import annotations

import pytest
import torch

from training.calibration import Calibration
from training.plove_scorer import PLove

CONTEXTS = [[{"role": "user", "content": "what is the capital of france"}], "user: hello"]
RESPONSES = ["paris is the capital", "hi there how can i help you with the code"]


def test_plove_scores_calibrated_probabilities(tiny_model, tmp_path):
    tiny_model.calibration = Calibration(train_rate=0.1, true_rate=0.02, temperature=2.0)
    tiny_model.save(tmp_path / "m")
    plove = PLove.load(tmp_path / "m" / "plove_config.json")
    probs = plove.score(CONTEXTS, RESPONSES, batch_size=1)
    logits = plove.logits(CONTEXTS, RESPONSES)
    cal = plove.calibration
    assert probs == pytest.approx(1.0 / (1.0 + torch.exp(-(torch.tensor(logits) / 2.0 + cal.shift))).numpy())
    assert ((probs > 0) & (probs < 1)).all()
    # same numbers whatever the batch size (length sorting + dynamic padding)
    assert plove.score(CONTEXTS * 3, RESPONSES * 3, batch_size=4) == pytest.approx(list(probs) * 3, abs=1e-6)
    assert plove.score([], []).shape == (0,)


def test_bf16_scoring_stays_close_to_fp32(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "m")
    fp32 = PLove.load(tmp_path / "m").score(CONTEXTS, RESPONSES)
    bf16 = PLove.load(tmp_path / "m", precision="bf16")
    assert bf16.model.head.weight.dtype == torch.float32  # head and pooling stay fp32
    assert bf16.score(CONTEXTS, RESPONSES) == pytest.approx(fp32, abs=0.02)
