"""FactFormer's axial factorised kernel attention (arXiv 2305.17560): ``reference.py`` (PyTorch, the spec) and
``triton.py`` (fused per-axis kernels, forward and backward), chosen by :mod:`sciformer.kernels.dispatch`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sciformer.kernels import dispatch
from sciformer.kernels.factorized_attention.reference import check_inputs


def factorized_attention(
    q_axes: Sequence[torch.Tensor], k_axes: Sequence[torch.Tensor], v: torch.Tensor, scale: float | Sequence[float] | None = None, recompute: bool = False
) -> torch.Tensor:
    """``z = K_1 ×_1 … K_d ×_d v`` with ``K_i = scale_i · q_i k_iᵀ``; ``q_axes[i], k_axes[i] [B, H, n_i, E]``,
    ``v [B, H, n_1, ..., n_d, D]`` → ``[B, H, n_1, ..., n_d, D]``. ``scale=None`` uses ``1 / n_i``; ``recompute``
    trades one pass over the field per intermediate in the backward for holding no intermediate between forward and
    backward. See :func:`sciformer.kernels.factorized_attention.reference.factorized_attention` for the full
    specification."""
    check_inputs(q_axes, k_axes, v)
    return dispatch.call("factorized_attention", "factorized_attention", q_axes, k_axes, v, scale, recompute)
