"""MLflow tracking as an engine callback.

Default store: an embedded SQLite file (``sqlite:///mlflow.db`` in the working directory), so a fresh machine
needs no server; ``tracking.uri`` or ``$MLFLOW_TRACKING_URI`` points at a server. mlflow is imported only when
a tracker is created. Every hook may fail (server down, disk full): the engine disables the tracker with a
warning and the run directory keeps every result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sciformer.config import TrackingConfig
from sciformer.engine.callbacks import Callback

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(cfg: TrackingConfig) -> str:
    return cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-4}}`` → ``{"train.lr": 1e-4}`` (MLflow params are flat)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class MLflowTracker(Callback):
    """Logs the resolved recipe, params, per-epoch metrics, test metrics, system info, checkpoint and plots."""

    def __init__(self, cfg: TrackingConfig, run_name: str | None = None) -> None:
        try:
            import mlflow
        except ImportError as exc:  # pragma: no cover - mlflow is a core dependency
            raise ImportError("MLflow tracking needs mlflow: pip install mlflow (or set tracking.enabled: false)") from exc
        self.mlflow = mlflow
        self.cfg = cfg
        self.run_name = cfg.run_name or run_name
        self.run_id: str | None = None

    def on_fit_start(self, recipe: dict[str, Any], info: dict[str, Any]) -> None:
        mlflow = self.mlflow
        mlflow.set_tracking_uri(tracking_uri(self.cfg))
        mlflow.set_experiment(self.cfg.experiment)
        run = mlflow.start_run(run_name=self.run_name)
        self.run_id = run.info.run_id
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(recipe).items()})
        mlflow.log_dict(recipe, "recipe.json")
        mlflow.set_tags({f"sys.{k}": str(v) for k, v in info.items()})

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.mlflow.log_metrics(logs, step=epoch)

    def on_fit_end(self, metrics: dict[str, Any], run_dir: Path) -> None:
        mlflow = self.mlflow
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        for path in sorted(Path(run_dir).iterdir()):
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=path.name)
            else:
                mlflow.log_artifact(str(path))
        mlflow.end_run()

    def on_failure(self, error: BaseException) -> None:
        if self.mlflow.active_run() is not None:
            self.mlflow.end_run(status="FAILED")


class RolloutTracker:
    """Logs a rollout's metrics and files to MLflow, in a run named after the run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        import json

        import mlflow

        from sciformer.engine.checkpoint import read_config

        self.mlflow = mlflow
        ckpt = Path(run_dir) / "checkpoint" if (Path(run_dir) / "checkpoint").is_dir() else Path(run_dir)
        recipe = read_config(ckpt)["recipe"]
        self.cfg = TrackingConfig(**{k: v for k, v in recipe.get("tracking", {}).items()})
        self.name = f"{Path(run_dir).name}-rollout"
        self.enabled = self.cfg.enabled
        self.json = json

    def log_rollout(self, out_dir: Path, per_step: dict[str, list[float]]) -> None:
        if not self.enabled:
            return
        mlflow = self.mlflow
        mlflow.set_tracking_uri(tracking_uri(self.cfg))
        mlflow.set_experiment(self.cfg.experiment)
        with mlflow.start_run(run_name=self.name):
            for step, value in enumerate(per_step["nrmse"], start=1):
                mlflow.log_metric("rollout_nrmse", value, step=step)
            mlflow.log_artifacts(str(out_dir), artifact_path="rollout")
