"""Autoregressive (or lead-time) rollouts of operator models and their per-step PDEBench metrics."""

from __future__ import annotations

import torch
from torch import nn

from sciformer.engine.metrics import PDEMetrics
from sciformer.errors import DataError


@torch.no_grad()
def rollout(model: nn.Module, trajectories: torch.Tensor, initial_step: int, steps: int, time_conditioned: bool = False, batch_size: int = 16) -> torch.Tensor:
    """Predict ``steps`` frames after the first ``initial_step`` of each trajectory.

    ``trajectories [N, T, C, *grid]`` → predictions ``[N, steps, C, *grid]`` of frames
    ``initial_step .. initial_step + steps − 1``. Autoregressive models feed their own predictions back
    (sliding the history window); time-conditioned models (trained ``all_to_all``) predict frame ``j`` directly
    from frame 0 with lead time ``j / (T − 1)``.
    """
    n, n_frames, channels = trajectories.shape[:3]
    if initial_step + steps > n_frames:
        raise DataError(
            f"--steps {steps} goes beyond the data: the trajectories have {n_frames} frames, {initial_step} of them "
            f"are the initial history, so at most {n_frames - initial_step} steps can be scored"
        )
    model.eval()
    out = []
    for i in range(0, n, batch_size):
        traj = trajectories[i : i + batch_size]
        preds = []
        if time_conditioned:
            for j in range(1, steps + 1):
                t = torch.full((traj.shape[0],), j / (n_frames - 1), device=traj.device)
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


def run_rollout(run_dir, data_file, steps: int, out_dir=None, frames: list[int] | None = None, split: str = "test", device: str = "cpu", callbacks=()) -> dict:
    """``sciformer rollout``: roll a trained operator out on a file's trajectories and write the results.

    Writes into ``out_dir`` (default ``<run_dir>/rollout``): ``metrics.csv`` / ``metrics.json`` (per-step
    PDEBench metrics), ``error_vs_step.png``, ``step_<k>.png`` (truth, prediction, error of sample 0),
    ``rollout.gif`` and ``predictions.nc`` (predictions and truth as NetCDF).
    """
    from pathlib import Path

    import pandas as pd

    from sciformer.config import recipe_from_dict
    from sciformer.data.operator import read_split
    from sciformer.data.pde import open_pdebench
    from sciformer.data.xarray_io import to_xarray, write_netcdf
    from sciformer.engine.checkpoint import find_checkpoint, load_model, read_run_config, write_json
    from sciformer.engine.plots import field_figure, rollout_animation, save_figure, step_error_figure

    run_dir = Path(run_dir)
    ckpt = find_checkpoint(run_dir)
    config = read_run_config(ckpt)
    if config["data"].get("kind") != "operator":
        raise DataError(f"run '{run_dir}' is not an operator model (it was trained on a time series); rollout needs an operator checkpoint")
    recipe = recipe_from_dict(config["recipe"], check_data=False)
    model, config = load_model(ckpt, device)
    sizes, initial_step = config["model"]["data_sizes"], config["data"]["initial_step"]
    with open_pdebench(data_file, split, mode="trajectory", reduced_resolution=recipe.data.reduced_resolution,
                       reduced_resolution_t=recipe.data.reduced_resolution_t) as ds:
        if ds.is_darcy:
            raise DataError(f"'{data_file}' holds a steady (Darcy) problem: there is no trajectory to roll out")
        channels, n_dims = len(ds.channels), len(ds.spatial_shape)
        if channels != sizes["out_channels"] or n_dims != sizes["n_dims"]:
            raise DataError(
                f"'{data_file}' has {channels} channel(s) on a {n_dims}D grid; the checkpoint of '{run_dir}' expects "
                f"{sizes['out_channels']} channel(s) on a {sizes['n_dims']}D grid"
            )
        traj = read_split(ds).to(device)
        coords = {k: v.numpy() for k, v in ds.grid.items()}
    pred = rollout(model, traj, initial_step, steps, time_conditioned=config["data"]["mode"] == "all_to_all")
    truth = traj[:, initial_step : initial_step + steps]
    per_step = rollout_metrics(pred, truth)
    out = Path(out_dir) if out_dir is not None else run_dir / "rollout"
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"step": range(1, steps + 1), **per_step})
    table.to_csv(out / "metrics.csv", index=False)
    write_json(out / "metrics.json", {"steps": steps, "samples": int(traj.shape[0]), "per_step": per_step}, indent=2)
    save_figure(step_error_figure(per_step["nrmse"]), out / "error_vs_step.png")
    for k in sorted({min(max(f, 1), steps) for f in (frames or [1, max(1, steps // 2), steps])}):
        save_figure(field_figure(truth[0, k - 1].cpu(), pred[0, k - 1].cpu(), title=f"step {k}"), out / f"step_{k}.png")
    rollout_animation(truth[0].cpu(), pred[0].cpu(), out / "rollout.gif")
    t_pred = coords["t"][initial_step : initial_step + steps]
    grid = {k: v for k, v in coords.items() if k != "t"}
    dataset = to_xarray(pred.cpu(), coords={"t": t_pred, **grid}, channels=[f"pred_{c}" for c in range(channels)])
    dataset = dataset.merge(to_xarray(truth.cpu(), coords={"t": t_pred, **grid}, channels=[f"true_{c}" for c in range(channels)]))
    write_netcdf(dataset, out / "predictions.nc")
    for callback in callbacks:
        try:
            callback.log_rollout(out, per_step)
        except Exception as exc:  # a tracker must never cost the results on disk
            import warnings

            warnings.warn(f"tracking the rollout failed ({exc}); the results are in {out}", RuntimeWarning, stacklevel=2)
    return {"out_dir": str(out), "steps": steps, "nrmse_last": per_step["nrmse"][-1], "nrmse_mean": sum(per_step["nrmse"]) / steps}
