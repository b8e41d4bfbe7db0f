"""Training losses, by recipe name (``train.loss``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def relative_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ``‖pred − target‖₂ / ‖target‖₂`` over everything but the batch axis: ``[B]``."""
    diff = (pred - target).flatten(1).norm(dim=1)
    return diff / target.flatten(1).norm(dim=1).clamp_min(1e-12)


LOSSES = {
    "mse": F.mse_loss,
    "mae": F.l1_loss,
    "rel_l2": lambda pred, target: relative_l2(pred, target).mean(),  # the operator-learning loss (FNO, Galerkin)
}
