"""Series decomposition blocks (Autoformer, Wu et al., NeurIPS 2021, "Autoformer: Decomposition Transformers
with Auto-Correlation for Long-Term Series Forecasting", arXiv 2106.13008, §3.1).

A series is split into a slowly varying *trend* (a moving average) and a *seasonal* remainder
(``seasonal = x − trend``). Autoformer applies the split inside every layer ("progressive decomposition");
DLinear and FEDformer reuse the same block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MovingAverage(nn.Module):
    """Moving average over time with edge replication, stride 1; ``[B, L, N]`` → ``[B, L, N]``.

    The series is padded by repeating its first value ``kernel_size − 1 − (kernel_size − 1) // 2`` times in
    front and its last value ``(kernel_size − 1) // 2`` times at the end, so the output keeps length ``L``
    (for the usual odd kernels the padding is symmetric, as in the official code). Repeating the edge value
    rather than padding with zeros keeps the trend from bending towards zero at both ends.
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"moving-average kernel_size must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        self.pad_end = (kernel_size - 1) // 2
        self.pad_front = kernel_size - 1 - self.pad_end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected x of shape [B, L, N], got {tuple(x.shape)}")
        front = x[:, :1].expand(-1, self.pad_front, -1)  # [B, pad_front, N]
        end = x[:, -1:].expand(-1, self.pad_end, -1)  # [B, pad_end, N]
        padded = torch.cat([front, x, end], dim=1)  # [B, L + kernel_size − 1, N]
        # window sums as differences of a running sum along time: elementwise work whose backward is another
        # running sum (avg_pool1d over the transposed series took 9 % of an Autoformer step on a GPU, mostly backward)
        running = F.pad(padded.cumsum(dim=1), (0, 0, 1, 0))  # [B, L + k, N], a zero row first
        return (running[:, self.kernel_size :] - running[:, : -self.kernel_size]) / self.kernel_size


class SeriesDecomposition(nn.Module):
    """``x [B, L, N]`` → ``(seasonal [B, L, N], trend [B, L, N])`` with ``trend = MovingAverage(x)``,
    ``seasonal = x − trend`` (the order of the official ``series_decomp``)."""

    def __init__(self, kernel_size: int = 25) -> None:
        super().__init__()
        self.moving_average = MovingAverage(kernel_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trend = self.moving_average(x)
        return x - trend, trend


class SeasonalLayerNorm(nn.Module):
    """Autoformer's ``my_Layernorm``: LayerNorm over features, then minus its mean over time.

    ``[B, L, d_model]`` → ``[B, L, d_model]``. The seasonal part should carry no level, so the time mean of
    the normalised series is removed. A LayerNorm bias would be a constant over time and is cancelled exactly
    by that subtraction; it is therefore left out (the output equals the official block's, and no parameter
    is dead).
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return x - x.mean(dim=1, keepdim=True)
