"""Launch configurations of the triton factorised attention that fit an axis, its channels and the device.

Each ``_fit*`` takes the device's shared memory per block (``shared``, bytes: :func:`~sciformer.kernels._triton.shared_memory`)
and returns the candidate tiles, in order of preference, that the tuner (:mod:`sciformer.kernels._tuning`) times.
Under the interpreter each returns one small tile.
"""

from __future__ import annotations

from functools import cache

from sciformer.kernels import register_cache
from sciformer.kernels._triton import pow2

_APPLY_CONFIGS = (  # (BLOCK_M, BLOCK_N, columns, warps, stages)
    (128, 64, 128, 8, 3),
    (128, 32, 128, 4, 4),
    (64, 64, 128, 4, 3),
    (128, 64, 64, 4, 3),
    (64, 32, 256, 8, 3),
    (64, 64, 64, 4, 4),
)
_CONTRACT_CONFIGS = (  # (BLOCK_M, BLOCK_N, columns, warps, stages)
    (128, 128, 128, 4, 3),
    (128, 128, 64, 8, 3),
    (64, 64, 128, 4, 3),
    (128, 64, 64, 4, 3),
    (64, 64, 64, 4, 4),
)


_INPLACE_CONFIGS = (  # (BLOCK_N, columns, warps, stages); BLOCK_M covers the whole axis
    (64, 128, 8, 4),  # the fastest at 256² (H100, full-size timings)
    (32, 64, 4, 3),
    (32, 64, 8, 3),
    (64, 128, 4, 3),  # the fastest at 64³
    (32, 256, 4, 3),
    (32, 128, 4, 4),
)
_ACC_PER_THREAD = 128  # fp32 accumulators per thread of a whole-axis tile (in-place and fused passes)

# Estimates that count only the staged tiles leave this much of the device's shared memory per block to the
# compiler's own buffers (200 of the H100's 227 KiB); estimates that count every buffer use the whole of it.
_COMPILER_RESERVE = 27 * 1024


def _apply_staged(m: int, k: int, c: int) -> int:
    """Elements an axis application stages per pipeline step: a kernel tile and a field tile."""
    return m * k + k * c


def _contract_staged(m: int, k: int, c: int) -> int:
    """Elements a contraction stages per pipeline step: two field tiles."""
    return (m + k) * c


# The fits below are cached: at small fields the Python around the seven launches of a step, not the GPU, set the
# step time (H100, 128²: 3.1 ms a step for 1.1 ms of kernels).
@cache
def _fit(configs, n: int, D: int, itemsize: int, operands, interpreted: bool, shared: int) -> tuple[tuple[int, int, int, int, int], ...]:
    """Tile configurations that suit an axis of ``n`` points and ``D`` channels, with the pipeline depth cut so that
    the staged tiles fit in shared memory; ``operands(bm, bn, cols)`` is the elements staged per pipeline stage.
    Under the interpreter: one small tile."""
    block_d = pow2(D, 1)
    if interpreted:
        return ((min(64, pow2(n)), min(64, pow2(n)), max(64, block_d), 4, 1),)
    fitted = []
    for m, k, c, warps, stages in configs:
        m, k, c = min(m, pow2(n)), min(k, pow2(n)), max(c, block_d)
        while stages > 1 and stages * operands(m, k, c) * itemsize > shared - _COMPILER_RESERVE:
            stages -= 1
        if stages * operands(m, k, c) * itemsize <= shared - _COMPILER_RESERVE:
            fitted.append((m, k, c, warps, stages))
    return tuple(dict.fromkeys(fitted)) or ((32, 32, block_d, 4, 1),)  # in order, without duplicates


@cache
def _fit_inplace(n: int, D: int, itemsize: int, interpreted: bool, shared: int) -> tuple[tuple[int, int, int, int, int], ...]:
    """Tile configurations whose row tile spans the whole axis (so a program may overwrite what it read), with at
    most :data:`_ACC_PER_THREAD` accumulators per thread; empty when the axis is too long for that."""
    m, block_d = pow2(n), pow2(D, 1)
    if interpreted:
        return ((m, min(64, m), max(64, block_d), 4, 1),) if m * max(64, block_d) <= 64 * 1024 else ()
    fitted = []
    for k, c, warps, stages in _INPLACE_CONFIGS:
        k, c = min(k, m), max(c, block_d)
        if m * c > _ACC_PER_THREAD * 32 * warps:
            continue
        while stages > 1 and stages * _apply_staged(m, k, c) * itemsize > shared - _COMPILER_RESERVE:
            stages -= 1
        if stages * _apply_staged(m, k, c) * itemsize <= shared - _COMPILER_RESERVE:
            fitted.append((m, k, c, warps, stages))
    return tuple(dict.fromkeys(fitted))


_ROWS_CONFIGS = (  # (BLOCK_M, columns, warps, stages, programs per multiprocessor)
    (128, 64, 8, 4, 1),  # the fastest at 256² (0.41 ms against 0.47 for _apply_kernel's best, H100)
    (128, 64, 4, 4, 1),
    (128, 64, 8, 3, 1),
    (256, 64, 8, 2, 1),  # whole axes of 129-256 points (in place)
    (64, 64, 8, 3, 2),  # the fastest at 64³
    (64, 128, 8, 3, 2),
)
_ROWS_MAX_AXIS = 256  # the kernel's rows of a longer axis, with the whole reduction, do not fit beside the field's tiles


@cache
def _fit_rows(n: int, D: int, E: int, itemsize: int, whole: bool, interpreted: bool, shared: int) -> tuple[tuple[int, int, int, int, int], ...]:
    """Configurations of :func:`_apply_rows_kernel` for an axis of ``n`` points, ``D`` channels and (``E > 0``) the
    kernel formed from ``E`` key channels; ``whole``: row tiles that span the axis (so a program may overwrite what
    it read). Only 16-bit fields on a GPU: float32 tiles take more shared memory than the H100 has (327680 bytes for
    64 rows of a 256-point axis, ptxas for sm_90). Empty when nothing fits."""
    m, block_d, block_e = pow2(n), pow2(D, 1), _block_e(E)
    if m > _ROWS_MAX_AXIS:
        return ()
    if interpreted:
        return ((m if whole else min(32, m), max(32, block_d), 4, 1, 1),)
    if itemsize != 2:
        return ()

    def staged(bm: int, c: int, stages: int) -> int:
        # forming the kernel stages q and k tiles; the strip loop stages field tiles, with the kernel's rows and the
        # output tile's trip to the store beside them (what triton 3.6 allocates for sm_90, or a little more)
        return max(stages * (bm + m) * block_e, stages * m * c + bm * (m + c)) * itemsize

    fitted = []
    for bm, c, warps, stages, per_sm in _ROWS_CONFIGS:
        bm, c = m if whole else min(bm, m), max(c, block_d)
        if bm * c > _ACC_PER_THREAD * 32 * warps:
            continue
        # formed rows stay in registers: past 64 a thread, ptxas spills (255 registers and 2.3 KB of spills for 128
        # rows of 256 points on 4 warps, sm_90); a whole axis keeps its one in-place tile regardless
        if E and not whole and bm * m * itemsize > 64 * 4 * 32 * warps:
            continue
        while stages > 1 and staged(bm, c, stages) > shared:
            stages -= 1
        if staged(bm, c, stages) <= shared:
            fitted.append((bm, c, warps, stages, per_sm))
    return tuple(dict.fromkeys(fitted))


def _block_e(E: int) -> int:
    """Key channels per step where the resident-rows kernel forms ``q kᵀ``."""
    return min(64, pow2(E))


_FUSED_CONFIGS = (  # (columns, warps, stages, parts): each program takes 1/parts of the rows of T and of the output
    (128, 4, 3, 1),
    (64, 4, 3, 1),
    (256, 8, 3, 1),
    (128, 8, 3, 1),
    (64, 4, 4, 1),
    (64, 8, 3, 1),  # axes of 65-128 points
    (128, 4, 2, 1),
    (64, 8, 2, 1),
    (64, 16, 3, 2),  # axes of 129-256 points: the kernel gradient split over programs by its columns
    (64, 8, 4, 4),
    (128, 8, 2, 4),
)
_WHOLE_FUSED_MAX_AXIS = 128  # the n × n float32 kernel gradient of a longer axis does not fit in one program's registers
_FUSED_MAX_AXIS = 256  # nor n × n / 4 of a longer one


@cache
def _fit_fused(n: int, D: int, itemsize: int, interpreted: bool, into_g: bool, shared: int) -> tuple[tuple[int, int, int, int], ...]:
    """Configurations of the fused contraction + application for an axis of ``n`` points and ``D`` channels: the
    kernel gradient's part (``n × n / parts``) and the output strip (``n / parts × columns``) accumulate in at most
    :data:`_ACC_PER_THREAD` float32 registers per thread. One program holds the whole kernel gradient (``parts =
    1``) up to :data:`_WHOLE_FUSED_MAX_AXIS` points; a longer axis splits it over programs. Where the output goes
    over the gradient it is the image of (``into_g``), the parts of a split keep in step through a counter, which
    the interpreter cannot run (it runs programs one after another): there such an axis is not fused. Empty when
    nothing fits."""
    m, block_d = pow2(n), pow2(D, 1)
    whole = m <= _WHOLE_FUSED_MAX_AXIS
    # float32 tiles of a split pass exceed the H100's shared memory (262144 bytes at n = 256 and 64 columns, one
    # stage, three-pass TF32; ptxas for sm_90): there only 16-bit fields split
    if m > _FUSED_MAX_AXIS or not (whole or (itemsize == 2 and not (into_g and interpreted))):
        return ()
    if interpreted:
        return ((max(64, block_d), 4, 1, 1 if whole else 2),)

    def staged(c: int, stages: int, j: int) -> int:
        # staged strips of g (all rows) and t (j rows), the kernel's j rows, and the output strip's trip through
        # shared memory on its way to the store: what triton 3.6 allocates for sm_90 where its buffers do not
        # overlap (exactly, for the split passes at n = 256), more than it allocates where they do
        return (stages * (m + j) * c + j * m + j * c) * itemsize

    # float32 (three-pass TF32) takes more than that count: 262144 bytes where it counts 229376 (n = 65, 64
    # columns, 2 stages), so there the margin of the other estimates is kept
    limit = shared if itemsize == 2 else shared - _COMPILER_RESERVE
    fitted = []
    for c, warps, stages, parts in _FUSED_CONFIGS:
        if (parts == 1) != whole:
            continue
        c, j = max(c, block_d), m // parts
        if j * (m + c) > _ACC_PER_THREAD * 32 * warps:
            continue
        while stages > 1 and staged(c, stages, j) > limit:
            stages -= 1
        if staged(c, stages, j) <= limit:
            fitted.append((c, warps, stages, parts))
    return tuple(dict.fromkeys(fitted))


for _fitted in (_fit, _fit_inplace, _fit_rows, _fit_fused):
    register_cache(_fitted.cache_clear)
