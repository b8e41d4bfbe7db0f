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
import triton
import triton.language as tl

from sciformer.kernels import _tuning
from sciformer.kernels._triton import FLOAT_DTYPES, cdiv, device_guard, empty, empty_like, mm, pow2, precision, sm_count, upcast
from sciformer.kernels.linear_attention.reference import check_inputs

__all__ = ["galerkin_attention", "unsupported"]

MAX_WIDTH = 128  # channels per head held in one tile (E, D)
MAX_POS = 8  # coordinate columns (each a compile-time unrolled outer product)


@triton.jit
def _layer_norm_rows(x, col_ok, width, W, B, eps, NORM: tl.constexpr):
    """Normalise the rows of a float32 tile ``x [rows, BLOCK]`` over its first ``width`` columns; returns
    ``(y, x_hat, rstd)`` with ``y = x_hat · W + B`` (``W``, ``B``: ``[BLOCK]`` rows of the affine map)."""
    if NORM:
        mean = tl.sum(x, axis=1) / width
        xc = tl.where(col_ok[None, :], x - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / width + eps)
        x_hat = xc * rstd[:, None]
        y = x_hat * W[None, :] + B[None, :]
    else:
        x_hat = x
        rstd = tl.sum(x, axis=1) * 0.0
        y = x
    return y, x_hat, rstd


@triton.jit
def _gram_kernel(
    L, R, LPOS, RPOS, LW, LB, RW, RB, OUT,
    H, n, EL, ER, rows_per_split, eps,
    s_lb, s_lh, s_ln, s_le,
    s_rb, s_rh, s_rn, s_re,
    s_lpb, s_lph, s_lpn, s_lpe,
    s_rpb, s_rph, s_rpn, s_rpe,
    s_lwh, s_lwe, s_rwh, s_rwe,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr, P: tl.constexpr,
    LEFT_POS: tl.constexpr, RIGHT_POS: tl.constexpr, NORM_L: tl.constexpr, NORM_R: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    # OUT[split, b, h] = Σ_{rows of this split} [lpos?, LN?(l)]ᵀ [rpos?, LN?(r)] (float32, the P extra columns
    # first). The P ≤ 8 extra columns (coordinates; in the backward also the gradient's coordinate columns) are
    # loaded as a zero-padded [rows, 16] tile and reduced by small tensor-core dots: reducing them over rows with
    # tl.sum costs a cross-warp reduction per column and step, which made this pass 5× slower than its traffic.
    split = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    cl = tl.arange(0, BLOCK_L)
    cr = tl.arange(0, BLOCK_R)
    cp = tl.arange(0, BLOCK_P)
    l_ok = cl < EL
    r_ok = cr < ER
    p_ok = cp < P
    DT = L.dtype.element_ty
    lw = tl.zeros((BLOCK_L,), tl.float32)
    lb = lw
    rw = tl.zeros((BLOCK_R,), tl.float32)
    rb = rw
    if NORM_L:
        lw = tl.load(LW + h * s_lwh + cl * s_lwe, mask=l_ok, other=0.0).to(tl.float32)
        lb = tl.load(LB + h * s_lwh + cl * s_lwe, mask=l_ok, other=0.0).to(tl.float32)
    if NORM_R:
        rw = tl.load(RW + h * s_rwh + cr * s_rwe, mask=r_ok, other=0.0).to(tl.float32)
        rb = tl.load(RB + h * s_rwh + cr * s_rwe, mask=r_ok, other=0.0).to(tl.float32)
    acc_lr = tl.zeros((BLOCK_L, BLOCK_R), tl.float32)
    acc_lp = tl.zeros((BLOCK_L, BLOCK_P), tl.float32)
    acc_pr = tl.zeros((BLOCK_P, BLOCK_R), tl.float32)
    acc_pp = tl.zeros((BLOCK_P, BLOCK_P), tl.float32)
    start = split * rows_per_split
    end = tl.minimum(start + rows_per_split, n)
    for n0 in range(start, end, BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        row_ok = rows < end
        rows64 = rows.to(tl.int64)
        lt = tl.load(L + b * s_lb + h * s_lh + rows64[:, None] * s_ln + cl[None, :] * s_le, mask=row_ok[:, None] & l_ok[None, :], other=0.0).to(tl.float32)
        rt = tl.load(R + b * s_rb + h * s_rh + rows64[:, None] * s_rn + cr[None, :] * s_re, mask=row_ok[:, None] & r_ok[None, :], other=0.0).to(tl.float32)
        lt, _l_hat, _l_rstd = _layer_norm_rows(lt, l_ok, EL, lw, lb, eps, NORM_L)
        rt, _r_hat, _r_rstd = _layer_norm_rows(rt, r_ok, ER, rw, rb, eps, NORM_R)
        # padded rows/columns must not contribute (the affine bias would make them non-zero); round to the input
        # dtype as the reference's matmul does
        lt = tl.where(row_ok[:, None] & l_ok[None, :], lt, 0.0).to(DT)
        rt = tl.where(row_ok[:, None] & r_ok[None, :], rt, 0.0).to(DT)
        acc_lr = mm(tl.trans(lt), rt, acc_lr, UPCAST, PRECISION)
        pos_mask = row_ok[:, None] & p_ok[None, :]
        if RIGHT_POS:
            rp = tl.load(RPOS + b * s_rpb + h * s_rph + rows64[:, None] * s_rpn + cp[None, :] * s_rpe, mask=pos_mask, other=0.0).to(DT)
            acc_lp = mm(tl.trans(lt), rp, acc_lp, UPCAST, PRECISION)
        if LEFT_POS:
            lp = tl.load(LPOS + b * s_lpb + h * s_lph + rows64[:, None] * s_lpn + cp[None, :] * s_lpe, mask=pos_mask, other=0.0).to(DT)
            acc_pr = mm(tl.trans(lp), rt, acc_pr, UPCAST, PRECISION)
            if RIGHT_POS:
                acc_pp = mm(tl.trans(lp), rp, acc_pp, UPCAST, PRECISION)
    PL = P * LEFT_POS
    PR = P * RIGHT_POS
    width = PR + ER
    base = OUT + (split * tl.num_programs(1) + bh).to(tl.int64) * (PL + EL) * width
    tl.store(base + (PL + cl[:, None]) * width + PR + cr[None, :], acc_lr, mask=l_ok[:, None] & r_ok[None, :])
    if RIGHT_POS:
        tl.store(base + (PL + cl[:, None]) * width + cp[None, :], acc_lp, mask=l_ok[:, None] & p_ok[None, :])
    if LEFT_POS:
        tl.store(base + cp[:, None] * width + PR + cr[None, :], acc_pr, mask=p_ok[:, None] & r_ok[None, :])
        if RIGHT_POS:
            tl.store(base + cp[:, None] * width + cp[None, :], acc_pp, mask=p_ok[:, None] & p_ok[None, :])


@triton.jit
def _rowmm_kernel(
    X1, X2, M, Y,
    H, n, W2, WO,
    s_x1b, s_x1h, s_x1n, s_x1e,
    s_x2b, s_x2h, s_x2n, s_x2e,
    s_mb, s_mh, s_mr, s_mc,
    s_yb, s_yh, s_yn, s_ye,
    BLOCK_N: tl.constexpr, BLOCK_W2: tl.constexpr, BLOCK_WO: tl.constexpr, P1: tl.constexpr, PO: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    # Y = [X1, X2] · M with float32 M [(P1 + W2) × (PO + WO)]: the W2 × WO block by tl.dot, the P1 ≤ 8 rows and
    # PO ≤ 8 columns of coordinates by outer products and row reductions.
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n
    rows64 = rows.to(tl.int64)
    c2 = tl.arange(0, BLOCK_W2)
    cw = tl.arange(0, BLOCK_WO)
    DT = X2.dtype.element_ty
    m_base = M + b * s_mb + h * s_mh
    x2 = tl.load(X2 + b * s_x2b + h * s_x2h + rows64[:, None] * s_x2n + c2[None, :] * s_x2e, mask=row_ok[:, None] & (c2 < W2)[None, :], other=0.0)
    m2w = tl.load(m_base + (P1 + c2[:, None]) * s_mr + (PO + cw[None, :]) * s_mc, mask=(c2 < W2)[:, None] & (cw < WO)[None, :], other=0.0).to(DT)
    acc = mm(x2, m2w, tl.zeros((BLOCK_N, BLOCK_WO), tl.float32), UPCAST, PRECISION)
    x1_base = X1 + b * s_x1b + h * s_x1h + rows64 * s_x1n
    for p in tl.static_range(P1):
        x1p = tl.load(x1_base + p * s_x1e, mask=row_ok, other=0.0).to(DT).to(tl.float32)
        m1p = tl.load(m_base + p * s_mr + (PO + cw) * s_mc, mask=cw < WO, other=0.0).to(DT).to(tl.float32)
        acc += x1p[:, None] * m1p[None, :]
    y_base = Y + b * s_yb + h * s_yh + rows64 * s_yn
    tl.store(y_base[:, None] + (PO + cw[None, :]) * s_ye, acc.to(Y.dtype.element_ty), mask=row_ok[:, None] & (cw < WO)[None, :])
    x2f = x2.to(tl.float32)
    for o in tl.static_range(PO):
        m2o = tl.load(m_base + (P1 + c2) * s_mr + o * s_mc, mask=c2 < W2, other=0.0).to(DT).to(tl.float32)
        yo = tl.sum(x2f * m2o[None, :], axis=1)  # [BLOCK_N]
        for p in tl.static_range(P1):
            x1p = tl.load(x1_base + p * s_x1e, mask=row_ok, other=0.0).to(DT).to(tl.float32)
            yo += x1p * tl.load(m_base + p * s_mr + o * s_mc).to(DT).to(tl.float32)
        tl.store(y_base + o * s_ye, yo.to(Y.dtype.element_ty), mask=row_ok)


@triton.jit
def _kv_backward_kernel(
    K, V, POS, KW, KB, VW, VB, DS, DK, DV, DPARAMS,
    H, n, E, D, rows_per_program, eps,
    s_kb, s_kh, s_kn, s_ke,
    s_vb, s_vh, s_vn, s_ve,
    s_pb, s_pn, s_pe,
    s_kwh, s_kwe, s_vwh, s_vwe,
    s_dkb, s_dkh, s_dkn, s_dke,
    s_dvb, s_dvh, s_dvn, s_dve,
    BLOCK_N: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr, P: tl.constexpr,
    NORM_K: tl.constexpr, NORM_V: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    # dS = ∂loss/∂S, S = K'ᵀ V' (float32, [P+E, P+D] per head, coordinate rows/columns first):
    # dK̂ = V̂ dS_kvᵀ + pos dS_kpᵀ, dV̂ = K̂ dS_kv + pos dS_pv, then the layer-norm backward.
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    ce = tl.arange(0, BLOCK_E)
    cd = tl.arange(0, BLOCK_D)
    e_ok = ce < E
    d_ok = cd < D
    DT = K.dtype.element_ty
    width = P + D
    ds = DS + bh.to(tl.int64) * (P + E) * width
    ds_kv = tl.load(ds + (P + ce[:, None]) * width + P + cd[None, :], mask=e_ok[:, None] & d_ok[None, :], other=0.0).to(DT)
    kw = tl.zeros((BLOCK_E,), tl.float32)
    kb = kw
    vw = tl.zeros((BLOCK_D,), tl.float32)
    vb = vw
    if NORM_K:
        kw = tl.load(KW + h * s_kwh + ce * s_kwe, mask=e_ok, other=0.0).to(tl.float32)
        kb = tl.load(KB + h * s_kwh + ce * s_kwe, mask=e_ok, other=0.0).to(tl.float32)
    if NORM_V:
        vw = tl.load(VW + h * s_vwh + cd * s_vwe, mask=d_ok, other=0.0).to(tl.float32)
        vb = tl.load(VB + h * s_vwh + cd * s_vwe, mask=d_ok, other=0.0).to(tl.float32)
    # the affine parameters' gradients are summed over rows once, after the loop: a tl.sum over rows per step is
    # a cross-warp reduction each time
    dkw = tl.zeros((BLOCK_N, BLOCK_E), tl.float32)
    dkb = tl.zeros((BLOCK_N, BLOCK_E), tl.float32)
    dvw = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    dvb = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    start = pid * rows_per_program
    end = tl.minimum(start + rows_per_program, n)
    for n0 in range(start, end, BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        row_ok = rows < end
        rows64 = rows.to(tl.int64)
        mk = row_ok[:, None] & e_ok[None, :]
        mv = row_ok[:, None] & d_ok[None, :]
        kt = tl.load(K + b * s_kb + h * s_kh + rows64[:, None] * s_kn + ce[None, :] * s_ke, mask=mk, other=0.0).to(tl.float32)
        k_y, k_hat, k_rstd = _layer_norm_rows(kt, e_ok, E, kw, kb, eps, NORM_K)
        k_y = tl.where(mk, k_y, 0.0).to(DT)
        vt = tl.load(V + b * s_vb + h * s_vh + rows64[:, None] * s_vn + cd[None, :] * s_ve, mask=mv, other=0.0).to(tl.float32)
        v_y, v_hat, v_rstd = _layer_norm_rows(vt, d_ok, D, vw, vb, eps, NORM_V)
        v_y = tl.where(mv, v_y, 0.0).to(DT)
        dk_y = mm(v_y, tl.trans(ds_kv), tl.zeros((BLOCK_N, BLOCK_E), tl.float32), UPCAST, PRECISION)
        dv_y = mm(k_y, ds_kv, tl.zeros((BLOCK_N, BLOCK_D), tl.float32), UPCAST, PRECISION)
        for p in tl.static_range(P):
            pc = tl.load(POS + b * s_pb + rows64 * s_pn + p * s_pe, mask=row_ok, other=0.0).to(DT).to(tl.float32)
            ds_kp = tl.load(ds + (P + ce) * width + p, mask=e_ok, other=0.0).to(DT).to(tl.float32)  # column p of dS_kp
            ds_pv = tl.load(ds + p * width + P + cd, mask=d_ok, other=0.0).to(DT).to(tl.float32)  # row p of dS_pv
            dk_y += pc[:, None] * ds_kp[None, :]
            dv_y += pc[:, None] * ds_pv[None, :]
        if NORM_K:
            dkw += dk_y * k_hat
            dkb += dk_y
            g = dk_y * kw[None, :]
            dk_y = k_rstd[:, None] * (g - (tl.sum(g, axis=1) / E)[:, None] - k_hat * (tl.sum(g * k_hat, axis=1) / E)[:, None])
        tl.store(DK + b * s_dkb + h * s_dkh + rows64[:, None] * s_dkn + ce[None, :] * s_dke, dk_y.to(DK.dtype.element_ty), mask=mk)
        if NORM_V:
            dvw += dv_y * v_hat
            dvb += dv_y
            g = dv_y * vw[None, :]
            dv_y = v_rstd[:, None] * (g - (tl.sum(g, axis=1) / D)[:, None] - v_hat * (tl.sum(g * v_hat, axis=1) / D)[:, None])
        tl.store(DV + b * s_dvb + h * s_dvh + rows64[:, None] * s_dvn + cd[None, :] * s_dve, dv_y.to(DV.dtype.element_ty), mask=mv)
    # partial affine gradients of this program: DPARAMS[pid, b, h] = [dkw (E), dkb (E), dvw (D), dvb (D)]
    out = DPARAMS + (pid * tl.num_programs(1) + bh).to(tl.int64) * (2 * E + 2 * D)
    if NORM_K:
        tl.store(out + ce, tl.sum(dkw, axis=0), mask=e_ok)
        tl.store(out + E + ce, tl.sum(dkb, axis=0), mask=e_ok)
    if NORM_V:
        tl.store(out + 2 * E + cd, tl.sum(dvw, axis=0), mask=d_ok)
        tl.store(out + 2 * E + D + cd, tl.sum(dvb, axis=0), mask=d_ok)


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
            left, right, left_extra if PL else dummy, right_extra if PR else dummy,
            lw if lw is not None else dummy, lb if lb is not None else dummy,
            rw if rw is not None else dummy, rb if rb is not None else dummy, out,
            H, n, EL, ER, rows_per_split, eps,
            *left.stride(), *right.stride(), *_extra_strides(left_extra), *_extra_strides(right_extra),
            s_lwh, s_lwe, s_rwh, s_rwe,
            BLOCK_N=block_n, BLOCK_L=pow2(EL), BLOCK_R=pow2(ER), BLOCK_P=pow2(P), P=P,
            LEFT_POS=PL > 0, RIGHT_POS=PR > 0, NORM_L=left_norm is not None, NORM_R=right_norm is not None,
            UPCAST=upcast(), PRECISION=prec, num_warps=warps, num_stages=2,
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
            x1 if x1 is not None else x2, x2, m, y, H, n, W2, WO,
            *s_x1, *x2.stride(), *m.stride(), *y.stride(),
            BLOCK_N=block_n, BLOCK_W2=pow2(W2), BLOCK_WO=pow2(WO), P1=P1, PO=p_out,
            UPCAST=upcast(), PRECISION=prec, num_warps=warps, num_stages=2,
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
                k, v, pos if pos is not None else k, kw_ if kw_ is not None else k, kb_ if kb_ is not None else k,
                vw_ if vw_ is not None else k, vb_ if vb_ is not None else k, dstate, dk, dv, dparams,
                H, n, E, D, rows_per_program, ctx.eps,
                *k.stride(), *v.stride(), *_pos_strides(pos), s_kwh, s_kwe, s_vwh, s_vwe, *dk.stride(), *dv.stride(),
                BLOCK_N=block_n, BLOCK_E=pow2(E), BLOCK_D=pow2(D), P=P,
                NORM_K=k_norm is not None, NORM_V=v_norm is not None,
                UPCAST=upcast(), PRECISION=prec, num_warps=warps, num_stages=2,
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
