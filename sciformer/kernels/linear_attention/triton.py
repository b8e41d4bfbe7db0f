"""Triton Galerkin attention: same signature and result as :mod:`.reference`, forward and backward.

Forward, two passes over the inputs and nothing field-sized written but the output:

* ``_gram_kernel``: one pass over K and V per head that layer-normalises each row in registers, puts the
  coordinates in front, and accumulates the small state ``S = K'ᵀ V' / n`` (``(P+E) × (P+D)``, float32). The rows
  are split over programs into partial states, summed afterwards (deterministic, no atomics).
* ``_rowmm_kernel``: ``out = [pos, Q] · S``, row block by row block.

Backward, three passes: ``_gram_kernel`` again for ``dS = [pos, Q]ᵀ dout / n``; ``_rowmm_kernel`` for
``dQ = dout · S_Qᵀ``; ``_kv_backward_kernel`` re-normalises K and V in registers, forms ``dK' = V' dSᵀ``,
``dV' = K' dS`` and runs the layer-norm backward, writing dK, dV and per-program partial sums of the affine
parameters' gradients. The normalised K, V and the concatenations are never stored.

The coordinates are treated as constants (no gradient), as in the Galerkin Transformer.
"""

from __future__ import annotations

import torch

from sciformer.kernels import _tuning
from sciformer.kernels._triton import FLOAT_DTYPES, cdiv, device_guard, empty, empty_like, pow2, precision, sm_count, upcast
from sciformer.kernels.linear_attention._kernels import _gram_kernel, _kv_backward_kernel, _rowmm_kernel
from sciformer.kernels.linear_attention.reference import check_inputs

__all__ = ["galerkin_attention", "unsupported"]

MAX_WIDTH = 128  # channels per head held in one tile (E, D)
MAX_POS = 8  # coordinate columns (each a compile-time unrolled outer product)


# ------------------------------------------------------------------------------------------------ launches
# (rows per step, warps, float32 dot precision) per kernel, operand dtype and tile width (channels per head rounded
# up to a power of two): the largest row step that compiles for sm_90 without register spills or more than
# 200 KiB of shared memory (checked with ptxas). "tf32x3" (three TF32 products) keeps float32 accuracy on tensor
# cores; "ieee" (FMA) is exact float32. The float32 entries at width 64 were timed on an H100 (256²,
# 64 heads: the step went from 20.0 to about 17.4 / 18.7 / 18.1 ms with each new entry alone).
_CONFIGS: dict[str, dict[int, dict[int, tuple[int, int] | tuple[int, int, str]]]] = {
    "gram": {2: {32: (64, 4), 64: (64, 8), 128: (32, 8)}, 4: {32: (32, 4, "tf32x3"), 64: (64, 8, "ieee"), 128: (32, 8, "tf32x3")}},
    "rowmm": {2: {32: (64, 4), 64: (64, 8), 128: (64, 8)}, 4: {32: (32, 4, "tf32x3"), 64: (64, 4, "tf32x3"), 128: (32, 8, "ieee")}},
    "backward": {2: {32: (64, 8), 64: (32, 8), 128: (16, 8)}, 4: {32: (32, 8, "ieee"), 64: (32, 8, "tf32x3"), 128: (16, 8, "ieee")}},
}


def _config(kind: str, dtype: torch.dtype, *widths: int) -> tuple[int, int, str]:
    """``(rows per step, warps, dot precision)`` for a kernel on tiles of these widths."""
    width = min(128, max(32, *(pow2(w) for w in widths)))
    table = _CONFIGS[kind][4 if dtype == torch.float32 else 2][width]
    block_n, warps = table[:2]
    prec = precision(dtype)
    if len(table) == 3 and prec != "tf32" and not upcast():  # only the float32 entries name a precision
        prec = table[2]  # full float32 accuracy: tf32x3 or FMA, as the table says
    if upcast():
        block_n = 32  # the interpreter: small steps keep the tests quick
    return block_n, warps, prec


# Programs per streaming multiprocessor tried by the row-split kernels, the first untimed (interpreter, tuning off).
# Each program walks its rows one step after another: more programs hide more latency but leave more partial sums
# to add, so the count is timed per shape.
_WAVES = (16, 4, 64)


def _row_splits(n: int, heads: int, device: torch.device, block: int, waves: int) -> tuple[int, int]:
    """``(programs per head, rows per program)``: row splits of ``n`` rows (multiples of ``block``) so that all
    heads together have about ``waves`` programs per streaming multiprocessor."""
    programs = max(1, min(cdiv(n, block), cdiv(waves * sm_count(device), heads)))
    rows = cdiv(cdiv(n, programs), block) * block
    return cdiv(n, rows), rows


def _pos_strides(pos: torch.Tensor | None) -> tuple[int, int, int]:
    if pos is None:
        return 0, 0, 0
    return (0 if pos.shape[0] == 1 else pos.stride(0)), pos.stride(1), pos.stride(2)


def _norm_args(norm):
    if norm is None:
        return None, None, 0, 0
    weight, bias = norm
    if weight.stride() != bias.stride():
        weight, bias = weight.contiguous(), bias.contiguous()
    return weight, bias, weight.stride(0), weight.stride(1)


def _extra_strides(x: torch.Tensor | None) -> tuple[int, int, int, int]:
    """``(b, h, n, column)`` strides of extra columns: coordinates ``[B or 1, n, P]`` (shared by the heads) or a
    per-head ``[B, H, n, P]`` slice."""
    if x is None:
        return 0, 0, 0, 0
    if x.ndim == 3:
        return (0 if x.shape[0] == 1 else x.stride(0)), 0, x.stride(1), x.stride(2)
    b, h, n, column = x.stride()
    return b, h, n, column


def _gram(left, right, left_extra, right_extra, left_norm, right_norm, eps: float) -> torch.Tensor:
    """``Σ_rows [left_extra?, LN?(left)]ᵀ [right_extra?, LN?(right)]`` per head, float32
    ``[B, H, PL + EL, PR + ER]`` (``P`` extra columns in front where given)."""
    B, H, n, EL = left.shape
    ER = right.shape[-1]
    extra = left_extra if left_extra is not None else right_extra
    P = extra.shape[-1] if extra is not None else 0
    PL, PR = (P if left_extra is not None else 0), (P if right_extra is not None else 0)
    block_n, warps, prec = _config("gram", left.dtype, EL, ER)
    lw, lb, s_lwh, s_lwe = _norm_args(left_norm)
    rw, rb, s_rwh, s_rwe = _norm_args(right_norm)
    dummy = left  # unused pointer arguments
    result = {}

    def launch(waves: int) -> None:
        splits, rows_per_split = _row_splits(n, B * H, left.device, block_n, waves)
        out = result["out"] = empty(splits, B, H, PL + EL, PR + ER, like=left, dtype=torch.float32)
        _gram_kernel[(splits, B * H)](
            left,
            right,
            left_extra if PL else dummy,
            right_extra if PR else dummy,
            lw if lw is not None else dummy,
            lb if lb is not None else dummy,
            rw if rw is not None else dummy,
            rb if rb is not None else dummy,
            out,
            H,
            n,
            EL,
            ER,
            rows_per_split,
            eps,
            *left.stride(),
            *right.stride(),
            *_extra_strides(left_extra),
            *_extra_strides(right_extra),
            s_lwh,
            s_lwe,
            s_rwh,
            s_rwe,
            BLOCK_N=block_n,
            BLOCK_L=pow2(EL),
            BLOCK_R=pow2(ER),
            BLOCK_P=pow2(P),
            P=P,
            LEFT_POS=PL > 0,
            RIGHT_POS=PR > 0,
            NORM_L=left_norm is not None,
            NORM_R=right_norm is not None,
            UPCAST=upcast(),
            PRECISION=prec,
            num_warps=warps,
            num_stages=2,
        )

    key = ("la_gram", n, B * H, EL, ER, PL, PR, left_norm is not None, right_norm is not None, left.dtype, prec)
    with device_guard(left):
        _tuning.pick(key, _WAVES, launch, left.device)
    out = result["out"]
    return out[0] if out.shape[0] == 1 else out.sum(0)


def _rowmm(x1, x2, m, p_out: int, y: torch.Tensor) -> torch.Tensor:
    """``y = [x1, x2] · m`` (``x1 [B|1, (H), n, P1]`` optional, ``x2 [B, H, n, W2]``, float32 ``m [B, H, P1 + W2,
    p_out + WO]``), ``y [B, H, n, p_out + WO]`` written in place."""
    B, H, n, W2 = x2.shape
    P1 = x1.shape[-1] if x1 is not None else 0
    WO = m.shape[-1] - p_out
    s_x1 = _extra_strides(x1)
    block_n, warps, prec = _config("rowmm", x2.dtype, W2, WO)
    with device_guard(x2):
        _rowmm_kernel[(cdiv(n, block_n), B * H)](
            x1 if x1 is not None else x2,
            x2,
            m,
            y,
            H,
            n,
            W2,
            WO,
            *s_x1,
            *x2.stride(),
            *m.stride(),
            *y.stride(),
            BLOCK_N=block_n,
            BLOCK_W2=pow2(W2),
            BLOCK_WO=pow2(WO),
            P1=P1,
            PO=p_out,
            UPCAST=upcast(),
            PRECISION=prec,
            num_warps=warps,
            num_stages=2,
        )
    return y


def _heads_last_empty(B: int, H: int, n: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """``[B, H, n, width]`` laid out as ``[B, n, H, width]``: merging the heads afterwards is a free view."""
    return empty(B, n, H, width, like=like).transpose(1, 2)


class _GalerkinAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, eps, q, k, v, pos, kw, kb, vw, vb):
        k_norm = (kw, kb) if kw is not None else None
        v_norm = (vw, vb) if vw is not None else None
        B, H, n_q, _ = q.shape
        n = k.shape[2]
        P = pos.shape[-1] if pos is not None else 0
        state = _gram(k, v, pos, pos, k_norm, v_norm, eps) / n  # [B, H, P + E, P + D] float32
        out = _rowmm(pos, q, state, P, _heads_last_empty(B, H, n_q, P + v.shape[-1], q))
        ctx.eps = eps
        ctx.save_for_backward(q, k, v, pos, kw, kb, vw, vb, state)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, pos, kw, kb, vw, vb, state = ctx.saved_tensors
        k_norm = (kw, kb) if kw is not None else None
        v_norm = (vw, vb) if vw is not None else None
        B, H, n_q, E = q.shape
        n, D = k.shape[2], v.shape[-1]
        P = pos.shape[-1] if pos is not None else 0
        grad = grad.to(q.dtype)
        # dS = [pos, Q]ᵀ dout / n; the gradient's coordinate columns are the right side's extra columns
        dstate = _gram(q, grad[..., P:], pos, grad[..., :P] if P else None, None, None, 0.0) / n  # [B, H, P + E, P + D]
        # dQ = dout · S[P:, :]ᵀ: the gradient's coordinate columns and channel columns are the two inputs
        dq = _rowmm(grad[..., :P] if P else None, grad[..., P:], state[:, :, P:, :].transpose(-1, -2), 0, empty_like(q))
        dk, dv = empty_like(k), empty_like(v)
        block_n, warps, prec = _config("backward", k.dtype, E, D)
        kw_, kb_, s_kwh, s_kwe = _norm_args(k_norm)
        vw_, vb_, s_vwh, s_vwe = _norm_args(v_norm)
        result = {}

        def launch(waves: int) -> None:
            programs, rows_per_program = _row_splits(n, B * H, k.device, block_n, waves)
            dparams = result["dparams"] = torch.zeros(programs, B, H, 2 * E + 2 * D, device=k.device, dtype=torch.float32)
            _kv_backward_kernel[(programs, B * H)](
                k,
                v,
                pos if pos is not None else k,
                kw_ if kw_ is not None else k,
                kb_ if kb_ is not None else k,
                vw_ if vw_ is not None else k,
                vb_ if vb_ is not None else k,
                dstate,
                dk,
                dv,
                dparams,
                H,
                n,
                E,
                D,
                rows_per_program,
                ctx.eps,
                *k.stride(),
                *v.stride(),
                *_pos_strides(pos),
                s_kwh,
                s_kwe,
                s_vwh,
                s_vwe,
                *dk.stride(),
                *dv.stride(),
                BLOCK_N=block_n,
                BLOCK_E=pow2(E),
                BLOCK_D=pow2(D),
                P=P,
                NORM_K=k_norm is not None,
                NORM_V=v_norm is not None,
                UPCAST=upcast(),
                PRECISION=prec,
                num_warps=warps,
                num_stages=2,
            )

        key = ("la_kv_backward", n, B * H, E, D, P, k.dtype, prec, k_norm is not None, v_norm is not None)
        with device_guard(k):
            _tuning.pick(key, _WAVES, launch, k.device)
        dparams = result["dparams"].sum((0, 1))  # [H, 2E + 2D]
        dkw, dkb, dvw, dvb = dparams.split([E, E, D, D], dim=-1)
        grads = [
            dkw.to(kw.dtype) if kw is not None else None,
            dkb.to(kb.dtype) if kb is not None else None,
            dvw.to(vw.dtype) if vw is not None else None,
            dvb.to(vb.dtype) if vb is not None else None,
        ]
        return None, dq, dk, dv, None, *grads


def unsupported(function: str, q, k, v, pos=None, k_norm=None, v_norm=None, eps: float = 1e-5) -> str | None:
    """Why these inputs need the reference, or ``None``."""
    if q.dtype not in FLOAT_DTYPES:
        return f"the triton kernels take float32, bfloat16 or float16, got {q.dtype}"
    if k.dtype != q.dtype or v.dtype != q.dtype:
        return f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
    if max(q.shape[-1], v.shape[-1]) > MAX_WIDTH:
        return f"the triton kernels take at most {MAX_WIDTH} channels per head, got E={q.shape[-1]}, D={v.shape[-1]}"
    if pos is not None and (pos.shape[-1] > MAX_POS or pos.requires_grad):
        return f"the triton kernels take at most {MAX_POS} coordinates, without gradient"
    return None


def galerkin_attention(q, k, v, pos=None, k_norm=None, v_norm=None, eps: float = 1e-5) -> torch.Tensor:
    """Triton version of :func:`sciformer.kernels.linear_attention.reference.galerkin_attention`."""
    check_inputs(q, k, v, pos, k_norm, v_norm)
    kw, kb = k_norm if k_norm is not None else (None, None)
    vw, vb = v_norm if v_norm is not None else (None, None)
    return _GalerkinAttention.apply(float(eps), q, k, v, pos, kw, kb, vw, vb)
