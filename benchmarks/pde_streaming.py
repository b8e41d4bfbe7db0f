"""Streamed operator training: one epoch over a file larger than memory, and streamed vs in-memory throughput.

    # 1. a >16 GB PDEBench file: a few simulated 2D Navier-Stokes trajectories, repeated as periodic translations
    python benchmarks/pde_streaming.py generate /data/ns2d_big.h5 --size-gb 16.5
    # 2. one epoch (train + validation) of a small operator, streamed; peak memory as the OS counts it
    /usr/bin/time -v python benchmarks/pde_streaming.py epoch /data/ns2d_big.h5
    # 3. on a GPU: samples/s of a recipe's training, in memory and streamed, and both loss curves
    python benchmarks/pde_streaming.py throughput recipes/ns2d_fno.yaml recipes/ns2d_galerkin.yaml --epochs 2

``generate`` simulates ``--seeds`` trajectories with sciformer's ``ns2d`` solver (periodic box, FNO forcing) and
writes copy ``k`` of seed ``s`` shifted by ``k`` cells along both axes: a translate of a periodic solution is a
solution too, so every sample is a valid (if not independent) trajectory. The file is PDEBench's single-file
layout, chunked one trajectory per chunk, uncompressed. ``epoch`` prints one JSON line (file size, samples, seconds,
samples/s, this process's peak RSS); ``throughput`` prints one JSON line per recipe and mode (in memory, streamed in
default chunks, streamed as one chunk: the in-memory order) and how far the loss curves differ.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def generate(args: argparse.Namespace) -> None:
    import h5py
    import numpy as np

    from sciformer.data.generators import generate as simulate

    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; choose a new path")
    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "seeds.h5"
        started = time.perf_counter()
        simulate("ns2d", seeds, n=args.seeds, res=args.res, t_end=float(args.frames - 1), dt_save=1.0, device=args.device, progress=False)
        with h5py.File(seeds, "r") as f:
            base = np.asarray(f["tensor"], dtype=np.float32)  # [seeds, T, X, Y]
            coords = {k: np.asarray(f[k]) for k in ("x-coordinate", "y-coordinate", "t-coordinate") if k in f}
        simulated = time.perf_counter() - started
    per_sample = base[0].nbytes
    n = math.ceil(args.size_gb * 1e9 / per_sample)
    started = time.perf_counter()
    with h5py.File(out, "w") as f:
        ds = f.create_dataset("tensor", shape=(n, *base.shape[1:]), dtype="f4", chunks=(1, *base.shape[1:]))
        for i in range(n):
            shift = i // len(base)
            ds[i] = np.roll(base[i % len(base)], (shift, shift), axis=(-2, -1))
        for k, v in coords.items():
            f[k] = v
        f.attrs["origin"] = f"{len(base)} ns2d trajectories repeated as periodic translations (benchmarks/pde_streaming.py)"
    print(json.dumps({"file": str(out), "gb": out.stat().st_size / 1e9, "samples": n, "frames": base.shape[1], "res": args.res,
                      "simulate_seconds": round(simulated, 1), "write_seconds": round(time.perf_counter() - started, 1)}))


def _load(name: str, in_memory: bool | str, overrides: list[str]):
    from sciformer.config import load_recipe, recipe_from_dict
    from sciformer.data.operator import load_operator_data

    if name.endswith(".yaml"):
        recipe = load_recipe(name, [f"data.in_memory={str(in_memory).lower()}", *overrides])
    else:
        raw = {"data": {"name": name, "in_memory": in_memory}, "model": {"name": "fno", "modes": 8, "width": 8, "n_layers": 2},
               "train": {"batch_size": 32, "epochs": 1, "progress": False, "patience": 0}}
        recipe = recipe_from_dict(raw, overrides)
    return recipe, load_operator_data(recipe.data, recipe.train, allow_generate=True)


def _tiny_cnn(in_channels: int, out_channels: int, width: int = 8):
    """Two 3x3 convolutions: the cheapest operator that still trains, so that an epoch over 16 GB measures the
    data path on two CPU cores rather than the model."""
    import torch
    from torch import nn

    class TinyCNN(nn.Module):
        task = "operator"

        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, padding_mode="circular"), nn.GELU(),
                                     nn.Conv2d(width, out_channels, 3, padding=1, padding_mode="circular"))

        def forward(self, u: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
            return self.net(u)

    return TinyCNN()


def _fit(recipe, data, device, model=None):
    import torch

    from sciformer.engine.trainer import Trainer, seed_everything
    from sciformer.registry import build_model

    seed_everything(recipe.seed)
    model = model or build_model(recipe.model.name, recipe.model.args, **data.sizes())
    trainer = Trainer(model, recipe.train, torch.device(device), seed=recipe.seed)
    return trainer.fit(data.to(device))


def epoch(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe, data = _load(args.file, False, [f"data.reduced_resolution={args.stride}", *args.override])
    windows = data._count("train", True)
    model = _tiny_cnn(data.in_channels, data.out_channels) if args.model == "cnn" else None
    fit = _fit(recipe, data, "cpu", model)
    row = fit.history[-1]
    print(json.dumps({"file": args.file, "gb": Path(args.file).stat().st_size / 1e9, "streamed": data.streamed, "model": args.model,
                      "grid": list(data.grid_shape), "train_windows": windows,
                      "epoch_train_seconds": round(row["epoch_train_seconds"], 1), "epoch_seconds": round(row["epoch_seconds"], 1),
                      "samples_per_s": round(windows / row["epoch_train_seconds"], 1), "train_loss": row["train_loss"], "val_mse": row["val_mse"],
                      "peak_rss_mb": round(_peak_rss_mb()), "torch": torch.__version__}))


def throughput(args: argparse.Namespace) -> None:
    """In memory; streamed in default chunks; streamed as one chunk per split (the in-memory order, batch for batch)."""
    import torch

    from sciformer.data.sources import streaming

    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    if args.deterministic:  # GPU kernels without atomics: what is left of a difference is the data path's
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    default_chunk = streaming.CHUNK_BYTES
    modes = [("in_memory", True, default_chunk), ("streamed", False, default_chunk), ("streamed_one_chunk", False, 2**62)]
    if args.repeat:  # the device's own run-to-run variation, the yardstick of "within float tolerance"
        modes.insert(1, ("in_memory_again", True, default_chunk))
    for name in args.recipes:
        curves = {}
        for label, in_memory, chunk in modes:
            streaming.CHUNK_BYTES = chunk
            recipe, data = _load(name, in_memory, [f"train.epochs={args.epochs}", "tracking.enabled=false", "train.progress=false", *args.override])
            fit = _fit(recipe, data, device)
            windows = data._count("train", True)
            last = fit.history[-1]["epoch_train_seconds"]
            curves[label] = [(h["train_loss"], h["val_mse"]) for h in fit.history]
            print(json.dumps({"recipe": name, "mode": label, "streamed": data.streamed, "device": machine, "train_windows": windows,
                              "epoch_train_seconds": [round(h["epoch_train_seconds"], 2) for h in fit.history],
                              "samples_per_s_last_epoch": round(windows / last, 1), "history": curves[label]}), flush=True)
        for label in [m[0] for m in modes[1:]]:
            diff = max(abs(a - b) / max(abs(a), 1e-12) for x, y in zip(curves["in_memory"], curves[label]) for a, b in zip(x, y))
            print(json.dumps({"recipe": name, "compare": f"in_memory vs {label}", "max_relative_difference_of_the_curves": diff}), flush=True)
    streaming.CHUNK_BYTES = default_chunk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="write a large ns2d file of translated trajectories")
    g.add_argument("out")
    g.add_argument("--size-gb", type=float, default=16.5, help="file size in GB (10^9 bytes)")
    g.add_argument("--res", type=int, default=256)
    g.add_argument("--frames", type=int, default=3, help="frames per trajectory (dt = 1)")
    g.add_argument("--seeds", type=int, default=4, help="trajectories actually simulated")
    g.add_argument("--device", default="cpu")
    e = sub.add_parser("epoch", help="one streamed epoch of a small operator over FILE")
    e.add_argument("file")
    e.add_argument("--model", choices=("cnn", "fno"), default="cnn", help="a two-layer CNN, or a small FNO (modes 8, width 8, 2 layers)")
    e.add_argument("--stride", type=int, default=4, help="data.reduced_resolution: every k-th grid point (the whole file is still read)")
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--override", action="append", default=[], help="recipe override KEY=VALUE (repeatable)")
    t = sub.add_parser("throughput", help="samples/s of recipes in memory and streamed")
    t.add_argument("recipes", nargs="+")
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--override", action="append", default=[], help="recipe override KEY=VALUE (repeatable)")
    t.add_argument("--repeat", action="store_true", help="also a second in-memory run: the device's run-to-run variation")
    t.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms (set CUBLAS_WORKSPACE_CONFIG=:4096:8)")
    args = ap.parse_args()
    {"generate": generate, "epoch": epoch, "throughput": throughput}[args.command](args)


if __name__ == "__main__":
    main()
