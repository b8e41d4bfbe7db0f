"""Normalisation blocks."""

from __future__ import annotations

import torch
from torch import nn


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al., ICLR 2022, "Reversible Instance Normalization for
    Accurate Time-Series Forecasting against Distribution Shift").

    Each series of a sample is normalised by its own lookback mean and standard deviation
    (``std = sqrt(var + eps)``, biased variance), optionally followed by a learned per-variable affine map;
    :meth:`denormalize` undoes both on the forecast. With ``affine=False`` this is the "non-stationary"
    normalisation iTransformer and TSLib's PatchTST use. Statistics are returned, not stored, so one module
    can serve concurrent calls.

    ``x [B, L, N]`` → ``(x_norm [B, L, N], stats)``; ``y [B, H, N]`` + stats → ``[B, H, N]``.
    """

    def __init__(self, n_vars: int, affine: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(n_vars))
            self.bias = nn.Parameter(torch.zeros(n_vars))

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        x = (x - mean) / std
        if self.affine:
            x = x * self.weight + self.bias
        return x, (mean, std)

    def denormalize(self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, std = stats
        if self.affine:
            y = (y - self.bias) / (self.weight + self.eps * self.eps)
        return y * std + mean
