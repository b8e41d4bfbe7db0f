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
