"""The model registry: MLflow, with a local SQLite backend by default.

Each registered P[Love] version is one MLflow run (metrics, config, the training set's Delta
version, the git commit, the model files, its model card and plots) plus one model version
of the registered model ``registry.model_name``. "production" is an MLflow alias; the list
of past promotions is kept as a tag on the registered model, so a rollback knows where to go.

Consistency under a kill: a version is created only after its run has every artifact, and
the alias moves in one call, so a retrain killed at any point leaves at worst a finished or
failed run without a version, or a version that is not promoted — never an alias pointing
at a version without files.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rluf.errors import ModelNotFoundError, RlufError
from rluf.settings import RegistrySettings

if TYPE_CHECKING:
    import torch

    from training.plove_scorer import PLove

__all__ = ["LATEST", "PRODUCTION", "ModelRegistry", "ModelVersionInfo", "git_commit", "is_model_ref"]

logger = logging.getLogger(__name__)

PRODUCTION = "production"
LATEST = "latest"
_HISTORY_TAG = "rluf.production_history"


def git_commit(cwd: Path | None = None) -> str:
    """The commit the code runs from, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def is_model_ref(ref: str | int | Path) -> bool:
    """Whether ``ref`` names a registered version (``"production"``, ``"latest"``, a number), not a path.

    A string that is also an existing path is a path: ``rluf score --model DIR`` loads ``DIR``.
    """
    if isinstance(ref, int):
        return True
    return isinstance(ref, str) and not Path(ref).exists() and (ref in (PRODUCTION, LATEST) or ref.isdigit())


@dataclass
class ModelVersionInfo:
    """One registered version, as `rluf models list/show` prints it."""

    version: int
    run_id: str
    created_at: float  # epoch seconds
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)

    @property
    def is_production(self) -> bool:
        return PRODUCTION in self.aliases

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "run_id": self.run_id, "created_at": self.created_at,
                "aliases": self.aliases, "metrics": self.metrics, "params": self.params, "tags": self.tags}


class ModelRegistry:
    """MLflow-backed registry of the versions of one registered model.

    One registry object per model type: P[Love] (``registry.model_name``), the judges and
    the policy each have their own registered model, versions, "production" alias and
    promotion history, in the same tracking store.

    Args:
        registry: Tracking URI (None = SQLite under ``data_home/mlflow``) and model name.
        data_home: Where the local backend, artifacts and the download cache live.
        model_name: The registered model (default: ``registry.model_name``, P[Love]).
    """

    def __init__(self, registry: RegistrySettings, data_home: Path, *, model_name: str | None = None) -> None:
        self._cfg = registry
        self.model_name = model_name or registry.model_name
        root = (data_home / "mlflow").resolve()
        self._artifact_root = root / "artifacts"
        self._cache = (data_home / "models" / self.model_name).resolve()
        self.tracking_uri = registry.tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
        self._local = registry.tracking_uri is None
        if self._local:
            root.mkdir(parents=True, exist_ok=True)
        self._client_obj: Any = None

    # ------------------------------------------------------------------ plumbing

    @property
    def _client(self) -> Any:
        if self._client_obj is None:
            import mlflow
            from mlflow import MlflowClient

            logging.getLogger("mlflow").setLevel(logging.WARNING)
            logging.getLogger("alembic").setLevel(logging.WARNING)
            mlflow.set_tracking_uri(self.tracking_uri)
            self._client_obj = MlflowClient(self.tracking_uri)
        return self._client_obj

    def _experiment_id(self) -> str:
        client = self._client
        exp = client.get_experiment_by_name(self.model_name)
        if exp is not None:
            return str(exp.experiment_id)
        location = self._artifact_root.as_uri() if self._local else None
        return str(client.create_experiment(self.model_name, artifact_location=location))

    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(self.model_name)
        except MlflowException:
            self._client.create_registered_model(self.model_name)

    # ------------------------------------------------------------------ writing

    def register(self, model_dir: Path, *, metrics: Mapping[str, float | None], params: Mapping[str, Any],
                 tags: Mapping[str, str], reports: Sequence[Path] = ()) -> ModelVersionInfo:
        """Log a trained model with everything needed to trust and reproduce it; returns its version."""
        client = self._client
        run = client.create_run(self._experiment_id(), tags={"rluf.git_commit": git_commit(), **tags})
        run_id = run.info.run_id
        try:
            for key, value in metrics.items():
                if value is not None:
                    client.log_metric(run_id, key, float(value))
            for key, value in params.items():
                client.log_param(run_id, key, str(value)[:6000])
            client.log_artifacts(run_id, str(model_dir), artifact_path="model")
            for path in reports:
                client.log_artifact(run_id, str(path), artifact_path="reports")
        except Exception:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED")
        self._ensure_model()
        mv = client.create_model_version(self.model_name, source=f"runs:/{run_id}/model", run_id=run_id,
                                          tags={"rluf.status": "candidate", **tags})
        logger.info("registered %s version %s (run %s)", self.model_name, mv.version, run_id)
        return self.get(int(mv.version))

    def record_decision(self, version: int, *, promote: bool, reasons: Sequence[str]) -> None:
        """Write why a version was (not) promoted onto it."""
        client = self._client
        client.set_model_version_tag(self.model_name, str(version), "rluf.status",
                                     "promoted" if promote else "rejected")
        client.set_model_version_tag(self.model_name, str(version), "rluf.decision",
                                     "; ".join(reasons)[:5000] or "ok")

    def promote(self, version: int, *, reason: str = "manual") -> ModelVersionInfo:
        """Point "production" at ``version`` and remember the previous one for rollback."""
        info = self.get(version)
        current = self.production()
        history = self._history()
        if current is not None and current.version != version:
            history.append(current.version)
        client = self._client
        client.set_registered_model_alias(self.model_name, PRODUCTION, str(version))
        client.set_registered_model_tag(self.model_name, _HISTORY_TAG, json.dumps(history[-50:]))
        client.set_model_version_tag(self.model_name, str(version), "rluf.status", "promoted")
        client.set_model_version_tag(self.model_name, str(version), "rluf.promoted_because", reason[:5000])
        return self.get(info.version)

    def rollback(self) -> ModelVersionInfo:
        """Point "production" back at the version it had before the last promotion."""
        history = self._history()
        current = self.production()
        while history and current is not None and history[-1] == current.version:
            history.pop()
        if not history:
            raise RlufError("no earlier production version to roll back to; see `rluf models list`")
        previous = history.pop()
        client = self._client
        client.set_registered_model_alias(self.model_name, PRODUCTION, str(previous))
        client.set_registered_model_tag(self.model_name, _HISTORY_TAG, json.dumps(history))
        if current is not None:
            client.set_model_version_tag(self.model_name, str(current.version), "rluf.status", "rolled_back")
        return self.get(previous)

    def _history(self) -> list[int]:
        from mlflow.exceptions import MlflowException

        try:
            model = self._client.get_registered_model(self.model_name)
        except MlflowException:
            return []
        raw = model.tags.get(_HISTORY_TAG)
        return [int(v) for v in json.loads(raw)] if raw else []

    # ------------------------------------------------------------------ reading

    def list(self) -> list[ModelVersionInfo]:
        """Every version, newest first."""
        from mlflow.exceptions import MlflowException

        try:
            versions = self._client.search_model_versions(f"name='{self.model_name}'")
        except MlflowException:
            return []
        return sorted((self._info(mv) for mv in versions), key=lambda v: v.version, reverse=True)

    def get(self, version: int) -> ModelVersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self._client.get_model_version(self.model_name, str(version)))
        except MlflowException as exc:
            raise ModelNotFoundError(str(version)) from exc

    def production(self) -> ModelVersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self._client.get_model_version_by_alias(self.model_name, PRODUCTION))
        except MlflowException:
            return None

    def resolve(self, ref: str | int) -> ModelVersionInfo:
        """"production", "latest" or a version number."""
        if ref == PRODUCTION:
            prod = self.production()
            if prod is None:
                raise ModelNotFoundError(PRODUCTION)
            return prod
        if ref == LATEST:
            versions = self.list()
            if not versions:
                raise ModelNotFoundError(LATEST)
            return versions[0]
        try:
            return self.get(int(ref))
        except ValueError as exc:
            raise ModelNotFoundError(str(ref)) from exc

    def model_path(self, ref: str | int) -> Path:
        """A local directory with the model files of ``ref`` (downloaded once, then cached)."""
        info = self.resolve(ref)
        target = self._cache / str(info.version)
        marker = target / ".complete"
        if not marker.exists():
            import mlflow

            staging = self._cache / f".{info.version}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            mlflow.artifacts.download_artifacts(run_id=info.run_id, artifact_path="model", dst_path=str(staging),
                                                tracking_uri=self.tracking_uri)
            shutil.rmtree(target, ignore_errors=True)
            (staging / "model").rename(target)
            shutil.rmtree(staging, ignore_errors=True)
            marker.touch()
        return target

    def load_plove(
        self, ref: str | int, *, device: str | torch.device = "cpu", precision: Literal["fp32", "bf16"] = "fp32"
    ) -> PLove:
        """Load the P[Love] scorer of ``ref`` ("production", "latest" or a version number).

        ``ModelRegistry(s.registry, s.data_home).load_plove("production").score(contexts, responses)``
        serves what was promoted. The files are downloaded once, then cached (``model_path``).

        Raises:
            ModelNotFoundError: the registry has no such version or alias.
        """
        from training.plove_scorer import PLove

        return PLove.load(self.model_path(ref), device=device, precision=precision)

    def _info(self, mv: Any) -> ModelVersionInfo:
        run = self._client.get_run(mv.run_id)
        return ModelVersionInfo(
            version=int(mv.version), run_id=mv.run_id, created_at=mv.creation_timestamp / 1000.0,
            metrics=dict(run.data.metrics), params=dict(run.data.params), tags=dict(mv.tags),
            aliases=list(getattr(mv, "aliases", []) or []),
        )
