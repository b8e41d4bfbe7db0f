"""Axial factorised kernel attention of FactFormer (Li, Shu, Barati Farimani, NeurIPS 2023, "Scalable Transformer
for PDE Surrogate Modeling", arXiv 2305.17560).

A kernel integral ``z(x) = ∫ κ(x, ξ) v(ξ) dξ`` over the unit box ``[0, 1]^d`` is approximated with a separable
kernel ``κ(x, ξ) ≈ κ_1(x_1, ξ_1) · … · κ_d(x_d, ξ_d)``. Each one-dimensional kernel is a softmax-free dot product
``κ_i(x_i, ξ_i) = ⟨q_i(x_i), k_i(ξ_i)⟩`` of queries and keys computed from a *sub-function* with a one-dimensional
domain: the latent field projected onto axis ``i`` (a linear map, then the mean over all other axes, then an MLP).
The value field is transformed axis by axis, ``z = K_1 ×_1 K_2 ×_2 … K_d ×_d v``, which costs ``O(N Σ n_i)``
instead of ``O(N²)`` for ``N = Π n_i`` grid points. Rotary position encoding (Su et al., arXiv 2104.09864) on the
1D coordinate makes each axial kernel depend on relative positions.

:func:`factorized_attention` is the axial product, run by :mod:`sciformer.kernels.factorized_attention` (the PyTorch
reference there is the spec; a fused Triton kernel runs on GPUs); :class:`FactorizedAttention` is the full FactFormer
block (FABlock in the official code).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sciformer.kernels.factorized_attention import factorized_attention

__all__ = ["AxialProjection", "FactorizedAttention", "GaussianFourierFeatures", "apply_rotary", "factorized_attention", "rotary_angles"]


# ---------------------------------------------------------------------------------------- positions
def rotary_angles(coords: torch.Tensor, dim: int, min_freq: float = 1 / 64, base: float = 10000.0) -> torch.Tensor:
    """Rotary angles ``[n, dim]`` for 1D coordinates ``coords [n]`` (``dim`` even).

    Frequencies ``base^{-2j/dim} / min_freq`` (FactFormer's setting, ``min_freq = 1/64``: a unit-box coordinate
    plays the role of 64 token positions), duplicated as ``[θ, θ]`` to pair with :func:`apply_rotary`'s halves.
    """
    if dim % 2:
        raise ValueError(f"rotary encoding needs an even dimension, got {dim}")
    inv_freq = base ** (-torch.arange(0, dim, 2, device=coords.device, dtype=torch.float32) / dim)
    theta = (coords.float() / min_freq)[:, None] * inv_freq  # [n, dim / 2]
    return torch.cat([theta, theta], dim=-1)


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate feature pairs ``(x_j, x_{j + dim/2})`` of ``x [..., n, dim]`` by ``angles [n, dim]``.

    Because rotations compose, ``⟨R(a) q, R(b) k⟩`` depends on ``a − b`` only: the kernel sees relative positions.
    """
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * angles.cos().to(x.dtype) + rotated * angles.sin().to(x.dtype)


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features of coordinates (Tancik et al., arXiv 2006.10739): ``[sin 2πxB, cos 2πxB]``.

    ``B [n_dims, n_features]`` is drawn once from ``N(0, scale²)`` and kept as a (persistent, untrained) buffer, so
    a checkpoint reproduces the encoding. ``x [..., n_dims]`` → ``[..., 2 · n_features]``.
    """

    B: torch.Tensor

    def __init__(self, n_dims: int, n_features: int, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("B", torch.randn(n_dims, n_features) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * (x.to(self.B.dtype) @ self.B)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)


# ---------------------------------------------------------------------------------------- the block
class GeGLUMLP(nn.Module):
    """``Linear(d_in → 2·d_hidden) → GELU(a) · b → Linear(d_hidden → d_out)`` (FactFormer's ``MLP`` with ``GeAct``)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, 2 * d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.gelu(a) * b)


class AxialProjection(nn.Module):
    """The learnable projection onto one axis (FactFormer's ``PoolingReducer``).

    ``u [B, n_1, ..., n_d, dim]`` → sub-function ``φ_axis [B, n_axis, latent_dim]``: a linear map, the mean over
    every other grid axis (a quadrature of the integral over them, so resolution-independent), then
    ``LayerNorm → GeGLU MLP``.
    """

    def __init__(self, dim: int, latent_dim: int, axis: int) -> None:
        super().__init__()
        self.axis = axis
        self.to_in = nn.Linear(dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim)
        self.mlp = GeGLUMLP(dim, dim, latent_dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        grid_axes = range(1, u.ndim - 1)
        pooled = self.to_in(u).mean(dim=tuple(a for a in grid_axes if a != 1 + self.axis))  # [B, n_axis, dim]
        return self.mlp(self.norm(pooled))


class FactorizedAttention(nn.Module):
    """One FactFormer attention block (FABlock2D/3D): ``u [B, n_1, ..., n_d, dim]`` → ``[B, n_1, ..., n_d, dim_out]``.

    1. ``LayerNorm``; values ``V = W_v u`` (``n_heads`` heads of ``dim_head``).
    2. Per axis ``i``: sub-function ``φ_i = AxialProjection_i(u)`` ``[B, n_i, latent_dim]``; queries and keys
       ``W_q φ_i``, ``W_k φ_i`` with ``n_heads`` heads of ``dim_head · kernel_multiplier`` (more basis functions
       for the kernel); rotary encoding of the axis coordinate on both.
    3. :func:`factorized_attention` with the ``1/n_i`` quadrature weights (no softmax); ``recompute=True`` keeps
       no intermediate field for the backward pass and recomputes it there (for the largest grids).
    4. Instance norm over the grid (per sample and channel), ``Linear → GELU → Linear`` to ``dim_out``.

    Differences from the official code (BaratiLab/FactFormer ``libs/factorization_module.py``), kept deliberate:
    the kernels carry the ``1/n_i`` quadrature weight (the official code uses weight 1 and relies on the following
    instance norm, which removes any constant factor, so both give the same block up to that norm's ``eps``); the
    instance norm normalises each channel over the grid (the official ``InstanceNorm2d`` on a channels-last tensor
    normalises over ``(n_y, channels)`` for each ``x`` row instead); q/k use PyTorch's default init (the official
    gain of 0.02 assumed unnormalised kernels); and the shared ``to_in`` before the per-axis ``to_in`` is dropped (two
    consecutive linear maps).
    """

    def __init__(
        self,
        dim: int,
        n_dims: int,
        n_heads: int = 8,
        dim_head: int = 64,
        kernel_multiplier: int = 2,
        latent_dim: int | None = None,
        dim_out: int | None = None,
        rope: bool = True,
        recompute: bool = False,
    ) -> None:
        super().__init__()
        latent_dim = latent_dim or dim
        dim_out = dim_out or dim
        kernel_dim = dim_head * kernel_multiplier
        if rope and kernel_dim % 2:
            raise ValueError(f"rotary encoding needs an even kernel dimension, got dim_head * kernel_multiplier = {kernel_dim}")
        self.n_dims, self.n_heads, self.kernel_dim, self.rope, self.recompute = n_dims, n_heads, kernel_dim, rope, recompute
        self.norm = nn.LayerNorm(dim)
        self.to_v = nn.Linear(dim, n_heads * dim_head, bias=False)
        self.project = nn.ModuleList(AxialProjection(dim, latent_dim, axis) for axis in range(n_dims))
        self.to_q = nn.ModuleList(nn.Linear(latent_dim, n_heads * kernel_dim, bias=False) for _ in range(n_dims))
        self.to_k = nn.ModuleList(nn.Linear(latent_dim, n_heads * kernel_dim, bias=False) for _ in range(n_dims))
        self.out = nn.Sequential(nn.Linear(n_heads * dim_head, dim_out, bias=False), nn.GELU(), nn.Linear(dim_out, dim_out, bias=False))

    def kernels(self, u: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Queries and keys per axis, ``[B, H, n_i, E]`` each, from the normalised field ``u [B, *grid, dim]``."""
        B, grid = u.shape[0], u.shape[1:-1]
        qs, ks = [], []
        for axis, (project, to_q, to_k) in enumerate(zip(self.project, self.to_q, self.to_k)):
            phi = project(u)  # [B, n, latent]
            n = grid[axis]
            q = to_q(phi).view(B, n, self.n_heads, self.kernel_dim).transpose(1, 2)  # [B, H, n, E]
            k = to_k(phi).view(B, n, self.n_heads, self.kernel_dim).transpose(1, 2)
            if self.rope:
                angles = rotary_angles(torch.linspace(0.0, 1.0, n, device=u.device), self.kernel_dim)
                q, k = apply_rotary(q, angles), apply_rotary(k, angles)
            qs.append(q)
            ks.append(k)
        return qs, ks

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.ndim != self.n_dims + 2:
            raise ValueError(f"expected u of shape [B, *grid, dim] with {self.n_dims} grid axes, got {tuple(u.shape)}")
        B, grid = u.shape[0], u.shape[1:-1]
        u = self.norm(u)
        v = self.to_v(u).view(B, *grid, self.n_heads, -1).movedim(-2, 1)  # [B, H, *grid, dim_head]
        qs, ks = self.kernels(u)
        z = factorized_attention(qs, ks, v, recompute=self.recompute)  # [B, H, *grid, dim_head]
        z = z.movedim(1, -2).reshape(B, *grid, -1)  # [B, *grid, H * dim_head]
        grid_axes = tuple(range(1, z.ndim - 1))
        z = (z - z.mean(grid_axes, keepdim=True)) * torch.rsqrt(z.var(grid_axes, unbiased=False, keepdim=True) + 1e-5)
        return self.out(z)
