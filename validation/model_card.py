"""A self-contained HTML model card per reward model.

The card is one HTML file with inline CSS and the figures embedded as base64 data URIs:
it opens offline, can be attached to a ticket or archived next to the weights, and
cannot leak anything by fetching a remote asset. Every value is HTML-escaped, since
config values and notes are free text.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from validation.evaluation import reported_metric

__all__ = [
    "IMAGE_CALIBRATION",
    "IMAGE_LOSS",
    "IMAGE_SCORES",
    "write_model_card",
]

logger = logging.getLogger(__name__)

IMAGE_CALIBRATION: Final = "reliability"
"""Key in ``images`` for the reliability diagram, shown under Calibration."""
IMAGE_SCORES: Final = "scores"
"""Key in ``images`` for the score histogram, shown under Discrimination."""
IMAGE_LOSS: Final = "loss"
"""Key in ``images`` for the loss curve, shown under Training."""

_MIME_BY_SUFFIX: Final = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
_LENGTH_RHO_WARN: Final = 0.1  # the RLUF paper's Love model sat at about this; above it, flag length hacking

_CSS: Final = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 60rem;
       color: #1f2328; line-height: 1.45; padding: 0 1rem; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .7rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.na { color: #8c959f; }
.warn { color: #9a6700; font-weight: 600; }
.ok { color: #1a7f37; font-weight: 600; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #59636e; font-size: .9rem; }
code { background: #f6f8fa; padding: .1rem .3rem; border-radius: 3px; }
"""


# ---------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    """Format one value for a table cell (already escaped)."""
    if value is None:
        return '<span class="na">n/a</span>'
    if isinstance(value, bool):
        return _esc("yes" if value else "no")
    if isinstance(value, int):
        return _esc(f"{value:,}")
    if isinstance(value, float):
        if math.isnan(value):
            return '<span class="na">NaN</span>'
        return _esc(f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}")
    if isinstance(value, Mapping | list | tuple):
        return f"<code>{_esc(json.dumps(value, sort_keys=True, default=str))}</code>"
    return _esc(value)


def _metric_cell(metrics: Mapping[str, Any], key: str) -> str:
    value = metrics.get(key)
    if value is None:
        skipped = metrics.get("skipped")
        why = skipped.get(key) if isinstance(skipped, Mapping) else None
        if why:
            return f'<span class="na">n/a ({_esc(why)})</span>'
    return _fmt(value)


def _table(rows: Sequence[tuple[str, str]]) -> str:
    """Render key/value rows; keys are escaped here, values must already be HTML."""
    body = "".join(f'<tr><th>{_esc(k)}</th><td class="num">{v}</td></tr>' for k, v in rows)
    return f"<table>{body}</table>"


def _mapping_table(values: Mapping[str, Any]) -> str:
    if not values:
        return '<p class="na">none recorded</p>'
    return _table([(str(k), _fmt(v)) for k, v in values.items()])


def _image_uri(path: Path) -> str:
    mime = _MIME_BY_SUFFIX.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"image {path} must be one of {sorted(_MIME_BY_SUFFIX)}; plots write PNG")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:{mime};base64,{data}"


def _figure(images: Mapping[str, Path], key: str, caption: str) -> str:
    if key not in images:
        return ""
    return (
        f'<figure><img alt="{_esc(caption)}" src="{_image_uri(Path(images[key]))}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _calibration_bins(metrics: Mapping[str, Any]) -> str:
    bins = metrics.get("calibration_bins")
    if not isinstance(bins, list) or not bins:
        return ""
    head = "<tr><th>bin</th><th>rows</th><th>mean confidence</th><th>observed rate</th><th>gap</th></tr>"
    rows = "".join(
        f"<tr><td>{_fmt(b.get('lower'))} to {_fmt(b.get('upper'))}</td>"
        f'<td class="num">{_fmt(b.get("count"))}</td><td class="num">{_fmt(b.get("mean_confidence"))}</td>'
        f'<td class="num">{_fmt(b.get("observed_rate"))}</td><td class="num">{_fmt(b.get("gap"))}</td></tr>'
        for b in bins
        if isinstance(b, Mapping)
    )
    return f"<details><summary>Per-bin table</summary><table>{head}{rows}</table></details>"


def _risk_rows(metrics: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    rows: list[tuple[str, str]] = []
    flags: list[str] = []
    rho = reported_metric(metrics, "length_rho")
    rows.append(("Spearman rho(score, length)", _metric_cell(metrics, "length_rho")))
    rows.append(("p-value", _metric_cell(metrics, "length_p_value")))
    if rho is not None and rho > _LENGTH_RHO_WARN:
        flags.append(
            f"Longer answers score higher (rho {rho:.3f} > {_LENGTH_RHO_WARN}): length-hacking risk; "
            "check the policy's answer lengths after training."
        )
    rows.append(("Mean score, all answers", _metric_cell(metrics, "mean_score")))
    n_ref = metrics.get("n_refusals")
    rows.append((f"Mean score, refusals (n={n_ref if n_ref is not None else '?'})",
                 _metric_cell(metrics, "mean_score_refusals")))
    mean_all, mean_ref = reported_metric(metrics, "mean_score"), reported_metric(metrics, "mean_score_refusals")
    if mean_all is not None and mean_ref is not None and mean_ref < mean_all:
        flags.append(
            f"Refusals score below average ({mean_ref:.4f} vs {mean_all:.4f}): the reward may push the policy "
            "to answer what it should decline."
        )
    if metrics.get("preference_accuracy") is not None:
        n_pairs = metrics.get("n_pairs")
        rows.append((f"Preference accuracy (pairs={n_pairs if n_pairs is not None else '?'})",
                     _metric_cell(metrics, "preference_accuracy")))
    return rows, flags


def write_model_card(
    path: Path,
    *,
    name: str,
    version: str,
    metrics: Mapping[str, Any],
    config: Mapping[str, Any],
    data: Mapping[str, Any],
    images: Mapping[str, Path],
    notes: Sequence[str],
) -> Path:
    """Write one self-contained HTML model card and return its path.

    Sections: summary, calibration, discrimination, risks, training (loss curve), training
    data lineage, config and notes. Figures under the keys `IMAGE_CALIBRATION`,
    `IMAGE_SCORES` and `IMAGE_LOSS` go to their sections; any other image is shown under
    "Other figures". A metric that is None is shown as "n/a" with its reason from
    ``metrics["skipped"]`` when there is one.

    Args:
        path: Output file; parent folders are created, an existing file is replaced
            atomically.
        name: Model name.
        version: Model version (e.g. registry version or run id).
        metrics: ``EvaluationReport.as_dict()`` or any mapping with the same keys.
        config: Training configuration, shown as-is (nested values as JSON).
        data: Training-data lineage: Delta table version, row counts, base rate, ...
        images: Figure key to PNG/JPEG/GIF file, embedded as data URIs.
        notes: Free-text remarks, one bullet each.

    Returns:
        `path`.

    Raises:
        FileNotFoundError: When an image file does not exist.
        ValueError: When an image is not PNG, JPEG or GIF.
    """
    title = f"Model card: {name} {version}"
    summary = _table(
        [
            ("Model", _esc(name)),
            ("Version", _esc(version)),
            ("Evaluation rows", _metric_cell(metrics, "n")),
            ("Base rate (Loved)", _metric_cell(metrics, "base_rate")),
            ("AUROC", _metric_cell(metrics, "auroc")),
            ("PR-AUC", _metric_cell(metrics, "pr_auc")),
            ("Log loss", _metric_cell(metrics, "log_loss")),
            ("ECE", _metric_cell(metrics, "ece")),
            ("Preference accuracy", _metric_cell(metrics, "preference_accuracy")),
            ("Length correlation (rho)", _metric_cell(metrics, "length_rho")),
        ]
    )
    calibration = _table(
        [
            ("ECE", _metric_cell(metrics, "ece")),
            ("MCE (max bin gap)", _metric_cell(metrics, "mce")),
            ("Binning", _metric_cell(metrics, "calibration_strategy")),
            ("Brier score", _metric_cell(metrics, "brier")),
        ]
    )
    discrimination = _table(
        [
            ("AUROC", _metric_cell(metrics, "auroc")),
            ("PR-AUC (average precision)", _metric_cell(metrics, "pr_auc")),
            ("Log loss (nats)", _metric_cell(metrics, "log_loss")),
        ]
    )
    risk_rows, flags = _risk_rows(metrics)
    flag_html = "".join(f'<p class="warn">{_esc(f)}</p>' for f in flags) or '<p class="ok">No risk flagged.</p>'
    known = {IMAGE_CALIBRATION, IMAGE_SCORES, IMAGE_LOSS}
    others = "".join(_figure(images, key, key) for key in sorted(images) if key not in known)
    notes_html = (
        "<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>" if notes else '<p class="na">none</p>'
    )

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        '<section id="summary"><h2>Summary</h2>', summary, "</section>",
        '<section id="calibration"><h2>Calibration</h2>',
        "<p>Expected calibration error: the weighted mean gap between predicted probability and observed "
        "Love rate. The reward is used as a probability, so it must be calibrated.</p>",
        calibration, _figure(images, IMAGE_CALIBRATION, "Reliability diagram"), _calibration_bins(metrics),
        "</section>",
        '<section id="discrimination"><h2>Discrimination</h2>', discrimination,
        _figure(images, IMAGE_SCORES, "Score distribution by label"), "</section>",
        '<section id="risks"><h2>Risks</h2>', _table(risk_rows), flag_html, "</section>",
    ]
    if IMAGE_LOSS in images:
        parts += ['<section id="training"><h2>Training</h2>', _figure(images, IMAGE_LOSS, "Loss curve"), "</section>"]
    parts += [
        '<section id="data"><h2>Training data lineage</h2>', _mapping_table(data), "</section>",
        '<section id="config"><h2>Config</h2>', _mapping_table(config), "</section>",
    ]
    if others:
        parts += ['<section id="figures"><h2>Other figures</h2>', others, "</section>"]
    parts += ['<section id="notes"><h2>Notes</h2>', notes_html, "</section>", "</body></html>", ""]

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, out)
    logger.info("wrote model card %s", out)
    return out
