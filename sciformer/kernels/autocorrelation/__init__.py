"""Autoformer's Auto-Correlation (arXiv 2106.13008): FFT correlation and time-delay aggregation, ``reference.py``
(PyTorch, the spec) and ``triton.py`` (fused cross-spectrum and rolled aggregation around cuFFT), chosen by
:mod:`sciformer.kernels.dispatch`."""

from __future__ import annotations

import torch

from sciformer.kernels import dispatch


def correlation(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``R_QK(τ)``, τ = 0..L−1, averaged over heads and channels: ``q, k [B, L, H, E]`` → float32 ``[B, L]``."""
    if q.ndim != 4 or q.shape != k.shape:
        raise ValueError(f"expected q and k of one shape [B, L, H, E], got {tuple(q.shape)} and {tuple(k.shape)}")
    return dispatch.call("autocorrelation", "correlation", q, k)


def aggregate(v: torch.Tensor, delays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_i weights[:, i] · roll(v, −delays[:, i])`` along time: ``v [B, L, H, D]``, ``delays [B, k]`` (int),
    ``weights [B, k]`` → ``[B, L, H, D]``."""
    if v.ndim != 4 or delays.ndim != 2 or delays.shape != weights.shape or delays.shape[0] != v.shape[0]:
        raise ValueError(f"expected v [B, L, H, D], delays [B, k] and weights [B, k], got {tuple(v.shape)}, {tuple(delays.shape)}, {tuple(weights.shape)}")
    return dispatch.call("autocorrelation", "aggregate", v, delays, weights)
