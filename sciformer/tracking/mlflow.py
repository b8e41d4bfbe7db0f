"""MLflow tracking as an engine callback.

Default store: an embedded SQLite file (``sqlite:///mlflow.db`` in the working directory), so a fresh machine
needs no server; ``tracking.uri`` or ``$MLFLOW_TRACKING_URI`` points at a server. mlflow is imported only when
a tracker is created. Every hook may fail (server down, disk full): the engine disables the tracker with a
warning and the run directory keeps every result.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from sciformer.config import TrackingConfig
from sciformer.engine.callbacks import Callback
from sciformer.engine.checkpoint import write_json
from sciformer.engine.rundir import RUN_FILE, flatten

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(cfg: TrackingConfig) -> str:
    return cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def absolute_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` relative to the working directory → an absolute path, so a resume from
    elsewhere finds the same store."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


class MLflowTracker(Callback):
    """Logs the resolved recipe, params, per-epoch metrics, test metrics, system info, checkpoint and plots.

    The run id is kept in ``RUN_DIR/mlflow_run.json``; a resumed fit reopens that run and goes on logging
    epochs into it.
    """

    def __init__(self, cfg: TrackingConfig, run_name: str | None = None) -> None:
        try:
            import mlflow
        except ImportError as exc:  # pragma: no cover - mlflow is a core dependency
            raise ImportError("MLflow tracking needs mlflow: pip install mlflow (or set tracking.enabled: false)") from exc
        self.mlflow = mlflow
        self.cfg = cfg
        # MLflow retries an unreachable server for minutes by default (7 retries, exponential back-off), which looks
        # like a hung training; a tracker failure only costs a warning here, so fail fast unless the user chose otherwise
        for variable, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")):
            os.environ.setdefault(variable, value)
        self.run_name = cfg.run_name or run_name
        self.run_id: str | None = None
        self._caller_uri: str | None = None  # the process's tracking URI while a run of ours has replaced it

    def on_fit_start(self, recipe: dict[str, Any], info: dict[str, Any]) -> None:
        mlflow = self.mlflow
        run_dir = Path(info["run_dir"]) if info.get("run_dir") else None
        previous = _read_run_file(run_dir) if run_dir is not None and info.get("resumed") else None
        uri = previous["tracking_uri"] if previous else absolute_uri(tracking_uri(self.cfg))
        self._caller_uri = mlflow.get_tracking_uri()  # given back at the end: a run leaves mlflow's globals as it found them
        mlflow.set_tracking_uri(uri)
        if previous:
            try:
                run = mlflow.start_run(run_id=previous["run_id"])
            except mlflow.exceptions.MlflowException as exc:  # deleted, or another store: log into a new run
                warnings.warn(f"cannot reopen MLflow run {previous['run_id']} ({exc}); logging the resumed run as a new one", RuntimeWarning, stacklevel=2)
                mlflow.set_tracking_uri(absolute_uri(tracking_uri(self.cfg)))
                previous = None
        if previous:
            self.run_id = run.info.run_id
            resumes = int(run.data.tags.get("sciformer.resumes", "0")) + 1
            mlflow.set_tags({"sciformer.resumes": str(resumes), **{f"sys.resume{resumes}.{k}": str(v) for k, v in info.items()}})
            return
        # by id, not mlflow.set_experiment: that would also make it the process's active experiment, which a later
        # mlflow call in the same process (on another store) would then look for
        experiment = mlflow.get_experiment_by_name(self.cfg.experiment)
        experiment_id = experiment.experiment_id if experiment is not None else mlflow.create_experiment(self.cfg.experiment)
        run = mlflow.start_run(run_name=self.run_name, experiment_id=experiment_id)
        self.run_id = run.info.run_id
        if run_dir is not None:
            write_json(run_dir / RUN_FILE, {"run_id": self.run_id, "tracking_uri": uri})
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(recipe).items()})
        mlflow.log_dict(recipe, "recipe.json")
        mlflow.set_tags({f"sys.{k}": str(v) for k, v in info.items()})

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.mlflow.log_metrics(logs, step=epoch)

    def on_fit_end(self, metrics: dict[str, Any], run_dir: Path) -> None:
        mlflow = self.mlflow
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        numbers |= {f"{k}.{sub}": v for k, group in metrics.items() if isinstance(group, dict) for sub, v in group.items() if isinstance(v, (int, float))}
        try:
            mlflow.log_metrics({k: float(v) for k, v in numbers.items()})
            for path in sorted(Path(run_dir).iterdir()):
                if path.is_dir():
                    mlflow.log_artifacts(str(path), artifact_path=path.name)
                else:
                    mlflow.log_artifact(str(path))
            mlflow.end_run()
        finally:
            self._give_back_uri()

    def on_failure(self, error: BaseException) -> None:
        try:
            if self.mlflow.active_run() is not None:
                self.mlflow.end_run(status="FAILED")
        finally:
            self._give_back_uri()

    def _give_back_uri(self) -> None:
        if self._caller_uri is not None:
            self.mlflow.set_tracking_uri(self._caller_uri)
            self._caller_uri = None


def _read_run_file(run_dir: Path) -> dict[str, str] | None:
    try:
        previous = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None  # started without tracking (or the file is gone): a new MLflow run
    return previous if isinstance(previous, dict) and {"run_id", "tracking_uri"} <= previous.keys() else None


class RolloutTracker:
    """Logs a rollout's metrics and files to MLflow, in a run named after the run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        import json

        import mlflow

        from sciformer.engine.checkpoint import find_checkpoint, read_run_config

        self.mlflow = mlflow
        recipe = read_run_config(find_checkpoint(run_dir))["recipe"]
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
