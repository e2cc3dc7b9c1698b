"""Entry point: ``python -m training.reward_entrypoint --train-set PATH --out DIR [options]``.

The same module runs as one process or under a launcher, which starts one copy per rank::

    python -m training.reward_entrypoint --train-set build/train.parquet --out build/plove
    torchrun --nproc_per_node 2 -m training.reward_entrypoint --train-set ... --out ...     # CPU: gloo
    deepspeed --num_gpus 8 --module training.reward_entrypoint --train-set ... --out ...    # GPUs: nccl

Every `RewardTrainingConfig` field is a flag (``--zero-stage``, ``--max-steps``, ``--resume``,
...); defaults come from rluf's settings (``RLUF_TRAINING__*`` env, or ``--config`` YAML).
``--local_rank`` (appended by the deepspeed launcher) is accepted and ignored: the rank comes
from the environment. Exit codes: 0 done, 1 for an `RlufError` (message on one line).
"""

from __future__ import annotations

from training.distributed import set_runtime_env_defaults

set_runtime_env_defaults()  # before transformers/deepspeed are imported: both read it at import

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from transformers import HfArgumentParser  # noqa: E402

from rluf.errors import RlufError  # noqa: E402
from rluf.settings import load_settings  # noqa: E402

from .datasets import read_training_set, split_frame  # noqa: E402
from .distributed import ensure_process_env, launch_rank, rank  # noqa: E402
from .pairwise import PairwiseTrainer  # noqa: E402
from .reward_config import RewardTrainingConfig, config_from_settings  # noqa: E402
from .reward_model import PLoveModel  # noqa: E402
from .reward_trainer import RewardTrainer  # noqa: E402

__all__ = ["build_parser", "parse_config", "main"]

logger = logging.getLogger(__name__)


def build_parser() -> HfArgumentParser:
    """Return the CLI parser: the `RewardTrainingConfig` fields plus the data/launcher flags."""
    parser = HfArgumentParser(
        RewardTrainingConfig,  # type: ignore[arg-type]
        description="Train the P[Love] reward model with DeepSpeed.",
    )
    parser.add_argument("--train-set", "--train_set", dest="train_set", required=True,
                        help="Parquet training set from the feature store (split column: train/validation/test); "
                             "with --objective pairwise, a parquet of (pair_id, context, chosen, rejected, split).")
    parser.add_argument("--out", dest="out", default=None, help="Output directory (same as --output-dir).")
    parser.add_argument("--config", dest="settings_file", default=None, type=Path,
                        help="rluf settings YAML whose `training` section gives the defaults.")
    parser.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument("--log-level", dest="log_level", default="INFO", help="Logging level on rank 0.")
    return parser


def parse_config(argv: Sequence[str] | None = None) -> tuple[RewardTrainingConfig, argparse.Namespace]:
    """Parse ``argv`` into a config (defaults from rluf settings) and the extra flags."""
    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    settings = load_settings(pre.settings_file)
    parser.set_defaults(**config_from_settings(settings.training).to_dict())
    config, extra = parser.parse_args_into_dataclasses(args=argv)
    if extra.out:
        config = config.replace(output_dir=extra.out)
    return config, extra


def main(argv: Sequence[str] | None = None) -> int:
    """Run one training job; returns the process exit code."""
    try:
        config, extra = parse_config(argv)
        ensure_process_env()
        level = getattr(logging, str(extra.log_level).upper(), logging.INFO) if launch_rank() == 0 else logging.WARNING
        logging.basicConfig(level=level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        frame, meta = read_training_set(extra.train_set)
        splits = split_frame(frame)
        model = PLoveModel.from_backbone(config.backbone, dropout=config.dropout, max_length=config.max_length,
                                         head_seed=config.seed)
        assert model.tokenizer is not None
        trainer_cls = PairwiseTrainer if config.objective == "pairwise" else RewardTrainer
        trainer = trainer_cls(config, model, model.tokenizer)
        result = trainer.train(splits["train"], splits["validation"], provenance=meta)
    except RlufError as exc:
        print(f"rluf: {exc}", file=sys.stderr)
        return 1
    if rank() == 0:
        print(json.dumps(result.summary(), default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
