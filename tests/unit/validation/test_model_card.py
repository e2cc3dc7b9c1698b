"""The model card is one offline HTML file; the promotion gate explains every refusal."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from rluf.settings import RetrainSettings
from validation.evaluation import evaluate_scores
from validation.model_card import (
    IMAGE_CALIBRATION,
    IMAGE_LOSS,
    IMAGE_SCORES,
    Decision,
    promotion_decision,
    write_model_card,
)
from validation.plots import loss_curve, reliability_diagram, score_histogram

# ---------------------------------------------------------------------------------------
# model card
# ---------------------------------------------------------------------------------------


@pytest.fixture
def evaluated(tmp_path: Path) -> tuple[dict, dict[str, Path]]:
    rng = np.random.default_rng(11)
    p = rng.uniform(size=300)
    y = (rng.uniform(size=300) < p).astype(int)
    texts = ["I'm sorry, but I can't help with that." if i % 10 == 0 else "x" * (20 + i) for i in range(300)]
    report = evaluate_scores(p, y, texts=texts, pairs=[(i, i + 1) for i in range(0, 298, 2)])
    images = {
        IMAGE_CALIBRATION: reliability_diagram(report, tmp_path / "img" / "reliability.png"),
        IMAGE_SCORES: score_histogram(p, y, tmp_path / "img" / "scores.png"),
        IMAGE_LOSS: loss_curve([0.7, 0.6, 0.5], [{"step": 3, "val_loss": 0.55}], tmp_path / "img" / "loss.png"),
    }
    return report.as_dict(), images


def write(tmp_path: Path, metrics: dict, images: dict[str, Path], **overrides) -> str:
    kwargs = {
        "name": "love-reward",
        "version": "v7",
        "metrics": metrics,
        "config": {"learning_rate": 2e-5, "epochs": 2, "backbone": "all-MiniLM-L6-v2", "layers": [6, 384]},
        "data": {"delta_version": 42, "rows_train": 12_000, "rows_eval": 300, "base_rate": 0.087},
        "images": images,
        "notes": ["trained on CPU", "eval split by user"],
    }
    kwargs.update(overrides)
    out = write_model_card(tmp_path / "cards" / "card.html", **kwargs)
    assert out == tmp_path / "cards" / "card.html"
    return out.read_text(encoding="utf-8")


def test_card_contains_the_metric_values(tmp_path, evaluated):
    metrics, images = evaluated
    html = write(tmp_path, metrics, images)
    for key in ("auroc", "pr_auc", "log_loss", "ece", "length_rho", "mean_score_refusals", "preference_accuracy"):
        assert metrics[key] is not None, key
        assert f"{metrics[key]:.4f}" in html, key
    for section in ("summary", "calibration", "discrimination", "risks", "data", "config", "training", "notes"):
        assert f'<section id="{section}">' in html
    assert "Model card: love-reward v7" in html
    assert "12,000" in html and "42" in html and "0.0870" in html  # lineage
    assert "all-MiniLM-L6-v2" in html and "trained on CPU" in html


def test_card_embeds_every_image_as_a_data_uri(tmp_path, evaluated):
    metrics, images = evaluated
    html = write(tmp_path, metrics, {**images, "extra": images[IMAGE_SCORES]})
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
    assert len(sources) == 4
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in sources}
    assert embedded == {p.read_bytes() for p in images.values()}


def test_card_has_no_external_assets(tmp_path, evaluated):
    metrics, images = evaluated
    html = write(tmp_path, metrics, images)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "<script" not in html
    assert "@import" not in html and "url(" not in html


def test_card_escapes_every_value(tmp_path, evaluated):
    metrics, images = evaluated
    evil = '<script>alert("x")</script>'
    html = write(
        tmp_path,
        {**metrics, "skipped": {"auroc": evil}, "auroc": None},
        images,
        name=evil,
        version="<b>1</b>",
        config={evil: evil, "nested": {"k": evil}},
        data={"table": evil},
        notes=[evil],
    )
    assert "<script" not in html
    assert "<b>1</b>" not in html
    assert "&lt;script&gt;" in html


def test_card_explains_missing_metrics(tmp_path):
    report = evaluate_scores([0.3, 0.6, 0.9], [1, 1, 1])
    html = write(tmp_path, report.as_dict(), {})
    assert "n/a (only one class present" in html
    assert "<img" not in html
    assert '<section id="training">' not in html  # no loss curve, no section


def test_card_flags_length_and_refusal_risks(tmp_path):
    metrics = {"auroc": 0.8, "ece": 0.02, "length_rho": 0.25, "length_p_value": 1e-9, "mean_score": 0.5,
               "mean_score_refusals": 0.2, "n_refusals": 12}
    html = write(tmp_path, metrics, {})
    assert "length-hacking risk" in html
    assert "Refusals score below average" in html
    calm = write(tmp_path, {**metrics, "length_rho": 0.01, "mean_score_refusals": 0.6}, {})
    assert "No risk flagged" in calm


def test_card_rejects_missing_or_unsupported_images(tmp_path, evaluated):
    metrics, _ = evaluated
    with pytest.raises(FileNotFoundError):
        write(tmp_path, metrics, {IMAGE_CALIBRATION: tmp_path / "nope.png"})
    svg = tmp_path / "x.svg"
    svg.write_text("<svg/>")
    with pytest.raises(ValueError, match="PNG"):
        write(tmp_path, metrics, {IMAGE_CALIBRATION: svg})


def test_card_is_deterministic_and_replaced_atomically(tmp_path, evaluated):
    metrics, images = evaluated
    first = write(tmp_path, metrics, images)
    second = write(tmp_path, metrics, images)
    assert first == second
    assert sorted(p.name for p in (tmp_path / "cards").iterdir()) == ["card.html"]


# ---------------------------------------------------------------------------------------
# promotion gate
# ---------------------------------------------------------------------------------------

GATE = RetrainSettings()


def decide(candidate: dict, current: dict | None) -> Decision:
    return promotion_decision(candidate, current, margin=GATE.promote_margin, max_ece=GATE.max_ece)


def test_better_calibrated_candidate_is_promoted():
    decision = decide({"auroc": 0.82, "ece": 0.03}, {"auroc": 0.80, "ece": 0.04})
    assert decision.promote
    assert decision.reasons == []
    assert len(decision.passed) == 2


def test_first_model_is_promoted_without_a_current_one():
    decision = decide({"auroc": 0.6, "ece": 0.01}, None)
    assert decision.promote
    assert "no current model" in decision.passed[0]


def test_worse_model_is_refused_with_the_auroc_values():
    decision = decide({"auroc": 0.78, "ece": 0.02}, {"auroc": 0.80, "ece": 0.02})
    assert not decision.promote
    assert len(decision.reasons) == 1
    reason = decision.reasons[0]
    assert "auroc" in reason and "0.7800" in reason and "0.8000" in reason and "0.0050" in reason


def test_gain_below_the_margin_is_refused_and_exactly_the_margin_passes():
    assert not promotion_decision({"auroc": 0.804, "ece": 0.0}, {"auroc": 0.8}, margin=0.005, max_ece=0.05).promote
    assert promotion_decision({"auroc": 0.805, "ece": 0.0}, {"auroc": 0.8}, margin=0.005, max_ece=0.05).promote


def test_too_high_ece_is_refused_with_the_ece_values():
    decision = decide({"auroc": 0.90, "ece": 0.12}, {"auroc": 0.80})
    assert not decision.promote
    assert decision.reasons == ["ece 0.1200 exceeds max_ece 0.0500"]


def test_every_failed_check_is_reported():
    decision = decide({"auroc": 0.70, "ece": 0.2}, {"auroc": 0.80})
    assert not decision.promote
    assert len(decision.reasons) == 2
    assert any(r.startswith("auroc") for r in decision.reasons)
    assert any(r.startswith("ece") for r in decision.reasons)


@pytest.mark.parametrize(
    ("candidate", "current", "fragment"),
    [
        ({"ece": 0.01, "auroc": None, "skipped": {"auroc": "only one class present"}}, None,
         "candidate auroc is missing (only one class present)"),
        ({"auroc": float("nan"), "ece": 0.01}, None, "candidate auroc is missing"),
        ({"auroc": 0.9}, None, "candidate ece is missing"),
        ({"auroc": 0.9, "ece": 0.01}, {"ece": 0.01}, "current model auroc is missing"),
    ],
)
def test_missing_metrics_are_refused_never_promoted(candidate, current, fragment):
    decision = decide(candidate, current)
    assert not decision.promote
    assert any(fragment in r for r in decision.reasons), decision.reasons


def test_gate_reads_evaluation_reports():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=2000)
    y = (rng.uniform(size=2000) < p).astype(int)
    good = evaluate_scores(p, y).as_dict()
    noisy = evaluate_scores(np.clip(p + rng.normal(0, 0.3, size=2000), 0, 1), y).as_dict()
    assert decide(good, noisy).promote
    refused = decide(noisy, good)
    assert not refused.promote and any("auroc" in r for r in refused.reasons)


def test_gate_rejects_bad_thresholds():
    with pytest.raises(ValueError, match="margin"):
        promotion_decision({}, None, margin=-0.1, max_ece=0.05)
    with pytest.raises(ValueError, match="max_ece"):
        promotion_decision({}, None, margin=0.0, max_ece=0.0)


def test_a_first_model_must_beat_min_auroc():
    weak = promotion_decision({"auroc": 0.46, "ece": 0.01}, None, margin=0.005, max_ece=0.05, min_auroc=0.55)
    assert not weak.promote and weak.reasons == ["auroc 0.4600 is below min_auroc 0.5500"]
    ok = promotion_decision({"auroc": 0.70, "ece": 0.01}, None, margin=0.005, max_ece=0.05, min_auroc=0.55)
    assert ok.promote
