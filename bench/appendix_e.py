"""RLUF Appendix E on real paired data: BCE on UNPAIRED labels vs Bradley-Terry on the pairs.

Run: ``python -m bench.appendix_e [--sizes 250,500,1000] [--test-pairs 800] [--epochs 2] [--quick]``

The paper trains P[Love] pointwise (binary cross-entropy on single responses) because Love
reactions rarely come in pairs, and reports in Appendix E that on paired data this loses only
about 3 points of preference accuracy against the usual Bradley-Terry (BT) reward model. This
repeats the comparison on Anthropic hh-rlhf harmless-base (the only split stored offline, 2,312
pairs):

* one seeded split BY PAIR: ``--test-pairs`` held-out test pairs, and a training pool whose
  first n pairs train the size-n models (nested: a larger size sees the smaller one's pairs too);
* BT on n pairs: ``-log sigmoid(r(chosen) - r(rejected))``, batches of ``--batch-pairs`` pairs;
* BCE on the same n pairs UNPAIRED: each pair becomes (context, chosen, 1) and
  (context, rejected, 0), shuffled independently (a pair's two rows rarely share a batch), no
  upsampling (positives are exactly 50 %), no calibration; batches of 2 x ``--batch-pairs`` rows;
* "equal samples" means: the same n pairs = the same 2n distinct responses, the same number of
  forward passes per optimizer step (BT's batch of B pairs is 2B rows), hence the same steps per
  epoch, the same epochs, LR schedule, seed, backbone (bundled MiniLM-L6) and ``--max-length``;
* both are scored on the same test pairs: accuracy = share of pairs with r(chosen) > r(rejected)
  (ties count half). The gap is BT minus BCE in points, with a paired bootstrap interval over
  test pairs (the same pairs score both models, so their errors are correlated).

Progress goes to stderr; stdout starts with the headline. The curve (accuracy vs training pairs,
both methods, plus the training losses at the largest size) and a JSON summary go to
``reports/bench/``. On the 2-core CI-class VM one optimizer step (16 rows x <=128 tokens) takes
~1.1 s when the machine is otherwise idle, so the default (2 epochs of 250/500/1000 pairs = 440
steps per method, 880 in all, plus scoring 6 x 1,600 test rows) took 17 minutes; ``--quick``
(sizes 80/160, 1 epoch, 100 test pairs) ~1.5 minutes. Figures: ``docs/paper-checks.md``.
"""

from __future__ import annotations

from training.distributed import set_runtime_env_defaults

set_runtime_env_defaults()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bench.reward import device_name  # noqa: E402
from streams.sources.importers.hh_rlhf import PreferencePair, load_pairs  # noqa: E402
from training.pairwise import PairwiseTrainer  # noqa: E402
from training.plove_scorer import PLove  # noqa: E402
from training.reward_config import RewardTrainingConfig  # noqa: E402
from training.reward_model import PLoveModel  # noqa: E402
from training.reward_trainer import RewardTrainer  # noqa: E402
from validation.metrics import preference_accuracy  # noqa: E402

DATA = Path("/work/shared/data/hh-rlhf/harmless-base/test.jsonl.gz")
PAPER_GAP_POINTS = 3.0


def progress(message: str) -> None:
    """Progress to stderr, so the first stdout line stays the headline."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- data


def pairs_frame(pairs: list[PreferencePair]) -> pd.DataFrame:
    """Typed pairs as the trainer's paired frame (``context`` as role/content dicts)."""
    return pd.DataFrame({
        "pair_id": [p.pair_id for p in pairs],
        "context": [[{"role": m.role, "content": m.content} for m in p.context] for p in pairs],
        "chosen": [p.chosen for p in pairs],
        "rejected": [p.rejected for p in pairs],
    })


def split_pairs(frame: pd.DataFrame, *, test_pairs: int, pool: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded split by pair: (training pool, test). Both sides of a pair stay on one side.

    Raises:
        SystemExit: the file has fewer than ``test_pairs + pool`` pairs.
    """
    if test_pairs + pool > len(frame):
        raise SystemExit(f"need {test_pairs} test + {pool} training pairs, the file has {len(frame)}")
    order = np.random.default_rng(seed).permutation(len(frame))
    test = frame.iloc[order[:test_pairs]].reset_index(drop=True)
    train = frame.iloc[order[test_pairs:test_pairs + pool]].reset_index(drop=True)
    return train, test


def unpaired(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each pair as two independent labeled rows: (context, chosen, 1) and (context, rejected, 0)."""
    chosen = pd.DataFrame({"context": pairs["context"], "response": pairs["chosen"], "label": 1})
    rejected = pd.DataFrame({"context": pairs["context"], "response": pairs["rejected"], "label": 0})
    rows = pd.concat([chosen, rejected], ignore_index=True)
    rows["weight"] = 1.0
    return rows


# ---------------------------------------------------------------------------- training and scoring


@dataclass
class Run:
    """One trained model's outcome on the test pairs."""

    method: str
    n_pairs: int
    steps: int
    seconds: float
    accuracy: float
    final_loss: float
    losses: list[float]


def config_for(args: argparse.Namespace, objective: str, out: Path) -> RewardTrainingConfig:
    """The shared options; only the objective and the batch unit (pairs vs rows) differ."""
    pairwise = objective == "pairwise"
    return RewardTrainingConfig(
        objective="pairwise" if pairwise else "pointwise",
        calibration="none", positive_rate=None, max_length=args.max_length, dropout=0.1,
        batch_size=args.batch_pairs if pairwise else 2 * args.batch_pairs,
        epochs=args.epochs, lr=args.lr, seed=args.seed, zero_stage=args.zero_stage, output_dir=str(out),
        save_steps=0, keep_checkpoints=1, progress_bar=False, loss_curve=False,
    )


def train_and_score(args: argparse.Namespace, objective: str, train_pairs: pd.DataFrame, test: pd.DataFrame,
                    work: Path) -> tuple[Run, np.ndarray]:
    """Train a fresh MiniLM reward model with one objective, then score the test pairs.

    Returns the run and the per-test-pair wins (1, 0.5 on a tie, 0) for the paired bootstrap.
    The trainer's output (checkpoint with optimizer state, ~0.3 GB) is deleted right after.
    """
    out = work / f"{objective}-{len(train_pairs)}"
    config = config_for(args, objective, out)
    model = PLoveModel.from_backbone(max_length=args.max_length, head_seed=args.seed)
    assert model.tokenizer is not None
    trainer_cls = PairwiseTrainer if objective == "pairwise" else RewardTrainer
    data = train_pairs if objective == "pairwise" else unpaired(train_pairs)
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed prints its op-build notice on stdout
        result = trainer_cls(config, model, model.tokenizer).train(data, None)
    shutil.rmtree(out, ignore_errors=True)
    scorer = PLove(model)
    contexts = list(test["context"])
    chosen = scorer.logits(contexts, list(test["chosen"]))
    rejected = scorer.logits(contexts, list(test["rejected"]))
    accuracy = preference_accuracy(chosen, rejected)
    assert accuracy is not None
    wins = np.where(chosen > rejected, 1.0, np.where(chosen == rejected, 0.5, 0.0))
    method = "Bradley-Terry" if objective == "pairwise" else "BCE-unpaired"
    run = Run(method, len(train_pairs), result.steps, result.seconds, accuracy,
              result.train_losses[-1], list(result.train_losses))
    return run, wins


def paired_bootstrap(bt_wins: np.ndarray, bce_wins: np.ndarray, *, rounds: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """95 % interval of the gap (BT - BCE, points), resampling test pairs for both models at once."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(bt_wins), size=(rounds, len(bt_wins)))
    gaps = 100.0 * (bt_wins[idx].mean(axis=1) - bce_wins[idx].mean(axis=1))
    lo, hi = np.percentile(gaps, [2.5, 97.5])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------- output


@dataclass
class SizeResult:
    """Both methods at one training size."""

    n_pairs: int
    bt: Run
    bce: Run
    gap_points: float
    gap_ci: tuple[float, float]


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy measured on n test pairs."""
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def plot_curve(results: list[SizeResult], n_test: int, path: Path) -> Path:
    """Accuracy vs training pairs (both methods, +-1.96 SE bars) and the losses at the largest size.

    The two methods' points are nudged apart on the x axis so their error bars do not overlap.
    """
    fig = Figure(figsize=(11.0, 4.2))
    ax, ax_loss = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sizes = [r.n_pairs for r in results]
    for attr, color, label, nudge in (("bt", "#4c72b0", "Bradley-Terry on pairs", 0.98),
                                      ("bce", "#c44e52", "BCE on unpaired labels", 1.02)):
        acc = [getattr(r, attr).accuracy for r in results]
        err = [1.96 * binomial_se(a, n_test) for a in acc]
        ax.errorbar([s * nudge for s in sizes], acc, yerr=err, marker="o", capsize=3, color=color, label=label)
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1.0, label="chance")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.set_xlabel("training pairs (BCE: 2 x as many unpaired rows)")
    ax.set_ylabel(f"preference accuracy on {n_test} test pairs")
    ax.set_title("hh-rlhf harmless-base, MiniLM-L6 (Appendix E)")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(True, alpha=0.3)
    last = results[-1]
    for run, color in ((last.bt, "#4c72b0"), (last.bce, "#c44e52")):
        losses = np.asarray(run.losses)
        window = max(1, len(losses) // 20)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax_loss.plot(np.arange(window, len(losses) + 1), smooth, color=color, label=f"{run.method} (moving mean)")
    ax_loss.axhline(math.log(2), color="black", linestyle="--", linewidth=1.0, label="ln 2 (chance)")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title(f"training loss at n={last.n_pairs} pairs")
    ax_loss.legend(loc="upper right", fontsize="small")
    ax_loss.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    return path


def print_report(args: argparse.Namespace, results: list[SizeResult], n_test: int, total_s: float) -> None:
    """The headline first, then one line per size."""
    last = results[-1]
    print(f"appendix E: BCE-unpaired vs Bradley-Terry preference accuracy gap {last.gap_points:+.1f} points at "
          f"n={last.n_pairs} pairs (BT {last.bt.accuracy:.3f} vs BCE {last.bce.accuracy:.3f} on {n_test} held-out "
          f"hh-rlhf harmless-base test pairs, gap = BT - BCE, 95% paired-bootstrap interval "
          f"[{last.gap_ci[0]:+.1f}, {last.gap_ci[1]:+.1f}]; equal samples: n pairs vs 2n unpaired rows, "
          f"{last.bt.steps} optimizer steps each ({args.epochs:g} epochs, {args.batch_pairs} pairs = "
          f"{2 * args.batch_pairs} rows per step), MiniLM-L6, max_length {args.max_length}, seed {args.seed}, "
          f"{device_name()}; paper: about {PAPER_GAP_POINTS:.0f} points)")
    for r in results:
        se = 1.96 * binomial_se(r.bt.accuracy, n_test) * 100
        print(f"  n={r.n_pairs:>5} pairs: BT {r.bt.accuracy:.3f}  BCE {r.bce.accuracy:.3f}  gap {r.gap_points:+5.1f} "
              f"points [{r.gap_ci[0]:+.1f}, {r.gap_ci[1]:+.1f}]  (each accuracy +-{se:.1f} points at 95%; "
              f"{r.bt.steps} steps; final train loss BT {r.bt.final_loss:.3f}, BCE {r.bce.final_loss:.3f}; "
              f"train {r.bt.seconds:.0f} s / {r.bce.seconds:.0f} s)")
    print(f"  whole run {total_s / 60:.1f} min")


def write_json(path: Path, args: argparse.Namespace, results: list[SizeResult], n_test: int, total_s: float) -> Path:
    """The figures behind the printout (per-step losses included), for docs and later comparison."""
    summary: dict[str, Any] = {
        "date": date.today().isoformat(),
        "device": device_name(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "test_pairs": n_test,
        "total_s": total_s,
        "sizes": [{"n_pairs": r.n_pairs, "gap_points": r.gap_points, "gap_ci": r.gap_ci,
                   "bt": asdict(r.bt), "bce": asdict(r.bce)} for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="hh-rlhf JSONL(.gz) of chosen/rejected dialogues")
    parser.add_argument("--sizes", default="250,500,1000", help="training pairs per run, comma-separated")
    parser.add_argument("--test-pairs", type=int, default=800, help="held-out pairs (+-3.4 points at 95%% per "
                                                                   "accuracy; 400 would give +-4.8)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-pairs", type=int, default=8, help="BT pairs per step; BCE gets 2x as many rows")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--zero-stage", type=int, default=0, choices=(0, 1, 2, 3),
                        help="0 is fastest in one CPU process (docs/training.md)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out-dir", type=Path, default=Path("reports/bench"))
    parser.add_argument("--quick", action="store_true", help="smoke run: sizes 80,160, 1 epoch, 100 test pairs")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.epochs, args.test_pairs = "80,160", 1.0, 100
    args.size_list = sorted({int(s) for s in str(args.sizes).split(",") if s.strip()})
    if not args.size_list or min(args.size_list) < args.batch_pairs:
        parser.error(f"--sizes must be at least --batch-pairs ({args.batch_pairs})")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    frame = pairs_frame(load_pairs(args.data))
    pool, test = split_pairs(frame, test_pairs=args.test_pairs, pool=max(args.size_list), seed=args.seed)
    progress(f"{len(frame)} pairs: {len(test)} test, training pool {len(pool)}; sizes {args.size_list}, "
             f"{args.epochs:g} epochs, {args.batch_pairs} pairs (BT) / {2 * args.batch_pairs} rows (BCE) per step")
    total_steps = sum(math.ceil(args.epochs * math.ceil(n / args.batch_pairs)) for n in args.size_list)
    results: list[SizeResult] = []
    done_steps = 0
    work = Path(tempfile.mkdtemp(prefix="rluf-bench-appendix-e-"))
    try:
        for n in args.size_list:
            train_pairs = pool.iloc[:n].reset_index(drop=True)
            bt, bt_wins = train_and_score(args, "pairwise", train_pairs, test, work)
            bce, bce_wins = train_and_score(args, "pointwise", train_pairs, test, work)
            if bt.steps != bce.steps:
                raise SystemExit(f"unequal steps at n={n}: BT {bt.steps}, BCE {bce.steps} (a bug in this bench)")
            gap = 100.0 * (bt.accuracy - bce.accuracy)
            results.append(SizeResult(n, bt, bce, gap, paired_bootstrap(bt_wins, bce_wins, seed=args.seed)))
            done_steps += bt.steps
            elapsed = time.perf_counter() - started
            eta = elapsed / done_steps * (total_steps - done_steps)
            progress(f"n={n}: BT {bt.accuracy:.3f}, BCE {bce.accuracy:.3f}, gap {gap:+.1f} points "
                     f"({bt.steps} steps each, {bt.seconds:.0f} s + {bce.seconds:.0f} s); "
                     f"elapsed {elapsed / 60:.1f} min, about {eta / 60:.1f} min to go")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total_s = time.perf_counter() - started
    print_report(args, results, len(test), total_s)
    tag = "appendix_e_quick" if args.quick else "appendix_e"
    png = plot_curve(results, len(test), args.out_dir / f"{tag}.png")
    js = write_json(args.out_dir / f"{tag}.json", args, results, len(test), total_s)
    print(f"  wrote {png}, {js}")


if __name__ == "__main__":
    main()
