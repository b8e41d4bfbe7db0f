"""Triton Auto-Correlation: same signatures and results as :mod:`.reference`, forward and backward.

* :func:`correlation`: the FFTs stay cuFFT (``torch.fft``); ``_cross_spectrum_kernel`` fuses the cross-spectrum
  ``Q_f · conj(K_f)`` with the mean over heads and channels (which commutes with the inverse FFT), so one small
  ``[B, L//2 + 1]`` spectrum is inverse-transformed instead of the full ``[B, L, H, E]`` product, and neither the
  product nor the ``[B, L, H, E]`` correlation is ever stored. Its backward (two broadcast complex products) is
  left to PyTorch: it is the same single pass over the spectra a kernel would make.
* :func:`aggregate`: ``_roll_sum_kernel`` reads each value row straight from its rolled position (index
  arithmetic modulo ``L``) and sums the ``k`` delays in registers, instead of gathering a ``[B, k, L, H·D]``
  tensor of rolled copies. The backward is the same kernel with the delays negated, and it also reduces the
  weight gradients ``Σ dout[t] · v[t + τ]`` in the same pass (per-tile partial sums, added afterwards).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sciformer.kernels._triton import FLOAT_DTYPES, cdiv, device_guard, empty, pow2

__all__ = ["aggregate", "correlation", "unsupported"]


@triton.jit
def _cross_spectrum_kernel(QF, KF, X, F, C, inv_c, s_qb, s_qf, s_qc, s_kb, s_kf, s_kc, BLOCK_F: tl.constexpr, BLOCK_C: tl.constexpr):
    # X[b, f] = (1 / C) Σ_c QF[b, f, c] · conj(KF[b, f, c]); complex numbers as (real, imaginary) float32 pairs
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    f = pid * BLOCK_F + tl.arange(0, BLOCK_F)
    f_ok = f < F
    f64 = f.to(tl.int64)
    re = tl.zeros((BLOCK_F,), tl.float32)
    im = tl.zeros((BLOCK_F,), tl.float32)
    for c0 in range(0, C, BLOCK_C):
        c = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
        m = f_ok[:, None] & (c < C)[None, :]
        q_ptr = QF + b * s_qb + f64[:, None] * s_qf + c[None, :] * s_qc
        k_ptr = KF + b * s_kb + f64[:, None] * s_kf + c[None, :] * s_kc
        qr = tl.load(q_ptr, mask=m, other=0.0)
        qi = tl.load(q_ptr + 1, mask=m, other=0.0)
        kr = tl.load(k_ptr, mask=m, other=0.0)
        ki = tl.load(k_ptr + 1, mask=m, other=0.0)
        re += tl.sum(qr * kr + qi * ki, axis=1)
        im += tl.sum(qi * kr - qr * ki, axis=1)
    out = X + (b * F + f64) * 2
    tl.store(out, re * inv_c, mask=f_ok)
    tl.store(out + 1, im * inv_c, mask=f_ok)


@triton.jit
def _roll_sum_kernel(
    X,
    Y,
    DELAYS,
    W,
    V,
    DW,
    L,
    C,
    D,
    K,
    s_xb,
    s_xl,
    s_xh,
    s_xd,
    s_yb,
    s_yl,
    s_yh,
    s_yd,
    s_db,
    s_dk,
    s_wb,
    s_wk,
    s_vb,
    s_vl,
    s_vh,
    s_vd,
    SIGN: tl.constexpr,
    WITH_DW: tl.constexpr,
    FLAT: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    # Y[b, t, c] = Σ_i W[b, i] X[b, (t + SIGN·τ_i) mod L, c], channels c = (h, d).
    # WITH_DW: DW[b, i, tile] = Σ_{t, c in tile} X[b, (t + SIGN·τ_i) mod L, c] · V[b, t, c].
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    t_ok = t < L
    c_ok = c < C
    m = t_ok[:, None] & c_ok[None, :]
    if FLAT:  # (h, d) collapse to one channel index with stride s_*d in every tensor: no division per element
        h = tl.zeros_like(c).to(tl.int64)
        d = c.to(tl.int64)
    else:
        h = (c // D).to(tl.int64)
        d = (c % D).to(tl.int64)
    x_cols = h * s_xh + d * s_xd
    acc = tl.zeros((BLOCK_T, BLOCK_C), tl.float32)
    if WITH_DW:
        v = tl.load(V + b * s_vb + t[:, None].to(tl.int64) * s_vl + (h * s_vh + d * s_vd)[None, :], mask=m, other=0.0).to(tl.float32)
        tile = pid_t * tl.num_programs(1) + pid_c
        n_tiles = tl.num_programs(0) * tl.num_programs(1)
    for i in range(K):
        tau = tl.load(DELAYS + b * s_db + i * s_dk)
        w = tl.load(W + b * s_wb + i * s_wk).to(tl.float32)
        src = ((t + SIGN * tau + L) % L).to(tl.int64)
        x = tl.load(X + b * s_xb + src[:, None] * s_xl + x_cols[None, :], mask=m, other=0.0).to(tl.float32)
        acc += w * x
        if WITH_DW:
            tl.store(DW + (b * K + i) * n_tiles + tile, tl.sum(tl.sum(x * v, axis=1), axis=0))
    y_ptr = Y + b * s_yb + t[:, None].to(tl.int64) * s_yl + (h * s_yh + d * s_yd)[None, :]
    tl.store(y_ptr, acc.to(Y.dtype.element_ty), mask=m)


# ------------------------------------------------------------------------------------------------ correlation
class _CrossSpectrumMean(torch.autograd.Function):
    """``X[b, f] = mean_c QF[b, f, c] · conj(KF[b, f, c])`` for complex64 ``QF, KF [B, F, C]``."""

    @staticmethod
    def forward(ctx, q_f: torch.Tensor, k_f: torch.Tensor) -> torch.Tensor:
        B, F, C = q_f.shape
        qr, kr = torch.view_as_real(q_f), torch.view_as_real(k_f)  # [B, F, C, 2] float32
        out = empty(B, F, 2, like=q_f, dtype=torch.float32)
        block_f = 16
        with device_guard(q_f):
            _cross_spectrum_kernel[(cdiv(F, block_f), B)](
                qr,
                kr,
                out,
                F,
                C,
                1.0 / C,
                qr.stride(0),
                qr.stride(1),
                qr.stride(2),
                kr.stride(0),
                kr.stride(1),
                kr.stride(2),
                BLOCK_F=block_f,
                BLOCK_C=min(128, pow2(C)),
                num_warps=4,
            )
        ctx.save_for_backward(q_f, k_f)
        return torch.view_as_complex(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # PyTorch's complex convention: for x = a · conj(b), grad_a = grad · b and grad_b = conj(grad) · a.
        q_f, k_f = ctx.saved_tensors
        scale = 1.0 / q_f.shape[-1]
        g = grad.unsqueeze(-1) * scale  # [B, F, 1]
        grad_q = g * k_f if ctx.needs_input_grad[0] else None
        grad_k = g.conj() * q_f if ctx.needs_input_grad[1] else None
        return grad_q, grad_k


def correlation(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Triton version of :func:`sciformer.kernels.autocorrelation.reference.correlation`."""
    B, L = q.shape[:2]
    q_f = torch.fft.rfft(q.float(), dim=1).reshape(B, L // 2 + 1, -1)  # [B, F, H·E] complex64 (cuFFT)
    k_f = torch.fft.rfft(k.float(), dim=1).reshape(B, L // 2 + 1, -1)
    spectrum = _CrossSpectrumMean.apply(q_f, k_f)  # [B, F]
    return torch.fft.irfft(spectrum, n=L, dim=1)  # [B, L]


# ------------------------------------------------------------------------------------------------ aggregation
_BLOCK_T = 32


def _roll_sum(x, delays, weights, sign: int, v=None):
    """``Σ_i weights[:, i] · x[:, (t + sign·τ_i) mod L]``; with ``v``, also ``Σ_{t,c} x[(t + sign·τ_i)] v[t]``."""
    B, L, H, D = x.shape
    C = H * D
    K = delays.shape[1]
    y = empty(B, L, H, D, like=x)
    block_c = min(128, pow2(C))
    grid = (cdiv(L, _BLOCK_T), cdiv(C, block_c), B)
    flat = all(t.stride(2) == D * t.stride(3) for t in (x, y, v if v is not None else x))
    dw = empty(B, K, grid[0] * grid[1], like=x, dtype=torch.float32) if v is not None else y
    with device_guard(x):
        _roll_sum_kernel[grid](
            x,
            y,
            delays,
            weights,
            v if v is not None else x,
            dw,
            L,
            C,
            D,
            K,
            *x.stride(),
            *y.stride(),
            *delays.stride(),
            *weights.stride(),
            *(v if v is not None else x).stride(),
            SIGN=sign,
            WITH_DW=v is not None,
            FLAT=flat,
            BLOCK_T=_BLOCK_T,
            BLOCK_C=block_c,
            num_warps=4,
        )
    return (y, dw.sum(-1)) if v is not None else y


class _Aggregate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: torch.Tensor, delays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(v, delays, weights)
        return _roll_sum(v, delays, weights, +1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        v, delays, weights = ctx.saved_tensors
        # out[t] = Σ_i w_i v[t + τ_i]  ⇒  dv[s] = Σ_i w_i dout[s − τ_i],  dw_i = Σ_s dout[s − τ_i] · v[s]
        dv, dw = _roll_sum(grad.to(v.dtype), delays, weights, -1, v=v)
        return dv, None, dw.to(weights.dtype)


def aggregate(v: torch.Tensor, delays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Triton version of :func:`sciformer.kernels.autocorrelation.reference.aggregate`."""
    return _Aggregate.apply(v, delays, weights)


def unsupported(function: str, *args) -> str | None:
    """Why these inputs need the reference, or ``None``."""
    if function == "aggregate":
        v, delays, weights = args
        if v.dtype not in FLOAT_DTYPES:
            return f"the triton kernels take float32, bfloat16 or float16 values, got {v.dtype}"
        if delays.dtype not in (torch.int32, torch.int64):
            return f"delays must be integers, got {delays.dtype}"
    return None
