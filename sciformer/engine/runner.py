"""A run, start to finish: recipe → data → model → train → test → run directory.

``fit_recipe`` is what ``sciformer fit`` executes (also under torchrun, and resuming an interrupted run);
``evaluate_run`` re-tests a run directory's checkpoint. What differs between forecasting and operator learning
is the recipe's task adapter (:mod:`sciformer.engine.tasks`); the run directory's rules and lock are in
:mod:`sciformer.engine.rundir`. Trackers plug in as callbacks (see :mod:`sciformer.engine.callbacks`); the engine
never imports them. docs/training.md describes DDP and resuming.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from sciformer import __version__
from sciformer.config import Recipe, stored_recipe
from sciformer.engine import distributed, plots
from sciformer.engine.callbacks import Callback, CallbackList
from sciformer.engine.checkpoint import find_checkpoint, load_model, read_run_config, save_checkpoint, write_json
from sciformer.engine.distributed import Distributed
from sciformer.engine.interrupts import Interrupts
from sciformer.engine.pretrained import resolve_init
from sciformer.engine.rundir import (  # noqa: F401 - the run directory's names, importable from here as before
    CHECKPOINT_DIR,
    DATA_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    RECIPE_FILE,
    RESUME_DIR,
    RUN_FILE,
    claim_new_run_dir,
    claim_resumable_run_dir,
    record_data,
)
from sciformer.engine.tasks import TASKS, Task, data_sizes, task_for, task_of, train  # noqa: F401 - data_sizes, train: as before
from sciformer.engine.trainer import pick_device, seed_everything
from sciformer.errors import ConfigError, RunInterrupted, SciformerError, user_path

T = TypeVar("T")


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


def load_data(recipe: Recipe, allow_generate: bool = True) -> Any:
    """The recipe's data (a time series, PDE fields, ...), as its task loads it; only ``fit`` may generate files."""
    return task_for(recipe).load_data(recipe, allow_generate=allow_generate)


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


def fit_recipe(recipe: Recipe, run_dir: str | Path | None = None, callbacks: list[Callback] | tuple[Callback, ...] = (), resume: bool = False) -> RunResult:
    """Train, validate and test ``recipe``; write checkpoint, metrics and plot into ``run_dir``.

    While training, ``run_dir/resume/`` holds the latest resumable state (every epoch, and every
    ``train.checkpoint_every`` steps) and ``run_dir/checkpoint/`` the best model so far, so an interrupted run
    stays loadable; ``resume=True`` continues such a run from its state (same recipe, same data, same MLflow run).
    The run directory must be new, empty or a run directory of sciformer's, and is locked while the run executes.
    SIGTERM/SIGINT end the run with :class:`~sciformer.errors.RunInterrupted` after saving a resumable state.
    Under torchrun this runs on every rank (DDP); rank 0 alone writes files and calls ``callbacks``.
    """
    with distributed.setup(recipe.train.device) as dist, ExitStack() as held:
        path = _on_main(dist, lambda: _claim_run_dir(recipe, run_dir, resume, held))
        interrupts = held.enter_context(Interrupts(path))
        return _fit(recipe, path, callbacks, resume, dist, interrupts)


def _claim_run_dir(recipe: Recipe, run_dir: str | Path | None, resume: bool, held: ExitStack) -> Path:
    if resume:
        path = None if run_dir is None else user_path(run_dir)
        lock = claim_resumable_run_dir(path, recipe)
    else:
        path = user_path(run_dir) if run_dir is not None else default_run_dir(recipe)
        lock = claim_new_run_dir(path, recipe, outputs=tuple(task.plot_file for task in TASKS.values()))
    held.callback(lock.release)
    return lock.directory


def _on_main(dist: Distributed, action: Callable[[], T]) -> T:
    """Run ``action`` on rank 0 only; every rank gets its result, or raises the same user error."""
    outcome: Any = None
    if dist.is_main:
        try:
            outcome = action()
        except SciformerError as exc:
            outcome = exc
    outcome = dist.broadcast(outcome)
    if isinstance(outcome, SciformerError):
        raise outcome
    return outcome


def _fit(recipe: Recipe, run_dir: Path, callbacks: list[Callback] | tuple[Callback, ...], resume: bool, dist: Distributed, interrupts: Interrupts) -> RunResult:
    phases = Phases()
    seed_everything(recipe.seed)
    device = dist.device
    task = task_for(recipe)
    init = resolve_init(recipe.model.init, recipe.model.name) if recipe.model.init else None  # checked before any data is read
    with phases("data"), dist.rank_zero_first():  # rank 0 downloads or generates missing files, the others then read them
        data = task.load_data(recipe, allow_generate=True).to(device)
    _on_main(dist, lambda: record_data(run_dir, recipe.data.name, task.fingerprint(data, recipe), resume))
    hooks = CallbackList(callbacks if dist.is_main else [])
    info = {
        **system_info(device),
        "run_dir": str(run_dir),
        "resumed": resume,
        "world_size": dist.world_size,
        "batches": {split: data.n_batches(split, recipe.train.batch_size) for split in data.splits},
    }
    if init is not None:
        info["init"] = init.lineage
    hooks.on_fit_start(recipe.to_dict(), info)
    metrics: dict[str, Any] = {}
    try:
        config = task.checkpoint_config(recipe, data)
        if init is not None:
            config["init"] = init.lineage  # what this model was fine-tuned from
        interim = task.interim_extras(data)

        def save_best(weights: dict[str, torch.Tensor]) -> None:  # an interrupted run keeps a loadable model
            save_checkpoint(run_dir / CHECKPOINT_DIR, weights, config, interim)

        if dist.is_main:
            plots.preload()  # the figures at the end then cost only their drawing
        with phases("train"):
            model, trainer, fit = train(recipe, data, device, hooks, dist, run_dir / RESUME_DIR, resume, save_best, interrupts, init)
        with phases("test"):
            test = trainer.evaluate(data, "test")
            val = trainer.evaluate(data, "val")
        metrics.update({f"test_{k}": v for k, v in test.items()} | {f"val_{k}": v for k, v in val.items()})
        metrics.update(
            {
                "best_epoch": fit.best_epoch,
                "epochs": fit.epochs,
                "train_seconds": fit.train_seconds,
                "seconds_per_epoch": fit.seconds_per_epoch,
                "parameters": sum(p.numel() for p in model.parameters()),
                "peak_memory_mb": peak_memory_mb(device),
                "device": str(device),
                "world_size": dist.world_size,
                "cuda_graphs": trainer.cuda_graphs,
            }
        )
        if dist.is_main:
            _finish(recipe, task, model, data, run_dir, config, fit.history, metrics, phases)
        dist.barrier()
    except BaseException as exc:
        hooks.on_failure(exc)
        raise
    try:
        hooks.on_fit_end(metrics, run_dir)
    except RunInterrupted as exc:  # the results are complete; only the trackers' final logging was cut short
        stopped = RunInterrupted(exc.signal, run_dir, finished=True)
        hooks.on_failure(stopped)
        raise stopped from None
    return RunResult(run_dir, metrics, dist.rank)


def _finish(
    recipe: Recipe,
    task: Task,
    model: torch.nn.Module,
    data: Any,
    run_dir: Path,
    config: dict[str, Any],
    history: list[dict[str, float]],
    metrics: dict[str, Any],
    phases: Phases,
) -> None:
    """Rank 0's end of a run: test metrics of the task, final checkpoint, results, then the figure.

    The results are on disk before the figure is drawn, so a failing plot (a full disk) never costs them;
    ``metrics.json`` (written after the complete checkpoint) marks the run finished.
    """
    batch_size = recipe.train.eval_rows
    with phases("test"):
        metrics |= task.test_metrics(model, data, recipe, batch_size)
    with phases("save"):
        save_checkpoint(run_dir / CHECKPOINT_DIR, model, config, task.final_extras(model, data, batch_size))
    metrics["phase_seconds"] = {k: round(v, 3) for k, v in phases.seconds.items()}
    write_json(run_dir / HISTORY_FILE, history, indent=2)
    write_json(run_dir / METRICS_FILE, metrics, indent=2)
    shutil.rmtree(run_dir / RESUME_DIR, ignore_errors=True)
    with phases("plot"):
        task.plot(model, data, recipe, run_dir / task.plot_file)
    metrics["phase_seconds"] = {k: round(v, 3) for k, v in phases.seconds.items()}
    write_json(run_dir / METRICS_FILE, metrics, indent=2)


def evaluate_run(run_dir: str | Path, device: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Rebuild data and model from a run's checkpoint and re-run the test split (never generating data).

    ``overrides`` change the stored recipe's data section, e.g. ``data.test_resolution=32`` to test an operator
    at an unseen resolution; the model's own arguments cannot be changed.
    """
    run_dir = user_path(run_dir)
    ckpt = find_checkpoint(run_dir, CHECKPOINT_DIR)
    config = read_run_config(ckpt)
    for text in overrides or []:
        if not text.startswith("data."):
            raise ConfigError(f"evaluate override {text!r}: only data.* keys can be changed when re-testing a checkpoint")
    recipe = stored_recipe(config["recipe"], overrides)
    torch_device = pick_device(device or recipe.train.device)
    model, config = load_model(ckpt, torch_device)
    return task_of(config["model"]["name"]).evaluate(model, config, recipe, torch_device, run_dir)
