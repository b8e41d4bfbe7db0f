"""Where the training time goes, and how fast a whole ``sciformer fit`` is, under several loop settings.

    python benchmarks/train_speed.py --out bench/train_speed                        # iTransformer ETTh1 96->96
    python benchmarks/train_speed.py --before-src /tmp/sciformer-before --out ...  # also the code before #8

Two measurements per setting:

1. **fit**: ``python -m sciformer fit RECIPE tracking.enabled=false <setting>`` in its own process: wall time
   of the whole command (imports, data, 10 epochs with validation, test, checkpoint, plot), seconds per epoch
   (``metrics.json``; the first epoch includes warm-up/capture/compilation, so the median of the others is
   given too), epochs run and test MSE.
2. **profile** (``--profile``): the recipe's model and data built in this process, ``--steps`` training steps
   timed with CUDA events (ms/step) and recorded with ``torch.profiler``; the top operators by self device time
   (self CPU time on a CPU) are printed and saved.

Settings (``--settings``; each is a list of recipe overrides):
``eager`` (unfused Adam, no graphs: the new loop alone), ``fused`` (fused Adam: the default on CUDA),
``graphs`` (``train.cuda_graphs=true``), ``compile`` (``train.compile=true``), ``graphs_bf16``.
``--before-src DIR`` adds a ``before`` run of the same command with ``PYTHONPATH=DIR`` (a checkout of the code
before the change, e.g. ``git worktree add /tmp/sciformer-before <rev>``), with the recipe's own settings.

Results: ``OUT/train_speed.json`` and ``OUT/train_speed.md`` (the Markdown table and the profile summaries).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETTINGS: dict[str, list[str]] = {
    "eager": ["train.fused_optimizer=false"],
    "fused": ["train.fused_optimizer=true"],
    "graphs": ["train.cuda_graphs=true"],
    "compile": ["train.compile=true"],
    "graphs_bf16": ["train.cuda_graphs=true", "train.precision=bf16"],
}


def run_fit(recipe: Path, overrides: list[str], out: Path, python_path: str | None = None) -> dict:
    """One ``sciformer fit`` in a fresh process; wall time and the run's metrics."""
    env = {**os.environ, "PYTHONPATH": python_path or str(REPO)}
    command = [sys.executable, "-m", "sciformer", "fit", str(recipe), "tracking.enabled=false", *overrides, "--out", str(out)]
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=out.parent)
    wall = time.perf_counter() - started
    (out.parent / f"{out.name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}", "wall_s": wall}
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    later = [h.get("epoch_seconds", 0.0) for h in history[1:]]
    return {
        "wall_s": wall,
        "s_per_epoch": metrics["seconds_per_epoch"],
        "s_per_epoch_after_first": statistics.median(later) if later else None,
        "train_s_per_epoch_after_first": statistics.median(h["epoch_train_seconds"] for h in history[1:]) if len(history) > 1 and "epoch_train_seconds" in history[1] else None,
        "epochs": metrics["epochs"],
        "best_epoch": metrics["best_epoch"],
        "test_mse": metrics["test_mse"],
        "test_mae": metrics["test_mae"],
        "device": metrics.get("device"),
    }


def profile(recipe_path: Path, overrides: list[str], steps: int, warmup: int, rows: int) -> dict:
    """ms per training step (CUDA events) and the profiler's top operators, for one setting."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from sciformer.config import load_recipe
    from sciformer.engine.runner import data_sizes, load_data
    from sciformer.engine.trainer import Trainer, lr_factor, seed_everything
    from sciformer.registry import build_model

    recipe = load_recipe(recipe_path, ["tracking.enabled=false", "train.progress=false", *overrides])
    seed_everything(recipe.seed)
    trainer_device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_data(recipe).to(trainer_device)
    model = build_model(recipe.model.name, recipe.model.args, **data_sizes(data, recipe))
    trainer = Trainer(model, recipe.train, trainer_device, seed=recipe.seed)
    cuda = trainer_device.type == "cuda"
    generator = torch.Generator().manual_seed(recipe.seed)
    cfg = recipe.train

    def batches():
        while True:  # full batches only: the shape a graph replays
            for batch in data.batches("train", cfg.batch_size, shuffle=True, generator=generator):
                if batch[0].shape[0] == cfg.batch_size:
                    yield batch

    source = batches()
    trainer.train_model.train()
    for _ in range(warmup):
        trainer.train_step(next(source), cfg.lr * lr_factor(cfg.lr_schedule, 0, cfg.epochs))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    host_start = time.perf_counter()
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    for _ in range(steps):
        trainer.train_step(next(source), cfg.lr)
    host_s = time.perf_counter() - host_start  # time to enqueue (the device may still be busy)
    if cuda:
        end.record()
    sync()
    wall_ms = (time.perf_counter() - host_start) * 1e3 / steps
    device_ms = start.elapsed_time(end) / steps if cuda else wall_ms
    eval_start = time.perf_counter()
    trainer.evaluate(data, "val")
    eval_s = time.perf_counter() - eval_start

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(min(steps, 50)):
            trainer.train_step(next(source), cfg.lr)
        sync()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=rows)
    return {"ms_per_step": wall_ms, "device_ms_per_step": device_ms, "host_enqueue_ms_per_step": host_s * 1e3 / steps,
            "val_pass_s": eval_s, "steps_per_epoch": data.n_batches("train", cfg.batch_size), "top_ops": table}


def markdown(results: dict, args: argparse.Namespace) -> str:
    lines = [
        f"# Training speed: `{args.recipe.relative_to(REPO) if args.recipe.is_relative_to(REPO) else args.recipe}`",
        "",
        f"Machine: {results['machine']}. Command: `python benchmarks/train_speed.py {' '.join(sys.argv[1:])}`",
        "",
        "| setting | wall (s) | s/epoch | s/epoch after 1st | train s/epoch after 1st | epochs | test MSE | ms/step | host ms/step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v, f=".3f": "–" if v is None else format(v, f)  # noqa: E731
    for name, r in results["settings"].items():
        fit, prof = r.get("fit", {}), r.get("profile", {})
        if "error" in fit:
            lines.append(f"| {name} | failed: {fit['error']} | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {fmt(fit.get('wall_s'), '.1f')} | {fmt(fit.get('s_per_epoch'))} | {fmt(fit.get('s_per_epoch_after_first'))} | "
            f"{fmt(fit.get('train_s_per_epoch_after_first'))} | {fit.get('epochs', '–')} | {fmt(fit.get('test_mse'), '.4f')} | "
            f"{fmt(prof.get('ms_per_step'))} | {fmt(prof.get('host_enqueue_ms_per_step'))} |"
        )
    for name, r in results["settings"].items():
        if "profile" in r:
            lines += ["", f"## Profile: {name} ({r['profile']['steps_per_epoch']} steps/epoch, val pass {r['profile']['val_pass_s']:.3f} s)", "", "```", r["profile"]["top_ops"], "```"]
    return "\n".join(lines) + "\n"


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{gpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "ett_itransformer.yaml")
    parser.add_argument("--settings", nargs="+", default=["eager", "fused", "graphs"], choices=sorted(SETTINGS))
    parser.add_argument("--overrides", nargs="*", default=[], help="extra recipe overrides for every run")
    parser.add_argument("--before-src", type=Path, default=None, help="a checkout of the code before the change")
    parser.add_argument("--no-fit", action="store_true", help="skip the whole-command runs")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True, help="profile training steps in-process")
    parser.add_argument("--steps", type=int, default=200, help="timed training steps per profiled setting")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rows", type=int, default=15, help="operators in each profile table")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.recipe, args.out = args.recipe.resolve(), args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "recipe": str(args.recipe), "settings": {}}
    runs = ([("before", [], str(args.before_src.resolve()))] if args.before_src else []) + [(s, SETTINGS[s], None) for s in args.settings]
    for name, overrides, src in runs:
        entry: dict = {"overrides": overrides}
        if not args.no_fit:
            print(f"[{name}] sciformer fit ...", file=sys.stderr, flush=True)
            entry["fit"] = run_fit(args.recipe, [*args.overrides, *overrides], args.out / f"run-{name}", src)
            print(f"[{name}] {json.dumps(entry['fit'])}", file=sys.stderr, flush=True)
        if args.profile and src is None:
            print(f"[{name}] profiling {args.steps} steps ...", file=sys.stderr, flush=True)
            entry["profile"] = profile(args.recipe, [*args.overrides, *overrides], args.steps, args.warmup, args.rows)
            print(entry["profile"]["top_ops"], file=sys.stderr, flush=True)
        results["settings"][name] = entry
        (args.out / "train_speed.json").write_text(json.dumps(results, indent=2))
    text = markdown(results, args)
    (args.out / "train_speed.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
