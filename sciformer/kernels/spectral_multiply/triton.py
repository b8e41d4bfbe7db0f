"""Triton truncated spectral multiply: same signature and result as :mod:`.reference`, forward and backward.

``_mode_mix_kernel`` is a batched complex matmul with one batch entry per kept mode: each program takes one mode
``(corner, j_1, j_2, j_3)``, finds its spectrum and weight positions by index arithmetic (negative-frequency
corners at ``n_i − m_i + j``, their weights at ``M_i − m_i + j``) and forms ``C = op(A) · op(B)`` over the channels
with four real ``tl.dot`` products, reading the strided complex tensors in place. The reference instead slices
``2^(d-1)`` corners, lets ``einsum`` permute them into contiguous copies and copies the product back into the
output. The same kernel, with conjugation flags and swapped strides, gives the backward:
``dx = dout · conj(W)ᵀ`` per mode and ``dW = conj(x)ᵀ · dout`` per mode. The FFTs around it stay cuFFT.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from sciformer.kernels._triton import cdiv, device_guard, mm, pow2, precision, upcast
from sciformer.kernels.spectral_multiply.reference import check_inputs

__all__ = ["spectral_multiply", "unsupported"]


@triton.jit
def _mode_offset(corner, j1, j2, j3, m1, m2, S1, S2, s1, s2, s3, s_corner):
    """Offset of mode ``(j1, j2, j3)`` of ``corner`` in a tensor whose mode axes have sizes ``S1, S2`` (full
    axes) and strides ``s1, s2, s3``: negative-frequency corners count from the end of their axis."""
    neg1 = (corner // 2) % 2
    neg2 = corner % 2
    i1 = (j1 + neg1 * (S1 - m1)).to(tl.int64)
    i2 = (j2 + neg2 * (S2 - m2)).to(tl.int64)
    return i1 * s1 + i2 * s2 + j3.to(tl.int64) * s3 + corner.to(tl.int64) * s_corner


@triton.jit
def _mode_mix_kernel(
    A,
    Bm,
    C,
    M,
    N,
    K,
    m1,
    m2,
    m3,
    a_sm,
    a_sk,
    a_S1,
    a_S2,
    a_s1,
    a_s2,
    a_s3,
    a_sc,
    b_sk,
    b_sn,
    b_S1,
    b_S2,
    b_s1,
    b_s2,
    b_s3,
    b_sc,
    c_sm,
    c_sn,
    c_S1,
    c_S2,
    c_s1,
    c_s2,
    c_s3,
    c_sc,
    CONJ_A: tl.constexpr,
    CONJ_B: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # Per kept mode t: C[t][m, n] = Σ_k op(A[t])[m, k] · op(B[t])[k, n], complex as interleaved (re, im) float32.
    t = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_n = tl.program_id(2)
    per_corner = m1 * m2 * m3
    corner = t // per_corner
    rem = t % per_corner
    j1 = rem // (m2 * m3)
    j2 = (rem // m3) % m2
    j3 = rem % m3
    a_base = A + _mode_offset(corner, j1, j2, j3, m1, m2, a_S1, a_S2, a_s1, a_s2, a_s3, a_sc)
    b_base = Bm + _mode_offset(corner, j1, j2, j3, m1, m2, b_S1, b_S2, b_s1, b_s2, b_s3, b_sc)
    c_base = C + _mode_offset(corner, j1, j2, j3, m1, m2, c_S1, c_S2, c_s1, c_s2, c_s3, c_sc)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = rm < M
    n_ok = rn < N
    acc_re = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    acc_im = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_ok = rk < K
        a_ptr = a_base + rm[:, None].to(tl.int64) * a_sm + rk[None, :].to(tl.int64) * a_sk
        b_ptr = b_base + rk[:, None].to(tl.int64) * b_sk + rn[None, :].to(tl.int64) * b_sn
        a_mask = m_ok[:, None] & k_ok[None, :]
        b_mask = k_ok[:, None] & n_ok[None, :]
        a_re = tl.load(a_ptr, mask=a_mask, other=0.0)
        a_im = tl.load(a_ptr + 1, mask=a_mask, other=0.0)
        b_re = tl.load(b_ptr, mask=b_mask, other=0.0)
        b_im = tl.load(b_ptr + 1, mask=b_mask, other=0.0)
        if CONJ_A:
            a_im = -a_im
        if CONJ_B:
            b_im = -b_im
        acc_re = mm(a_re, b_re, acc_re, UPCAST, PRECISION)
        acc_re = mm(-a_im, b_im, acc_re, UPCAST, PRECISION)
        acc_im = mm(a_re, b_im, acc_im, UPCAST, PRECISION)
        acc_im = mm(a_im, b_re, acc_im, UPCAST, PRECISION)
    c_ptr = c_base + rm[:, None].to(tl.int64) * c_sm + rn[None, :].to(tl.int64) * c_sn
    mask = m_ok[:, None] & n_ok[None, :]
    tl.store(c_ptr, acc_re, mask=mask)
    tl.store(c_ptr + 1, acc_im, mask=mask)


def _operand(t: torch.Tensor, rows: int, cols: int, weight: bool) -> tuple[int, ...]:
    """``(s_rows, s_cols, S1, S2, s1, s2, s3, s_corner)`` in float32 units for a complex tensor whose matrix axes
    are ``rows``, ``cols`` and whose last ``d`` axes are the mode axes (padded in front to three; a weight tensor's
    axis 0 is the corner block)."""
    real = torch.view_as_real(t)
    d = t.ndim - (3 if weight else 2)
    sizes = [1] * (3 - d) + list(t.shape[-d:])
    strides = [0] * (3 - d) + [real.stride(i) for i in range(t.ndim - d, t.ndim)]
    corner = real.stride(0) if weight else 0
    return real.stride(rows), real.stride(cols), sizes[0], sizes[1], strides[0], strides[1], strides[2], corner


def _mix(a, a_axes, b, b_axes, c, c_axes, M, N, K, modes, conj_a=False, conj_b=False):
    """Launch ``C[t] = op(A[t]) · op(B[t])`` over every kept mode ``t``; ``*_axes = (rows, cols, is_weight)``."""
    d = len(modes)
    m = (1,) * (3 - d) + tuple(modes)
    n_modes = 2 ** (d - 1) * m[0] * m[1] * m[2]
    # tiles that compile for sm_90 without register spills (four accumulating products per step)
    block_m, block_n, block_k = min(64, pow2(M)), min(64, pow2(N)), 16
    grid = (n_modes, cdiv(M, block_m), cdiv(N, block_n))
    with device_guard(c):
        _mode_mix_kernel[grid](
            torch.view_as_real(a),
            torch.view_as_real(b),
            torch.view_as_real(c),
            M,
            N,
            K,
            *m,
            *_operand(a, *a_axes),
            *_operand(b, *b_axes),
            *_operand(c, *c_axes),
            CONJ_A=conj_a,
            CONJ_B=conj_b,
            BLOCK_M=block_m,
            BLOCK_N=block_n,
            BLOCK_K=block_k,
            UPCAST=upcast(),
            PRECISION=precision(torch.float32),
            num_warps=8 if block_m * block_n >= 4096 else 4,
            num_stages=2,
        )
    return c


class _SpectralMultiply(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_ft: torch.Tensor, weights: torch.Tensor, modes: tuple[int, ...]) -> torch.Tensor:
        B, C_in = x_ft.shape[:2]
        C_out = weights.shape[2]
        out = torch.zeros(B, C_out, *x_ft.shape[2:], dtype=x_ft.dtype, device=x_ft.device)
        # out[b, o] = Σ_i x[b, i] W[i, o]: x rows = batch (axis 0), cols = C_in (axis 1); W rows = C_in (axis 1)
        _mix(x_ft, (0, 1, False), weights, (1, 2, True), out, (0, 1, False), B, C_out, C_in, modes)
        ctx.modes = modes
        ctx.save_for_backward(x_ft, weights)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x_ft, weights = ctx.saved_tensors
        B, C_in = x_ft.shape[:2]
        C_out = weights.shape[2]
        grad = grad.to(x_ft.dtype)
        dx = dw = None
        if ctx.needs_input_grad[0]:  # dx[b, i] = Σ_o dout[b, o] conj(W[i, o])
            dx = torch.zeros_like(x_ft)
            _mix(grad, (0, 1, False), weights, (2, 1, True), dx, (0, 1, False), B, C_in, C_out, ctx.modes, conj_b=True)
        if ctx.needs_input_grad[1]:  # dW[i, o] = Σ_b conj(x[b, i]) dout[b, o]
            dw = torch.zeros_like(weights)
            _mix(x_ft, (1, 0, False), grad, (0, 1, False), dw, (1, 2, True), C_in, C_out, B, ctx.modes, conj_a=True)
        return dx, dw, None


def unsupported(function: str, x_ft, weights, modes) -> str | None:
    """Why these inputs need the reference, or ``None``."""
    if x_ft.dtype != torch.complex64 or weights.dtype != torch.complex64:
        return f"the triton kernel takes complex64 spectra and weights, got {x_ft.dtype} and {weights.dtype}"
    if not 1 <= x_ft.ndim - 2 <= 3:
        return f"the triton kernel takes 1 to 3 grid axes, got {x_ft.ndim - 2}"
    return None


def spectral_multiply(x_ft: torch.Tensor, weights: torch.Tensor, modes: Sequence[int]) -> torch.Tensor:
    """Triton version of :func:`sciformer.kernels.spectral_multiply.reference.spectral_multiply`."""
    modes = check_inputs(x_ft, weights, modes)
    return _SpectralMultiply.apply(x_ft, weights, modes)
