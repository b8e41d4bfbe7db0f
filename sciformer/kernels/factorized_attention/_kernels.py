"""The jit kernels of the triton factorised attention (launched by :mod:`._launch`):

* ``_apply_kernel``: ``Y = s · P ×_a X``, the axial product ``P [B, H, n_a, n_a]`` applied along grid axis ``a``
  with its quadrature weight ``s``. One program owns a tile of ``BLOCK_M`` output rows of axis ``a`` × a tile of
  columns (``BLOCK_R`` positions of the other axes × all ``D`` channels) and runs the reduction over axis ``a`` in
  registers (``tl.dot``, fp32 accumulation).
* ``_apply_rows_kernel``: the same product for axes of up to 256 points (16-bit fields on the GPU), with a
  program's rows of ``P`` resident: loaded once, with the whole reduction, while the program runs through a range
  of column strips, so that only the field streams through it. In the forward it forms those rows from ``q`` and
  ``k`` itself and writes ``P`` out for the backward: one launch per axis. The tuner picks between the two kernels
  where both can run.
* ``_contract_kernel``: ``dP[i, j] = s · Σ_c G[i, c] T[j, c]``, the product's gradient, a reduction over every
  position of the other axes and every channel, split over programs into a few partial sums that are added
  afterwards (deterministic, no atomics).
* ``_contract_apply_kernel``: both of the above in one pass for the backward's pairs that read the same gradient
  along the same axis. Each program runs through a range of whole column strips. Up to 128 points, one program
  holds the whole ``n × n`` partial sum in registers and may write the application over either input; up to 256
  points (16-bit fields), the partial sum is split by its columns over 2-4 neighbouring programs, which all read
  the whole strip of the gradient from L2. Their application may go over the other input freely, and over the
  gradient when they keep in step: each writes a strip's rows one strip later, once a counter in global memory says
  that every part has read that strip (GPU only: the interpreter runs programs one after another).
* ``_matmul_kernel``: the small products ``P_a = q_a k_aᵀ`` (where ``_apply_rows_kernel`` does not form them) and
  their gradients ``dq = dP k``, ``dk = dPᵀ q``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from sciformer.kernels._triton import mm


@triton.jit
def _apply_kernel(
    K,
    X,
    Y,
    H,
    n,
    R1,
    R2,
    D,
    scale,
    s_kb,
    s_kh,
    s_ki,
    s_kj,
    s_xb,
    s_xh,
    s_xn,
    s_xr1,
    s_xr2,
    s_xd,
    s_yb,
    s_yh,
    s_yn,
    s_yr1,
    s_yr2,
    s_yd,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # Y[b, h, i, r, :] = scale · Σ_j K[b, h, i, j] X[b, h, j, r, :]; r = (r1, r2) runs over the other grid axes.
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    n_row_tiles = tl.cdiv(n, BLOCK_M)
    pid_m = pid % n_row_tiles  # row tiles of one column strip are neighbours: the strip is re-read from L2
    pid_c = pid // n_row_tiles

    cols = tl.arange(0, BLOCK_R * BLOCK_D)
    r = pid_c * BLOCK_R + cols // BLOCK_D
    dd = cols % BLOCK_D
    col_ok = (r < R1 * R2) & (dd < D)
    r1 = (r // R2).to(tl.int64)
    r2 = (r % R2).to(tl.int64)
    x_cols = r1 * s_xr1 + r2 * s_xr2 + dd * s_xd
    y_cols = r1 * s_yr1 + r2 * s_yr2 + dd * s_yd

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n
    k_base = K + b * s_kb + h * s_kh
    x_base = X + b * s_xb + h * s_xh
    acc = tl.zeros((BLOCK_M, BLOCK_R * BLOCK_D), dtype=tl.float32)
    for j0 in range(0, n, BLOCK_N):
        j = j0 + tl.arange(0, BLOCK_N)
        j_ok = j < n
        kt = tl.load(k_base + rows[:, None] * s_ki + j[None, :] * s_kj, mask=row_ok[:, None] & j_ok[None, :], other=0.0)
        xt = tl.load(x_base + j[:, None].to(tl.int64) * s_xn + x_cols[None, :], mask=j_ok[:, None] & col_ok[None, :], other=0.0)
        acc = mm(kt, xt, acc, UPCAST, PRECISION)
    y_ptr = Y + b * s_yb + h * s_yh + rows[:, None].to(tl.int64) * s_yn + y_cols[None, :]
    tl.store(y_ptr, (acc * scale).to(Y.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


@triton.jit
def _apply_rows_kernel(
    K,
    Q,
    KEY,
    X,
    Y,
    H,
    n,
    E,
    R1,
    R2,
    D,
    scale,
    n_strips,
    strips_per_group,
    groups,
    s_kb,
    s_kh,
    s_ki,
    s_kj,
    s_qb,
    s_qh,
    s_qn,
    s_qe,
    s_eb,
    s_eh,
    s_en,
    s_ee,
    s_xb,
    s_xh,
    s_xn,
    s_xr1,
    s_xr2,
    s_xd,
    s_yb,
    s_yh,
    s_yn,
    s_yr1,
    s_yr2,
    s_yd,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    FORM: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # The same product as _apply_kernel for axes of up to 256 points, with the kernel's rows resident: a program
    # takes BLOCK_M rows of K (the whole reduction, loaded once) and runs through a range of column strips, so that
    # only the field streams through it. FORM: those rows are formed here, K[b, h, i, :] = q_i kᵀ (rounded to the
    # field's dtype), and the first group's programs write them to K.
    pid = tl.program_id(0)
    n_m = tl.cdiv(n, BLOCK_M)
    m = pid % n_m  # the row tiles of one range of strips are neighbours: they read the same strips from L2
    group = pid // n_m % groups
    bh = pid // n_m // groups
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n
    j = tl.arange(0, BLOCK_K)
    j_ok = j < n
    k_ptr = K + b * s_kb + h * s_kh + rows[:, None] * s_ki + j[None, :] * s_kj
    if FORM:
        acc = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
        for e0 in range(0, E, BLOCK_E):
            e = e0 + tl.arange(0, BLOCK_E)
            e_ok = e < E
            qt = tl.load(Q + b * s_qb + h * s_qh + rows[:, None] * s_qn + e[None, :] * s_qe, mask=row_ok[:, None] & e_ok[None, :], other=0.0)
            kt = tl.load(KEY + b * s_eb + h * s_eh + j[None, :] * s_en + e[:, None] * s_ee, mask=e_ok[:, None] & j_ok[None, :], other=0.0)
            acc = mm(qt, kt, acc, UPCAST, PRECISION)
        kernel_rows = acc.to(K.dtype.element_ty)
        if group == 0:
            tl.store(k_ptr, kernel_rows, mask=row_ok[:, None] & j_ok[None, :])
    else:
        kernel_rows = tl.load(k_ptr, mask=row_ok[:, None] & j_ok[None, :], other=0.0)
    cols = tl.arange(0, BLOCK_R * BLOCK_D)
    r_local = cols // BLOCK_D
    dd = cols % BLOCK_D
    x_rows = X + b * s_xb + h * s_xh + j[:, None].to(tl.int64) * s_xn
    y_rows = Y + b * s_yb + h * s_yh + rows[:, None].to(tl.int64) * s_yn
    first = group * strips_per_group
    for strip in range(first, tl.minimum(first + strips_per_group, n_strips)):
        r = strip * BLOCK_R + r_local
        col_ok = (r < R1 * R2) & (dd < D)
        r1 = (r // R2).to(tl.int64)
        r2 = (r % R2).to(tl.int64)
        xt = tl.load(x_rows + (r1 * s_xr1 + r2 * s_xr2 + dd * s_xd)[None, :], mask=j_ok[:, None] & col_ok[None, :], other=0.0)
        y = mm(kernel_rows, xt, tl.zeros((BLOCK_M, BLOCK_R * BLOCK_D), dtype=tl.float32), UPCAST, PRECISION)
        tl.store(y_rows + (r1 * s_yr1 + r2 * s_yr2 + dd * s_yd)[None, :], (y * scale).to(Y.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


@triton.jit
def _contract_kernel(
    A,
    Bm,
    OUT,
    H,
    n,
    R1,
    R2,
    D,
    r_per_split,
    scale,
    s_ab,
    s_ah,
    s_an,
    s_ar1,
    s_ar2,
    s_ad,
    s_bb,
    s_bh,
    s_bn,
    s_br1,
    s_br2,
    s_bd,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # OUT[split, b, h, i, j] = scale · Σ_{r in this split, d} A[b, h, i, r, d] Bm[b, h, j, r, d]   (float32)
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    split = tl.program_id(2)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    n_row_tiles = tl.cdiv(n, BLOCK_M)
    pid_m = pid % n_row_tiles
    pid_n = pid // n_row_tiles
    i = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    j = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    i_ok = i < n
    j_ok = j < n
    a_rows = A + b * s_ab + h * s_ah + i[:, None].to(tl.int64) * s_an
    b_rows = Bm + b * s_bb + h * s_bh + j[:, None].to(tl.int64) * s_bn

    cols = tl.arange(0, BLOCK_R * BLOCK_D)
    dd = cols % BLOCK_D
    r_local = cols // BLOCK_D
    r_start = split * r_per_split
    r_end = tl.minimum(r_start + r_per_split, R1 * R2)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for r0 in range(r_start, r_end, BLOCK_R):
        r = r0 + r_local
        ok = (r < r_end) & (dd < D)
        r1 = (r // R2).to(tl.int64)
        r2 = (r % R2).to(tl.int64)
        a = tl.load(a_rows + (r1 * s_ar1 + r2 * s_ar2 + dd * s_ad)[None, :], mask=i_ok[:, None] & ok[None, :], other=0.0)
        bt = tl.load(b_rows + (r1 * s_br1 + r2 * s_br2 + dd * s_bd)[None, :], mask=j_ok[:, None] & ok[None, :], other=0.0)
        acc = mm(a, tl.trans(bt), acc, UPCAST, PRECISION)
    out = OUT + ((split * tl.num_programs(1) + bh).to(tl.int64) * n + i[:, None]) * n + j[None, :]
    tl.store(out, acc * scale, mask=i_ok[:, None] & j_ok[None, :])


# The parts of a split pass over its own gradient keep in step through a 32-bit counter in global memory, read with
# these two (PTX rather than triton: a loop inside the strip loop would stop triton from pipelining that loop's
# loads, as a barrier does). _PEEK reads the counter without waiting for it; _WAIT takes what a _PEEK saw ($3) and,
# only where that is short of the target ($2), reads the counter ($1) again until it is not.
_PEEK = tl.constexpr("ld.relaxed.gpu.global.u32 $0, [$1];")
_WAIT = tl.constexpr("""{
.reg .pred %p;
mov.u32 $0, $3;
setp.ge.s32 %p, $0, $2;
@%p bra DONE${:uid};
SPIN${:uid}:
ld.relaxed.gpu.global.u32 $0, [$1];
setp.lt.s32 %p, $0, $2;
@%p bra SPIN${:uid};
DONE${:uid}:
}""")


@triton.jit
def _contract_apply_kernel(
    G,
    T,
    K,
    OUT,
    DK,
    COUNTERS,
    H,
    n,
    R1,
    R2,
    D,
    n_items,
    splits,
    strips_per_split,
    scale,
    s_gb,
    s_gh,
    s_gn,
    s_gr1,
    s_gr2,
    s_gd,
    s_tb,
    s_th,
    s_tn,
    s_tr1,
    s_tr2,
    s_td,
    s_ob,
    s_oh,
    s_on,
    s_or1,
    s_or2,
    s_od,
    s_kb,
    s_kh,
    s_ki,
    s_kj,
    BLOCK_N: tl.constexpr,
    BLOCK_J: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
    IN_STEP: tl.constexpr,
):
    # For each work item (b, h, split) of this program's group, the column strips of the split (BLOCK_R positions of
    # the other axes × all D channels each), and this program's part j of BLOCK_J rows (all rows when BLOCK_J covers
    # the axis):
    #   DK[split, b, h, i, j] = scale · Σ_c G[b, h, i, c] T[b, h, j, c]      (float32 partial sum, every i)
    #   OUT[b, h, j, c]       = scale · Σ_i K[b, h, j, i] G[b, h, i, c]
    # A group is `parts` neighbouring programs (its strips of G are re-read from L2), which take the items group,
    # group + n_groups, ... A program reads every row of a strip of G, but only its own rows of T and OUT, and reads
    # them before it writes them: OUT may be T's memory always. It may be G's where one program owns all rows, or
    # IN_STEP: each part then counts the strips it has read in COUNTERS[group] and writes a strip's rows one strip
    # later, once every part has read it. The count is read before the strip's products, so that its latency hides
    # behind them where the other parts are far enough on. The parts wait for each other, so the launch must fit on
    # the GPU at once.
    parts = BLOCK_N // BLOCK_J
    group = tl.program_id(0) // parts
    n_groups = tl.num_programs(0) // parts
    counter = COUNTERS + group
    rows = tl.arange(0, BLOCK_N)
    row_ok = rows < n
    own = tl.program_id(0) % parts * BLOCK_J + tl.arange(0, BLOCK_J)
    own_ok = own < n
    cols = tl.arange(0, BLOCK_R * BLOCK_D)
    dd = cols % BLOCK_D
    r_local = cols // BLOCK_D
    n_strips = tl.cdiv(R1 * R2, BLOCK_R)
    read = 0  # IN_STEP: strips of the items before this one, times parts (every part has read them all)
    for item in range(group, n_items, n_groups):
        bh = item // splits
        split = item % splits
        b = (bh // H).to(tl.int64)
        h = (bh % H).to(tl.int64)
        kt = tl.load(K + b * s_kb + h * s_kh + own[:, None] * s_ki + rows[None, :] * s_kj, mask=own_ok[:, None] & row_ok[None, :], other=0.0)
        g_rows = G + b * s_gb + h * s_gh + rows[:, None].to(tl.int64) * s_gn
        t_rows = T + b * s_tb + h * s_th + own[:, None].to(tl.int64) * s_tn
        o_rows = OUT + b * s_ob + h * s_oh + own[:, None].to(tl.int64) * s_on
        first = split * strips_per_split
        last = tl.minimum(first + strips_per_split, n_strips)
        acc = tl.zeros((BLOCK_N, BLOCK_J), dtype=tl.float32)
        y_before = tl.zeros((BLOCK_J, BLOCK_R * BLOCK_D), dtype=OUT.dtype.element_ty)  # IN_STEP: strip - 1's rows
        for strip in range(first, last):
            r = strip * BLOCK_R + r_local
            col_ok = (r < R1 * R2) & (dd < D)
            r1 = (r // R2).to(tl.int64)
            r2 = (r % R2).to(tl.int64)
            own_cols = own_ok[:, None] & col_ok[None, :]
            g = tl.load(g_rows + (r1 * s_gr1 + r2 * s_gr2 + dd * s_gd)[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
            t = tl.load(t_rows + (r1 * s_tr1 + r2 * s_tr2 + dd * s_td)[None, :], mask=own_cols, other=0.0)
            if IN_STEP:
                seen = tl.inline_asm_elementwise(_PEEK, "=r,l", [counter], dtype=tl.int32, is_pure=False, pack=1)
            acc = mm(g, tl.trans(t), acc, UPCAST, PRECISION)
            y = mm(kt, g, tl.zeros((BLOCK_J, BLOCK_R * BLOCK_D), dtype=tl.float32), UPCAST, PRECISION)
            if IN_STEP:
                tl.atomic_add(counter, 1, sem="relaxed", scope="gpu")  # this strip read (all threads are past it)
                # strip - 1 is written once every part has read it: the count of strips first..strip-1, times parts
                target = read + parts * (strip - first)
                seen = tl.inline_asm_elementwise(_WAIT, "=r,l,r,r", [counter, target, seen], dtype=tl.int32, is_pure=False, pack=1)
                _store_strip(o_rows, y_before, strip - 1, r_local, dd, R1, R2, D, s_or1, s_or2, s_od, own_ok & (strip > first) & (seen >= target), BLOCK_R)
                y_before = (y * scale).to(OUT.dtype.element_ty)
            else:
                _store_strip(o_rows, (y * scale).to(OUT.dtype.element_ty), strip, r_local, dd, R1, R2, D, s_or1, s_or2, s_od, own_ok, BLOCK_R)
        if IN_STEP:  # the last strip
            read += parts * (last - first)
            seen = tl.inline_asm_elementwise(_WAIT, "=r,l,r,r", [counter, read, read - parts], dtype=tl.int32, is_pure=False, pack=1)
            _store_strip(o_rows, y_before, last - 1, r_local, dd, R1, R2, D, s_or1, s_or2, s_od, own_ok & (last > first) & (seen >= read), BLOCK_R)
        dk = DK + ((split * (n_items // splits) + bh).to(tl.int64) * n + rows[:, None]) * n + own[None, :]
        tl.store(dk, acc * scale, mask=row_ok[:, None] & own_ok[None, :])


@triton.jit
def _store_strip(o_rows, y, strip, r_local, dd, R1, R2, D, s_or1, s_or2, s_od, row_ok, BLOCK_R: tl.constexpr):
    """Write ``y`` (rows × one strip's columns) to column strip ``strip`` of the rows ``o_rows`` point at."""
    r = strip * BLOCK_R + r_local
    offsets = (r // R2).to(tl.int64) * s_or1 + (r % R2).to(tl.int64) * s_or2 + dd * s_od
    tl.store(o_rows + offsets[None, :], y, mask=row_ok[:, None] & ((r < R1 * R2) & (dd < D))[None, :])


@triton.jit
def _matmul_kernel(
    A,
    Bm,
    C,
    H,
    M,
    N,
    K,
    s_ab,
    s_ah,
    s_am,
    s_ak,
    s_bb,
    s_bh,
    s_bk,
    s_bn,
    s_cb,
    s_ch,
    s_cm,
    s_cn,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # C[b, h] = round(A[b, h]) @ Bm[b, h]: A (float32 for a kernel gradient) is rounded to C's dtype before the
    # product, as autograd rounds a gradient.
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    bh = tl.program_id(2)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    a_base = A + b * s_ab + h * s_ah + rows[:, None] * s_am
    b_base = Bm + b * s_bb + h * s_bh + cols[None, :] * s_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(a_base + ks[None, :] * s_ak, mask=(rows[:, None] < M) & (ks[None, :] < K), other=0.0)
        bt = tl.load(b_base + ks[:, None] * s_bk, mask=(ks[:, None] < K) & (cols[None, :] < N), other=0.0)
        if not UPCAST:  # the interpreter rounds to bfloat16 by truncation (triton 3.9): there A stays as it is
            a = a.to(C.dtype.element_ty)
        acc = mm(a, bt, acc, UPCAST, PRECISION)
    c_ptr = C + b * s_cb + h * s_ch + rows[:, None] * s_cm + cols[None, :] * s_cn
    tl.store(c_ptr, acc.to(C.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))
