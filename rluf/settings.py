"""One settings model for the whole pipeline.

Defaults are the embedded set-up (local broker, Delta and Feast under ``./.rluf``, CPU
training). Every field can be overridden by an ``RLUF_*`` environment variable (nested
fields with ``__``, e.g. ``RLUF_KAFKA__BOOTSTRAP_SERVERS=host1:9092,host2:9092``) or by a
YAML file named by ``--config`` / ``RLUF_CONFIG``. Priority: explicit arguments > env >
YAML > defaults. Only the CLI root builds a ``Settings``; components receive the slice they
need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

__all__ = [
    "Settings",
    "KafkaSettings",
    "BrokerSettings",
    "StreamSettings",
    "FilterSettings",
    "LakeSettings",
    "SimulationSettings",
    "FeatureSettings",
    "ValidationSettings",
    "TrainingSettings",
    "RegistrySettings",
    "RetrainSettings",
    "ArmSettings",
    "RolloutSettings",
    "GatewaySettings",
    "load_settings",
]


class _Slice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Slice):
    """Where the events live. Production: point ``bootstrap_servers`` at the cluster."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="comma-separated host:port list")
    responses_topic: str = "rluf.responses"
    reactions_topic: str = "rluf.reactions"
    quarantine_topic: str = "rluf.quarantine"
    bursts_topic: str | None = Field(
        None, description="one partition: Love facts and shard heartbeats shared by the workers of the "
        "consumer group; default: rluf.bursts.<consumer_group>")
    partitions: int = Field(4, ge=1, description="partitions for every topic rluf creates")
    replication_factor: int = Field(1, ge=1, description="3 on a real cluster")
    consumer_group: str = "rluf-stream"
    local_profile: bool = Field(
        True,
        description="work-arounds for the embedded Tansu broker (short session timeouts, no "
        "idempotent producer, producer batch size 1 for Faust); switch off on real Kafka",
    )
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    @property
    def data_topics(self) -> tuple[str, str]:
        return (self.responses_topic, self.reactions_topic)

    @property
    def bursts_topic_name(self) -> str:
        """The consumer group's own burst exchange (groups must not share one)."""
        return self.bursts_topic or f"rluf.bursts.{self.consumer_group}"


class BrokerSettings(_Slice):
    """The embedded Kafka-protocol broker (Tansu) run by ``rluf broker start``."""

    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    storage_url: str = Field("memory://tansu/", description="memory:// or s3://bucket/ (see docs)")
    start_timeout_s: float = 15.0
    stop_timeout_s: float = 10.0


class StreamSettings(_Slice):
    """Attribution windows, watermarks and the worker loop."""

    driver: Literal["faust", "batch"] = Field(
        "faust",
        description="faust: the faust-streaming app; batch: a plain aiokafka batch consumer "
        "(same core logic and sink, ~10x the throughput; see docs/streams.md)",
    )
    attribution_window_s: float = Field(86_400.0, gt=0, description="event-time window per response")
    allowed_lateness_s: float = Field(60.0, ge=0, description="watermark = max event time - this")
    max_lateness_s: float = Field(
        7 * 86_400.0, ge=0, description="late Loves up to this long after close become corrections"
    )
    max_future_skew_s: float = Field(
        3600.0, ge=0, description="events stamped further ahead of the wall clock are quarantined"
    )
    idle_advance: bool = Field(True, description="advance the watermark by wall-clock time while quiet")
    idle_source_s: float = Field(
        5.0, gt=0, description="a partition silent this long stops holding the watermark back"
    )
    tick_interval_s: float = Field(1.0, gt=0)
    batch_size: int = Field(2000, ge=1, description="events per batch handed to the core")
    land_max_rows: int = Field(10_000, ge=1, description="land (one Delta commit per table) at this many rows")
    land_interval_s: float = Field(0.25, gt=0, description="... or when the oldest pending row is this old")
    batch_timeout_s: float = Field(0.5, gt=0, description="max wait to fill a batch")
    stats_interval_s: float = Field(2.0, gt=0, description="how often the metrics file is rewritten")


class FilterSettings(_Slice):
    """Adversarial-user filtering: each rule can be switched off or tuned."""

    owner_only: bool = True
    rate_enabled: bool = True
    rate_capacity: float = Field(10.0, gt=0, description="token bucket size, reactions")
    rate_per_s: float = Field(0.05, gt=0, description="bucket refill, reactions per second")
    too_fast_enabled: bool = True
    ms_per_char: float = Field(8.0, ge=0, description="minimum reading time per response character")
    min_read_ms: float = Field(300.0, ge=0, description="minimum reading time for any answer")
    daily_cap_enabled: bool = True
    daily_cap: int = Field(100, ge=1, description="reactions per user per UTC day")
    coordination_enabled: bool = True
    burst_users: int = Field(5, ge=2, description="distinct users Loving the same answer ...")
    burst_window_s: float = Field(30.0, gt=0, description="... within this many seconds")
    reputation_enabled: bool = Field(True, description="consult user reputation in the feature store")
    min_reputation: float = Field(
        0.3, ge=0, le=1, description="reactions of users whose reputation is below this are quarantined"
    )
    low_info_enabled: bool = True
    low_info_min_events: int = Field(20, ge=1, description="closed windows before judging a user")
    low_info_love_rate: float = Field(0.8, gt=0, le=1, description="Love rate above which a user is constant")
    low_info_weight: float = Field(0.1, ge=0, le=1, description="weight of a constant user's triples")


class LakeSettings(_Slice):
    """Delta tables. ``root`` may be a local path or an object-store URI (s3://, gs://)."""

    root: str | None = Field(None, description="default: <data_home>/lake")
    storage_options: dict[str, str] = Field(default_factory=dict)
    target_file_rows: int = Field(1_000_000, ge=1)
    commit_attempts: int = Field(
        5, ge=1, description="tries of a Delta commit that another writer beat (a rebalance's last landing)"
    )


class SimulationSettings(_Slice):
    """`rluf simulate`: synthetic traffic with ground truth."""

    users: int = Field(400, ge=1)
    responses: int = Field(20_000, ge=1)
    love_rate: float = Field(0.01, ge=0, le=1)
    other_reaction_rate: float = Field(0.03, ge=0, le=1)
    unreact_rate: float = Field(0.1, ge=0, le=1, description="share of Loves later removed")
    late_love_rate: float = Field(0.02, ge=0, le=1, description="share of Loves arriving after close")
    duplicate_rate: float = Field(0.005, ge=0, le=1)
    malformed_rate: float = Field(0.002, ge=0, le=1)
    bots: int = Field(4, ge=0)
    coordinated_groups: int = Field(2, ge=0)
    group_size: int = Field(8, ge=2)
    trolls: int = Field(4, ge=0, description="users reacting to other users' answers")
    constant_lovers: int = Field(3, ge=0)
    days: float = Field(3.0, gt=0)
    seed: int = 7
    start: str = "2026-11-01T00:00:00+00:00"


class FeatureSettings(_Slice):
    """Feast repository and online store."""

    repo_dir: str | None = Field(None, description="default: <data_home>/feature_repo")
    project: str = "rluf"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    push_enabled: bool = Field(True, description="the stream worker pushes fresh user stats (needs an applied repo)")
    redis_connection_string: str = "127.0.0.1:6379"
    reputation_cache_s: float = Field(60.0, ge=0)


class ValidationSettings(_Slice):
    """Great Expectations gates."""

    reports_dir: str = "reports"
    love_rate_min: float = Field(0.0005, ge=0, le=1)
    love_rate_max: float = Field(0.6, ge=0, le=1)
    max_user_label_share: float = Field(0.2, gt=0, le=1)
    max_quarantine_rate: float = Field(0.2, ge=0, le=1)
    freshness_days: float = Field(36_500.0, gt=0, description="newest window close at most this old")
    love_rate_jump_factor: float = Field(3.0, gt=1, description="newest day's Love rate vs the trailing days")
    love_rate_trailing_days: int = Field(7, ge=1)
    love_rate_jump_min_expected: float = Field(5.0, gt=0, description="judge a day only when it expects >= N Loves")
    user_share_min_labels: int = Field(20, ge=1, description="check per-user label shares from this many Loves")
    response_max_chars: int = Field(20_000, ge=1)
    response_length_mostly: float = Field(0.99, gt=0, le=1)
    response_median_chars_min: float = Field(2.0, ge=0)
    response_median_chars_max: float = Field(8000.0, gt=0)
    raw_events_mostly: float = Field(0.98, gt=0, le=1, description="share of raw events each rule must hold for")


class TrainingSettings(_Slice):
    """P[Love] reward model training."""

    backbone: str | None = Field(None, description="local HF checkpoint; default: the bundled MiniLM-L6")
    max_length: int = Field(128, ge=8)
    batch_size: int = Field(16, ge=1)
    epochs: float = Field(1.0, gt=0)
    lr: float = Field(5e-5, gt=0)
    positive_rate: float = Field(0.10, gt=0, lt=1, description="upsample positives to this rate")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (CPU demo runs)")
    processes: int = Field(1, ge=1, description="training processes on this host (>1: torchrun, gloo on CPU)")
    zero_stage: int = Field(1, ge=0, le=3)
    deepspeed_config: str = "training/deepspeed/zero1.json"
    seed: int = 13


class RegistrySettings(_Slice):
    """MLflow model registry."""

    tracking_uri: str | None = Field(None, description="default: sqlite under <data_home>/mlflow")
    model_name: str = "plove"


class RetrainSettings(_Slice):
    """Periodic retraining thresholds and promotion gates."""

    min_new_triples: int = Field(1000, ge=1)
    max_age_s: float = Field(86_400.0, gt=0)
    promote_margin: float = Field(0.005, ge=0, description="AUROC the new model must gain")
    min_auroc: float = Field(0.55, ge=0, le=1, description="no model below this AUROC is ever served")
    max_ece: float = Field(0.05, gt=0)
    interval_s: float = Field(3600.0, gt=0)


class ArmSettings(_Slice):
    """One arm of a rollout: the share of users it gets and the policy that answers them."""

    weight: float = Field(ge=0, le=1, description="share of users, 0..1; the weights of all arms sum to 1")
    policy: str = Field(
        min_length=1, description='registry reference of the policy model: "production", "latest" or a version number'
    )


class RolloutSettings(_Slice):
    """Which policy answers which user: sticky hash assignment of users to arms (deploy/rollout.py)."""

    experiment: str = Field("rollout-1", min_length=1, description="salt of the user hash; a new name reshuffles")
    model_name: str = Field("policy", min_length=1, description="registered model of the policy in the registry")
    control_arm: str = Field("control", min_length=1, description="the holdout arm, compared against in A/B")
    arms: dict[str, ArmSettings] = Field(
        default_factory=lambda: {"control": ArmSettings(weight=1.0, policy="production")},
        description='e.g. {"control": {"weight": 0.5, "policy": "production"}, '
        '"candidate": {"weight": 0.5, "policy": "7"}}',
    )

    @model_validator(mode="after")
    def _split_is_whole(self) -> RolloutSettings:
        if self.control_arm not in self.arms:
            raise ValueError(f"rollout.control_arm {self.control_arm!r} is not one of the arms {sorted(self.arms)}")
        total = sum(arm.weight for arm in self.arms.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"rollout.arms weights must sum to 1, got {total:g}")
        return self


def _comma_separated(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class GatewaySettings(_Slice):
    """`rluf serve`: the authenticated HTTP gateway in front of the policy and Kafka (docs/gateway.md).

    Secrets (API keys, the token signing key) come from the environment or a file, never from
    a YAML default: ``RLUF_GATEWAY__API_KEYS=key1,key2``, ``RLUF_GATEWAY__SIGNING_KEY=...`` or
    ``..._FILE`` paths (one key per line).
    """

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="application API keys, comma-separated in the environment"
    )
    api_keys_file: Path | None = Field(None, description="file with one API key per line (added to api_keys)")
    signing_key: SecretStr | None = Field(None, description="HMAC key of user tokens, at least 32 characters")
    signing_key_file: Path | None = Field(None, description="file holding the signing key (first line)")
    dev_mode: bool = Field(
        False, description="serve the chat page with a short-lived session token; loopback hosts only"
    )
    token_ttl_s: float = Field(3600.0, gt=0, description="lifetime of a user token")
    session_ttl_s: float = Field(900.0, gt=0, description="lifetime of a dev-mode page session token")
    max_body_bytes: int = Field(65_536, ge=256, description="larger request bodies are refused with 413")
    rate_per_s: float = Field(1.0, gt=0, description="per-user refill of the request bucket, calls per second")
    rate_burst: float = Field(20.0, ge=1, description="per-user bucket size, calls")
    rate_users_max: int = Field(100_000, ge=1, description="users whose buckets are kept (least recent dropped)")
    owners_max: int = Field(200_000, ge=1, description="response/conversation owners remembered per process")
    owners_ttl_s: float = Field(
        8 * 86_400.0, gt=0, description="how long a response accepts reactions (window + lateness)"
    )
    publish_timeout_s: float = Field(5.0, gt=0, description="wait this long for Kafka's ack before answering 503")
    policy_dir: str | None = Field(None, description="serve every arm from this local HF folder (no registry)")
    policy_refresh_s: float = Field(60.0, gt=0, description="re-resolve registry aliases this often")
    max_new_tokens: int = Field(96, ge=1, le=4096)
    max_context_tokens: int = Field(1024, ge=16, description="keep this many newest prompt tokens")
    temperature: float = Field(0.7, ge=0, description="0: greedy decoding")
    top_p: float = Field(0.95, gt=0, le=1)
    generation_workers: int = Field(1, ge=1, description="answers generated at once (CPU-heavy)")
    max_concurrency: int = Field(64, ge=1, description="open requests before uvicorn answers 503")

    _split_keys = field_validator("api_keys", mode="before")(_comma_separated)


class Settings(BaseSettings):
    """Everything rluf can be told. Build once (CLI root) and pass slices down."""

    model_config = SettingsConfigDict(
        env_prefix="RLUF_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    data_home: Path = Field(Path(".rluf"), description="local state: broker, lake, features, models")
    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    stream: StreamSettings = StreamSettings()
    filters: FilterSettings = FilterSettings()
    lake: LakeSettings = LakeSettings()
    simulation: SimulationSettings = SimulationSettings()
    features: FeatureSettings = FeatureSettings()
    validation: ValidationSettings = ValidationSettings()
    training: TrainingSettings = TrainingSettings()
    registry: RegistrySettings = RegistrySettings()
    retrain: RetrainSettings = RetrainSettings()
    rollout: RolloutSettings = RolloutSettings()
    gateway: GatewaySettings = GatewaySettings()

    @model_validator(mode="after")
    def _windows_consistent(self) -> Settings:
        if self.stream.max_lateness_s < self.stream.allowed_lateness_s:
            raise ValueError("stream.max_lateness_s must be >= stream.allowed_lateness_s")
        return self

    @property
    def lake_root(self) -> str:
        return self.lake.root or str(self.data_home / "lake")

    @property
    def feature_repo_dir(self) -> Path:
        return Path(self.features.repo_dir) if self.features.repo_dir else self.data_home / "feature_repo"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_file = settings_cls.model_config.get("yaml_file")
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, an optional YAML file, ``RLUF_*`` env and overrides.

    Raises:
        FileNotFoundError: the YAML file named does not exist.
        pydantic.ValidationError: a setting has a bad value (the CLI prints it on one line).
    """
    if config_file is None:
        return Settings(**overrides)
    if not config_file.is_file():
        raise FileNotFoundError(str(config_file))
    bound = type(
        "Settings",
        (Settings,),
        {"model_config": SettingsConfigDict(**{**Settings.model_config, "yaml_file": config_file})},
    )
    return bound(**overrides)
