"""One training step's prediction and target for each task's batch: what the trainer differentiates."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def forecast_step(model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and target of a forecasting batch (``x, x_mark, y, y_mark`` → ``[B, H, N]`` twice)."""
    return model(batch.x, batch.x_mark, batch.y_mark), batch.y


def operator_step(model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and target of an operator batch (``u [B, C_in, *grid]`` → ``[B, C_out, *grid]``).

    With ``batch.steps > 1`` the model is applied autoregressively (the newest prediction replaces the oldest
    history frame) and only the last application carries gradients: the pushforward trick.
    """
    u = batch.u
    if batch.steps > 1:
        with torch.no_grad():
            for _ in range(batch.steps - 1):
                u = torch.cat([u[:, batch.y.shape[1] :], model(u, batch.t).to(u.dtype)], dim=1)
    return model(u, batch.t), batch.y


STEPS = {"forecast": forecast_step, "operator": operator_step}
