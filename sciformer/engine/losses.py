"""Training losses, by recipe name (``train.loss``); :func:`make_loss` builds the one a recipe asks for.

* ``mse``, ``mae``: element-wise means (the forecasting losses);
* ``rel_l2``: mean over samples of the relative L2 error (the operator-learning loss of FNO and Galerkin);
* ``rel_l2_h1``: ``rel_l2 + γ · relative H1 seminorm`` with ``γ = train.h1_weight``, for operator models on
  ``[B, C, *grid]`` fields: the Darcy loss of "Choose a Transformer: Fourier or Galerkin" (Cao 2021,
  arXiv 2105.14995), akin to neuraloperator's ``H1Loss``.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sciformer.config import LossName, TrainConfig
from sciformer.errors import ConfigError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSS_NAMES = typing.get_args(LossName)
ELEMENTWISE: dict[str, Loss] = {"mse": F.mse_loss, "mae": F.l1_loss}


def relative_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ``‖pred − target‖₂ / ‖target‖₂`` over everything but the batch axis: ``[B]``."""
    diff = (pred - target).flatten(1).norm(dim=1)
    return diff / target.flatten(1).norm(dim=1).clamp_min(1e-12)


def h1_seminorm(field: torch.Tensor) -> torch.Tensor:
    """Discrete H1 seminorm ``‖∇f‖₂`` per sample of ``field [B, C, *grid]``: ``[B]``.

    Along each grid axis of ``n`` points the derivative is the one-sided difference ``diff(f) / h`` with spacing
    ``h = 1/n`` (the domain is the unit cube), so axes of different sizes are weighed as one field on one domain.
    The quadrature weight (the cell volume) is left out: it is common to every axis and cancels in a ratio.
    """
    per_axis = [(torch.diff(field, dim=axis) * field.shape[axis]).flatten(1).norm(dim=1) for axis in range(2, field.ndim)]
    # norm of the per-axis norms = the norm of all derivatives together; norm's gradient at 0 is 0, sqrt's is not
    return torch.stack(per_axis, dim=1).norm(dim=1)


def relative_h1_seminorm(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ``|pred − target|_H1 / |target|_H1`` of fields ``[B, C, *grid]`` (any number of grid axes): ``[B]``.

    Zero for a constant offset ``pred = target + c``. The differences are divided by the spacing and the cell
    volume cancels, so the value does not depend on the resolution (up to the error of one-sided differences).
    """
    if pred.shape != target.shape or pred.ndim < 3:
        raise ValueError(
            f"loss 'rel_l2_h1': expected pred and target of one shape [B, C, *grid] with one or more grid axes, "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    return h1_seminorm(pred - target) / h1_seminorm(target).clamp_min(1e-12)


def relative_l2_h1(pred: torch.Tensor, target: torch.Tensor, h1_weight: float = 0.1) -> torch.Tensor:
    """Per-sample ``rel_l2 + h1_weight · rel_h1`` of fields ``[B, C, *grid]``: ``[B]`` (Cao 2021, arXiv 2105.14995)."""
    return relative_l2(pred, target) + h1_weight * relative_h1_seminorm(pred, target)


def sample_loss(cfg: TrainConfig) -> Loss | None:
    """The per-sample form ``(pred, target) → [B]`` of a loss that averages over samples (``rel_l2``,
    ``rel_l2_h1``); None for the element-wise ``mse`` and ``mae``."""
    if cfg.loss == "rel_l2":
        return relative_l2
    if cfg.loss == "rel_l2_h1":
        return functools.partial(relative_l2_h1, h1_weight=cfg.h1_weight)
    if cfg.loss in ELEMENTWISE:
        return None
    raise ConfigError(f"recipe key 'train.loss': expected one of {', '.join(LOSS_NAMES)}, got {cfg.loss!r}")


def make_loss(cfg: TrainConfig) -> Loss:
    """The training loss of a recipe's ``train`` section: ``(pred, target) → scalar``."""
    per_sample = sample_loss(cfg)
    if per_sample is None:
        return ELEMENTWISE[cfg.loss]
    return lambda pred, target: per_sample(pred, target).mean()
