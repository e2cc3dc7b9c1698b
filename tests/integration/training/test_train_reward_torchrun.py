"""Two processes on one CPU host (torchrun, gloo), tiny model, through the real entry point."""

from __future__ import annotations

import json
import math

import pytest

from tests.integration.training.conftest import VOCAB, run_module, summary_of
from tests.unit.training.synthetic import make_triples
from training.distributed import free_port
from training.plove_scorer import PLove
from training.reward_model import PLoveModel


@pytest.mark.slow
def test_two_process_torchrun_run_kill_and_resume(tmp_path, shm_comm_op):
    model = PLoveModel.tiny(VOCAB, seed=0)
    model.backbone.save_pretrained(tmp_path / "tiny-backbone")  # any local HF checkpoint is a backbone
    model.tokenizer.save_pretrained(tmp_path / "tiny-backbone")
    make_triples(96, rate=0.08, seed=3).to_parquet(tmp_path / "train.parquet")
    (tmp_path / "train.parquet.meta.json").write_text(json.dumps({"delta_version": 3}))

    def torchrun(*extra: str):
        return run_module([
            "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            "-m", "training.reward_entrypoint", "--train-set", str(tmp_path / "train.parquet"),
            "--out", str(tmp_path / "out"), "--backbone", str(tmp_path / "tiny-backbone"),
            "--max-steps", "4", "--batch-size", "8", "--max-length", "48", "--zero-stage", "1",
            "--save-steps", "2", "--progress-bar", "false", *extra], timeout=120)

    killed, t_killed = torchrun("--stop-after-steps", "2")
    first = summary_of(killed)
    assert first["world_size"] == 2 and first["steps"] == 2 and not first["completed"]
    assert not (tmp_path / "out" / "model").exists()
    shards = sorted(p.name for p in (tmp_path / "out" / "checkpoints" / "global_step2").iterdir())
    assert "zero_pp_rank_0_mp_rank_00_optim_states.pt" in shards
    assert "zero_pp_rank_1_mp_rank_00_optim_states.pt" in shards  # ZeRO-1: one optimizer shard per rank

    resumed, t_resumed = torchrun("--resume")
    done = summary_of(resumed)
    assert done["completed"] and done["steps"] == 4 and done["resumed_from_step"] == 2
    assert max(t_killed, t_resumed) < 60, (t_killed, t_resumed)  # ~13 s each on an idle 2-core machine
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(metrics["train_losses"]) == 4 and all(math.isfinite(x) for x in metrics["train_losses"])
    assert metrics["world_size"] == 2
    plove = PLove.load(tmp_path / "out")
    assert plove.model.extra_config["data"]["delta_version"] == 3
    assert plove.score(["user: what is the capital of france"], ["paris"]).shape == (1,)
