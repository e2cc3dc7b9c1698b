"""The gateway's secrets: application API keys and the token signing keys.

They come from the environment (``RLUF_GATEWAY__API_KEYS=k1,k2``, ``RLUF_GATEWAY__SIGNING_KEY``)
or from files (``gateway.api_keys_file``: one key per line; ``gateway.signing_key_file``:
current key on the first line, retired keys still accepted below it), never from a YAML
default. Nothing here logs a key; `Credentials` keeps API keys only as SHA-256 digests.

Dev mode (``rluf serve --dev``) may run without configured secrets: it then makes random
ones for this process (tokens stop working on restart) and says so in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from deploy.gateway.tokens import MIN_KEY_BYTES
from rluf.errors import ConfigError
from rluf.settings import GatewaySettings

__all__ = ["Credentials", "load_credentials"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Accepted API keys (as digests) and signing keys (current first).

    Attributes:
        api_key_digests: SHA-256 of each accepted API key.
        signing_keys: HMAC keys; tokens are signed with the first and accepted under any.
    """

    api_key_digests: tuple[bytes, ...]
    signing_keys: tuple[bytes, ...]

    @property
    def signing_key(self) -> bytes:
        return self.signing_keys[0]

    def api_key_ok(self, presented: str) -> bool:
        """Constant-time check of a presented API key against every accepted key.

        Both sides are hashed first, so the comparison always runs over 32 bytes (no length
        leak), and every key is compared (no early exit that would tell which one matched).
        """
        digest = hashlib.sha256(presented.encode("utf-8", errors="surrogatepass")).digest()
        matched = False
        for accepted in self.api_key_digests:
            matched |= hmac.compare_digest(digest, accepted)
        return matched


def _read_lines(path: Path, setting: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {setting} {path}: {exc.strerror or type(exc).__name__}",
                          f"fix the path or unset RLUF_{setting.upper().replace('.', '__')}") from exc
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def load_credentials(gw: GatewaySettings) -> Credentials:
    """Collect the API keys and signing keys the settings name.

    Raises:
        ConfigError: no API key or signing key outside dev mode, a key file cannot be read, or a
            signing key is shorter than 32 bytes.
    """
    api_keys = [key.get_secret_value() for key in gw.api_keys]
    if gw.api_keys_file is not None:
        api_keys += _read_lines(gw.api_keys_file, "gateway.api_keys_file")
    signing = [gw.signing_key.get_secret_value()] if gw.signing_key is not None else []
    if gw.signing_key_file is not None:
        signing += _read_lines(gw.signing_key_file, "gateway.signing_key_file")
    if not api_keys and not gw.dev_mode:
        raise ConfigError("no gateway API key is configured",
                          "set RLUF_GATEWAY__API_KEYS (comma-separated) or gateway.api_keys_file, "
                          "or run `rluf serve --dev` for a local demo")
    if not signing:
        if not gw.dev_mode:
            raise ConfigError("no token signing key is configured",
                              f"set RLUF_GATEWAY__SIGNING_KEY (>= {MIN_KEY_BYTES} characters) or "
                              "gateway.signing_key_file, or run `rluf serve --dev`")
        logger.warning("dev mode: no signing key configured; using a random one (tokens end with this process)")
        signing = [secrets.token_urlsafe(48)]
    for key in signing:
        if len(key.encode("utf-8")) < MIN_KEY_BYTES:
            raise ConfigError(f"a gateway signing key is {len(key.encode('utf-8'))} bytes long",
                              f"use at least {MIN_KEY_BYTES} random characters, e.g. "
                              "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`")
    return Credentials(
        api_key_digests=tuple(hashlib.sha256(k.encode("utf-8")).digest() for k in dict.fromkeys(api_keys)),
        signing_keys=tuple(k.encode("utf-8") for k in dict.fromkeys(signing)),
    )
