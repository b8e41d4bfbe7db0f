"""Truncated spectral multiply of Fourier-layer operators (Li et al., ICLR 2021, "Fourier Neural Operator for
Parametric Partial Differential Equations", arXiv 2010.08895): the PyTorch reference, the specification of the
fast versions.

It multiplies the lowest Fourier modes of a real-FFT'd field by a learned complex ``C_in × C_out`` matrix per mode
and zeroes the rest.

Mode layout. ``x_ft = rfftn(x, dim=grid axes)`` has shape ``[B, C_in, n_1, ..., n_{d-1}, n_d // 2 + 1]``.
On the last (halved) axis the kept frequencies are ``0 .. m_d - 1``; on every other axis both the lowest
non-negative ``0 .. m_i - 1`` and the lowest negative ``-m_i .. -1`` are kept, so there are ``2^(d-1)``
corner blocks. ``weights`` holds one ``[C_in, C_out, M_1, ..., M_d]`` block per corner, ordered like the
binary number whose bit ``i`` (most significant = axis 1) says "negative frequencies on axis i" (1D: one
block; 2D: block 0 = rows ``:m``, block 1 = rows ``-m:``). When fewer modes are kept than the weights hold
(``m_i < M_i``, a coarse grid), the weights of the highest ``|frequency|`` are dropped: a non-negative block
uses entries ``:m_i``, a negative block entries ``-m_i:`` (entry ``j`` of a negative block is frequency
``j - M_i``). So the same weights act on any grid at least as fine as the modes they hold (zero-shot
super-resolution), and on coarser grids they act on the modes that grid has.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch


def kept_modes(grid: Sequence[int], modes: Sequence[int]) -> tuple[int, ...]:
    """How many modes per axis fit on ``grid`` (at most ``modes``): ``n // 2`` on the full axes (the
    positive and negative corners must not overlap), ``n // 2 + 1`` on the last, halved axis."""
    *full, last = grid
    *m_full, m_last = modes
    return (*(min(m, n // 2) for m, n in zip(m_full, full)), min(m_last, last // 2 + 1))


def check_inputs(x_ft: torch.Tensor, weights: torch.Tensor, modes: Sequence[int]) -> tuple[int, ...]:
    """Shape checks shared by every backend; returns ``modes`` as a tuple of ints."""
    d = x_ft.ndim - 2
    modes = tuple(int(m) for m in modes)
    n_blocks = 2 ** (d - 1)
    if weights.ndim != d + 3 or weights.shape[0] != n_blocks or weights.shape[1] != x_ft.shape[1]:
        raise ValueError(
            f"expected weights of shape [{n_blocks}, C_in={x_ft.shape[1]}, C_out, M_1..M_{d}] for a {d}D x_ft {tuple(x_ft.shape)}, got {tuple(weights.shape)}"
        )
    if len(modes) != d or any(m < 1 or m > M for m, M in zip(modes, weights.shape[3:])):
        raise ValueError(f"expected {d} kept modes each in 1..{tuple(weights.shape[3:])}, got {modes}")
    if modes != kept_modes((*x_ft.shape[2:-1], 2 * (x_ft.shape[-1] - 1)), modes):
        raise ValueError(f"modes {modes} do not fit the spectrum {tuple(x_ft.shape[2:])}: use kept_modes()")
    return modes


def spectral_multiply(x_ft: torch.Tensor, weights: torch.Tensor, modes: Sequence[int]) -> torch.Tensor:
    """Multiply the kept Fourier modes of ``x_ft`` by per-mode channel matrices; zero every other mode.

    ``x_ft``: complex ``[B, C_in, n_1, ..., n_{d-1}, n_d // 2 + 1]`` (``rfftn`` over the last ``d`` axes).
    ``weights``: complex ``[2^(d-1), C_in, C_out, M_1, ..., M_d]`` (corner blocks, see the module docstring).
    ``modes``: ``(m_1, ..., m_d)`` modes kept per axis, ``m_i <= M_i``, ``2 m_i <= n_i`` on the full axes
    and ``m_d <= n_d // 2 + 1`` (see :func:`kept_modes`).
    Returns complex ``[B, C_out, n_1, ..., n_{d-1}, n_d // 2 + 1]``:
    ``out[b, o, k] = Σ_i x_ft[b, i, k] · W[corner(k), i, o, k]`` on kept modes ``k``, 0 elsewhere.
    """
    modes = check_inputs(x_ft, weights, modes)
    d = x_ft.ndim - 2
    B, C_out = x_ft.shape[0], weights.shape[2]
    out = torch.zeros(B, C_out, *x_ft.shape[2:], dtype=x_ft.dtype, device=x_ft.device)
    letters = "xyzw"[:d]
    equation = f"bi{letters},io{letters}->bo{letters}"
    for block, negative in enumerate(itertools.product((False, True), repeat=d - 1)):
        # One corner: a tuple of slices into the spectrum and into the weight block.
        spec = [slice(-m, None) if neg else slice(0, m) for m, neg in zip(modes[:-1], negative)] + [slice(0, modes[-1])]
        wsel = [slice(M - m, M) if neg else slice(0, m) for m, M, neg in zip(modes[:-1], weights.shape[3:-1], negative)]
        wsel.append(slice(0, modes[-1]))
        corner = (slice(None), slice(None), *spec)
        block_weights: tuple[int | slice, ...] = (block, slice(None), slice(None), *wsel)
        out[corner] = torch.einsum(equation, x_ft[corner], weights[block_weights])
    return out
