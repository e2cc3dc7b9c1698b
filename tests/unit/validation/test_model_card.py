"""The model card is one offline HTML file that shows every metric, or why it is missing."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from validation.evaluation import evaluate_scores
from validation.model_card import IMAGE_CALIBRATION, IMAGE_LOSS, IMAGE_SCORES, write_model_card
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
