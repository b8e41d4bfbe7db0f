"""Launches of the triton factorised attention: each field pass tuned once per shape, then replayed.

Every launch after the first with the same shapes goes through :class:`~sciformer.kernels._triton.Replay`: triton's
per-launch argument binding and our own configuration lookup took 0.07-0.1 ms of host time per launch on an H100,
and a cuBLAS call inside a step 0.1-0.2 ms, which the GPU spent waiting at the start of each step.
"""

from __future__ import annotations

import torch

from sciformer.kernels import _tuning, register_cache
from sciformer.kernels._triton import cdiv, device_guard, empty, empty_like, geometry, launch, pow2, precision, shared_memory, sm_count, upcast
from sciformer.kernels.factorized_attention._fits import (
    _APPLY_CONFIGS,
    _CONTRACT_CONFIGS,
    _FUSED_CONFIGS,
    _INPLACE_CONFIGS,
    _apply_staged,
    _block_e,
    _contract_staged,
    _fit,
    _fit_fused,
    _fit_inplace,
    _fit_rows,
)
from sciformer.kernels.factorized_attention._kernels import _apply_kernel, _apply_rows_kernel, _contract_apply_kernel, _contract_kernel, _matmul_kernel


def _axis_view(x: torch.Tensor, axis: int) -> tuple[int, int, int, int, tuple[int, ...]]:
    """``(n, R1, R2, D, strides)`` of ``x [B, H, n_1..n_d, D]`` seen as ``[B, H, n_axis, R1, R2, D]``; strides are
    ``(b, h, n, r1, r2, d)``. The other grid axes (at most two) become ``R1``, ``R2`` (size-1 padding in front)."""
    d = x.ndim - 3
    others = [i for i in range(d) if i != axis]
    sizes = [1] * (2 - len(others)) + [x.shape[2 + i] for i in others]
    strides = [0] * (2 - len(others)) + [x.stride(2 + i) for i in others]
    layout = (x.stride(0), x.stride(1), x.stride(2 + axis), strides[0], strides[1], x.stride(-1))
    return x.shape[2 + axis], sizes[0], sizes[1], x.shape[-1], layout


def _sum_partials(partials: torch.Tensor) -> torch.Tensor:
    """The kernel gradient from its ``[splits, B, H, n, n]`` float32 partial sums (added here: deterministic, and in
    one pass over them; adding them inside the two gradient products took longer at 64³, H100."""
    return partials[0] if partials.shape[0] == 1 else partials.sum(0)


_TRIAL_WAVES = 8  # an in-place tuning trial launches this many programs per multiprocessor


def _trial_field(x: torch.Tensor, axis: int) -> torch.Tensor:
    """A zero field in ``x``'s memory layout (the same order of strides), with the whole axis ``axis``, all heads
    and channels, but the other grid axes and the batch cut so that a whole-axis launch (in place or fused) with the
    widest column tile launches about :data:`_TRIAL_WAVES` programs per multiprocessor: what its tuning trials run on."""
    d = x.ndim - 3
    widest = max(*(cfg[1] for cfg in _INPLACE_CONFIGS), *(cfg[0] for cfg in _FUSED_CONFIGS))
    columns_per_program = max(1, widest // pow2(x.shape[-1], 1))
    positions = cdiv(_TRIAL_WAVES * sm_count(x) * columns_per_program, x.shape[1])  # of the batch × the other grid axes
    shape = list(x.shape)
    kept = 1
    for dim in sorted([0, *(2 + i for i in range(d) if i != axis)], key=x.stride):  # innermost first
        shape[dim] = min(shape[dim], cdiv(positions, kept))
        kept *= shape[dim]
    order = sorted(range(x.ndim), key=x.stride, reverse=True)  # memory order, outermost first
    field = torch.zeros([shape[i] for i in order], dtype=x.dtype, device=x.device)
    return field.permute([order.index(i) for i in range(x.ndim)])


# Launches already made, by the geometry of their tensors: repeated through the compiled kernel (see Replay)
_REPLAYS: dict[tuple, tuple] = {}
register_cache(_REPLAYS.clear)


def _apply(kernel: torch.Tensor, x: torch.Tensor, axis: int, overwrite: bool = False, scale: float = 1.0) -> torch.Tensor:
    """``scale · K ×_axis x``: ``kernel [B, H, n, n]`` (any strides, e.g. a transpose) along grid axis ``axis`` of ``x``.

    ``overwrite=True`` allows writing the result into ``x`` (a temporary of the caller's), which happens where
    the axis is short enough for one program to own whole columns; the result is returned either way."""
    return _application(kernel, x, axis, overwrite, scale, None)


def _apply_product(q: torch.Tensor, k: torch.Tensor, x: torch.Tensor, axis: int, overwrite: bool = False, scale: float = 1.0):
    """``(scale · P ×_axis x, P)`` with ``P = q kᵀ`` in ``x``'s dtype (``q, k [B, H, n, E]``): one launch where
    :func:`_apply_rows_kernel` takes the axis (it forms its rows of ``P`` itself, and writes them out for the
    backward), else a product and an application."""
    # the first launch of a step: the GPU waits for it, so a repeated call goes straight to its replay
    B, H, n, E = q.shape
    known = _REPLAYS.get(_application_key(None, x, axis, overwrite, (q, k)))
    if known is None and not _fit_rows(n, x.shape[-1], E, x.element_size(), False, upcast(), shared_memory(x)):
        product = _matmul(q, k.transpose(-1, -2), x.dtype)
        return _apply(product, x, axis, overwrite, scale), product
    product = empty(B, H, n, n, like=x)
    if known is None:
        return _application(product, x, axis, overwrite, scale, (q, k)), product
    return _replayed(known, product, x, scale, (q, k)), product


def _application_key(kernel: torch.Tensor | None, x: torch.Tensor, axis: int, overwrite: bool, qk) -> tuple:
    """:data:`_REPLAYS`'s key of an application. With ``qk`` the kernel is a new tensor of ours, fixed by ``q``'s
    and ``k``'s shapes, so it is left out (:func:`_apply_product` looks the key up before allocating it)."""
    geometries = None if qk is None else tuple(geometry(t) for t in qk)
    kernel_geometry = None if kernel is None or qk is not None else geometry(kernel)
    return ("apply", axis, overwrite, kernel_geometry, geometry(x), geometries, precision(x.dtype))


def _replayed(known: tuple, kernel: torch.Tensor, x: torch.Tensor, scale: float, qk) -> torch.Tensor:
    """An application repeated through its :data:`_REPLAYS` entry ``(replay, in_place, rows)``."""
    replay, in_place, rows = known
    y = x if in_place else empty_like(x)
    with device_guard(x):
        if rows:
            replay(kernel, *(qk or (kernel, kernel)), x, y, scale)  # q and k are unread without FORM
        else:
            replay(kernel, x, y, scale)
    return y


def _application(kernel: torch.Tensor, x: torch.Tensor, axis: int, overwrite: bool, scale: float, qk) -> torch.Tensor:
    """:func:`_apply`, and with ``qk = (q, k)`` :func:`_apply_product`'s single launch (``kernel`` then receives
    ``q kᵀ``). Axes of up to 256 points may run :func:`_apply_rows_kernel`, which keeps a program's rows of the
    kernel resident, any axis :func:`_apply_kernel`; the tuner picks between them where both can."""
    key = _application_key(kernel, x, axis, overwrite, qk)
    if key in _REPLAYS:
        return _replayed(_REPLAYS[key], kernel, x, scale, qk)
    n, R1, R2, D, sx = _axis_view(x, axis)
    E = qk[0].shape[-1] if qk is not None else 0
    size, up, shared = x.element_size(), upcast(), shared_memory(x)
    whole_rows = _fit_rows(n, D, E, size, True, up, shared) if overwrite else ()
    in_place = bool(whole_rows or (overwrite and qk is None and _fit_inplace(n, D, size, up, shared)))
    rows_configs = whole_rows if in_place else _fit_rows(n, D, E, size, False, up, shared)
    if qk is not None:
        configs = [("rows", c) for c in rows_configs]
    else:
        streaming = _fit_inplace(n, D, size, up, shared) if in_place else _fit(_APPLY_CONFIGS, n, D, size, _apply_staged, up, shared)
        configs = [("rows", c) for c in rows_configs] + [("stream", c) for c in streaming]
    y = x if in_place else empty_like(x)  # same layout as x (empty_like keeps a dense permuted layout)
    block_d = pow2(D, 1)
    prec = precision(x.dtype)

    def run(config, k: torch.Tensor, src: torch.Tensor, dst: torch.Tensor):
        family, (bm, *rest) = config
        _, r1, r2, _, strides = _axis_view(src, axis)  # src's own sizes: a tuning trial runs on a smaller field
        dst_strides = _axis_view(dst, axis)[4]
        if family == "stream":
            bn, cols, warps, stages = rest
            block_r = max(1, cols // block_d)
            grid = (cdiv(n, bm) * cdiv(r1 * r2, block_r), src.shape[0] * src.shape[1])
            args = (k, src, dst, src.shape[1], n, r1, r2, D, float(scale), *k.stride(), *strides, *dst_strides, bm, bn, block_r, block_d, up, prec)
            return launch(_apply_kernel, grid, args, warps, stages)
        cols, warps, stages, per_sm = rest
        block_r = max(1, cols // block_d)
        strips, row_tiles = cdiv(r1 * r2, block_r), src.shape[0] * src.shape[1] * cdiv(n, bm)
        per_group = cdiv(strips, min(strips, max(1, per_sm * sm_count(src) // row_tiles)))
        groups = cdiv(strips, per_group)
        q, key_ = qk if qk is not None else (k, k)  # unread without FORM
        args = (
            k,
            q,
            key_,
            src,
            dst,
            src.shape[1],
            n,
            E,
            r1,
            r2,
            D,
            float(scale),
            strips,
            per_group,
            groups,
            *k.stride(),
            *q.stride(),
            *key_.stride(),
            *strides,
            *dst_strides,
            bm,
            pow2(n),
            _block_e(E),
            block_r,
            block_d,
            qk is not None,
            up,
            prec,
        )
        return launch(_apply_rows_kernel, (row_tiles * groups,), args, warps, stages)

    scratch: list[torch.Tensor] = []

    def trial(config) -> None:
        # An in-place launch cannot be repeated on its own output, so the candidates are timed on a field of the
        # same layout cut to a few waves of programs. (Timed on one head of a 256² field, a single wave, the
        # configuration that won is 25% slower at full size than the best one, H100.)
        if not scratch:
            scratch.append(_trial_field(x, axis))
        field = scratch[0]
        run(config, kernel[: field.shape[0]], field, field)

    def real(config) -> None:
        replay = run(config, kernel, x, y)
        if replay is not None:
            _REPLAYS[key] = (replay, in_place, config[0] == "rows")

    tuning_key = ("fa_apply", n, R1 * R2 > 4096, D, x.dtype, sx[5] == 1, prec, in_place, qk is not None)
    with device_guard(x):
        _tuning.pick(tuning_key, configs, real, x.device, trial=trial if in_place else None)
    return y


def _contract(a: torch.Tensor, b: torch.Tensor, axis: int, scale: float = 1.0) -> torch.Tensor:
    """``out[b, h, i, j] = scale · Σ_c a[b, h, i, c] b[b, h, j, c]`` over every index ``c`` but grid axis ``axis``, as
    float32 partial sums ``[splits, B, H, n, n]`` (see :func:`_sum_partials`)."""
    key = ("contract", axis, geometry(a), geometry(b), precision(a.dtype))
    if key in _REPLAYS:
        replay, shape = _REPLAYS[key]
        partials = empty(*shape, like=a, dtype=torch.float32)
        with device_guard(a):
            replay(a, b, partials, scale)
        return partials
    n, R1, R2, D, sa = _axis_view(a, axis)
    sb = _axis_view(b, axis)[4]
    B, H = a.shape[:2]
    block_d = pow2(D, 1)
    prec, up = precision(a.dtype), upcast()
    R = R1 * R2
    sms = sm_count(a)
    result = {}

    def run(config) -> None:
        bm, bn, cols, warps, stages = config
        block_r = max(1, cols // block_d)
        tiles = cdiv(n, bm) * cdiv(n, bn)
        # enough programs to fill the GPU: split the reduction over the other axes into partial sums
        splits = max(1, min(cdiv(R, block_r), cdiv(4 * sms, tiles * B * H)))
        r_per_split = cdiv(cdiv(R, splits), block_r) * block_r
        splits = cdiv(R, r_per_split)
        partials = empty(splits, B, H, n, n, like=a, dtype=torch.float32)
        args = (a, b, partials, H, n, R1, R2, D, r_per_split, float(scale), *sa, *sb, bm, bn, block_r, block_d, up, prec)
        replay = launch(_contract_kernel, (tiles, B * H, splits), args, warps, stages)
        if replay is not None:
            _REPLAYS[key] = (replay, partials.shape)
        result["partials"] = partials

    tuning_key = ("fa_contract", n, R > 4096, D, a.dtype, sa[5] == 1, prec)
    with device_guard(a):
        _tuning.pick(tuning_key, _fit(_CONTRACT_CONFIGS, n, D, a.element_size(), _contract_staged, upcast(), shared_memory(a)), run, a.device)
    return result["partials"]


def _contract_apply(g: torch.Tensor, t: torch.Tensor, kernel: torch.Tensor, axis: int, out: torch.Tensor | None, scale: float = 1.0):
    """``scale · (Σ_c g[.., i, c] t[.., j, c], K ×_axis g)`` in one pass over ``g`` and ``t``: the kernel gradient of
    axis ``axis`` (float32 partial sums ``[splits, B, H, n, n]``, as :func:`_contract` gives them) and the
    gradient's image under ``kernel`` (e.g. a transpose), written into ``out`` (``g``'s or ``t``'s memory, or
    ``None`` for a new field). Three field passes where :func:`_contract` and :func:`_apply` make four. Only where
    :func:`fuses` says so."""
    into_g = out is not None and out.data_ptr() == g.data_ptr()
    out_geometry = None if out is None else geometry(out)
    key = ("fused", axis, into_g, geometry(g), geometry(t), geometry(kernel), out_geometry, precision(g.dtype))
    y = out if out is not None else empty_like(g)
    if key in _REPLAYS:
        replay, shape, n_counters = _REPLAYS[key]
        partials = empty(*shape, like=g, dtype=torch.float32)
        counters = torch.zeros(n_counters, device=g.device, dtype=torch.int32) if n_counters else partials
        with device_guard(g):
            replay(g, t, kernel, y, partials, counters, scale)
        return partials, y
    n, R1, R2, D, sg = _axis_view(g, axis)
    block_d = pow2(D, 1)
    prec, up = precision(g.dtype), upcast()
    sms = sm_count(g)
    result = {}

    def run(config, g_: torch.Tensor, t_: torch.Tensor, y_: torch.Tensor, k: torch.Tensor):
        cols, warps, stages, parts = config
        block_r = max(1, cols // block_d)
        _, r1, r2, _, strides = _axis_view(g_, axis)  # g_'s own sizes: a tuning trial runs on smaller fields
        strips = cdiv(r1 * r2, block_r)
        bh = g_.shape[0] * g_.shape[1]
        if parts == 1:  # a few waves of programs, one work item each
            splits = max(1, min(strips, cdiv(4 * sms, bh)))
        else:  # a split pass: one group of parts per multiprocessor at most, so that its parts run at the same time
            splits = max(1, min(strips, sms // parts // bh))
        per_split = cdiv(strips, splits)
        splits = cdiv(strips, per_split)
        n_groups = bh * splits if parts == 1 else min(bh * splits, max(1, sms // parts))
        in_step = parts > 1 and y_.data_ptr() == g_.data_ptr()
        partials = empty(splits, g_.shape[0], g_.shape[1], n, n, like=g_, dtype=torch.float32)
        counters = torch.zeros(n_groups, device=g_.device, dtype=torch.int32) if in_step else partials
        args = (
            g_,
            t_,
            k,
            y_,
            partials,
            counters,
            g_.shape[1],
            n,
            r1,
            r2,
            D,
            bh * splits,
            splits,
            per_split,
            float(scale),
            *strides,
            *_axis_view(t_, axis)[4],
            *_axis_view(y_, axis)[4],
            *k.stride(),
            pow2(n),
            pow2(n) // parts,
            block_r,
            block_d,
            up,
            prec,
            in_step,
        )
        replay = launch(_contract_apply_kernel, (n_groups * parts,), args, warps, stages)
        return replay, partials, n_groups if in_step else 0

    scratch: list[torch.Tensor] = []

    def trial(config) -> None:
        # The launch overwrites one of its inputs: time the candidates on two smaller fields of one shape, in the
        # layout of t (the op's own, dense; g may be anything autograd hands over, even an expanded tensor), the
        # output over the same input as the real launch's.
        if not scratch:
            field = _trial_field(t, axis)
            scratch.extend((field, torch.zeros_like(field)))
        g_, t_ = scratch
        run(config, g_, t_, g_ if into_g else t_, kernel[: g_.shape[0]])

    def real(config) -> None:
        replay, result["partials"], n_counters = run(config, g, t, y, kernel)
        if replay is not None:
            _REPLAYS[key] = (replay, result["partials"].shape, n_counters)

    tuning_key = ("fa_fused", n, R1 * R2 > 4096, D, g.dtype, sg[5] == 1, prec, into_g)
    with device_guard(g):
        _tuning.pick(tuning_key, _fit_fused(n, D, g.element_size(), upcast(), into_g, shared_memory(g)), real, g.device, trial=trial)
    return result["partials"], y


def fuses(x: torch.Tensor, axis: int, into_x: bool) -> bool:
    """Whether :func:`_contract_apply` takes axis ``axis`` of the gradient ``x``, writing its image over ``x``
    (``into_x``) or elsewhere."""
    return bool(_fit_fused(x.shape[2 + axis], x.shape[-1], x.element_size(), upcast(), into_x, shared_memory(x)))


def _matmul(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``round(a) @ b`` in ``dtype``: ``a [B, H, M, K]`` (e.g. a float32 kernel gradient, rounded to ``dtype`` first),
    ``b [B, H, K, N]``, any strides → ``[B, H, M, N]``. The axial products ``q kᵀ`` and their gradients ``dP k``,
    ``dPᵀ q``: small matmuls, here rather than in cuBLAS because a replayed launch costs a fraction of a cuBLAS
    call's host time, which on the H100 machine was 0.1-0.2 ms a call inside a step and delayed the step's first
    application as long. The quadrature weight is applied inside the field kernels."""
    B, H, M, K = a.shape
    N = b.shape[-1]
    c = empty(B, H, M, N, like=b, dtype=dtype)
    prec = precision(dtype)
    key = ("matmul", geometry(a), geometry(b), dtype, prec)
    with device_guard(b):
        if key in _REPLAYS:
            (replay,) = _REPLAYS[key]
            replay(a, b, c)
            return c
        bm, bn, bk = min(64, pow2(M)), min(64, pow2(N)), min(64, pow2(K))
        args = (a, b, c, H, M, N, K, *a.stride(), *b.stride(), *c.stride(), bm, bn, bk, upcast(), prec)
        replay = launch(_matmul_kernel, (cdiv(M, bm), cdiv(N, bn), B * H), args, 4, 3)
    if replay is not None:
        _REPLAYS[key] = (replay,)
    return c
