"""Generation throughput (samples/s) of each PDE generator.

    python benchmarks/pde_generators.py                       # CPU, the settings below
    python benchmarks/pde_generators.py --device cuda --scale 8   # GPU: 8x the samples
    python benchmarks/pde_generators.py --only ns2d --res ns2d=256
    python benchmarks/pde_generators.py --darcy-solvers 256 --n 32     # Darcy's solve: scipy LU vs CuPy CG

Each generator writes a real PDEBench file into a temp dir (deleted afterwards); the time includes
simulation and HDF5 writing. Settings per generator (n, res, parameters) are in ``CASES``; the
defaults are the generators' own (PDEBench-like) unless listed.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = {  # name: (n, res, params)
    "advection1d": (64, 1024, {}),
    "burgers1d": (64, 256, {}),  # 1024 cells at nu=0.01 take ~14x the steps (diffusive dt ~ dx^2)
    "darcy2d": (64, 128, {}),
    "ns2d": (16, 64, {"t_end": 5.0, "dt_save": 0.25}),
    "diffreact2d": (16, 128, {}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", action="append", help="generator name (repeatable)")
    ap.add_argument("--scale", type=int, default=1, help="multiply every n")
    ap.add_argument("--res", action="append", default=[], help="name=res override (repeatable)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--compression", default="gzip", help="gzip (the default of generate) or none")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--darcy-solvers", type=int, metavar="RES", default=None,
                    help="time Darcy's sparse solve per sample at RES², scipy (CPU) against CuPy (GPU), and compare them")
    ap.add_argument("--n", type=int, default=32, help="samples for --darcy-solvers (one batch)")
    args = ap.parse_args()
    if args.darcy_solvers:
        return darcy_solvers(args.darcy_solvers, args.n)

    import torch

    from sciformer.data.generators import GENERATORS, generate

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch.cuda.is_available() is False")
    res_over = dict(kv.split("=") for kv in args.res)
    names = args.only or list(CASES)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {args.device}, dtype {args.dtype}, compression {args.compression}")
    print("| generator | n | res | frames | params | seconds | samples/s | MB written |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="sciformer_genbench_") as tmp:
        for name in names:
            n, res, params = CASES[name]
            n, res = n * args.scale, int(res_over.get(name, res))
            path = Path(tmp) / f"{name}.h5"
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            generate(name, path, n, res, seed=0, device=args.device, dtype=args.dtype, progress=False,
                     compression=args.compression, **params)
            dt = time.perf_counter() - t0
            plan = GENERATORS[name].plan(res, **GENERATORS[name].params(**params))
            print(f"| {name} | {n} | {res} | {plan.n_t} | {params or 'defaults'} | {dt:.1f} | "
                  f"{n / dt:.2f} | {path.stat().st_size / 1e6:.0f} |", flush=True)
            path.unlink()


def darcy_solvers(res: int, n: int) -> None:
    """Seconds per sample of Darcy's solve for one batch of ``n`` coefficient fields at ``res``²: scipy's sparse
    LU on the CPU (the reference) and CuPy's Jacobi-preconditioned CG on the GPU (after one warm-up call), the
    relative difference of the two solutions, and the whole generator's time per sample on each device."""
    import torch

    from sciformer.data.generators import generate
    from sciformer.data.generators.darcy import darcy_coefficient, darcy_solve

    a = darcy_coefficient(n, res, torch.Generator().manual_seed(0), "cpu", torch.float64)
    t0 = time.perf_counter()
    cpu = darcy_solve(a, 1.0, 1.0 / res)
    t_cpu = (time.perf_counter() - t0) / n
    a_gpu = a.cuda()
    darcy_solve(a_gpu[:1], 1.0, 1.0 / res)  # CuPy's kernels compile on first use
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    gpu = darcy_solve(a_gpu, 1.0, 1.0 / res)
    torch.cuda.synchronize()
    t_gpu = (time.perf_counter() - t0) / n
    diff = ((gpu.cpu() - cpu).norm() / cpu.norm()).item()
    print(f"# Darcy solve at {res}x{res}, batch {n}: {torch.cuda.get_device_name()}, {platform.processor() or platform.machine()}")
    print("| solver | s/sample |")
    print("|---|---|")
    print(f"| scipy sparse LU (CPU) | {t_cpu:.4f} |")
    print(f"| CuPy CG, Jacobi, rtol 1e-10 (GPU) | {t_gpu:.4f} |")
    print(f"relative L2 difference of the solutions: {diff:.2e}; speed-up {t_cpu / t_gpu:.1f}x")
    with tempfile.TemporaryDirectory(prefix="sciformer_genbench_") as tmp:
        for device in ("cpu", "cuda"):
            t0 = time.perf_counter()
            generate("darcy2d", Path(tmp) / f"{device}.h5", n, res, device=device, progress=False)
            print(f"generate darcy2d n={n} res={res} device={device}: {(time.perf_counter() - t0) / n:.4f} s/sample", flush=True)


if __name__ == "__main__":
    main()
