"""Galerkin Transformer (Cao, NeurIPS 2021, "Choose a Transformer: Fourier or Galerkin", arXiv 2105.14995).

An operator learner on a grid: every grid point is a token. ``[u, coords]`` is lifted to ``d_model`` by one
linear map; ``n_layers`` encoder layers apply softmax-free attention (Galerkin-type ``Q (Kᵀ V) / n``, linear
in the number of points, or Fourier-type ``(Q Kᵀ) V / n``) with the coordinates concatenated in every head,
each followed by a residual ReLU feed-forward network (``x ← x + Attn(x)``, ``x ← x + FFN(x)``, no layer norm
outside the attention, as in the paper's Darcy configuration); a regressor maps back to the output channels.

The default regressor is the paper's spectral one: ``[x, coords]`` → ``Linear(d_model + n_dims → freq_dim)``,
``n_regressor_layers`` × ``SiLU(SpectralConv(x) + Linear(x))``, then ``Linear(freq_dim → 2 n_dims freq_dim)``,
SiLU, ``Linear(→ C_out)``. ``decoder="pointwise"`` swaps it for the pointwise MLP (the paper's inverse-problem
decoder). The defaults are the official Darcy configuration (``config.yml`` ``ex2_darcy``: d_model 128, 4
heads, 6 Galerkin layers, FFN 256, dropout 0.05, layer-norm eps 1e-7, 12 modes, freq_dim 32). Not included:
the 2D "CiNN" interpolation-CNN that downsamples 211²/421² grids to a coarse attention grid and back; here
attention runs on the input grid itself (linear cost makes that affordable up to ~128²). ``zero_boundary``
reproduces the paper's Dirichlet treatment (prediction zeroed on the boundary) for data that has u = 0 there.

Every component acts on grid functions with quadrature-consistent scalings (``1/n`` in the attention,
orthonormal FFTs, coordinates on the unit box), so one set of weights evaluates on any grid size.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from sciformer.nn.embedding import grid_coordinates
from sciformer.nn.encoder import FeedForward
from sciformer.nn.linear_attention import AttentionType, SoftmaxFreeAttention
from sciformer.nn.spectral import SpectralConv
from sciformer.registry import Dropout, NonNegativeFloat, PositiveFloat, PositiveInt, register_model


class GalerkinEncoderLayer(nn.Module):
    """``x ← x + drop(Attn(x, pos))``, ``x ← x + FFN(x)`` (ReLU, dropout inside). ``[B, n, d]`` in and out."""

    def __init__(self, attention: SoftmaxFreeAttention, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.attention = attention
        self.ffn = FeedForward(d_model, d_ff, dropout, act="relu")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(x, pos))
        return x + self.ffn(x)


class SpectralRegressor(nn.Module):
    """The paper's decoder: ``[x, coords]`` → ``freq_dim`` channels, spectral layers with a linear skip and
    SiLU, then a pointwise two-layer head. ``x [B, *grid, d]``, ``pos [B or 1, *grid, n_dims]`` →
    ``[B, *grid, out]``."""

    def __init__(self, d_model: int, out_channels: int, n_dims: int, freq_dim: int, modes: int, n_layers: int) -> None:
        super().__init__()
        self.n_dims = n_dims
        self.lift = nn.Linear(d_model + n_dims, freq_dim)
        self.spectral = nn.ModuleList(SpectralConv(freq_dim, freq_dim, modes, n_dims) for _ in range(n_layers))
        self.skips = nn.ModuleList(nn.Linear(freq_dim, freq_dim) for _ in range(n_layers))
        self.head = nn.Sequential(nn.Linear(freq_dim, 2 * n_dims * freq_dim), nn.SiLU(), nn.Linear(2 * n_dims * freq_dim, out_channels))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.lift(torch.cat([x, pos.expand(*x.shape[:-1], self.n_dims)], dim=-1))  # [B, *grid, freq_dim]
        for spectral, skip in zip(self.spectral, self.skips):
            y = spectral(x.movedim(-1, 1)).movedim(1, -1)  # channels first for the FFT, then back
            x = F.silu(y + skip(x))
        return self.head(x)  # [B, *grid, out]


class PointwiseRegressor(nn.Module):
    """``[x, coords]`` → ``Linear(d + n_dims → d)``, ``n_layers`` × (Linear, SiLU), ``Linear(d → out)``, point by
    point. ``x [B, *grid, d]``, ``pos [B or 1, *grid, n_dims]`` → ``[B, *grid, out]``."""

    def __init__(self, d_model: int, out_channels: int, n_dims: int, n_layers: int) -> None:
        super().__init__()
        self.n_dims = n_dims
        self.lift = nn.Linear(d_model + n_dims, d_model)
        self.hidden = nn.Sequential(*(m for _ in range(n_layers) for m in (nn.Linear(d_model, d_model), nn.SiLU())))
        self.head = nn.Linear(d_model, out_channels)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.lift(torch.cat([x, pos.expand(*x.shape[:-1], self.n_dims)], dim=-1))
        return self.head(self.hidden(x))


@register_model("galerkin", task="operator")
class GalerkinTransformer(nn.Module):
    """``u [B, C_in, *grid]`` (1 or 2 grid axes) → ``[B, C_out, *grid]``; ``t`` and ``params`` are ignored."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_dims: int,
        d_model: PositiveInt = 128,
        n_heads: PositiveInt = 4,
        n_layers: PositiveInt = 6,
        d_ff: PositiveInt = 256,
        attention: AttentionType = "galerkin",
        dropout: Dropout = 0.05,
        norm_eps: PositiveFloat = 1e-7,
        xavier_init: PositiveFloat = 1e-2,
        diagonal_weight: NonNegativeFloat = 1e-2,
        decoder: Literal["spectral", "pointwise"] = "spectral",
        modes: PositiveInt = 12,
        freq_dim: PositiveInt = 32,
        n_regressor_layers: PositiveInt = 2,
        zero_boundary: bool = False,
    ) -> None:
        super().__init__()
        if n_dims not in (1, 2):
            raise ValueError(
                f"the Galerkin Transformer supports 1D and 2D grids (n_dims 1 or 2), got n_dims={n_dims}; for 3D grids use a factorised-attention model"
            )
        self.in_channels, self.out_channels, self.n_dims = in_channels, out_channels, n_dims
        self.zero_boundary = zero_boundary
        self.lifting = nn.Linear(in_channels + n_dims, d_model)
        self.layers = nn.ModuleList(
            GalerkinEncoderLayer(SoftmaxFreeAttention(d_model, n_heads, n_dims, attention, norm_eps, xavier_init, diagonal_weight), d_model, d_ff, dropout)
            for _ in range(n_layers)
        )
        self.regressor: SpectralRegressor | PointwiseRegressor
        if decoder == "spectral":
            self.regressor = SpectralRegressor(d_model, out_channels, n_dims, freq_dim, modes, n_regressor_layers)
        else:
            self.regressor = PointwiseRegressor(d_model, out_channels, n_dims, n_regressor_layers)

    def forward(self, u: torch.Tensor, t: torch.Tensor | None = None, params: torch.Tensor | None = None) -> torch.Tensor:
        if u.ndim != self.n_dims + 2 or u.shape[1] != self.in_channels:
            raise ValueError(f"expected u of shape [B, C_in, *grid] with C_in={self.in_channels} and {self.n_dims} grid axes, got {tuple(u.shape)}")
        B, grid = u.shape[0], u.shape[2:]
        pos = grid_coordinates(grid, u.device, u.dtype).movedim(0, -1)  # [*grid, n_dims]
        x = torch.cat([u.movedim(1, -1), pos.expand(B, *grid, self.n_dims)], dim=-1)  # [B, *grid, C_in + n_dims]
        x = self.lifting(x).flatten(1, -2)  # [B, n, d_model], n = prod(grid) points as tokens
        tokens_pos = pos.reshape(1, -1, self.n_dims)  # [1, n, n_dims]
        for layer in self.layers:
            x = layer(x, tokens_pos)
        x = x.unflatten(1, grid)  # [B, *grid, d_model]
        out = self.regressor(x, pos.unsqueeze(0)).movedim(-1, 1)  # [B, C_out, *grid]
        if self.zero_boundary:
            interior = [slice(None), slice(None)] + [slice(1, -1)] * self.n_dims
            out = F.pad(out[tuple(interior)], (1, 1) * self.n_dims)  # u = 0 on the boundary (Dirichlet data)
        return out
