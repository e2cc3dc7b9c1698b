"""One settings model: defaults, RLUF_* env, YAML file, and their priority."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from rluf.settings import Settings, load_settings


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("RLUF_")]:
        monkeypatch.delenv(key)
    s = load_settings()
    assert s.kafka.servers == ["127.0.0.1:9092"]
    assert s.stream.attribution_window_s == 86_400 and s.stream.driver == "faust"
    assert s.lake_root == str(Path(".rluf") / "lake")


def test_env_overrides_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLUF_KAFKA__BOOTSTRAP_SERVERS", "k1:9092, k2:9093")
    monkeypatch.setenv("RLUF_FILTERS__DAILY_CAP", "7")
    s = load_settings()
    assert s.kafka.servers == ["k1:9092", "k2:9093"] and s.filters.daily_cap == 7


def test_yaml_file_below_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "rluf.yaml"
    cfg.write_text("stream:\n  attribution_window_s: 600\nfilters:\n  daily_cap: 3\n")
    monkeypatch.setenv("RLUF_FILTERS__DAILY_CAP", "9")
    s = load_settings(cfg)
    assert s.stream.attribution_window_s == 600  # from YAML
    assert s.filters.daily_cap == 9               # env wins over YAML


def test_bad_values_and_unknown_fields_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(stream={"attribution_window_s": -1})  # type: ignore[arg-type]
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("strem: {}\n")
    with pytest.raises(ValidationError):
        load_settings(cfg)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.yaml")


def test_max_lateness_must_cover_allowed_lateness() -> None:
    with pytest.raises(ValidationError, match="max_lateness_s"):
        Settings(stream={"allowed_lateness_s": 100, "max_lateness_s": 10})  # type: ignore[arg-type]
