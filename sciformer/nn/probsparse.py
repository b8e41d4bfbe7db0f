"""Informer's blocks (Zhou et al., AAAI 2021, "Informer: Beyond Efficient Transformer for Long Sequence
Time-Series Forecasting", arXiv 2012.07436): ProbSparse self-attention and the self-attention distilling layer.

:class:`ProbSparseAttention` has the inner-attention interface of :mod:`sciformer.nn.attention`
(``q [B, L, H, E]``, ``k [B, S, H, E]``, ``v [B, S, H, D]`` → ``[B, L, H, D]``), so it plugs into
:class:`~sciformer.nn.attention.AttentionLayer` like :class:`~sciformer.nn.attention.FullAttention`.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

# Key samples drawn in eval mode come from a generator seeded with this value, so that evaluating or
# predicting twice with the same weights gives the same numbers (the reference code redraws them each call).
EVAL_SAMPLING_SEED = 0


@functools.lru_cache(maxsize=64)
def _eval_sample(n_queries: int, n_keys: int, n_sample: int, device: torch.device) -> torch.Tensor:
    """The fixed eval-mode key sample ``[n_queries, n_sample]``, made once per shape and device.

    Drawn on the CPU, so the same seed gives the same sample on every device; kept on the device, so a
    replayed CUDA graph reads it without a host-to-device copy.
    """
    generator = torch.Generator().manual_seed(EVAL_SAMPLING_SEED)
    return torch.randint(n_keys, (n_queries, n_sample), generator=generator).to(device)


def _log_budget(factor: int, length: int) -> int:
    """``factor · ceil(ln length)`` clipped to ``[1, length]`` (ln 1 = 0 would otherwise pick nothing)."""
    return max(1, min(length, factor * math.ceil(math.log(length))))


def sampled_scores(q: torch.Tensor, k: torch.Tensor, sample: torch.Tensor, gather_keys: bool) -> torch.Tensor:
    """``q·k_j`` of every query with its sampled keys: ``q [B, H, L, E]``, ``k [B, H, S, E]``, ``sample [L, U]`` →
    ``[B, H, L, U]``. ``gather_keys``: gather the ``L·U·E`` sampled keys and take one dot product each (O(L ln S)
    memory, for very long keys); else every score ``q kᵀ`` and then the sampled ones, fewer numbers whenever
    ``S ≤ U·E`` and one matrix product instead of a gather and a batched matrix-vector product (faster on a GPU)."""
    if gather_keys:
        return torch.einsum("bhle,bhlue->bhlu", q, k[:, :, sample])
    B, H, L, _ = q.shape
    return (q @ k.transpose(-2, -1)).gather(-1, sample.expand(B, H, L, sample.shape[-1]))


class ProbSparseAttention(nn.Module):
    """ProbSparse attention: only the "active" queries attend; the lazy ones output a cheap default.

    1. For each query, sample ``U_part = factor · ceil(ln S)`` keys (uniformly, with replacement, the same
       sample for every batch element and head) and score them.
    2. Sparsity measure per query: ``M = max_j(q·k_j) − Σ_j(q·k_j) / S`` over the sampled keys. (The sum is
       divided by the full key length S, not by the sample size, as in the reference implementation.)
    3. The ``u = factor · ceil(ln L)`` queries with the largest M get exact ``softmax(q Kᵀ / √E) V`` over
       all keys (with a causal mask when ``causal``).
    4. Every other query outputs ``mean(V)`` or, when ``causal``, ``cumsum(V)`` up to its own position
       (a sum, not a mean — the reference code's choice). ``causal`` needs ``L == S`` (self-attention).

    ``u`` and ``U_part`` are clipped to the lengths, so a large ``factor`` makes this exact full attention.
    No dropout is applied to the attention weights: the reference code builds one but never uses it.
    In training the key sample comes from the device's generator (torch's global one on a CPU, the CUDA
    generator on a GPU, so a captured CUDA graph redraws it at every replay); in eval from a fixed seed
    (:data:`EVAL_SAMPLING_SEED`), so inference is reproducible.

    ``q [B, L, H, E]``, ``k [B, S, H, E]``, ``v [B, S, H, D]`` → ``[B, L, H, D]``.
    """

    def __init__(self, factor: int = 5, causal: bool = False, scale: float | None = None) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        self.factor = factor
        self.causal = causal
        self.scale = scale

    def _sample_keys(self, n_queries: int, n_keys: int, n_sample: int, device: torch.device) -> torch.Tensor:
        """Indices ``[n_queries, n_sample]`` of the keys each query is scored against."""
        if not self.training:
            return _eval_sample(n_queries, n_keys, n_sample, torch.device(device))
        # drawn by the device's own generator: no host work or copy per step, and a CUDA graph captures the
        # draw and advances the generator at every replay (on a CPU: torch.randint's global generator)
        return torch.randint(n_keys, (n_queries, n_sample), device=device)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, L, H, E = q.shape
        S, D = k.shape[1], v.shape[-1]
        if k.shape[:3] != (B, S, H) or v.shape[:3] != (B, S, H) or k.shape[-1] != E:
            raise ValueError(f"expected q [B, L, H, E], k [B, S, H, E], v [B, S, H, D], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        if self.causal and L != S:
            raise ValueError(f"causal ProbSparse attention is self-attention: expected L == S, got L={L}, S={S}")
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, L|S, E|D]
        n_sample = _log_budget(self.factor, S)  # U_part
        n_top = _log_budget(self.factor, L)  # u

        # 1-2. sparsity measure from a sample of keys. Only the choice of queries comes out of it, which carries no
        # gradient: nothing here is kept for the backward pass
        sample = self._sample_keys(L, S, n_sample, q.device)  # [L, U_part]
        with torch.no_grad():
            qk_sample = sampled_scores(q, k, sample, gather_keys=S > n_sample * E)  # [B, H, L, U_part]
            sparsity = qk_sample.amax(dim=-1) - qk_sample.sum(dim=-1) / S  # [B, H, L]
            top = sparsity.topk(n_top, dim=-1, sorted=False).indices  # [B, H, u]

        # 3. exact attention for the selected queries only
        q_top = q.gather(2, top[..., None].expand(-1, -1, -1, E))  # [B, H, u, E]
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(E)
        scores = q_top @ k.transpose(-2, -1) * scale  # [B, H, u, S]
        if self.causal:
            # a selected query at position i sees keys 0..i
            future = torch.arange(S, device=q.device) > top[..., None]  # [B, H, u, S]
            scores = scores.masked_fill(future, float("-inf"))
        out_top = torch.softmax(scores, dim=-1) @ v  # [B, H, u, D]

        # 4. default outputs for the lazy queries, overwritten at the selected positions
        if self.causal:
            context = v.cumsum(dim=2)  # [B, H, L, D]
        else:
            context = v.mean(dim=2, keepdim=True).expand(B, H, L, D)  # [B, H, L, D]
        context = context.scatter(2, top[..., None].expand(-1, -1, -1, D), out_top.to(context.dtype))
        return context.transpose(1, 2)  # [B, L, H, D]


class DistillingLayer(nn.Module):
    """Self-attention distilling between Informer encoder layers: ``Conv1d(d, d, k=3, circular padding 2)
    → BatchNorm1d → ELU → MaxPool1d(k=3, stride 2, padding 1)`` over time.

    The padding of 2 is TSLib's (the authors' repository uses 1 on PyTorch ≥ 1.5): the convolution grows the
    sequence by 2 and the pooling halves it, ``L' = floor((L + 1) / 2) + 1`` (96 → 49, 49 → 26).

    ``[B, L, d_model]`` → ``[B, L', d_model]``.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=3, padding=2, padding_mode="circular")
        self.norm = nn.BatchNorm1d(d_model)
        self.act = nn.ELU()
        self.pool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)

    @staticmethod
    def output_length(length: int) -> int:
        """Sequence length after the layer: conv gives ``L + 2``, pooling ``floor((L + 2 − 1) / 2) + 1``."""
        return (length + 1) // 2 + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] < 2:
            # circular padding of 2 cannot wrap a shorter sequence
            raise ValueError(f"expected x of shape [B, L, d_model] with at least 2 steps, got {tuple(x.shape)}")
        y = self.conv(x.transpose(1, 2))  # [B, d_model, L + 2]
        y = self.pool(self.act(self.norm(y)))  # [B, d_model, L']
        return y.transpose(1, 2)  # [B, L', d_model]
