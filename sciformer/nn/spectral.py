"""Truncated spectral convolution (Li et al., ICLR 2021, "Fourier Neural Operator for Parametric Partial
Differential Equations", arXiv 2010.08895), as used by the Galerkin Transformer's spectral regressor.

:func:`spectral_multiply` multiplies the lowest Fourier modes of a real-FFT'd field by a learned complex
``C_in × C_out`` matrix per mode and zeroes the rest.

The mode layout (corner blocks of weights, truncation on coarse grids) is documented with the op,
:mod:`sciformer.kernels.spectral_multiply.reference`; :func:`spectral_multiply` runs its dispatched version
(PyTorch reference, Triton on GPUs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from sciformer.kernels.spectral_multiply import kept_modes, spectral_multiply

__all__ = ["SpectralConv", "kept_modes", "spectral_multiply"]


class SpectralConv(nn.Module):
    """``irfftn(spectral_multiply(rfftn(x), W, modes))``: a global convolution whose kernel is learned in
    Fourier space and truncated to the lowest ``modes`` per axis.

    ``x [B, C_in, n_1, ..., n_d]`` → ``[B, C_out, n_1, ..., n_d]``, any ``n_i``. Weights are stored real,
    ``[2^(d-1), C_in, C_out, *modes, 2]`` (the official Galerkin Transformer code's parameterisation; real
    tensors keep optimisers and checkpoints simple), initialised with standard deviation
    ``1 / (C_in · C_out · √(Π modes))`` (the Galerkin Transformer's 2D initialisation, generalised).
    ``norm="ortho"`` makes a mode's amplitude independent of the grid size.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int | Sequence[int], n_dims: int, norm: str = "ortho") -> None:
        super().__init__()
        modes = (modes,) * n_dims if isinstance(modes, int) else tuple(modes)
        if len(modes) != n_dims or min(modes) < 1:
            raise ValueError(f"expected {n_dims} positive mode counts, got {modes}")
        self.modes, self.n_dims, self.norm = modes, n_dims, norm
        std = 1.0 / (in_channels * out_channels * math.prod(modes) ** 0.5)
        self.weight = nn.Parameter(std * torch.randn(2 ** (n_dims - 1), in_channels, out_channels, *modes, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = x.shape[-self.n_dims :]
        dims = tuple(range(-self.n_dims, 0))
        work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # FFTs want fp32 or fp64
        x_ft = torch.fft.rfftn(work, dim=dims, norm=self.norm)  # [B, C_in, n_1, ..., n_d // 2 + 1]
        weight = torch.view_as_complex(self.weight).to(x_ft.dtype)  # [2^(d-1), C_in, C_out, *modes]
        out_ft = spectral_multiply(x_ft, weight, kept_modes(grid, self.modes))
        return torch.fft.irfftn(out_ft, s=grid, dim=dims, norm=self.norm).to(x.dtype)  # [B, C_out, *grid]
