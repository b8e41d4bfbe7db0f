"""Where the training time of the forecasters goes, and how fast a whole ``sciformer fit`` is, eager against graphed.

    python benchmarks/train_speed.py --out bench/speed                             # the five ETTh1 96->96 recipes
    python benchmarks/train_speed.py --recipes recipes/ett_autoformer.yaml --settings eager graphs compile --out ...
    python benchmarks/train_speed.py --overrides data.name=ett_m1 train.epochs=2 --no-profile --out ...  # ETTm1
    python benchmarks/train_speed.py --before-src /tmp/sciformer-before --out ...  # also a checkout of older code

Two measurements per recipe and setting, one after the other on the same machine:

1. **fit**: ``python -m sciformer fit RECIPE tracking.enabled=false <setting>`` in its own process: wall time of
   the whole command (imports, data, every epoch with validation, test, checkpoint, plot), seconds per epoch as
   the run reports it (``metrics.json``: training and validation, the first epoch's warm-up and graph capture
   included), the median of the later epochs, epochs run and test MSE.
2. **profile** (``--profile``, in this process): ``--steps`` training steps of the recipe's model on its data timed
   with CUDA events (ms/step, and the host's time to enqueue them), one validation pass (seconds), and
   ``torch.profiler``'s top operators of training steps by self device time (self CPU time on a CPU).

Settings (``--settings``; each is a list of recipe overrides): ``eager`` (no graphs, fused Adam: the eager loop),
``unfused`` (no graphs, foreach Adam), ``graphs`` (``train.cuda_graphs=true``: each fixed-shape training and
evaluation step replayed from one CUDA graph), ``compile`` (``torch.compile``, eager loop), ``graphs_compile``
(both), ``graphs_bf16`` (bf16 autocast), ``graphs_tf32`` (``train.precision=tf32``: float32 matrix products on TF32 tensor cores). ``--before-src DIR`` adds a ``before`` fit of the recipe's own settings with
``PYTHONPATH=DIR``.

Results: ``OUT/train_speed.json`` and ``OUT/train_speed.md`` (the table, then every profile); run folders and logs
go to ``--work`` (default ``OUT/runs``).
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

FORECASTERS = ("itransformer", "patchtst", "autoformer", "informer", "etsformer")
SETTINGS: dict[str, list[str]] = {
    "eager": ["train.cuda_graphs=false"],
    "unfused": ["train.cuda_graphs=false", "train.fused_optimizer=false"],
    "graphs": ["train.cuda_graphs=true"],
    "compile": ["train.cuda_graphs=false", "train.compile=true"],
    "graphs_compile": ["train.cuda_graphs=true", "train.compile=true"],
    "graphs_bf16": ["train.cuda_graphs=true", "train.precision=bf16"],
    "graphs_tf32": ["train.cuda_graphs=true", "train.precision=tf32"],
}


def run_fit(recipe: Path, overrides: list[str], out: Path, python_path: str | None = None) -> dict:
    """One ``sciformer fit`` in a fresh process; wall time and the run's metrics."""
    env = {**os.environ, "PYTHONPATH": python_path or str(REPO)}
    if env.get("SCIFORMER_DATA_DIR"):  # the fit runs in the run's parent folder
        env["SCIFORMER_DATA_DIR"] = str(Path(env["SCIFORMER_DATA_DIR"]).resolve())
    command = [sys.executable, "-m", "sciformer", "fit", str(recipe), "tracking.enabled=false", "train.progress=false", *overrides, "--out", str(out)]
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=out.parent)
    wall = time.perf_counter() - started
    (out.parent / f"{out.name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}", "wall_s": wall}
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    later = history[1:]
    return {
        "wall_s": wall,
        "s_per_epoch": metrics["seconds_per_epoch"],
        "s_per_epoch_after_first": statistics.median(h["epoch_seconds"] for h in later) if later else None,
        "train_s_per_epoch_after_first": statistics.median(h["epoch_train_seconds"] for h in later) if later else None,
        "epochs": metrics["epochs"],
        "best_epoch": metrics["best_epoch"],
        "test_mse": metrics["test_mse"],
        "test_mae": metrics["test_mae"],
        "device": metrics.get("device"),
        "graph_warnings": proc.stderr.count("CUDA graph capture failed"),
        "phase_seconds": metrics.get("phase_seconds", {}),  # data, train, test, save, plot; the rest of wall_s is start-up
    }


def profile(recipe_path: Path, overrides: list[str], steps: int, warmup: int, rows: int) -> dict:
    """ms per training step (CUDA events), one validation pass, and the profiler's top operators."""
    import torch

    # train.precision=tf32 turns torch's process-wide TF32 switches on: the next setting profiled here must not inherit them
    switches = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        return _profile(recipe_path, overrides, steps, warmup, rows)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = switches


def _profile(recipe_path: Path, overrides: list[str], steps: int, warmup: int, rows: int) -> dict:
    import torch

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from sciformer.config import load_recipe
    from sciformer.engine.runner import data_sizes, load_data
    from sciformer.engine.trainer import Trainer, seed_everything
    from sciformer.registry import build_model

    recipe = load_recipe(recipe_path, ["tracking.enabled=false", "train.progress=false", *overrides])
    seed_everything(recipe.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_data(recipe).to(device)
    model = build_model(recipe.model.name, recipe.model.args, **data_sizes(data, recipe))
    trainer = Trainer(model, recipe.train, device, seed=recipe.seed)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    generator = torch.Generator().manual_seed(recipe.seed)
    cfg = recipe.train

    def full_batches():
        while True:  # full batches only: the shape a graph replays
            for batch in data.batches("train", cfg.batch_size, shuffle=True, generator=generator):
                if batch[0].shape[0] == cfg.batch_size:
                    yield batch

    source = full_batches()
    trainer.train_model.train()
    for _ in range(warmup):
        trainer.train_step(next(source), cfg.lr)
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
    trainer.evaluate(data, "val")  # warm-up (and capture) of the evaluation step
    sync()
    eval_start = time.perf_counter()
    trainer.evaluate(data, "val")
    eval_s = time.perf_counter() - eval_start

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    profiled = min(steps, 20)
    with torch_profile(activities=activities) as prof:
        for _ in range(profiled):
            trainer.train_step(next(source), cfg.lr)
        sync()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=rows, max_name_column_width=60)
    return {"ms_per_step": wall_ms, "device_ms_per_step": device_ms, "host_enqueue_ms_per_step": host_s * 1e3 / steps,
            "val_pass_s": eval_s, "steps_per_epoch": data.n_batches("train", cfg.batch_size), "profiled_steps": profiled,
            "train_graph": trainer._train_graph is not None and trainer._train_graph.graph is not None, "top_ops": table}


def _fmt(value, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def markdown(results: dict, command: str) -> str:
    lines = [
        "# Training speed of the forecasters",
        "",
        f"Machine: {results['machine']}. Date: {results['date']}. Command: `{command}`",
        "",
        "s/epoch: as the run reports it (training + validation, first epoch's warm-up and capture included); "
        "later: median of epochs 2+. ms/step: training steps timed with CUDA events after warm-up.",
        "",
        "| recipe | setting | fit wall (s) | s/epoch | s/epoch later | epochs | test MSE | ms/step | host ms/step | val pass (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for recipe, settings in results["recipes"].items():
        for name, r in settings.items():
            fit, prof = r.get("fit", {}), r.get("profile", {})
            if "error" in fit:
                lines.append(f"| {recipe} | {name} | failed: {fit['error']} | | | | | | | |")
                continue
            lines.append(
                f"| {recipe} | {name} | {_fmt(fit.get('wall_s'), '.1f')} | {_fmt(fit.get('s_per_epoch'))} | "
                f"{_fmt(fit.get('s_per_epoch_after_first'))} | {fit.get('epochs', '–')} | {_fmt(fit.get('test_mse'), '.4f')} | "
                f"{_fmt(prof.get('ms_per_step'))} | {_fmt(prof.get('host_enqueue_ms_per_step'))} | {_fmt(prof.get('val_pass_s'))} |"
            )
    for recipe, settings in results["recipes"].items():
        for name, r in settings.items():
            if "profile" in r:
                p = r["profile"]
                lines += ["", f"## {recipe}, {name}: top operators of {p['profiled_steps']} training steps "
                          f"({p['steps_per_epoch']} steps/epoch)", "", "```", p["top_ops"], "```"]
    return "\n".join(lines) + "\n"


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{gpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=Path, nargs="+", default=[REPO / "recipes" / f"ett_{m}.yaml" for m in FORECASTERS])
    parser.add_argument("--settings", nargs="+", default=["eager", "graphs"], choices=sorted(SETTINGS))
    parser.add_argument("--overrides", nargs="*", default=[], help="extra recipe overrides for every run")
    parser.add_argument("--before-src", type=Path, default=None, help="a checkout of the code before the change")
    parser.add_argument("--no-fit", action="store_true", help="skip the whole-command runs")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True, help="profile training steps in-process")
    parser.add_argument("--profile-settings", nargs="+", default=None, help="the settings to profile (default: every one)")
    parser.add_argument("--steps", type=int, default=100, help="timed training steps per profiled setting")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rows", type=int, default=12, help="operators in each profile table")
    parser.add_argument("--out", type=Path, required=True, help="folder of train_speed.json and train_speed.md")
    parser.add_argument("--work", type=Path, default=None, help="folder of the fit runs and their logs (default OUT/runs)")
    args = parser.parse_args()
    out = args.out.resolve()
    work = (args.work or out / "runs").resolve()
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/train_speed.py " + " ".join(sys.argv[1:])
    results: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command, "recipes": {}}
    for recipe in args.recipes:
        recipe = recipe.resolve()
        runs = ([("before", [], str(args.before_src.resolve()))] if args.before_src else []) + [(s, SETTINGS[s], None) for s in args.settings]
        entries = results["recipes"].setdefault(recipe.stem, {})
        for name, overrides, src in runs:
            entry: dict = {"overrides": [*args.overrides, *overrides]}
            if not args.no_fit:
                print(f"[{recipe.stem} {name}] sciformer fit ...", file=sys.stderr, flush=True)
                entry["fit"] = run_fit(recipe, entry["overrides"], work / f"{recipe.stem}-{name}", src)
                print(f"[{recipe.stem} {name}] {json.dumps(entry['fit'])}", file=sys.stderr, flush=True)
            if args.profile and src is None and (args.profile_settings is None or name in args.profile_settings):
                print(f"[{recipe.stem} {name}] profiling {args.steps} steps ...", file=sys.stderr, flush=True)
                entry["profile"] = profile(recipe, entry["overrides"], args.steps, args.warmup, args.rows)
                summary = {k: v for k, v in entry["profile"].items() if k != "top_ops"}
                print(f"[{recipe.stem} {name}] {json.dumps(summary)}", file=sys.stderr, flush=True)
            entries[name] = entry
            out.mkdir(parents=True, exist_ok=True)
            (out / "train_speed.json").write_text(json.dumps(results, indent=2))
    text = markdown(results, command)
    (out / "train_speed.md").write_text(text)
    print(text.split("\n## ")[0])  # the table; the profiles are in the file


if __name__ == "__main__":
    main()
