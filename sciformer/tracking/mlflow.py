"""MLflow tracking as an engine callback.

A run is named ``<model>-<data>-<horizon>`` (operator runs ``<model>-<data>``) unless the recipe names it. It holds
the resolved recipe, params, per-epoch metrics, test metrics, system info, the run directory's files, the training
data as an MLflow dataset input (name, digest = the data fingerprint, source, schema) and, where the caller passes a
model logger (``sciformer fit`` does), the checkpoint as a pyfunc LoggedModel. mlflow is imported
only when a tracker is created. Every hook may fail (read-only or deleted store, server down): the engine disables
the tracker with one warning line (see :mod:`sciformer.tracking.store`) and the run directory keeps every result.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sciformer.config import TrackingConfig
from sciformer.engine.callbacks import Callback
from sciformer.engine.checkpoint import find_checkpoint, read_run_config, write_json
from sciformer.engine.rundir import RUN_FILE, flatten
from sciformer.errors import CheckpointError, RunInterrupted
from sciformer.registry import get_model
from sciformer.tracking.store import absolute_uri, one_line, open_experiment, quiet_store_logs, reported, tracking_uri

DIGEST_CHARS = 36  # MLflow stores a dataset digest in 36 characters


def default_run_name(recipe: dict[str, Any]) -> str:
    """``itransformer-ett_h1-96`` for a forecaster, ``fno-burgers`` for an operator (data files by their stem)."""
    model, data = recipe["model"]["name"], recipe["data"]["name"]
    data = Path(str(data)).stem
    if get_model(model).task == "operator":
        return f"{model}-{data}"
    return f"{model}-{data}-{recipe['data']['horizon']}"


def interrupted(error: BaseException) -> bool:
    """A run stopped by the user (Ctrl-C, SIGTERM/SIGINT) rather than by a failure: MLflow's KILLED status."""
    return isinstance(error, (KeyboardInterrupt, RunInterrupted))


class MLflowTracker(Callback):
    """Logs a fit into an MLflow run; the run id is kept in ``RUN_DIR/mlflow_run.json``, and a resumed fit
    reopens that run and goes on logging epochs into it.

    ``log_model(checkpoint_dir)``, when given, logs the finished checkpoint as a model of the run (the CLI passes
    :func:`sciformer.api.pyfunc.log_checkpoint`; tracking itself never imports the API).
    """

    def __init__(self, cfg: TrackingConfig, run_name: str | None = None, log_model: Callable[[Path], Any] | None = None) -> None:
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
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per artifact copy, between the epoch lines
        self.run_name = cfg.run_name or run_name
        self.log_model = log_model
        self.uri = absolute_uri(tracking_uri(cfg))
        self.run_id: str | None = None
        self.run_dir: Path | None = None  # the run directory of a `sciformer fit`, from on_fit_start
        self.finished = False  # True once the run holds every result and has ended
        self._caller_uri: str | None = None  # the process's tracking URI while a run of ours has replaced it

    @reported("starting the run")
    def on_fit_start(self, recipe: dict[str, Any], info: dict[str, Any]) -> None:
        mlflow = self.mlflow
        run_dir = self.run_dir = Path(info["run_dir"]) if info.get("run_dir") else None
        previous = _read_run_file(run_dir) if run_dir is not None and info.get("resumed") else None
        self._caller_uri = mlflow.get_tracking_uri()  # given back at the end: a run leaves mlflow's globals as it found them
        if previous and self._reopen(previous, info):
            return
        mlflow.set_tracking_uri(self.uri)
        # by id, not mlflow.set_experiment: that would also make it the process's active experiment, which a later
        # mlflow call in the same process (on another store) would then look for
        experiment_id = open_experiment(self.uri, self.cfg.experiment)
        run = mlflow.start_run(run_name=self.run_name or default_run_name(recipe), experiment_id=experiment_id)
        self.run_id, self.run_name = run.info.run_id, run.info.run_name
        if run_dir is not None:
            write_json(run_dir / RUN_FILE, {"run_id": self.run_id, "tracking_uri": self.uri})
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(recipe).items()})
        mlflow.log_dict(recipe, "recipe.json")
        mlflow.set_tags({f"sys.{k}": str(v) for k, v in info.items() if k != "init"})
        mlflow.set_tags({f"sciformer.init.{k}": str(v) for k, v in info.get("init", {}).items()})  # the pretrained lineage

    def _reopen(self, previous: dict[str, str], info: dict[str, Any]) -> bool:
        """Continue the MLflow run of an interrupted fit; False (with a warning) when it cannot be reopened."""
        mlflow = self.mlflow
        mlflow.set_tracking_uri(previous["tracking_uri"])
        try:
            run = mlflow.start_run(run_id=previous["run_id"])
        except mlflow.exceptions.MlflowException as exc:  # deleted, or another store: log into a new run
            message = f"cannot reopen MLflow run {previous['run_id']} ({one_line(exc)}); logging the resumed run as a new one"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            return False
        self.uri, self.run_id, self.run_name = previous["tracking_uri"], run.info.run_id, run.info.run_name
        resumes = int(run.data.tags.get("sciformer.resumes", "0")) + 1
        mlflow.set_tags({"sciformer.resumes": str(resumes), **{f"sys.resume{resumes}.{k}": str(v) for k, v in info.items()}})
        return True

    @reported("logging epoch metrics")
    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.mlflow.log_metrics(logs, step=epoch)

    @reported("logging the results")
    def on_fit_end(self, metrics: dict[str, Any], run_dir: Path) -> None:
        mlflow = self.mlflow
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        numbers |= {f"{k}.{sub}": v for k, group in metrics.items() if isinstance(group, dict) for sub, v in group.items() if isinstance(v, (int, float))}
        try:
            mlflow.log_metrics({k: float(v) for k, v in numbers.items()})
            if self.run_dir is not None:  # a run directory's results (an API fit has none: nothing else is uploaded)
                self._log_run_dir(self.run_dir)
            mlflow.end_run()
            self.finished = True
        finally:
            self._give_back_uri()

    def _log_run_dir(self, run_dir: Path) -> None:
        """The run directory's files (not its hidden lock), its training data as a dataset input, its model."""
        mlflow = self.mlflow
        for path in sorted(p for p in run_dir.iterdir() if not p.name.startswith(".")):
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=path.name)
            else:
                mlflow.log_artifact(str(path))
        config = _run_config(run_dir)
        if config is not None:
            mlflow.log_input(training_dataset(config), context="training")
            if self.log_model is not None:
                self.log_model(find_checkpoint(run_dir))

    def on_failure(self, error: BaseException) -> None:
        """End the MLflow run as KILLED (interrupted) or FAILED; never raises (the store may be what failed)."""
        mlflow = self.mlflow
        try:
            with quiet_store_logs():
                if mlflow.active_run() is not None and mlflow.active_run().info.run_id == self.run_id:
                    mlflow.end_run(status="KILLED" if interrupted(error) else "FAILED")
        except Exception:  # the run stays as MLflow last saw it; the hook that failed has already warned
            pass
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


def _run_config(run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint config of a finished ``sciformer fit`` run directory (None for other callers' folders)."""
    try:
        return read_run_config(find_checkpoint(run_dir))
    except CheckpointError:
        return None


def training_dataset(config: dict[str, Any]):
    """The run's training data as an MLflow dataset: name, digest (the data fingerprint), source (the file) and
    schema (one double column per series, or the field tensor of an operator's data)."""
    import numpy as np
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, Schema, TensorSpec

    data = config["data"]
    if data.get("kind") == "operator":
        channels = config["model"]["data_sizes"].get("out_channels", -1)
        schema = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, channels, *data.get("grid", [])), "fields")])
    else:
        schema = Schema([ColSpec("double", c) for c in data["columns"]])
    fingerprint = str(data.get("fingerprint") or "")[:DIGEST_CHARS] or None
    return MetaDataset(_data_source(str(data["name"])), name=Path(str(data["name"])).stem, digest=fingerprint, schema=schema)  # type: ignore[abstract]


def _data_source(name: str):
    """Where the data came from: the file of a named dataset (or its download URL), else the path given."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    from sciformer.data import catalog

    manifest = catalog.manifests().get(name)
    where = (catalog.find_file(manifest) or manifest.url) if manifest is not None else Path(name).resolve()
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(str(where))


class RolloutTracker:
    """Logs a rollout's metrics and files to MLflow, in a run named after the run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        import mlflow

        self.mlflow = mlflow
        recipe = read_run_config(find_checkpoint(run_dir))["recipe"]
        self.cfg = TrackingConfig(**recipe.get("tracking", {}))
        self.uri = absolute_uri(tracking_uri(self.cfg))
        self.name = f"{Path(run_dir).name}-rollout"
        self.enabled = self.cfg.enabled

    @reported("logging the rollout")
    def log_rollout(self, out_dir: Path, per_step: dict[str, list[float]]) -> None:
        if not self.enabled:
            return
        mlflow = self.mlflow
        caller = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        try:
            with mlflow.start_run(run_name=self.name, experiment_id=open_experiment(self.uri, self.cfg.experiment)):
                for step, value in enumerate(per_step["nrmse"], start=1):
                    mlflow.log_metric("rollout_nrmse", value, step=step)
                mlflow.log_artifacts(str(out_dir), artifact_path="rollout")
        finally:
            mlflow.set_tracking_uri(caller)
