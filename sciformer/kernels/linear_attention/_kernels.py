"""The jit kernels of the triton Galerkin attention (launched by :mod:`.triton`): ``_gram_kernel`` (the small
state ``S = K'ᵀ V' / n`` with the rows layer-normalised in registers), ``_rowmm_kernel`` (``[pos, Q] · S`` row block by
row block) and ``_kv_backward_kernel`` (dK, dV and the layer norms' parameter gradients)."""

from __future__ import annotations

import triton
import triton.language as tl

from sciformer.kernels._triton import mm


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
    L,
    R,
    LPOS,
    RPOS,
    LW,
    LB,
    RW,
    RB,
    OUT,
    H,
    n,
    EL,
    ER,
    rows_per_split,
    eps,
    s_lb,
    s_lh,
    s_ln,
    s_le,
    s_rb,
    s_rh,
    s_rn,
    s_re,
    s_lpb,
    s_lph,
    s_lpn,
    s_lpe,
    s_rpb,
    s_rph,
    s_rpn,
    s_rpe,
    s_lwh,
    s_lwe,
    s_rwh,
    s_rwe,
    BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_P: tl.constexpr,
    P: tl.constexpr,
    LEFT_POS: tl.constexpr,
    RIGHT_POS: tl.constexpr,
    NORM_L: tl.constexpr,
    NORM_R: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
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
    X1,
    X2,
    M,
    Y,
    H,
    n,
    W2,
    WO,
    s_x1b,
    s_x1h,
    s_x1n,
    s_x1e,
    s_x2b,
    s_x2h,
    s_x2n,
    s_x2e,
    s_mb,
    s_mh,
    s_mr,
    s_mc,
    s_yb,
    s_yh,
    s_yn,
    s_ye,
    BLOCK_N: tl.constexpr,
    BLOCK_W2: tl.constexpr,
    BLOCK_WO: tl.constexpr,
    P1: tl.constexpr,
    PO: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
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
    K,
    V,
    POS,
    KW,
    KB,
    VW,
    VB,
    DS,
    DK,
    DV,
    DPARAMS,
    H,
    n,
    E,
    D,
    rows_per_program,
    eps,
    s_kb,
    s_kh,
    s_kn,
    s_ke,
    s_vb,
    s_vh,
    s_vn,
    s_ve,
    s_pb,
    s_pn,
    s_pe,
    s_kwh,
    s_kwe,
    s_vwh,
    s_vwe,
    s_dkb,
    s_dkh,
    s_dkn,
    s_dke,
    s_dvb,
    s_dvh,
    s_dvn,
    s_dve,
    BLOCK_N: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_D: tl.constexpr,
    P: tl.constexpr,
    NORM_K: tl.constexpr,
    NORM_V: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
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
