"""DDP scaling: training samples per second of a recipe's model on 1 GPU and on N GPUs of one host.

    python benchmarks/ddp_throughput.py --nproc 2 --res 256 --out bench/ddp          # 1 GPU, then 2 GPUs
    torchrun --standalone --nproc_per_node 2 benchmarks/ddp_throughput.py --worker --res 256   # one measurement

The driver (``--nproc N``) launches this script under ``torchrun --standalone`` once with 1 process and once
with N, and reports samples/s, the speed-up and the scaling efficiency. Each worker builds the recipe's model
(default ``recipes/ns2d_factformer.yaml``: FactFormer on 2D Navier–Stokes vorticity) for a ``--res``² grid,
fills the device with random trajectories of that size (throughput does not depend on the values, and no
256² data set has to be simulated first), and times ``--steps`` optimiser steps of the real training step
(:meth:`sciformer.engine.trainer.Trainer.train_step`: DDP, rank shares, fused Adam) after ``--warmup`` steps.

Global batch: ``--batch-size`` (default 16: FactFormer at 256² keeps ~3.6 GB of activations per sample, so the
recipe's 32 does not fit one GPU in fp32) split over the ranks, i.e. the same optimisation as one GPU (strong
scaling); ``--per-gpu-batch`` gives every rank the whole ``--batch-size`` instead (weak scaling). Extra recipe
overrides (``--overrides train.precision=bf16``) apply to both runs. Tracking is off (no MLflow needed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def worker(args: argparse.Namespace) -> dict:
    import torch

    from sciformer.config import load_recipe
    from sciformer.data.operator import OperatorData, SplitTensors
    from sciformer.engine import distributed
    from sciformer.engine.trainer import Trainer, seed_everything
    from sciformer.registry import build_model

    recipe = load_recipe(args.recipe, ["tracking.enabled=false", "train.progress=false", *args.overrides])
    with distributed.setup(recipe.train.device) as ctx:
        seed_everything(recipe.seed)
        world = ctx.world_size
        global_batch = args.batch_size * (world if args.per_gpu_batch else 1)
        recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, batch_size=global_batch))
        channels, history = 1, recipe.data.initial_step
        # random trajectories [N, T, C, res, res]: one_step windows = N * (T - history)
        n_frames = history + 1
        n_samples = max(global_batch * 4, 8)
        g = torch.Generator(device="cpu").manual_seed(0)
        traj = torch.randn(n_samples, n_frames, channels, args.res, args.res, generator=g).to(ctx.device)
        small = traj[: max(2, n_samples // 8)]
        data = OperatorData({"train": SplitTensors(trajectories=traj), "val": SplitTensors(trajectories=small), "test": SplitTensors(trajectories=small)},
                            recipe.train.mode, history, recipe.train.unroll_steps, name=f"random {args.res}x{args.res}")
        model = build_model(recipe.model.name, recipe.model.args, **data.sizes())
        trainer = Trainer(model, recipe.train, ctx.device, seed=recipe.seed, dist=ctx)
        trainer.train_model.train()
        generator = torch.Generator().manual_seed(recipe.seed)

        def batches():
            while True:
                for batch in data.batches("train", global_batch, shuffle=True, generator=generator):
                    if batch.u.shape[0] == global_batch:
                        yield batch

        source = batches()
        sync = torch.cuda.synchronize if ctx.device.type == "cuda" else (lambda: None)
        for _ in range(args.warmup):
            trainer.train_step(next(source), recipe.train.lr)
        sync()
        ctx.barrier()
        started = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(next(source), recipe.train.lr)
        sync()
        ctx.barrier()
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated(ctx.device) / 2**30 if ctx.device.type == "cuda" else float("nan")
        peaks = ctx.gather(peak)
        result = {
            "world_size": world,
            "global_batch": global_batch,
            "per_rank_batch": global_batch / world,
            "res": args.res,
            "steps": args.steps,
            "seconds": seconds,
            "s_per_step": seconds / args.steps,
            "samples_per_s": global_batch * args.steps / seconds,
            "peak_memory_gib": max(peaks),
            "parameters": sum(p.numel() for p in model.parameters()),
            "device": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu",
            "backend": ctx.backend,
            "torch": torch.__version__,
            "overrides": args.overrides,
        }
        if ctx.is_main:
            print(json.dumps(result), flush=True)
            if args.result:
                Path(args.result).write_text(json.dumps(result, indent=2))
        return result


def drive(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for n in sorted({1, args.nproc}):
        result_file = args.out / f"ddp_{n}.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), str(Path(__file__).resolve()),
                   "--worker", "--recipe", str(args.recipe), "--res", str(args.res), "--batch-size", str(args.batch_size),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--result", str(result_file)]
        if args.per_gpu_batch:
            command.append("--per-gpu-batch")
        if args.overrides:
            command += ["--overrides", *args.overrides]
        print(f"[{n} process(es)] {' '.join(command[2:])}", file=sys.stderr, flush=True)
        proc = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode != 0:
            raise SystemExit(f"the {n}-process run failed (exit code {proc.returncode}); see its output above")
        results[n] = json.loads(result_file.read_text())
    one, many = results[1], results[args.nproc]
    speedup = many["samples_per_s"] / one["samples_per_s"]
    summary = {"runs": results, "speedup": speedup, "efficiency": speedup / args.nproc}
    (args.out / "ddp_throughput.json").write_text(json.dumps(summary, indent=2))
    mode = "per-GPU batch (weak scaling)" if args.per_gpu_batch else "same global batch (strong scaling)"
    lines = [
        f"# DDP throughput: `{args.recipe.name}` at {args.res}², {mode}",
        "",
        f"{one['device']}, torch {one['torch']}. Command: `python benchmarks/ddp_throughput.py {' '.join(sys.argv[1:])}`",
        "",
        "| GPUs | global batch | per-GPU batch | s/step | samples/s | peak memory (GiB/GPU) |",
        "|---|---|---|---|---|---|",
    ]
    for n, r in results.items():
        lines.append(f"| {n} | {r['global_batch']} | {r['per_rank_batch']:g} | {r['s_per_step']:.4f} | {r['samples_per_s']:.1f} | {r['peak_memory_gib']:.1f} |")
    lines += ["", f"Speed-up with {args.nproc} GPUs: **{speedup:.2f}×** (scaling efficiency {100 * speedup / args.nproc:.0f}%)."]
    text = "\n".join(lines) + "\n"
    (args.out / "ddp_throughput.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "ns2d_factformer.yaml")
    parser.add_argument("--res", type=int, default=256, help="grid points per axis")
    parser.add_argument("--batch-size", type=int, default=16, help="global batch (per GPU with --per-gpu-batch)")
    parser.add_argument("--per-gpu-batch", action="store_true", help="weak scaling: every GPU gets --batch-size samples")
    parser.add_argument("--steps", type=int, default=30, help="timed optimiser steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--overrides", nargs="*", default=[], help="recipe overrides, e.g. train.precision=bf16")
    parser.add_argument("--nproc", type=int, default=2, help="driver: GPUs to compare with one")
    parser.add_argument("--out", type=Path, default=Path("bench/ddp"), help="driver: results folder")
    parser.add_argument("--worker", action="store_true", help="measure once (run under torchrun)")
    parser.add_argument("--result", default=None, help="worker: write the result JSON here (rank 0)")
    args = parser.parse_args()
    args.recipe = args.recipe.resolve()
    if args.worker:
        worker(args)
    else:
        args.out = args.out.resolve()
        drive(args)


if __name__ == "__main__":
    main()
