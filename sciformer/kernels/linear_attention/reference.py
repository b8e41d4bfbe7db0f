"""Galerkin-type linear attention of the Galerkin Transformer (Cao, NeurIPS 2021, "Choose a Transformer: Fourier or
Galerkin", arXiv 2105.14995): the PyTorch reference, the specification of the fast versions.

``Q (Kᵀ V) / n`` for per-head ``q [B, H, n_q, E]``, ``k [B, H, n, E]``, ``v [B, H, n, D]``: the ``E × D`` matrix
``Kᵀ V`` is formed first, so cost is ``O(n E D)`` and memory ``O(E D)`` per head, linear in the number of points
``n``; the ``1/n`` makes it a Riemann sum of an integral operator. As in the Galerkin Transformer's attention
layer, K and V can be layer-normalised per head first (the normalisation that replaces the softmax), and the point
coordinates ``pos`` can be concatenated in front of Q, K and V of every head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Affine = tuple[torch.Tensor, torch.Tensor]


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Shape checks shared by the Galerkin and Fourier kernels and every backend."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"expected q, k, v of shape [B, H, n, E], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1] or k.shape[:-1] != v.shape[:-1] or q.shape[:2] != k.shape[:2]:
        raise ValueError(f"expected q [B, H, n_q, E], k [B, H, n, E], v [B, H, n, D], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")


def check_inputs(q, k, v, pos=None, k_norm=None, v_norm=None) -> None:
    """Shape checks of :func:`galerkin_attention`'s arguments."""
    check_qkv(q, k, v)
    B, H, n = k.shape[:3]
    if pos is not None and (pos.ndim != 3 or pos.shape[0] not in (1, B) or pos.shape[1] != n or q.shape[2] != n):
        raise ValueError(
            f"expected pos of shape [B or 1, n, pos_dim] with B={B}, n={n} (and as many queries as keys), got pos {tuple(pos.shape)} and q {tuple(q.shape)}"
        )
    for name, norm, width in (("k_norm", k_norm, k.shape[-1]), ("v_norm", v_norm, v.shape[-1])):
        if norm is not None and (len(norm) != 2 or any(p.shape != (H, width) for p in norm)):
            raise ValueError(f"expected {name} = (weight, bias) of shape [H, {width}] = [{H}, {width}], got {[tuple(p.shape) for p in norm]}")


def headwise_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Layer norm of ``x [B, H, n, E]`` over ``E`` with a separate affine map per head, ``weight, bias [H, E]``."""
    x = F.layer_norm(x, (x.shape[-1],), eps=eps)
    return x * weight[:, None, :] + bias[:, None, :]  # [H, 1, E] broadcasts over [B, H, n, E]


def galerkin_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pos: torch.Tensor | None = None,
    k_norm: Affine | None = None,
    v_norm: Affine | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Galerkin-type attention ``Q' (K'ᵀ V') / n``, linear in the number of points ``n``.

    ``q [B, H, n_q, E]``, ``k [B, H, n, E]``, ``v [B, H, n, D]``; ``n = k.shape[2]``.
    ``k_norm``, ``v_norm``: ``(weight, bias)``, each ``[H, E]`` / ``[H, D]``: layer-normalise K / V over the
    channels (``eps``) with a per-head affine map first. ``pos [B or 1, n, P]``: coordinates concatenated in front
    of Q, K and V of every head (self-attention, ``n_q = n``), so ``Q' = [pos, Q]``, ``K' = [pos, LN(K)]``,
    ``V' = [pos, LN(V)]``. Returns ``[B, H, n_q, P + D]`` (``P = 0`` without ``pos``).
    """
    check_inputs(q, k, v, pos, k_norm, v_norm)
    if k_norm is not None:
        k = headwise_layer_norm(k, *k_norm, eps)
    if v_norm is not None:
        v = headwise_layer_norm(v, *v_norm, eps)
    if pos is not None:
        B, H, n = k.shape[:3]
        pos = pos.unsqueeze(1).expand(B, H, n, pos.shape[-1])  # [B, H, n, P], the same in every head
        q, k, v = (torch.cat([pos, t], dim=-1) for t in (q, k, v))  # [B, H, n, P + E]
    kv = k.transpose(-2, -1) @ v / k.shape[-2]  # [B, H, E, D]
    return q @ kv  # [B, H, n_q, D]
