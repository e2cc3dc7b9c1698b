"""Figures: files are real PNGs, deterministic, and degenerate inputs still draw."""

from __future__ import annotations

import numpy as np
import pytest

from validation.evaluation import evaluate_scores
from validation.metrics import expected_calibration_error
from validation.plots import loss_curve, reliability_diagram, score_histogram

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    p = rng.uniform(size=400)
    return p, (rng.uniform(size=400) < p).astype(int)


def test_reliability_diagram_accepts_report_calibration_or_bins(tmp_path, scored):
    p, y = scored
    report = evaluate_scores(p, y)
    cal = expected_calibration_error(p, y)
    assert cal is not None
    for i, source in enumerate((report, cal, cal.bins)):
        out = reliability_diagram(source, tmp_path / f"rel{i}.png")
        assert out == tmp_path / f"rel{i}.png"
        assert out.read_bytes().startswith(PNG_MAGIC)
    # the report and its CalibrationReport draw the same figure
    assert (tmp_path / "rel0.png").read_bytes() == (tmp_path / "rel1.png").read_bytes()


def test_figures_are_deterministic(tmp_path, scored):
    p, y = scored
    a = score_histogram(p, y, tmp_path / "a.png").read_bytes()
    b = score_histogram(p, y, tmp_path / "b.png").read_bytes()
    assert a == b
    evals = [{"step": 2, "val_loss": 0.75, "val_auroc": 0.6}, {"step": 4, "val_loss": 0.6, "val_auroc": 0.7}]
    c = loss_curve([0.9, 0.7, 0.6, 0.55], evals, tmp_path / "c.png").read_bytes()
    d = loss_curve([0.9, 0.7, 0.6, 0.55], evals[::-1], tmp_path / "d.png").read_bytes()
    assert c == d
    assert b"matplotlib" not in a  # no version stamp in the PNG metadata


def test_figures_create_parent_folders_and_replace_files(tmp_path, scored):
    p, y = scored
    out = tmp_path / "deep" / "er" / "scores.png"
    score_histogram(p, y, out)
    first = out.read_bytes()
    score_histogram(p[:50], y[:50], out)
    assert out.read_bytes() != first
    assert [f.name for f in out.parent.iterdir()] == ["scores.png"]  # no temp file left behind


def test_degenerate_inputs_still_draw(tmp_path):
    report = evaluate_scores([], [])
    assert report.calibration is None
    assert reliability_diagram(report, tmp_path / "r.png").read_bytes().startswith(PNG_MAGIC)
    assert reliability_diagram([], tmp_path / "r2.png").exists()
    assert loss_curve([], [], tmp_path / "l.png").exists()
    assert score_histogram([], [], tmp_path / "s.png").exists()
    assert score_histogram([0.5, 0.5, float("nan")], [1, 1, 0], tmp_path / "s2.png").exists()


def test_misaligned_inputs_raise(tmp_path):
    with pytest.raises(ValueError, match="same length"):
        score_histogram([0.1, 0.2], [1], tmp_path / "s.png")
