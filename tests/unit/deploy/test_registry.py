from __future__ import annotations

from pathlib import Path

import pytest

from deploy.registry import is_model_ref


@pytest.mark.parametrize("ref", ["production", "latest", "7", 7])
def test_registry_references(ref: str | int) -> None:
    assert is_model_ref(ref)


def test_paths_are_not_registry_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not is_model_ref(str(tmp_path))
    assert not is_model_ref(tmp_path)
    assert not is_model_ref("no/such/dir")  # loaded as a path, which then says there is no model
    monkeypatch.chdir(tmp_path)
    (tmp_path / "production").mkdir()
    assert not is_model_ref("production")  # an existing directory wins over the alias
