"""Galerkin-type linear attention (arXiv 2105.14995) with the K/V layer norms and coordinates fused:
``reference.py`` (PyTorch, the spec) and ``triton.py``, chosen by :mod:`sciformer.kernels.dispatch`."""

from __future__ import annotations

import torch

from sciformer.kernels import dispatch
from sciformer.kernels.linear_attention.reference import Affine, check_inputs


def galerkin_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pos: torch.Tensor | None = None,
    k_norm: Affine | None = None,
    v_norm: Affine | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``Q' (K'ᵀ V') / n`` with ``K' = [pos, LN(K)]``, ``V' = [pos, LN(V)]``, ``Q' = [pos, Q]``: ``q [B, H, n_q, E]``,
    ``k [B, H, n, E]``, ``v [B, H, n, D]`` → ``[B, H, n_q, P + D]``. See
    :func:`sciformer.kernels.linear_attention.reference.galerkin_attention` for the full specification."""
    check_inputs(q, k, v, pos, k_norm, v_norm)
    return dispatch.call("linear_attention", "galerkin_attention", q, k, v, pos, k_norm, v_norm, eps)
