"""The MLflow registry: register, promote, roll back, resolve aliases, download."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.registry import ModelRegistry
from rluf.errors import ModelNotFoundError, RlufError
from rluf.settings import RegistrySettings

pytestmark = pytest.mark.integration


def fake_model(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "weights.bin").write_bytes(name.encode())
    return d


def test_register_promote_rollback(tmp_path: Path) -> None:
    reg = ModelRegistry(RegistrySettings(model_name="plove-test"), tmp_path / "home")
    assert reg.list() == [] and reg.production() is None
    v1 = reg.register(fake_model(tmp_path, "m1"), metrics={"auroc": 0.71, "ece": 0.02},
                      params={"lr": 5e-5}, tags={"rluf.training_set_version": "3"})
    v2 = reg.register(fake_model(tmp_path, "m2"), metrics={"auroc": 0.75, "ece": 0.03, "skipped": None},
                      params={"lr": 1e-4}, tags={"rluf.training_set_version": "5"})
    assert (v1.version, v2.version) == (1, 2)
    assert v2.metrics == {"auroc": 0.75, "ece": 0.03} and v2.params["lr"] == "0.0001"
    assert v2.tags["rluf.training_set_version"] == "5" and v2.tags["rluf.status"] == "candidate"
    with pytest.raises(ModelNotFoundError):
        reg.resolve("production")
    reg.promote(1, reason="first")
    reg.promote(2, reason="auroc +0.04")
    assert reg.resolve("production").version == 2 and reg.resolve("latest").version == 2
    assert (reg.model_path("production") / "weights.bin").read_bytes() == b"m2"
    assert reg.rollback().version == 1
    assert reg.production() is not None and reg.production().version == 1  # type: ignore[union-attr]
    assert (reg.model_path("production") / "weights.bin").read_bytes() == b"m1"
    assert reg.get(2).tags["rluf.status"] == "rolled_back"
    with pytest.raises(RlufError, match="no earlier production version"):
        reg.rollback()
    reg.record_decision(2, promote=False, reasons=["auroc 0.70 does not beat 0.71 by 0.005"])
    assert reg.get(2).tags["rluf.decision"].startswith("auroc 0.70")
    # a second registry object over the same backend sees the same state
    again = ModelRegistry(RegistrySettings(model_name="plove-test"), tmp_path / "home")
    assert [v.version for v in again.list()] == [2, 1] and again.production().version == 1  # type: ignore[union-attr]
    with pytest.raises(ModelNotFoundError):
        again.resolve(99)
