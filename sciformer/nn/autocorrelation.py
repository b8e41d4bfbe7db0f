"""Auto-Correlation and the decomposition encoder/decoder layers of Autoformer (Wu et al., NeurIPS 2021,
"Autoformer: Decomposition Transformers with Auto-Correlation for Long-Term Series Forecasting",
arXiv 2106.13008, §3.1–3.2).

Auto-Correlation replaces point-wise attention by series-wise aggregation: the correlation of queries and
keys at every time delay τ is computed at once with the FFT (Wiener–Khinchin), the ``k = ⌊c·ln L⌋`` delays
with the largest correlation are kept, and the output is the softmax-weighted sum of the values rolled by
those delays. :class:`AutoCorrelation` has the inner-attention interface of :mod:`sciformer.nn.attention`
(``q [B, L, H, E]``, ``k [B, S, H, E]``, ``v [B, S, H, D]`` → ``[B, L, H, D]``), so it plugs into
:class:`~sciformer.nn.attention.AttentionLayer`, which owns the projections. Its two heavy steps, the FFT
correlation and the aggregation, run in :mod:`sciformer.kernels.autocorrelation` (PyTorch reference, Triton on GPUs).

The layers below interleave any such attention with :class:`~sciformer.nn.decomposition.SeriesDecomposition`
("progressive decomposition"): the encoder keeps only seasonal parts, the decoder also accumulates the trend
parts it removes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sciformer.kernels import autocorrelation as kernels
from sciformer.kernels.autocorrelation.reference import select_delays
from sciformer.nn.decomposition import SeriesDecomposition
from sciformer.nn.encoder import FeedForward


class AutoCorrelation(nn.Module):
    """Period-based dependency discovery + time-delay aggregation (paper Eq. 5–6).

    ``q [B, L, H, E]``, ``k [B, S, H, E]``, ``v [B, S, H, D]`` → ``[B, L, H, D]``.

    * Keys/values shorter than the queries are zero-padded at the end, longer ones are cut to ``L``
      (decoder cross-correlation: 144 decoder steps against 96 encoder steps).
    * ``R(τ) = irfft(rfft(Q) · conj(rfft(K)))`` along time, averaged over heads and channels → ``[B, L]``.
    * ``top_k = ⌊factor · ln L⌋`` delays. In training one set of delays is chosen from the batch-mean
      correlation and shared by every sample (the official "speed-up" variant, which also regularises like
      batch statistics); in evaluation each sample picks its own. The weights are the softmax over each
      sample's correlations at its chosen delays.
    * ``out[t] = Σ_i w_i · V[(t + τ_i) mod L]``, i.e. ``roll(V, −τ_i)`` along time. The delays stay on the device
      (a gather, where the official code rolls by ``int(τ_i)`` read back to the host), so a training or evaluation
      step that contains this layer replays from a CUDA graph.

    There is no dropout: the official layer creates a dropout module but never applies it.
    """

    def __init__(self, factor: float = 1.0) -> None:
        super().__init__()
        if factor <= 0:
            raise ValueError(f"Auto-Correlation factor must be > 0, got {factor}")
        self.factor = factor

    def top_k(self, length: int) -> int:
        """Number of delays kept for a series of ``length`` steps: ``⌊factor · ln L⌋``, clipped to [1, L]."""
        return min(length, max(1, int(self.factor * math.log(length))))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
            raise ValueError(f"expected q [B, L, H, E], k [B, S, H, E], v [B, S, H, D], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        B, L, H, E = q.shape
        S = k.shape[1]
        if S < L:  # pad keys/values with zeros at the end up to the query length
            k = torch.cat([k, k.new_zeros(B, L - S, H, E)], dim=1)  # [B, L, H, E]
            v = torch.cat([v, v.new_zeros(B, L - S, H, v.shape[-1])], dim=1)  # [B, L, H, D]
        else:
            k, v = k[:, :L], v[:, :L]
        corr = self.correlation(q, k)  # [B, L]: mean over heads and channels, index = delay τ
        delays, weights = select_delays(corr, self.top_k(L), shared=self.training)  # [B, k] each
        return self.aggregate(v, delays, weights)

    @staticmethod
    def correlation(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Auto-correlation ``R_QK(τ)`` for every delay τ = 0..L−1, averaged over heads and channels.

        ``q, k [B, L, H, E]`` → float32 ``[B, L]``, by the FFT (:func:`sciformer.kernels.autocorrelation.correlation`).
        """
        return kernels.correlation(q, k)

    @staticmethod
    def aggregate(v: torch.Tensor, delays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Time-delay aggregation: ``Σ_i weights[:, i] · roll(v, −delays[:, i])`` along time.

        ``v [B, L, H, D]``, ``delays [B, k]`` (int), ``weights [B, k]`` → ``[B, L, H, D]``
        (:func:`sciformer.kernels.autocorrelation.aggregate`).
        """
        return kernels.aggregate(v, delays, weights)


class DecompEncoderLayer(nn.Module):
    """Autoformer encoder layer (paper Eq. 3): attention and feed-forward, each followed by a series
    decomposition whose trend is discarded. ``[B, L, d_model]`` → seasonal ``[B, L, d_model]``.

    The feed-forward network has no biases, as in the official code.
    """

    def __init__(self, attention: nn.Module, d_model: int, d_ff: int | None = None, moving_avg: int = 25, dropout: float = 0.1, act: str = "gelu") -> None:
        super().__init__()
        self.attention = attention
        self.ffn = FeedForward(d_model, d_ff or 4 * d_model, dropout, act, bias=False)
        self.decomp = SeriesDecomposition(moving_avg)  # parameter-free: one instance serves both places
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.decomp(x + self.dropout(self.attention(x, x, x)))
        x, _ = self.decomp(x + self.ffn(x))
        return x


class DecompDecoderLayer(nn.Module):
    """Autoformer decoder layer (paper Eq. 4): self-attention, cross-attention to the encoder output and
    feed-forward, each followed by a series decomposition. The three removed trends are summed and projected
    to the output channels by a circular ``Conv1d(d_model → c_out, k=3, no bias)`` over time.

    ``x [B, L, d_model]``, ``memory [B, S, d_model]`` → ``(seasonal [B, L, d_model], trend [B, L, c_out])``.
    """

    def __init__(
        self,
        self_attention: nn.Module,
        cross_attention: nn.Module,
        d_model: int,
        c_out: int,
        d_ff: int | None = None,
        moving_avg: int = 25,
        dropout: float = 0.1,
        act: str = "gelu",
    ) -> None:
        super().__init__()
        self.self_attention = self_attention
        self.cross_attention = cross_attention
        self.ffn = FeedForward(d_model, d_ff or 4 * d_model, dropout, act, bias=False)
        self.decomp = SeriesDecomposition(moving_avg)
        self.dropout = nn.Dropout(dropout)
        self.trend_projection = nn.Conv1d(d_model, c_out, kernel_size=3, padding=1, padding_mode="circular", bias=False)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, trend1 = self.decomp(x + self.dropout(self.self_attention(x, x, x)))
        x, trend2 = self.decomp(x + self.dropout(self.cross_attention(x, memory, memory)))
        x, trend3 = self.decomp(x + self.ffn(x))
        trend = trend1 + trend2 + trend3  # [B, L, d_model]
        trend = self.trend_projection(trend.transpose(1, 2)).transpose(1, 2)  # [B, L, c_out]
        return x, trend


class DecompDecoder(nn.Module):
    """A stack of :class:`DecompDecoderLayer` with trend accumulation, a final norm and a seasonal projection.

    ``x [B, L, d_model]``, ``memory [B, S, d_model]``, ``trend [B, L, c_out]`` (the initial trend) →
    ``(seasonal [B, L, c_out], trend [B, L, c_out])``; the forecast is their sum.
    """

    def __init__(self, layers: list[nn.Module], norm: nn.Module | None = None, projection: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.projection = projection

    def forward(self, x: torch.Tensor, memory: torch.Tensor, trend: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.layers:
            x, residual_trend = layer(x, memory)
            trend = trend + residual_trend
        if self.norm is not None:
            x = self.norm(x)
        if self.projection is not None:
            x = self.projection(x)
        return x, trend
