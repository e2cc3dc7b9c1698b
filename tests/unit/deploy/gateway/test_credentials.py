"""Where the gateway's secrets come from, and what it refuses."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from deploy.gateway.credentials import load_credentials
from deploy.gateway.server import build_app, is_loopback
from rluf.errors import ConfigError
from rluf.settings import GatewaySettings, Settings

SIGNING = "z" * 40


def test_keys_come_from_the_environment_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "api_keys"
    keys.write_text("# rotated 2026-11\nfile-key-1\n\nfile-key-2\n")
    signing = tmp_path / "signing"
    signing.write_text("n" * 40 + "\n" + "o" * 40 + "\n")
    monkeypatch.setenv("RLUF_GATEWAY__API_KEYS", "env-key-1, env-key-2")
    monkeypatch.setenv("RLUF_GATEWAY__API_KEYS_FILE", str(keys))
    monkeypatch.setenv("RLUF_GATEWAY__SIGNING_KEY_FILE", str(signing))
    creds = load_credentials(Settings().gateway)
    assert [creds.api_key_ok(k) for k in ("env-key-1", "env-key-2", "file-key-1", "file-key-2")] == [True] * 4
    assert not creds.api_key_ok("env-key-1,env-key-2") and not creds.api_key_ok("# rotated 2026-11")
    assert creds.signing_keys == (b"n" * 40, b"o" * 40)
    assert creds.api_key_digests[0] == hashlib.sha256(b"env-key-1").digest()  # digests, not the keys


def test_secrets_are_masked_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLUF_GATEWAY__API_KEYS", "very-secret-key")
    monkeypatch.setenv("RLUF_GATEWAY__SIGNING_KEY", SIGNING)
    settings = Settings()
    assert "very-secret-key" not in repr(settings) and SIGNING not in repr(settings)
    assert "very-secret-key" not in settings.model_dump_json()


def test_missing_or_weak_secrets_are_refused_outside_dev_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no gateway API key is configured; set RLUF_GATEWAY__API_KEYS"):
        load_credentials(GatewaySettings(signing_key=SIGNING))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no token signing key is configured"):
        load_credentials(GatewaySettings(api_keys="k"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="signing key is 5 bytes long; use at least 32"):
        load_credentials(GatewaySettings(api_keys="k", signing_key="short"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"cannot read gateway\.api_keys_file"):
        load_credentials(GatewaySettings(api_keys_file=tmp_path / "missing", signing_key=SIGNING))  # type: ignore[arg-type]


def test_dev_mode_makes_a_random_signing_key_per_process() -> None:
    a = load_credentials(GatewaySettings(dev_mode=True))
    b = load_credentials(GatewaySettings(dev_mode=True))
    assert a.api_key_digests == () and len(a.signing_key) >= 32 and a.signing_key != b.signing_key


def test_dev_mode_is_refused_on_a_public_interface() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    settings = Settings(gateway=GatewaySettings(dev_mode=True, host="0.0.0.0"))
    with pytest.raises(ConfigError, match=re.escape("0.0.0.0 is not loopback; bind to 127.0.0.1 or drop --dev")):
        build_app(settings)
