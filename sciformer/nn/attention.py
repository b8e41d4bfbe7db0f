"""Attention blocks shared by the forecasters.

Inner attentions take and return the per-head layout ``[B, L, H, E]`` (queries ``[B, L, H, E]``, keys
``[B, S, H, E]``, values ``[B, S, H, D]`` → ``[B, L, H, D]``), so full, ProbSparse and Auto-Correlation
attention are interchangeable inside :class:`AttentionLayer`, which owns the projections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FullAttention(nn.Module):
    """``softmax(QKᵀ/√E) V`` with dropout on the attention weights ("Attention Is All You Need", arXiv 1706.03762).

    Uses PyTorch's fused ``scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU).
    """

    def __init__(self, dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        self.dropout = dropout
        self.causal = causal

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # [B, L, H, E] -> [B, H, L, E] for SDPA, and back
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), dropout_p=self.dropout if self.training else 0.0, is_causal=self.causal
        )
        return out.transpose(1, 2)


class AttentionLayer(nn.Module):
    """Multi-head wrapper: project to heads, run an inner attention, merge heads, project back.

    ``mix=True`` merges the heads the way Informer's code does ("mix attention"): the inner output is laid out
    ``[B, H, L, D]`` and read back as ``[B, L, H·D]``, so each output token holds ``H`` consecutive time steps
    of one head. The authors' repository does this in the decoder self-attention; Autoformer's and
    Time-Series-Library's Informer (whose runs give the published ETT numbers) in every ProbSparse layer.

    ``[B, L, d_model]`` queries and ``[B, S, d_model]`` keys/values → ``[B, L, d_model]``.
    """

    def __init__(self, inner: nn.Module, d_model: int, n_heads: int, d_keys: int | None = None, d_values: int | None = None, mix: bool = False) -> None:
        super().__init__()
        if d_model % n_heads and (d_keys is None or d_values is None):
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        d_keys = d_keys or d_model // n_heads
        d_values = d_values or d_model // n_heads
        self.inner = inner
        self.n_heads = n_heads
        self.mix = mix
        self.query = nn.Linear(d_model, d_keys * n_heads)
        self.key = nn.Linear(d_model, d_keys * n_heads)
        self.value = nn.Linear(d_model, d_values * n_heads)
        self.out = nn.Linear(d_values * n_heads, d_model)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        B, L, _ = queries.shape
        S, H = keys.shape[1], self.n_heads
        q = self.query(queries).view(B, L, H, -1)
        k = self.key(keys).view(B, S, H, -1)
        v = self.value(values).view(B, S, H, -1)
        out = self.inner(q, k, v)  # [B, L, H, D]
        if self.mix:
            out = out.transpose(1, 2)  # [B, H, L, D], read back below as [B, L, H·D]
        return self.out(out.reshape(B, L, -1))
