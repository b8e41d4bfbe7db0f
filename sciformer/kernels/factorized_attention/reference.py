"""Axial factorised kernel attention of FactFormer (Li, Shu, Barati Farimani, NeurIPS 2023, "Scalable Transformer
for PDE Surrogate Modeling", arXiv 2305.17560): the PyTorch reference, the specification of the fast versions.

``z = K_1 ×_1 K_2 ×_2 … K_d ×_d v`` with softmax-free axial kernels ``K_i = scale_i · q_i k_iᵀ`` (``n_i × n_i``),
cost ``O(N Σ n_i)`` for ``N = Π n_i`` grid points instead of ``O(N²)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.checkpoint import checkpoint


def scales_for(v: torch.Tensor, scale: float | Sequence[float] | None) -> list[float]:
    """One quadrature weight per grid axis of ``v [B, H, n_1, ..., n_d, D]``: ``scale`` (a float or one per axis),
    ``1 / n_i`` where it is ``None``."""
    d = v.ndim - 3
    scales = [scale] * d if scale is None or isinstance(scale, (int, float)) else list(scale)
    if len(scales) != d:
        raise ValueError(f"expected {d} scales (one per grid axis), got {len(scales)}")
    return [1.0 / v.shape[2 + i] if s is None else float(s) for i, s in enumerate(scales)]


def check_inputs(q_axes: Sequence[torch.Tensor], k_axes: Sequence[torch.Tensor], v: torch.Tensor) -> None:
    """Shape checks shared by every backend."""
    d = v.ndim - 3
    if d < 1 or len(q_axes) != d or len(k_axes) != d:
        raise ValueError(
            f"expected one query and one key per grid axis of v [B, H, n_1, ..., n_d, D]; got v of shape "
            f"{tuple(v.shape)} ({d} grid axes), {len(q_axes)} queries and {len(k_axes)} keys"
        )
    B, H = v.shape[:2]
    for i, (q, k) in enumerate(zip(q_axes, k_axes)):
        n = v.shape[2 + i]
        if q.shape[:3] != (B, H, n) or k.shape[:3] != (B, H, n) or q.shape[-1] != k.shape[-1] or q.ndim != 4 or k.ndim != 4:
            raise ValueError(f"axis {i}: expected q and k of shape [B, H, n_i, E] = [{B}, {H}, {n}, E], got {tuple(q.shape)} and {tuple(k.shape)}")


def factorized_attention(
    q_axes: Sequence[torch.Tensor], k_axes: Sequence[torch.Tensor], v: torch.Tensor, scale: float | Sequence[float] | None = None, recompute: bool = False
) -> torch.Tensor:
    """Apply the axial kernels ``K_i = scale_i · q_i k_iᵀ`` to ``v`` along its grid axes, one axis after another.

    Args:
        q_axes: ``d`` queries, ``q_axes[i]`` of shape ``[B, H, n_i, E]``.
        k_axes: ``d`` keys, ``k_axes[i]`` of shape ``[B, H, n_i, E]`` (``E`` may differ between axes).
        v: values ``[B, H, n_1, ..., n_d, D]`` (``D`` need not equal ``E``), any strides.
        scale: quadrature weight per axis (one float for all axes, or one per axis). ``None`` uses ``1 / n_i``,
            the uniform-grid Riemann weight on ``[0, 1]``, so the result approximates the kernel *integral* and
            does not grow with the resolution.
        recompute: keep only the inputs for the backward pass and recompute the intermediate fields there (less
            memory held between forward and backward, one more pass over the field per intermediate). Here through
            :func:`torch.utils.checkpoint.checkpoint`; the result is the same.

    Returns:
        ``[B, H, n_1, ..., n_d, D]`` with ``out[b, h, i_1..i_d] = Σ_j Π_a K_a[b, h, i_a, j_a] · v[b, h, j_1..j_d]``.

    No softmax. The axial maps act on different indices, so their order does not change the result (up to rounding);
    axis 1 is applied first, as in the official code.
    """
    check_inputs(q_axes, k_axes, v)
    scales = scales_for(v, scale)
    if recompute and torch.is_grad_enabled():
        return checkpoint(_apply_axes, tuple(q_axes), tuple(k_axes), v, scales, use_reentrant=False)
    return _apply_axes(q_axes, k_axes, v, scales)


def _apply_axes(q_axes: Sequence[torch.Tensor], k_axes: Sequence[torch.Tensor], v: torch.Tensor, scales: list[float]) -> torch.Tensor:
    B, H = v.shape[:2]
    for i, (q, k) in enumerate(zip(q_axes, k_axes)):
        n = v.shape[2 + i]
        kernel = torch.matmul(q, k.transpose(-1, -2)) * scales[i]  # [B, H, n_i, n_i]
        moved = v.movedim(2 + i, 2)  # [B, H, n_i, (other axes), D]
        rest = moved.shape[3:]
        out = torch.matmul(kernel, moved.reshape(B, H, n, -1))  # [B, H, n_i, prod(other axes) * D]
        v = out.view(B, H, n, *rest).movedim(2, 2 + i)
    return v
