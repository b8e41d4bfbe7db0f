"""Generation throughput (samples/s) of each PDE generator.

    python benchmarks/pde_generators.py                       # CPU, the settings below
    python benchmarks/pde_generators.py --device cuda --scale 8   # GPU: 8x the samples
    python benchmarks/pde_generators.py --only ns2d --res ns2d=256

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
    args = ap.parse_args()

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


if __name__ == "__main__":
    main()
