"""Benchmark the P[Love] reward model: DeepSpeed training overhead and CPU scoring speed.

Run: ``python -m bench.reward [--zero-stage 1] [--rounds 7] [--steps 1] [--batch-size 16] [--tokens 128]``

1. Training samples/s through a DeepSpeed engine vs a plain PyTorch loop (AdamW, clipping 1.0,
   the same weighted BCE) on the same MiniLM-L6 model and the same batch, interleaved after a
   warm-up so machine drift hits both. Target: DeepSpeed >= 0.8x the plain loop.
2. Scoring responses/s with `PLove` (inference_mode, length-sorted dynamic padding), batch 64,
   inputs filling ``--tokens`` tokens and short chat turns, fp32 and bf16 encoder weights.
   Target: >= 500 responses/s on CPU.

The first line printed is the training ratio with n, rounds and device. Figures only; nothing
is asserted (CI gets no absolute-time thresholds).
"""

from __future__ import annotations

from training.distributed import ensure_process_env, set_runtime_env_defaults

set_runtime_env_defaults()

import argparse  # noqa: E402
import copy  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from training.datasets import encode_inputs, pad_inputs  # noqa: E402
from training.plove_scorer import PLove  # noqa: E402
from training.reward_config import RewardTrainingConfig, load_deepspeed_config  # noqa: E402
from training.reward_model import PLoveModel  # noqa: E402
from training.reward_trainer import weighted_bce  # noqa: E402

WORDS = [
    "the", "answer", "is", "here", "and", "it", "explains", "python", "code", "step", "by", "with", "a", "short",
    "example", "thanks", "for", "question", "about", "weather", "in", "paris", "capital", "of", "france",
]


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def texts(n: int, words: int, seed: int) -> tuple[list[list[dict[str, str]]], list[str]]:
    rng = np.random.default_rng(seed)
    contexts = [[{"role": "user", "content": " ".join(rng.choice(WORDS, words))}] for _ in range(n)]
    responses = [" ".join(rng.choice(WORDS, words)) for _ in range(n)]
    return contexts, responses


def seconds(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def wall_and_cpu(fn: Callable[[], None]) -> tuple[float, float]:
    """Wall seconds and process CPU seconds (all threads) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def bench_training(args: argparse.Namespace) -> None:
    import deepspeed

    ensure_process_env()
    base = PLoveModel.from_backbone(max_length=args.tokens)
    tok = base.tokenizer
    assert tok is not None
    contexts, responses = texts(args.batch_size, args.tokens, seed=0)  # long enough to fill the budget
    batch = pad_inputs(encode_inputs(contexts, responses, tok, max_length=args.tokens), tok.pad_token_id)
    labels = torch.tensor([float(i % 2) for i in range(args.batch_size)])
    weights = torch.ones(args.batch_size)
    plain_model = copy.deepcopy(base).train()
    plain_opt = torch.optim.AdamW(plain_model.parameters(), lr=1e-5)

    def plain_steps() -> None:
        for _ in range(args.steps):
            loss = weighted_bce(plain_model(**batch), labels, weights)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(plain_model.parameters(), 1.0)
            plain_opt.step()
            plain_opt.zero_grad(set_to_none=True)

    ds_model = copy.deepcopy(base).train()
    cfg = RewardTrainingConfig(batch_size=args.batch_size, zero_stage=args.zero_stage)
    engine, _, _, _ = deepspeed.initialize(model=ds_model, optimizer=torch.optim.AdamW(ds_model.parameters(), lr=1e-5),
                                           config=load_deepspeed_config(cfg))

    def ds_steps() -> None:
        for _ in range(args.steps):
            loss = weighted_bce(engine(**batch), labels, weights)
            engine.backward(loss)
            engine.step()

    plain_steps()  # warm-up both
    ds_steps()
    plain_t, ds_t, plain_c, ds_c = [], [], [], []
    for _ in range(args.rounds):
        w, c = wall_and_cpu(plain_steps)
        plain_t.append(w)
        plain_c.append(c)
        w, c = wall_and_cpu(ds_steps)
        ds_t.append(w)
        ds_c.append(c)
    p, d = statistics.median(plain_t), statistics.median(ds_t)
    n = args.steps * args.batch_size
    tokens = batch["input_ids"].shape[1]
    print(f"reward training: DeepSpeed ZeRO-{args.zero_stage} {p / d:.2f}x plain PyTorch samples/s "
          f"(n={n} samples = {args.steps} steps x batch {args.batch_size} x {tokens} tokens per round, "
          f"median of {args.rounds} interleaved rounds after warm-up, {device_name()})")
    print(f"  plain PyTorch: {n / p:7.1f} samples/s   (round times {', '.join(f'{x:.2f}' for x in plain_t)} s)")
    print(f"  DeepSpeed:     {n / d:7.1f} samples/s   (round times {', '.join(f'{x:.2f}' for x in ds_t)} s)")
    print(f"  by CPU seconds (less sensitive to other load on a shared machine): "
          f"{statistics.median(plain_c) / statistics.median(ds_c):.2f}x")
    print("  target: DeepSpeed >= 0.8x plain")


def bench_scoring(args: argparse.Namespace) -> None:
    model = PLoveModel.from_backbone(max_length=args.tokens)
    n = args.score_n
    cases = {
        f"full {args.tokens}-token inputs": texts(n, args.tokens, seed=1),
        "short chat turns (~20-30 tokens)": texts(n, 8, seed=2),
    }
    for label, (contexts, responses) in cases.items():
        lengths = [len(e["input_ids"]) for e in encode_inputs(contexts, responses, model.tokenizer,  # type: ignore[arg-type]
                                                              max_length=args.tokens)]
        for precision in ("fp32", "bf16"):
            fresh = PLoveModel.from_backbone(max_length=args.tokens)  # bf16 casts the encoder in place
            scorer = PLove(fresh, precision=precision)  # type: ignore[arg-type]
            scorer.score(contexts[:64], responses[:64], batch_size=64)  # warm-up
            times = [seconds(lambda s=scorer, c=contexts, r=responses: s.score(c, r, batch_size=64))
                     for _ in range(args.score_rounds)]
            t = statistics.median(times)
            print(f"scoring ({label}, mean {np.mean(lengths):.0f} tokens, {precision}): {n / t:7.1f} responses/s "
                  f"(n={n}, batch 64, median of {args.score_rounds}; target >= 500/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zero-stage", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=1, help="optimizer steps per side per round")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--score-n", type=int, default=512)
    parser.add_argument("--score-rounds", type=int, default=3)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-scoring", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    if os.environ.get("DS_ACCELERATOR") == "cpu":
        torch.set_num_threads(torch.get_num_threads())
    if not args.skip_training:
        bench_training(args)
    if not args.skip_scoring:
        bench_scoring(args)


if __name__ == "__main__":
    main()
