"""Factorised attention at small fields, where the host's launch work can bound a step: wall time per forward +
backward step over 100 steps (one synchronisation at the end), the Triton op against the eager reference.

    python benchmarks/factorized_small_fields.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = (((128, 128), 16), ((32, 32, 32), 16))  # (grid, batch); 4 heads, d = 64, E = 128, bf16
STEPS = 100


def main() -> None:
    import torch

    from sciformer.kernels.factorized_attention import reference, triton

    if not torch.cuda.is_available():
        sys.exit("factorized_small_fields.py times CUDA launches: it needs a GPU")
    dev, dt, H, D = "cuda", torch.bfloat16, 4, 64
    for grid, B in CASES:
        qs = [(0.1 * torch.randn(B, H, n, 2 * D, device=dev, dtype=dt)).requires_grad_() for n in grid]
        ks = [(0.1 * torch.randn(B, H, n, 2 * D, device=dev, dtype=dt)).requires_grad_() for n in grid]
        v = torch.randn(B, *grid, H, D, device=dev, dtype=dt).movedim(-2, 1).requires_grad_()  # the block's layout
        grad = torch.randn_like(v)
        for name, op in (("eager", reference.factorized_attention), ("triton", triton.factorized_attention)):
            def step():
                for t in (*qs, *ks, v):
                    t.grad = None
                op(qs, ks, v).backward(grad)

            for _ in range(10):  # compilation, tuning, allocator
                step()
            torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(STEPS):
                step()
            torch.cuda.synchronize()
            ms = (time.perf_counter() - started) * 1e3 / STEPS
            print(f"{'x'.join(map(str, grid))} batch {B}: {name:6s} {ms:.3f} ms / step", flush=True)


if __name__ == "__main__":
    main()
