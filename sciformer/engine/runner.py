"""A run, start to finish: recipe → data → model → train → test → run directory.

``fit_recipe`` is what ``sciformer fit`` executes (also under torchrun, and resuming an interrupted run);
``evaluate_run`` re-tests a run directory's checkpoint. Trackers plug in as callbacks (see
:mod:`sciformer.engine.callbacks`); the engine never imports them. docs/training.md describes DDP and resuming.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sciformer import __version__
from sciformer.config import Recipe, recipe_from_dict
from sciformer.data.operator import OperatorData, is_operator_dataset, load_operator_data
from sciformer.data.timeseries import TimeSeriesData
from sciformer.engine import distributed, plots
from sciformer.engine.callbacks import Callback, CallbackList
from sciformer.engine.checkpoint import find_checkpoint, load_model, read_run_config, save_checkpoint, write_json
from sciformer.engine.conformal import calibration_scores
from sciformer.engine.distributed import Distributed
from sciformer.engine.metrics import PDEMetrics
from sciformer.engine.plots import field_figure, forecast_figure, save_figure
from sciformer.engine.rollout import rollout, rollout_metrics
from sciformer.engine.trainer import FitResult, Trainer, operator_step, pick_device, seed_everything
from sciformer.errors import ConfigError, DataError, SciformerError
from sciformer.registry import RESIDUAL, build_model, get_model
from sciformer.tracking.mlflow import RUN_FILE, flatten

CHECKPOINT_DIR = "checkpoint"
RESUME_DIR = "resume"  # the resumable training state (removed when the run finishes)
RECIPE_FILE = "recipe.json"  # the resolved recipe, to check that a resume uses the same one
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"
PLOT_FILE = "forecast.png"
FIELDS_PLOT = "fields.png"


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    rank: int = 0  # under torchrun: this process's rank (rank 0 wrote the run directory)


def default_run_dir(recipe: Recipe, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{recipe.name or 'run'}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def load_data(recipe: Recipe, scaler: tuple[np.ndarray, np.ndarray] | None = None) -> TimeSeriesData | OperatorData:
    """The recipe's data: a time series for forecasting models, PDE fields for operator models."""
    task = get_model(recipe.model.name).task
    operator = is_operator_dataset(recipe.data.name)
    if operator != (task == "operator"):
        kind = "PDE (operator) data" if operator else "a time series"
        raise ConfigError(f"model '{recipe.model.name}' is a {task} model, but data '{recipe.data.name}' is {kind}")
    if operator:
        return load_operator_data(recipe.data, recipe.train)
    if recipe.train.augment != "none":
        raise ConfigError(f"train.augment={recipe.train.augment} rotates PDE fields; data '{recipe.data.name}' is a time series")
    return TimeSeriesData.from_config(recipe.data, scaler=scaler)


def check_residual(model_args: dict[str, Any], data: TimeSeriesData | OperatorData, data_name: str) -> None:
    """``model.residual`` adds the latest input frame to the prediction: steady data (coefficient → solution) has none."""
    if model_args.get(RESIDUAL) and isinstance(data, OperatorData) and data.steady:
        raise ConfigError(
            f"model.residual adds the input frame to the prediction; data '{data_name}' is a steady problem "
            "(coefficient → solution) with no frames"
        )


def data_sizes(data: TimeSeriesData | OperatorData, recipe: Recipe) -> dict[str, int]:
    """Constructor sizes that come from the data, never from YAML."""
    if isinstance(data, OperatorData):
        return data.sizes()
    return {
        "n_vars": data.n_vars,
        "n_marks": data.n_marks,
        "lookback": recipe.data.lookback,
        "horizon": recipe.data.horizon,
        "label_len": recipe.data.label_len,
    }


def system_info(device: torch.device) -> dict[str, Any]:
    info = {
        "sciformer": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA allocations on a GPU, resident set size on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Phases:
    """Wall seconds per phase of a run (data, train, test, save, plot), reported in ``metrics.json``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def train(
    recipe: Recipe,
    data: TimeSeriesData | OperatorData,
    device: torch.device,
    hooks: CallbackList,
    dist: Distributed | None = None,
    state_dir: Path | None = None,
    resume: bool = False,
    on_best: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> tuple[torch.nn.Module, Trainer, FitResult]:
    """Build the recipe's model for ``data`` and fit it (best validation weights restored)."""
    dist = dist or Distributed(device=device)
    check_residual(recipe.model.args, data, recipe.data.name)
    model = build_model(recipe.model.name, recipe.model.args, **data_sizes(data, recipe))  # identical on every rank
    if dist.rank > 0:
        torch.manual_seed(recipe.seed + dist.rank)  # ranks draw different dropout masks; rank 0 keeps the 1-process stream
    trainer = Trainer(model, recipe.train, device, seed=recipe.seed, callbacks=hooks, dist=dist, state_dir=state_dir, on_best=on_best)
    return model, trainer, trainer.fit(data, resume=resume)


def fit_recipe(
    recipe: Recipe,
    run_dir: str | Path | None = None,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
    resume: bool = False,
) -> RunResult:
    """Train, validate and test ``recipe``; write checkpoint, metrics and plot into ``run_dir``.

    While training, ``run_dir/resume/`` holds the latest resumable state (every epoch, and every
    ``train.checkpoint_every`` steps) and ``run_dir/checkpoint/`` the best model so far, so an interrupted run
    stays loadable; ``resume=True`` continues such a run from its state (same recipe, same MLflow run).
    Under torchrun this runs on every rank (DDP); rank 0 alone writes files and calls ``callbacks``.
    """
    with distributed.setup(recipe.train.device) as dist:
        return _fit(recipe, run_dir, callbacks, resume, dist)


def _fit(recipe: Recipe, run_dir: str | Path | None, callbacks: list[Callback] | tuple[Callback, ...], resume: bool, dist: Distributed) -> RunResult:
    phases = Phases()
    seed_everything(recipe.seed)
    device = dist.device
    run_dir = _prepare_run_dir(recipe, run_dir, resume, dist)
    with phases("data"), dist.rank_zero_first():  # rank 0 downloads or generates missing files, the others then read them
        data = load_data(recipe).to(device)
    hooks = CallbackList(callbacks if dist.is_main else [])
    info = {
        **system_info(device),
        "run_dir": str(run_dir),
        "resumed": resume,
        "world_size": dist.world_size,
        "batches": {split: data.n_batches(split, recipe.train.batch_size) for split in data.splits},
    }
    hooks.on_fit_start(recipe.to_dict(), info)
    metrics: dict[str, Any] = {}
    try:
        config = checkpoint_config(recipe, data)
        extras = None if isinstance(data, OperatorData) else history_tensors(data.tail, data.timestamps[-data.lookback :])

        def save_best(weights: dict[str, torch.Tensor]) -> None:  # an interrupted run keeps a loadable model
            save_checkpoint(run_dir / CHECKPOINT_DIR, weights, config, extras)

        if dist.is_main:
            plots.preload()  # the figures at the end then cost only their drawing
        with phases("train"):
            model, trainer, fit = train(recipe, data, device, hooks, dist, run_dir / RESUME_DIR, resume, save_best)
        with phases("test"):
            test = trainer.evaluate(data, "test")
            val = trainer.evaluate(data, "val")
        metrics = {f"test_{k}": v for k, v in test.items()} | {f"val_{k}": v for k, v in val.items()}
        metrics |= {
            "best_epoch": fit.best_epoch,
            "epochs": fit.epochs,
            "train_seconds": fit.train_seconds,
            "seconds_per_epoch": fit.seconds_per_epoch,
            "parameters": sum(p.numel() for p in model.parameters()),
            "peak_memory_mb": peak_memory_mb(device),
            "device": str(device),
            "world_size": dist.world_size,
        }
        if dist.is_main:
            batch_size = recipe.train.eval_rows
            if isinstance(data, OperatorData):
                with phases("test"):
                    metrics |= operator_test_metrics(model, data, recipe, batch_size)
                with phases("save"):
                    save_checkpoint(run_dir / CHECKPOINT_DIR, model, config)
                with phases("plot"):
                    plot_fields(model, data, run_dir / FIELDS_PLOT)
            else:
                with phases("save"):
                    save_checkpoint(run_dir / CHECKPOINT_DIR, model, config, checkpoint_extras(model, data, batch_size))
                with phases("plot"):
                    plot_forecasts(model, data, run_dir / PLOT_FILE, title=f"{recipe.model.name} on {recipe.data.name}")
            metrics["phase_seconds"] = {k: round(v, 3) for k, v in phases.seconds.items()}
            write_json(run_dir / HISTORY_FILE, fit.history, indent=2)
            write_json(run_dir / METRICS_FILE, metrics, indent=2)  # last: its presence marks a finished run
            shutil.rmtree(run_dir / RESUME_DIR, ignore_errors=True)
        dist.barrier()
    except BaseException as exc:
        hooks.on_failure(exc)
        raise
    hooks.on_fit_end(metrics, run_dir)
    return RunResult(run_dir, metrics, dist.rank)


# Recipe keys that change how a run executes, not what it computes: they may differ when it is resumed.
RESUMABLE_CHANGES = ("name", "tracking.", "train.progress", "train.device", "train.checkpoint_every", "train.fused_optimizer",
                     "train.cuda_graphs", "train.compile", "train.eval_batch_size")


def _prepare_run_dir(recipe: Recipe, run_dir: str | Path | None, resume: bool, dist: Distributed) -> Path:
    """Rank 0 picks (or checks, for a resume) the run directory; every rank gets it, or the same error."""
    outcome: Path | SciformerError
    if dist.is_main:
        try:
            outcome = _check_resumable(recipe, run_dir) if resume else _new_run_dir(recipe, run_dir)
        except SciformerError as exc:
            outcome = exc
    outcome = dist.broadcast(outcome if dist.is_main else None)
    if isinstance(outcome, SciformerError):
        raise outcome
    return outcome


def _new_run_dir(recipe: Recipe, run_dir: str | Path | None) -> Path:
    path = Path(run_dir) if run_dir is not None else default_run_dir(recipe)
    path.mkdir(parents=True, exist_ok=True)
    # a fresh run in a used directory never continues an older state, counts as finished because an older run did,
    # or leaves an older model for `sciformer evaluate` (or an older MLflow run for --resume) if it fails early
    for old in (RESUME_DIR, CHECKPOINT_DIR):
        shutil.rmtree(path / old, ignore_errors=True)
    for old in (METRICS_FILE, HISTORY_FILE, RUN_FILE, PLOT_FILE, FIELDS_PLOT):
        (path / old).unlink(missing_ok=True)
    write_json(path / RECIPE_FILE, recipe.to_dict(), indent=2, default=str)
    return path


def _check_resumable(recipe: Recipe, run_dir: str | Path | None) -> Path:
    if run_dir is None:
        raise ConfigError("resuming needs the run directory: sciformer fit RECIPE --resume RUN_DIR")
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"cannot resume: run directory '{path}' does not exist")
    if (path / METRICS_FILE).is_file():
        raise ConfigError(f"run '{path}' has finished (it has {METRICS_FILE}); there is nothing to resume")
    stored = path / RECIPE_FILE
    if stored.is_file():
        before = flatten(json.loads(stored.read_text()))
        now = flatten(json.loads(json.dumps(recipe.to_dict(), default=str)))
        # a key a newer sciformer added (absent from the stored recipe) counts as unchanged at its default value
        before |= {k: v for k, v in flatten(json.loads(json.dumps(Recipe().to_dict(), default=str))).items() if k not in before}
        changed = [k for k in sorted(before.keys() | now.keys()) if before.get(k) != now.get(k) and not k.startswith(RESUMABLE_CHANGES)]
        if changed:
            detail = ", ".join(f"{k} ({before.get(k)!r} -> {now.get(k)!r})" for k in changed[:5])
            raise ConfigError(f"cannot resume '{path}': the recipe differs from the one it was started with: {detail}; resume with the same recipe and overrides")
    return path


def checkpoint_config(recipe: Recipe, data: TimeSeriesData | OperatorData) -> dict[str, Any]:
    if isinstance(data, OperatorData):
        return {
            "model": {"name": recipe.model.name, "args": recipe.model.args, "data_sizes": data.sizes()},
            "recipe": recipe.to_dict(),
            "data": {"name": recipe.data.name, "kind": "operator", "mode": data.mode, "initial_step": data.initial_step, "grid": list(data.grid_shape)},
        }
    return {
        "model": {"name": recipe.model.name, "args": recipe.model.args, "data_sizes": data_sizes(data, recipe)},
        "recipe": recipe.to_dict(),
        "data": {
            "name": recipe.data.name,
            "columns": data.columns,
            "scaler": data.scaler_state(),
            "fingerprint": data.fingerprint,
            "freq": data.freq,
            "time_features": data.time_features_freq,
            "last_timestamp": str(data.timestamps[-1]),
        },
    }


def checkpoint_extras(model: torch.nn.Module, data: TimeSeriesData, batch_size: int) -> dict[str, torch.Tensor]:
    """Conformal scores of the validation windows and the newest lookback rows (with their timestamps), so a
    checkpoint alone can forecast the real future with intervals."""
    return {
        "calibration_scores": calibration_scores(model, data.batches("val", batch_size)),
        **history_tensors(data.tail, data.timestamps[-data.lookback :]),
    }


def history_tensors(values: np.ndarray, index: pd.DatetimeIndex) -> dict[str, torch.Tensor]:
    """History rows (original units, float64) and their timestamps (int64 nanoseconds) for a checkpoint."""
    return {
        "history": torch.tensor(values, dtype=torch.float64),
        "history_time_ns": torch.from_numpy(index.as_unit("ns").asi8.copy()),
    }


def history_frame(extras: dict[str, torch.Tensor], columns: list[str]) -> pd.DataFrame | None:
    """The history saved by :func:`history_tensors`, as a frame indexed by its timestamps."""
    if "history" not in extras:
        return None
    index = pd.DatetimeIndex(extras["history_time_ns"].numpy().astype("datetime64[ns]"))
    return pd.DataFrame(extras["history"].numpy(), index=index, columns=columns)


ROLLOUT_STEPS = (10, 50)


def operator_test_metrics(model: torch.nn.Module, data: OperatorData, recipe: Recipe, batch_size: int) -> dict[str, float]:
    """PDEBench metrics of one-step test predictions, and rollout nRMSE at 10 and 50 steps where the test
    trajectories are long enough."""
    metrics = PDEMetrics()
    with torch.no_grad():
        for batch in data.batches("test", batch_size):
            pred = operator_step(model.eval(), batch)[0].float()
            metrics.update(pred.unsqueeze(1), batch.y.unsqueeze(1))
    out = {f"test_{k}": float(v) for k, v in metrics.compute().items()}
    if not data.steady:
        traj = data.test_trajectories()
        steps = traj.shape[1] - data.initial_step
        pred = rollout(model, traj, data.initial_step, steps, time_conditioned=data.mode == "all_to_all", batch_size=batch_size)
        per_step = rollout_metrics(pred, traj[:, data.initial_step :])["nrmse"]
        for k in ROLLOUT_STEPS:
            if k <= steps:
                out[f"rollout_nrmse_step{k}"] = per_step[k - 1]
        out["rollout_steps"] = steps
    return out


@torch.no_grad()
def plot_fields(model: torch.nn.Module, data: OperatorData, path: Path) -> Path:
    """Truth, prediction and error of the first test sample (one-step)."""
    batch = next(data.batches("test", 1))
    pred = operator_step(model.eval(), batch)[0].float()
    return save_figure(field_figure(batch.y[0].cpu(), pred[0].cpu()), path)


@torch.no_grad()
def plot_forecasts(model: torch.nn.Module, data: TimeSeriesData, path: Path, n_windows: int = 3, max_vars: int = 3, title: str = "") -> Path:
    """History, truth and forecast for a few evenly spaced test windows and the last ``max_vars`` variables."""
    model.eval()
    r = data.splits["test"]
    picks = torch.linspace(0, r.n_windows - 1, n_windows).long() + r.start
    batch = data.gather(picks.to(data.values.device))
    pred = model(batch.x, batch.x_mark, batch.y_mark).float()
    cols = list(range(max(0, data.n_vars - max_vars), data.n_vars))
    as_np = lambda t: t[..., cols].cpu().numpy()  # noqa: E731
    fig = forecast_figure(as_np(batch.x), as_np(batch.y), as_np(pred), [data.columns[c] for c in cols], title)
    return save_figure(fig, path)


def evaluate_run(run_dir: str | Path, device: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Rebuild data and model from a run's checkpoint and re-run the test split.

    ``overrides`` change the stored recipe's data section, e.g. ``data.test_resolution=32`` to test an operator
    at an unseen resolution; the model's own arguments cannot be changed.
    """
    run_dir = Path(run_dir)
    ckpt = find_checkpoint(run_dir, CHECKPOINT_DIR)
    config = read_run_config(ckpt)
    for text in overrides or []:
        if not text.startswith("data."):
            raise ConfigError(f"evaluate override {text!r}: only data.* keys can be changed when re-testing a checkpoint")
    recipe = recipe_from_dict(config["recipe"], overrides, check_data=False)
    torch_device = pick_device(device or recipe.train.device)
    model, config = load_model(ckpt, torch_device)
    if config["data"].get("kind") == "operator":
        data = load_operator_data(recipe.data, recipe.train).to(torch_device)
        check_residual(config["model"].get("args", {}), data, recipe.data.name)
        expected = config["model"]["data_sizes"]
        if data.sizes() != expected:
            raise DataError(f"the data of run '{run_dir}' now has sizes {data.sizes()}; the checkpoint was trained on {expected}")
        batch_size = recipe.train.eval_rows
        return operator_test_metrics(model, data, recipe, batch_size)
    scaler = (np.asarray(config["data"]["scaler"]["mean"]), np.asarray(config["data"]["scaler"]["std"]))
    data = load_data(recipe, scaler).to(torch_device)
    if data.columns != config["data"]["columns"]:
        raise DataError(f"the data of run '{run_dir}' now has columns {data.columns}; the checkpoint was trained on {config['data']['columns']}")
    test = Trainer(model, recipe.train, torch_device, seed=recipe.seed).evaluate(data, "test")
    return {"test_mse": test["mse"], "test_mae": test["mae"], "data_changed": data.fingerprint != config["data"]["fingerprint"]}
