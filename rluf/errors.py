"""One error tree; every message is one line naming the bad value and the next step.

The CLI prints ``rluf: <message>`` and exits 1 for any ``RlufError``, so a user never sees
a traceback for a mistake they can fix. Third-party errors are translated at the adapter
that calls the library (``raise ... from exc``).
"""

from __future__ import annotations

__all__ = [
    "RlufError",
    "BrokerError",
    "BrokerNotRunningError",
    "KafkaUnavailableError",
    "InputFileError",
    "TableMissingError",
    "ConfigError",
    "DataQualityError",
    "LakeError",
    "ModelNotFoundError",
    "GatewayRequestError",
]


class RlufError(Exception):
    """Base of every error rluf reports to a user."""


class ConfigError(RlufError):
    """Raised when a setting or a configuration file is unusable."""

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(f"{what}{'; ' + hint if hint else ''}")


class BrokerError(RlufError):
    """Raised when the embedded broker cannot be started or stopped."""


class BrokerNotRunningError(BrokerError):
    """Raised when a command needs the embedded broker and none runs."""

    def __init__(self, pid_file: str) -> None:
        super().__init__(f"no embedded broker is running (no live pid in {pid_file}); run `rluf broker start`")


class KafkaUnavailableError(RlufError):
    """Raised when no Kafka broker answers at the configured bootstrap servers."""

    def __init__(self, servers: str, reason: str = "") -> None:
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"no Kafka broker answers at {servers}{detail}; run `rluf broker start` or set "
            "RLUF_KAFKA__BOOTSTRAP_SERVERS"
        )


class InputFileError(RlufError):
    """Raised when an input file is missing or has a bad line."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")


class TableMissingError(RlufError):
    """Raised when a Delta table that a command reads does not exist yet."""

    def __init__(self, uri: str, hint: str = "run `rluf stream run` or `rluf backfill` first") -> None:
        super().__init__(f"no Delta table at {uri}; {hint}")


class LakeError(RlufError):
    """Raised when reading or writing a Delta table fails for a reason other than a missing table."""

    def __init__(self, uri: str, action: str, reason: str, hint: str = "check the lake root and retry") -> None:
        super().__init__(f"cannot {action} Delta table {uri}: {reason}; {hint}")


class DataQualityError(RlufError):
    """Raised when a data-quality gate fails and the caller must not go on."""


class ModelNotFoundError(RlufError):
    """Raised when a model version or alias is not in the registry."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"no model {ref!r} in the registry; see `rluf models list`")


class GatewayRequestError(RlufError):
    """Raised when the gateway refuses a request; carries the HTTP status and the field at fault.

    ``rluf serve`` turns it into ``{"detail": <message>, "field": <field>}`` with ``status``
    (401, 403, 404, 413, 422, 429, 503); ``retry_after_s`` becomes a Retry-After header.
    """

    def __init__(self, status: int, detail: str, *, field: str | None = None,
                 retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.retry_after_s = retry_after_s
