"""Autoregressive (or lead-time) rollouts of operator models, their per-step PDEBench metrics, and
:func:`rollout_run`, the one entry point of ``sciformer rollout``.

``rollout_run`` reads its trajectories through the same path as ``fit`` and ``evaluate``
(:func:`~sciformer.data.operator.load_operator_data`, the operator task's loader): by default the run's own data
and split as its checkpoint records them, or any data file ``fit`` accepts (PDEBench HDF5 in either layout, The
Well, NetCDF, Zarr, neuraloperator ``.npz``). It never generates data and writes nothing outside its output folder.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sciformer.engine.metrics import PDEMetrics
from sciformer.engine.pretrained import PresenceMasked
from sciformer.errors import ConfigError, DataError, StorageError, storage_error, user_path

ROLLOUT_SPLITS = ("train", "val", "test", "all")
# what a rollout writes: an output folder holding only these may be written over
_OUTPUTS = re.compile(r"(metrics\.csv|metrics\.json|error_vs_step\.png|step_\d+\.png|rollout\.gif|predictions\.nc)")


@torch.no_grad()
def rollout(
    model: nn.Module,
    trajectories: torch.Tensor,
    initial_step: int,
    steps: int,
    time_conditioned: bool = False,
    batch_size: int = 16,
    n_frames: int | None = None,
) -> torch.Tensor:
    """Predict ``steps`` frames after the first ``initial_step`` of each trajectory.

    ``trajectories [N, T, C, *grid]`` (``T`` may be just ``initial_step``: only the history is read) →
    predictions ``[N, steps, C, *grid]`` of frames ``initial_step .. initial_step + steps − 1``. Autoregressive
    models feed their own predictions back (sliding the history window); time-conditioned models (trained
    ``all_to_all``) predict frame ``j`` directly from frame 0 with lead time ``j / (n_frames − 1)``, ``n_frames``
    being the length of the trajectories they were trained on (default: ``T``).
    """
    n, n_t, channels = trajectories.shape[:3]
    span = (n_frames or n_t) - 1
    model.eval()
    out = []
    for i in range(0, n, batch_size):
        traj = trajectories[i : i + batch_size]
        preds = []
        if time_conditioned:
            for j in range(1, steps + 1):
                t = torch.full((traj.shape[0],), j / span, device=traj.device)
                preds.append(model(traj[:, 0], t).float())
        else:
            window = traj[:, :initial_step].flatten(1, 2)  # [b, initial_step * C, *grid]
            for _ in range(steps):
                pred = model(window).float()
                preds.append(pred)
                window = torch.cat([window[:, channels:], pred.to(window.dtype)], dim=1)
        out.append(torch.stack(preds, dim=1))
    return torch.cat(out)


def rollout_metrics(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, list[float]]:
    """Per-step PDEBench metrics (mean over channels): ``{"nrmse": [steps], "rmse": [...], ...}``."""
    metrics = PDEMetrics()
    metrics.update(pred, truth)
    table = metrics.compute("none")
    return {k: v.mean(0).tolist() for k, v in table.items() if k not in ("frmse", "rel_l2")}


def check_steps(steps: Any, n_frames: int | None = None, initial_step: int = 1) -> int:
    """``steps`` as an int ≥ 1 and, given the trajectories' ``n_frames``, no more than follow the history."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--steps must be an integer >= 1, got {steps!r}")
    if n_frames is not None and initial_step + steps > n_frames:
        raise DataError(
            f"--steps {steps} goes beyond the data: the trajectories have {n_frames} frames, {initial_step} of them "
            f"are the initial history, so at most {n_frames - initial_step} steps can be scored"
        )
    return steps


# ---------------------------------------------------------------------------------------------- the command
def rollout_run(
    run_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    split: str = "test",
    steps: int | None = None,
    out: str | os.PathLike | None = None,
    frames: list[int] | None = None,
    device: str = "cpu",
    callbacks=(),
    figures: bool = True,
) -> dict[str, Any]:
    """Roll a trained operator out on trajectories of a split and score every step (``sciformer rollout``).

    ``data=None``: the run's own data source and its ``split`` (``train``/``val``/``test`` exactly as ``fit`` split
    it, or ``all`` of them); a path overrides the source, split the same way. ``steps``: at least 1; default every
    frame after the history. Writes into ``out`` (default ``<run_dir>/rollout``; a new or empty folder, or an earlier rollout's): per-step
    ``metrics.csv`` / ``metrics.json``, ``error_vs_step.png``, ``step_<k>.png`` (truth, prediction, error of sample
    0), ``rollout.gif`` and ``predictions.nc`` (predictions and truth with grid and time coordinates);
    ``figures=False`` leaves out the images and the GIF (they take most of a small rollout's time).
    """
    from sciformer.config import stored_recipe
    from sciformer.engine.checkpoint import find_checkpoint, load_model, read_run_config

    if steps is not None:
        check_steps(steps)
    if split not in ROLLOUT_SPLITS:
        raise ConfigError(f"rollout split must be one of {', '.join(ROLLOUT_SPLITS)}, got {split!r}")
    run_dir = user_path(run_dir)
    ckpt = find_checkpoint(run_dir)
    config = read_run_config(ckpt)
    if config["data"].get("kind") != "operator":
        raise DataError(f"run '{run_dir}' is not an operator model (it was trained on a time series); rollout needs an operator checkpoint")
    recipe = stored_recipe(config["recipe"])
    own = {"name": recipe.data.name, "mixture": recipe.data.mixture} if data is None else {"name": str(user_path(data)), "mixture": None}
    recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, generate=None, **own))
    out_dir = user_path(out) if out is not None else run_dir / "rollout"
    check_output_dir(out_dir)
    model, config = load_model(ckpt, device)
    traj, coords, fields = load_trajectories(recipe, split, config["model"]["data_sizes"], f"run '{run_dir}'")
    if fields:  # mixture data: a field a sample lacks stays zero, as in training
        model = PresenceMasked(model, fields)
    initial_step = config["data"]["initial_step"]
    steps = check_steps(steps if steps is not None else max(1, traj.shape[1] - initial_step), traj.shape[1], initial_step)
    if frames and not all(isinstance(f, int) and 1 <= f <= steps for f in frames):
        raise ConfigError(f"--frames {' '.join(map(str, frames))}: expected steps between 1 and {steps} (the steps rolled out)")
    traj = traj.to(device)
    pred = rollout(model, traj, initial_step, steps, time_conditioned=config["data"]["mode"] == "all_to_all")
    truth = traj[:, initial_step : initial_step + steps]
    per_step = rollout_metrics(pred, truth)
    write_rollout(out_dir, pred.cpu(), truth.cpu(), per_step, coords, initial_step, frames if figures else [])
    for callback in callbacks:
        try:
            callback.log_rollout(out_dir, per_step)
        except Exception as exc:  # a tracker must never cost the results on disk
            import warnings

            warnings.warn(f"tracking the rollout failed ({exc}); the results are in {out_dir}", RuntimeWarning, stacklevel=2)
    return {
        "out_dir": str(out_dir),
        "steps": steps,
        "samples": int(traj.shape[0]),
        "nrmse_last": per_step["nrmse"][-1],
        "nrmse_mean": sum(per_step["nrmse"]) / steps,
    }


def load_trajectories(recipe, split: str, sizes: dict[str, int], owner: str) -> tuple[torch.Tensor, dict[str, Any], int]:
    """Trajectories ``[N, T, C, *grid]`` of ``split`` of the recipe's data, read as ``fit`` reads them (never
    generated), checked against the model's ``sizes``; with their coordinates (``t`` and grid axes) and the number
    of presence-masked fields (mixture data; 0 otherwise)."""
    from sciformer.data.mixture import load_mixture_data
    from sciformer.data.operator import load_operator_data

    load = load_mixture_data if recipe.data.mixture is not None else load_operator_data  # the operator task's loaders
    data = load(recipe.data, recipe.train, allow_generate=False)
    name = recipe.data.name
    if data.steady:
        raise DataError(f"'{name}' holds a steady problem (coefficient → solution): there is no trajectory to roll out")
    if data.out_channels != sizes["out_channels"] or data.n_dims != sizes["n_dims"]:
        raise DataError(
            f"'{name}' has {data.out_channels} channel(s) on a {data.n_dims}D grid; the checkpoint of {owner} "
            f"expects {sizes['out_channels']} channel(s) on a {sizes['n_dims']}D grid"
        )
    if split == "test":
        traj = data.test_trajectories()
    else:
        parts = ("train", "val", "test") if split == "all" else (split,)
        traj = torch.cat([t for part in parts if (t := data.splits[part].trajectories) is not None])
    return traj, data_coordinates(recipe.data, traj.shape[1], traj.shape[3:])[0], getattr(data, "masked_fields", 0)


def data_coordinates(cfg, n_frames: int, grid: tuple[int, ...]) -> tuple[dict[str, Any], list[str] | None]:
    """Time and grid coordinates of a data file as the recipe reads it (strided), and its channel names; frame and
    cell indices (and no names) for data that carries none (the neuraloperator sets)."""
    import numpy as np

    coords: dict[str, Any] = {"t": np.arange(n_frames, dtype=np.float32)}
    coords |= {ax: np.arange(n, dtype=np.float32) for ax, n in zip("xyz", grid)}
    path = user_path(cfg.name)
    if not path.exists():
        return coords, None
    from sciformer.data.pde import open_pdebench

    try:
        with open_pdebench(path, "all", mode="trajectory", reduced_resolution=cfg.reduced_resolution, reduced_resolution_t=cfg.reduced_resolution_t) as ds:
            known, channels = {k: v.numpy() for k, v in ds.grid.items()}, list(ds.channels)
    except DataError:  # a layout the PDEBench reader does not describe: keep the indices
        return coords, None
    known = {k: v[: len(coords[k])] for k, v in known.items() if k in coords and len(v) >= len(coords[k])}
    return coords | known, channels


def check_output_dir(out: Path) -> None:
    """A rollout writes into a new or empty folder, or over an earlier rollout's files; anything else is refused."""
    if out.exists() and not out.is_dir():
        raise StorageError(f"cannot write the rollout into '{out}': it is a file, not a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if not _OUTPUTS.fullmatch(p.name))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise StorageError(
                f"cannot write the rollout into '{out}': the folder holds files a rollout did not write ({shown}); give a new or empty folder with --out"
            )


def write_rollout(
    out: Path, pred: torch.Tensor, truth: torch.Tensor, per_step: dict[str, list[float]], coords: dict[str, Any], initial_step: int, frames: list[int] | None
) -> None:
    """Metrics, figures and predictions of one rollout into ``out`` (see :func:`rollout_run`); ``frames=[]``: no
    figures."""
    import pandas as pd

    from sciformer.data.xarray_io import to_xarray, write_netcdf
    from sciformer.engine.checkpoint import write_json
    from sciformer.engine.plots import field_figure, rollout_animation, save_figure, step_error_figure

    steps, channels = pred.shape[1], pred.shape[2]
    try:
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"step": range(1, steps + 1), **per_step}).to_csv(out / "metrics.csv", index=False)
        write_json(out / "metrics.json", {"steps": steps, "samples": int(pred.shape[0]), "per_step": per_step}, indent=2)
        grid = {k: v for k, v in coords.items() if k != "t"}
        at = {"t": coords["t"][initial_step : initial_step + steps], **grid}
        dataset = to_xarray(pred, coords=at, channels=[f"pred_{c}" for c in range(channels)])
        dataset = dataset.merge(to_xarray(truth, coords=at, channels=[f"true_{c}" for c in range(channels)]))
        write_netcdf(dataset, out / "predictions.nc")
        if frames == []:
            return
        save_figure(step_error_figure(per_step["nrmse"]), out / "error_vs_step.png")
        for k in sorted({min(max(f, 1), steps) for f in (frames or [1, max(1, steps // 2), steps])}):
            save_figure(field_figure(truth[0, k - 1], pred[0, k - 1], title=f"step {k}"), out / f"step_{k}.png")
        rollout_animation(truth[0], pred[0], out / "rollout.gif")
    except OSError as exc:
        raise storage_error(exc, out) from None
