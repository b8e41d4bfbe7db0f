"""FactFormer (Li, Shu, Barati Farimani, NeurIPS 2023, "Scalable Transformer for PDE Surrogate Modeling",
arXiv 2305.17560).

A Transformer whose attention is an axial factorised kernel integral (:class:`~sciformer.nn.factorized_attention.
FactorizedAttention`): the latent field is projected onto one-dimensional sub-functions per axis, each gives a
softmax-free ``n_i × n_i`` kernel, and the kernels are applied to the values axis by axis. Cost per layer is
``O(N Σ n_i)`` for ``N`` grid points, so 2D and 3D grids of ``256²`` or ``64³`` points fit in memory.

Layout (official ``FactFormer2D``/``3D`` encoders, single-step head):
``u [B, C_in, *grid]`` → pointwise ``Linear(C_in → dim)`` → ``depth`` × [add random-Fourier features of the grid
coordinates → ``Linear``; ``u ← u + FactorizedAttention(u)``] → GroupNorm over the grid → pointwise MLP
``dim → dim → dim/2 → C_out``. Every operation is pointwise, a mean over the grid or a quadrature-weighted kernel
integral, and coordinates live on the unit box, so the same weights run at any resolution.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sciformer.nn.embedding import grid_coordinates
from sciformer.nn.factorized_attention import FactorizedAttention, GaussianFourierFeatures
from sciformer.registry import PositiveFloat, PositiveInt, register_model


@register_model("factformer", task="operator")
class FactFormer(nn.Module):
    """``u [B, C_in, *grid]`` (2 or 3 grid axes) → ``[B, C_out, *grid]``; ``t`` and ``params`` are ignored.

    ``recompute_attention`` (the default) makes each attention layer recompute its ``n_dims - 1`` intermediate
    fields in the backward pass instead of keeping them. On an H100 with the triton kernels that costs 4% of a
    training step at 1024² and holds 12% less memory (20% less at 128³), which is what lets the largest grids train
    (docs/benchmarks.md, "Fused kernels"); ``False`` is the faster choice where memory is plentiful."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_dims: int,
        dim: PositiveInt = 128,
        depth: PositiveInt = 4,
        n_heads: PositiveInt = 8,
        dim_head: PositiveInt = 64,
        kernel_multiplier: PositiveInt = 2,
        rope: bool = True,
        fourier_scale: PositiveFloat = 8.0,
        recompute_attention: bool = True,
    ) -> None:
        super().__init__()
        if n_dims not in (2, 3):
            raise ValueError(f"FactFormer supports grids with n_dims 2 or 3 (its kernel is factorised over at least two axes), got n_dims={n_dims}")
        if dim % 2:
            raise ValueError(f"dim must be even (random Fourier features come in sin/cos pairs), got {dim}")
        self.in_channels, self.out_channels, self.n_dims = in_channels, out_channels, n_dims
        self.lift = nn.Linear(in_channels, dim)
        self.positions = nn.ModuleList(nn.Sequential(GaussianFourierFeatures(n_dims, dim // 2, fourier_scale), nn.Linear(dim, dim)) for _ in range(depth))
        self.layers = nn.ModuleList(
            FactorizedAttention(dim, n_dims, n_heads, dim_head, kernel_multiplier, latent_dim=dim, rope=rope, recompute=recompute_attention)
            for _ in range(depth)
        )
        self.head_norm = nn.GroupNorm(math.gcd(8, dim), dim)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, out_channels))

    def _check(self, u: torch.Tensor) -> None:
        if u.ndim != self.n_dims + 2 or u.shape[1] != self.in_channels:
            raise ValueError(f"expected u of shape [B, C_in, *grid] with C_in={self.in_channels} and {self.n_dims} grid axes, got {tuple(u.shape)}")

    def forward(self, u: torch.Tensor, t: torch.Tensor | None = None, params: torch.Tensor | None = None) -> torch.Tensor:
        self._check(u)
        grid = u.shape[2:]
        coords = grid_coordinates(grid, u.device, u.dtype).movedim(0, -1)  # [*grid, n_dims]
        x = self.lift(u.movedim(1, -1))  # [B, *grid, dim]
        for position, layer in zip(self.positions, self.layers):
            x = x + position(coords)
            x = x + layer(x)
        x = self.head_norm(x.movedim(-1, 1)).movedim(1, -1)  # GroupNorm wants channels first
        return self.head(x).movedim(-1, 1)  # [B, C_out, *grid]
