"""Split-conformal prediction intervals for forecasts (Vovk et al. 2005; locally weighted scores as in
Lei et al., "Distribution-Free Predictive Inference for Regression", JASA 2018, arXiv 1604.04173).

The nonconformity score of a calibration window is ``|y − ŷ| / σ`` per horizon step and variable, where σ is the
standard deviation of that variable over the window's lookback. Normalising by the recent volatility keeps the
intervals calibrated when the level of noise drifts between the calibration and the forecast period (on ETTh1
the validation months are noisier than the test months: plain ``|y − ŷ|`` over-covers). The interval at level
``p`` is ``ŷ ± q·σ`` with ``q`` the ``ceil((n+1)p)``-th smallest of the n calibration scores.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SIGMA_FLOOR = 1e-3  # a flat lookback must not give a zero-width interval


def lookback_sigma(x: torch.Tensor) -> torch.Tensor:
    """Per-variable spread of the lookback: ``x [B, L, N]`` → ``[B, 1, N]``."""
    return x.std(dim=1, keepdim=True) + SIGMA_FLOOR


@torch.no_grad()
def calibration_scores(model: nn.Module, batches) -> torch.Tensor:
    """Scores ``[n_windows, H, N]`` of a trained forecaster over calibration windows (scaled units)."""
    model.eval()
    scores = [(b.y - model(b.x, b.x_mark, b.y_mark).float()).abs() / lookback_sigma(b.x) for b in batches]
    return torch.cat(scores).cpu()  # one copy: a copy per batch would wait for the device every batch


def score_quantile(scores: torch.Tensor, level: float) -> torch.Tensor:
    """The conformal quantile ``[H, N]`` at coverage ``level`` ∈ (0, 1) (finite-sample corrected)."""
    if not 0 < level < 1:
        raise ValueError(f"interval level must be in (0, 100) percent, got {level * 100:g}")
    n = scores.shape[0]
    k = math.ceil((n + 1) * level)
    if k > n:  # too few calibration windows for this level: the interval is unbounded
        return torch.full(scores.shape[1:], float("inf"))
    return scores.kthvalue(k, dim=0).values


def interval(pred: torch.Tensor, x: torch.Tensor, scores: torch.Tensor, level: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds ``[B, H, N]`` around ``pred [B, H, N]`` for lookbacks ``x [B, L, N]``."""
    half = score_quantile(scores, level).to(pred.device) * lookback_sigma(x)
    return pred - half, pred + half
