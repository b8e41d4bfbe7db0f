"""Auto-Correlation of Autoformer (Wu et al., NeurIPS 2021, "Autoformer: Decomposition Transformers with
Auto-Correlation for Long-Term Series Forecasting", arXiv 2106.13008, §3.2): the PyTorch reference of its two
heavy steps, the specification of the fast versions.

* :func:`correlation`: ``R_QK(τ)`` for every delay by the FFT (Wiener–Khinchin), averaged over heads and channels.
* :func:`select_delays`: the ``k`` delays with the largest correlation and their softmax weights (small, PyTorch in
  every backend).
* :func:`aggregate`: time-delay aggregation, the weighted sum of the values rolled by the chosen delays.

:func:`auto_correlation` chains the three with the functions it is given: the whole layer, for tests and benchmarks
(:class:`sciformer.nn.autocorrelation.AutoCorrelation` calls the dispatched versions).
"""

from __future__ import annotations

import torch


def correlation(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Auto-correlation ``R_QK(τ)`` for every delay τ = 0..L−1, averaged over heads and channels.

    ``q, k [B, L, H, E]`` → float32 ``[B, L]``. Computed in float32: the FFT path is not supported in half precision
    for every length.
    """
    L = q.shape[1]
    q_f = torch.fft.rfft(q.float(), dim=1)  # [B, L//2 + 1, H, E]
    k_f = torch.fft.rfft(k.float(), dim=1)
    # n=L keeps odd lengths exact (irfft would otherwise return L − 1 steps)
    corr = torch.fft.irfft(q_f * torch.conj(k_f), n=L, dim=1)  # [B, L, H, E]
    return corr.mean(dim=(2, 3))


def select_delays(corr: torch.Tensor, n_delays: int, shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n_delays`` delays with the largest correlation and their softmax weights, ``([B, k] int, [B, k])``.

    ``shared`` (training): one set of delays chosen from the batch-mean correlation for every sample (the official
    "speed-up" variant, which also regularises like batch statistics), each sample weighting them by its own
    correlation; otherwise each sample picks its own.
    """
    if shared:
        delays = torch.topk(corr.mean(dim=0), n_delays).indices.expand(corr.shape[0], -1)  # [B, k], one row repeated
        weights = corr.gather(1, delays)  # [B, k]: each sample's own correlation at the shared delays
    else:
        weights, delays = torch.topk(corr, n_delays, dim=-1)  # [B, k] each
    return delays, torch.softmax(weights, dim=-1)


def aggregate(v: torch.Tensor, delays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Time-delay aggregation: ``Σ_i weights[:, i] · roll(v, −delays[:, i])`` along time.

    ``v [B, L, H, D]``, ``delays [B, k]`` (int, in ``[0, L)``), ``weights [B, k]`` → ``[B, L, H, D]``.
    """
    B, L, H, D = v.shape
    n_delays = delays.shape[1]
    steps = torch.arange(L, device=v.device)
    source = (steps[None, None, :] + delays[:, :, None]) % L  # [B, k, L]: rolled[t] = v[(t + τ) mod L]
    flat = v.reshape(B, L, H * D)  # [B, L, H·D]
    index = source.reshape(B, n_delays * L, 1).expand(-1, -1, H * D)  # [B, k·L, H·D]
    patterns = torch.gather(flat, 1, index).view(B, n_delays, L, H * D)  # [B, k, L, H·D]
    out = torch.einsum("bk,bklc->blc", weights.to(v.dtype), patterns)  # [B, L, H·D]
    return out.view(B, L, H, D)


def auto_correlation(q, k, v, n_delays: int, shared: bool, correlation=correlation, aggregate=aggregate) -> torch.Tensor:
    """The Auto-Correlation layer on equal-length ``q, k [B, L, H, E]``, ``v [B, L, H, D]`` → ``[B, L, H, D]``:
    correlation, delay selection, aggregation (with the given implementations of the two heavy steps)."""
    delays, weights = select_delays(correlation(q, k), n_delays, shared)
    return aggregate(v, delays, weights)
