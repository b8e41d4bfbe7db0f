"""Conditioning blocks for time- and label-conditioned backbones: sinusoidal timestep embeddings and adaLN-Zero
(Peebles & Xie, ICCV 2023, "Scalable Diffusion Models with Transformers", arXiv 2212.09748), as used by
PDE-Transformer (arXiv 2505.24717) and DiT/Poseidon-style operator models.

Shapes: a conditioning vector ``c [*lead, cond_dim]`` modulates tokens ``x [*lead, *tokens, dim]``: the leading
dimensions of ``c`` (usually just the batch ``B``, or ``B, C`` for per-channel conditioning) must equal the leading
dimensions of ``x``; the modulation is broadcast over the remaining token dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["AdaLNZero", "Modulation", "TimestepEmbedding", "broadcast_to_tokens", "modulate", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t·f_j), sin(t·f_j)]`` with ``f_j = max_period^{-j/(dim/2)}``: ``t [B]`` → ``[B, dim]``.

    The GLIDE/DiT convention (cosines first); ``t`` may be fractional. An odd ``dim`` gets one zero column.
    """
    if t.ndim != 1:
        raise ValueError(f"expected t of shape [B], got {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # [B, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedding(nn.Module):
    """``t [B]`` → ``[B, dim]``: :func:`timestep_embedding` of ``scale · t`` (``freq_dim`` features), then
    ``Linear → SiLU → Linear`` (DiT's ``TimestepEmbedder``).

    ``scale`` stretches the time axis before the sinusoids: PDE-Transformer and DiT multiply a time in ``[0, 1]`` by
    1000, so that physical lead times of order ``0.01 … 1`` reach the fast frequencies.
    """

    def __init__(self, dim: int, freq_dim: int = 256, scale: float = 1.0, max_period: float = 10000.0) -> None:
        super().__init__()
        self.freq_dim, self.scale, self.max_period = freq_dim, scale, max_period
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.reset_weights()

    def reset_weights(self) -> None:
        """DiT's initialisation: both linear weights drawn from N(0, 0.02), biases left as they are."""
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t * self.scale, self.freq_dim, self.max_period)
        return self.mlp(emb.to(next(self.mlp.parameters()).dtype))


def broadcast_to_tokens(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View ``m [*lead, D]`` as ``[*lead, 1, ..., 1, D]`` so it broadcasts over the token dims of ``x [*lead, *tokens, D]``."""
    lead = m.shape[:-1]
    if x.ndim < m.ndim or x.shape[: len(lead)] != lead or x.shape[-1] != m.shape[-1]:
        raise ValueError(
            f"expected a modulation of shape [*lead, D] matching the leading dims and width of x [*lead, *tokens, D]; "
            f"got modulation {tuple(m.shape)} and x {tuple(x.shape)}"
        )
    return m.view(*lead, *([1] * (x.ndim - m.ndim)), m.shape[-1])


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x · (1 + scale) + shift`` with ``shift, scale [*lead, D]`` broadcast over the token dims of ``x [*lead, *tokens, D]``."""
    return x * (1 + broadcast_to_tokens(scale, x)) + broadcast_to_tokens(shift, x)


class Modulation(NamedTuple):
    """One branch's modulation, each ``[*lead, dim]``; ``gate`` is ``None`` for ungated (final-layer) modulation."""

    shift: torch.Tensor
    scale: torch.Tensor
    gate: torch.Tensor | None


class AdaLNZero(nn.Module):
    """adaLN-Zero: ``SiLU → Linear(cond_dim → n_branches · k · dim)`` of the conditioning, split into a shift, scale
    (and gate) per residual branch, with the linear map **zero-initialised** so every gated branch starts as the
    identity (``x + 0 · f(...) = x``) and every modulation as a plain LayerNorm.

    ``k = 3`` (shift, scale, gate) when ``gated``, else ``k = 2`` (shift, scale: a DiT final layer).
    ``forward(c [*lead, cond_dim])`` → tuple of ``n_branches`` :class:`Modulation`, each field ``[*lead, dim]``.
    :meth:`branch` applies one gated residual branch; :attr:`norm` is the parameter-free LayerNorm (eps 1e-6).

    Typical DiT block::

        mods = adaln(c)                                   # c [B, cond_dim]; x [B, L, dim]
        x = adaln.branch(x, mods[0], attention)           # x + gate · attn(norm(x) · (1 + scale) + shift)
        x = adaln.branch(x, mods[1], mlp)
    """

    def __init__(self, dim: int, cond_dim: int | None = None, n_branches: int = 2, gated: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.n_branches, self.gated = dim, n_branches, gated
        self.chunks = 3 if gated else 2
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)
        self.linear = nn.Linear(cond_dim or dim, n_branches * self.chunks * dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, c: torch.Tensor) -> tuple[Modulation, ...]:
        params = self.linear(nn.functional.silu(c)).chunk(self.n_branches * self.chunks, dim=-1)
        if self.gated:
            return tuple(Modulation(*params[3 * i : 3 * i + 3]) for i in range(self.n_branches))
        return tuple(Modulation(params[2 * i], params[2 * i + 1], None) for i in range(self.n_branches))

    def branch(self, x: torch.Tensor, mod: Modulation, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``x + gate · fn(modulate(norm(x), shift, scale))``; ``x [*lead, *tokens, dim]``, ``fn`` keeps the shape."""
        if mod.gate is None:
            raise ValueError("branch() needs a gated modulation; build AdaLNZero with gated=True")
        return x + broadcast_to_tokens(mod.gate, x) * fn(modulate(self.norm(x), mod.shift, mod.scale))
