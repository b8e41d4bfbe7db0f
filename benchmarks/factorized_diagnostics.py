"""Where the factorised-attention fast path spends its time, on one CUDA GPU (bf16, the headline shapes of
``benchmarks/kernels.py``: 256² with batch 16 and 64³ with batch 4, 4 heads, d = 64, E = 128).

    python benchmarks/factorized_diagnostics.py passes     # every launch configuration of every pass, full size
    python benchmarks/factorized_diagnostics.py profile    # device time per kernel of one step, both modes
    python benchmarks/factorized_diagnostics.py timeline   # one synchronised step: when each kernel ran
    python benchmarks/factorized_diagnostics.py host       # event-timed vs back-to-back steps, host enqueue time

``passes`` also times a plain copy of the field (the bandwidth ceiling of one pass). Findings:
docs/dev/2026-11-24-factorised-attention-kernels.md.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time

SHAPES = (((256, 256), 16), ((64, 64, 64), 4))
HEADS, D, E = 4, 64, 128


def inputs(grid, B, device):
    import torch

    g = torch.Generator(device=device).manual_seed(0)
    qs = [torch.randn(B, HEADS, n, E, device=device, dtype=torch.bfloat16, generator=g).mul_(0.1).requires_grad_() for n in grid]
    ks = [torch.randn(B, HEADS, n, E, device=device, dtype=torch.bfloat16, generator=g).mul_(0.1).requires_grad_() for n in grid]
    # [B, *grid, H, D] memory seen as [B, H, *grid, D]: the layout FactorizedAttention hands over
    v = torch.randn(B, *grid, HEADS, D, device=device, dtype=torch.bfloat16, generator=g).movedim(-2, 1).requires_grad_()
    grad = torch.randn(B, *grid, HEADS * D, device=device, dtype=torch.bfloat16)
    return qs, ks, v, grad


def step_of(fn, qs, ks, v, grad, **kwargs):
    B, grid = v.shape[0], v.shape[2:-1]

    def step():
        for t in (*qs, *ks, v):
            t.grad = None
        fn(qs, ks, v, **kwargs).movedim(1, -2).reshape(B, *grid, HEADS * D).backward(grad)

    return step


def cuda_ms(fn, reps: int = 10) -> float:
    import torch

    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / reps


def passes(device) -> None:
    """Each pass of the backward and forward, at full size, in every configuration that compiles."""
    import torch

    from sciformer.kernels._triton import cdiv, pow2
    from sciformer.kernels.factorized_attention import _kernels, _launch

    def apply(kernel, src, dst, axis, config):
        n, R1, R2, _, strides = _launch._axis_view(src, axis)
        bm, bn, cols, warps, stages = config
        block_r = max(1, cols // pow2(D, 1))
        _kernels._apply_kernel[(cdiv(n, bm) * cdiv(R1 * R2, block_r), src.shape[0] * src.shape[1])](
            kernel, src, dst, src.shape[1], n, R1, R2, D, 1.0, *kernel.stride(), *strides, *_launch._axis_view(dst, axis)[4],
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_R=block_r, BLOCK_D=pow2(D, 1), UPCAST=False, PRECISION="tf32", num_warps=warps, num_stages=stages)

    for grid, B in SHAPES:
        qs, ks, v, _ = inputs(grid, B, device)
        v = v.detach()
        g = torch.randn_like(v)
        field_bytes = v.numel() * v.element_size()
        copy = cuda_ms(lambda: g.copy_(v), 20)
        print(f"== {grid}: field {field_bytes / 2**20:.0f} MiB; copy {copy:.3f} ms, {2 * field_bytes / copy / 1e9:.2f} TB/s")
        products = [_launch._matmul(q.detach(), k.detach().transpose(-1, -2), v.dtype) for q, k in zip(qs, ks)]
        last, n = len(grid) - 1, pow2(grid[0])
        kinds = {
            "axis 0, out of place": (products[0], v, torch.empty_like(v), 0),
            f"axis {last} transposed, out of place": (products[last].transpose(-1, -2), v, torch.empty_like(v), last),
            f"axis {last}, in place": (products[last], g, g, last),
            "axis 0 transposed, in place": (products[0].transpose(-1, -2), g, g, 0),
        }
        for label, (kernel, src, dst, axis) in kinds.items():
            rows = sorted({n} | ({min(128, n)} if src is not dst else set()), reverse=True)
            timings = []
            for config in itertools.product(rows, (32, 64), (64, 128, 256), (4, 8, 16), (3, 4)):
                bm, bn, cols, warps, stages = config
                if not 32 <= bm * cols / (32 * warps) <= 128 or stages * (bm * bn + bn * cols) * 2 > 200 * 1024:
                    continue  # accumulators or staged tiles beyond what fits (ptxas would refuse it)
                try:
                    timings.append((cuda_ms(lambda: apply(kernel, src, dst, axis, config), 5), config))
                except Exception:  # out of registers or shared memory: not a candidate
                    continue
            for ms, config in sorted(timings)[:3]:
                print(f"   {label:32s} {ms:.3f} ms  {2 * field_bytes / ms / 1e9:.2f} TB/s  (BLOCK_M, BLOCK_N, columns, warps, stages) = {config}")
        del qs, ks, v, g, products
        torch.cuda.empty_cache()


def profile(device) -> None:
    """Device time per kernel of one forward + backward, intermediates kept and recomputed."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from sciformer.kernels.factorized_attention import triton as fa

    for grid, B in SHAPES:
        qs, ks, v, grad = inputs(grid, B, device)
        for recompute in (False, True):
            step = step_of(fa.factorized_attention, qs, ks, v, grad, recompute=recompute)
            for _ in range(3):
                step()
            torch.cuda.synchronize()
            with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    step()
                torch.cuda.synchronize()
            by_name: dict[str, list[float]] = {}
            for event in prof.events():
                if event.device_type.name == "CUDA":
                    by_name.setdefault(event.name[:60], []).append(event.device_time_total)
            total = sum(map(sum, by_name.values())) / 5e3
            print(f"== {grid}, recompute={recompute}: kernel time per step {total:.3f} ms")
            for name, times in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:8]:
                print(f"   {sum(times) / 5e3:7.3f} ms  x{len(times) / 5:4.1f}  {name}")
        del qs, ks, v, grad
        torch.cuda.empty_cache()


def timeline(device) -> None:
    """When each kernel of one synchronised step ran, from the step's start on the host."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from sciformer.kernels.factorized_attention import triton as fa

    for grid, B in SHAPES:
        qs, ks, v, grad = inputs(grid, B, device)
        step = step_of(fa.factorized_attention, qs, ks, v, grad)
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                with torch.profiler.record_function("STEP"):
                    step()
                torch.cuda.synchronize()
        events = prof.events()
        start = max(e.time_range.start for e in events if e.name == "STEP" and e.device_type.name == "CPU")
        kernels = sorted((e for e in events if e.device_type.name == "CUDA" and e.time_range.start >= start), key=lambda e: e.time_range.start)
        print(f"== {grid}: kernels of the last step, ms from its start on the host")
        previous = None
        for e in kernels:
            gap = "" if previous is None else f"(gap {(e.time_range.start - previous) / 1e3:.3f})"
            print(f"   {(e.time_range.start - start) / 1e3:7.3f} → {(e.time_range.end - start) / 1e3:7.3f} {gap:14s} {e.name[:50]}")
            previous = e.time_range.end
        del qs, ks, v, grad
        torch.cuda.empty_cache()


def host(device) -> None:
    """Event-timed steps (synchronised after each, as benchmarks/kernels.py times them) against back-to-back steps,
    and how long the host takes to enqueue one."""
    import torch

    from sciformer.kernels.factorized_attention import reference, triton

    for grid, B in SHAPES:
        qs, ks, v, grad = inputs(grid, B, device)
        for label, fn in (("triton", triton.factorized_attention), ("eager", reference.factorized_attention)):
            step = step_of(fn, qs, ks, v, grad)
            back_to_back = cuda_ms(step, 20)
            timed, enqueue = [], []
            for _ in range(20):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                t0 = time.perf_counter()
                start.record()
                step()
                enqueue.append((time.perf_counter() - t0) * 1e3)
                end.record()
                end.synchronize()
                timed.append(start.elapsed_time(end))
            print(f"{grid} {label}: event-timed {statistics.median(timed):.3f} ms, back to back {back_to_back:.3f} ms, "
                  f"host enqueue {statistics.median(enqueue):.3f} ms")
        del qs, ks, v, grad
        torch.cuda.empty_cache()


PARTS = {"passes": passes, "profile": profile, "timeline": timeline, "host": host}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="+", choices=sorted(PARTS))
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("benchmarks/factorized_diagnostics.py needs a CUDA GPU and triton")
    for part in args.parts:
        PARTS[part](torch.device("cuda"))


if __name__ == "__main__":
    main()
