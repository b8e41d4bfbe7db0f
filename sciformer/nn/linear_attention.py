"""Softmax-free attention of the Galerkin Transformer (Cao, NeurIPS 2021, "Choose a Transformer: Fourier or
Galerkin", arXiv 2105.14995).

Two kernels, both on per-head tensors ``q [B, H, n, E]``, ``k [B, H, n, E]``, ``v [B, H, n, D]``, returning ``[B, H, n, D]``;
``n`` is the number of grid points (the quadrature nodes), the ``1/n`` makes each a Riemann sum of an
integral operator, so the result does not grow with resolution:

* :func:`galerkin_attention`: ``Q (Kᵀ V) / n``. The ``E × D`` matrix ``Kᵀ V`` is formed first: cost
  ``O(n E D)``, memory ``O(E D)`` per head: linear in ``n``. It lives in :mod:`sciformer.kernels.linear_attention`
  (PyTorch reference + a Triton kernel that also fuses the K/V layer norms and the coordinates).
* :func:`fourier_attention`: ``(Q Kᵀ) V / n``. Forms the ``n × n`` kernel: quadratic in ``n``.

No softmax, no ``1/√E``: the normalisation comes from layer norms on two of the three inputs, applied by
:class:`SoftmaxFreeAttention` per head (Galerkin: on K and V; Fourier: on Q and K).
"""

from __future__ import annotations

from typing import Literal, cast

import torch
from torch import nn

from sciformer.kernels.linear_attention import galerkin_attention as _galerkin_op
from sciformer.kernels.linear_attention.reference import check_qkv, headwise_layer_norm

AttentionType = Literal["galerkin", "fourier"]


def galerkin_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Galerkin-type attention ``Q (Kᵀ V) / n``, linear in the number of points ``n``.

    ``q [B, H, n_q, E]``, ``k [B, H, n, E]``, ``v [B, H, n, D]`` → ``[B, H, n_q, D]``; ``n`` = ``k.shape[2]``.
    Runs :func:`sciformer.kernels.linear_attention.galerkin_attention` (which can also fuse the layer norms and the
    coordinates, as :class:`SoftmaxFreeAttention` does).
    """
    return _galerkin_op(q, k, v)


def fourier_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Fourier-type attention ``(Q Kᵀ) V / n``, quadratic in the number of points ``n``.

    ``q [B, H, n_q, E]``, ``k [B, H, n, E]``, ``v [B, H, n, D]`` → ``[B, H, n_q, D]``; ``n`` = ``k.shape[2]``.
    The paper's formula; the official code also divides the scores by ``√E`` (a constant the learned
    projections absorb).
    """
    check_qkv(q, k, v)
    scores = q @ k.transpose(-2, -1) / k.shape[-2]  # [B, H, n_q, n]
    return scores @ v  # [B, H, n_q, D]


KERNELS = {"galerkin": galerkin_attention, "fourier": fourier_attention}


class HeadwiseLayerNorm(nn.Module):
    """Layer norm over the last axis with a separate affine map per head (the official code keeps one
    ``nn.LayerNorm(E)`` per head). ``[B, H, n, E]`` → ``[B, H, n, E]``."""

    def __init__(self, n_heads: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(n_heads, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n_heads, 1, dim))

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)``, each ``[H, E]``: the form the fused Galerkin kernel takes."""
        return self.weight.squeeze(1), self.bias.squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return headwise_layer_norm(x, *self.affine(), self.eps)


class SoftmaxFreeAttention(nn.Module):
    """Multi-head Galerkin- or Fourier-type self-attention with coordinates concatenated in every head.

    Following the official implementation: Q, K, V are linear maps of ``x`` split into ``H`` heads of width
    ``E = d_model / H``; two of them are layer-normalised per head (Galerkin: K, V; Fourier: Q, K); the point
    coordinates ``pos`` are concatenated to Q, K and V of every head (head width ``E + pos_dim``); the kernel
    runs; the heads are merged and ``Linear(H (E + pos_dim) → d_model)`` maps back. The Q/K/V weights start
    at ``xavier_init · Xavier-uniform + diagonal_weight · I`` with zero biases: the paper's initialisation,
    without which plain Xavier (gain 1) can diverge.

    ``x [B, n, d_model]``, ``pos [B or 1, n, pos_dim]`` → ``[B, n, d_model]``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        pos_dim: int,
        attention: AttentionType = "galerkin",
        eps: float = 1e-7,
        xavier_init: float = 1e-2,
        diagonal_weight: float = 1e-2,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if attention not in KERNELS:
            raise ValueError(f"attention must be one of {sorted(KERNELS)}, got {attention!r}")
        self.attention, self.n_heads, self.pos_dim = attention, n_heads, pos_dim
        self.head_dim = d_model // n_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        # Galerkin normalises K and V, Fourier Q and K; the names say which two inputs they act on.
        first, second = ("key", "value") if attention == "galerkin" else ("query", "key")
        self.norms = nn.ModuleDict({name: HeadwiseLayerNorm(n_heads, self.head_dim, eps) for name in (first, second)})
        self.out = nn.Linear(n_heads * (self.head_dim + pos_dim), d_model)
        for layer in (self.query, self.key, self.value):
            nn.init.xavier_uniform_(layer.weight, gain=xavier_init)
            with torch.no_grad():
                layer.weight += diagonal_weight * torch.eye(d_model)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        B, n, _ = x.shape
        H, E = self.n_heads, self.head_dim
        if self.pos_dim:
            if pos is None or pos.shape[-2:] != (n, self.pos_dim):
                got = None if pos is None else tuple(pos.shape)
                raise ValueError(f"expected pos of shape [B, n, pos_dim] with n={n}, pos_dim={self.pos_dim}, got {got}")
        else:
            pos = None
        heads = {name: getattr(self, name)(x).view(B, n, H, E).transpose(1, 2) for name in ("query", "key", "value")}  # [B, H, n, E]
        if self.attention == "galerkin":
            # one fused op: layer norms on K and V, coordinates in front of every head, Q (KᵀV) / n
            norm_k, norm_v = (cast(HeadwiseLayerNorm, self.norms[name]) for name in ("key", "value"))  # ModuleDict items are typed Module
            out = _galerkin_op(heads["query"], heads["key"], heads["value"], pos, norm_k.affine(), norm_v.affine(), norm_k.eps)
        else:
            heads = {name: self.norms[name](h) if name in self.norms else h for name, h in heads.items()}
            if pos is not None:
                pos = pos.unsqueeze(1).expand(B, H, n, self.pos_dim)  # [B, H, n, pos_dim], same in every head
                heads = {name: torch.cat([pos, h], dim=-1) for name, h in heads.items()}  # [B, H, n, pos_dim + E]
            out = fourier_attention(heads["query"], heads["key"], heads["value"])  # [B, H, n, pos_dim + E]
        return self.out(out.transpose(1, 2).reshape(B, n, -1))  # [B, n, H (pos_dim + E)] -> [B, n, d_model]
