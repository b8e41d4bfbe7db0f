"""The large-grid row of the operator table: step time, s/epoch and memory at 256², and the largest grid each model trains
on, with sciformer's Triton kernels on and off.

    python benchmarks/large_grid.py --out /tmp/large_grid                    # one GPU: every row within 3.5 minutes
    python benchmarks/large_grid.py --out /tmp/large_grid --record           # also into benchmarks/results/operators.json
    python benchmarks/large_grid.py --record-from /tmp/large_grid/large_grid.json   # record a run made on another machine
    python benchmarks/large_grid.py --tiny --out /tmp/large_grid_tiny        # the whole script on a CPU in seconds

The rows are :func:`operator_table.rows_of` of the ``ns2d_256`` set: FNO and every transformer at FNO's parameter
count (widths matched as that script matches them); Galerkin and FactFormer once with the default dispatch (the
Triton kernels on a CUDA device) and once on the PyTorch reference (``SCIFORMER_BACKEND=torch``). Each row runs in a
child process of its own (a clean memory count, its own backend; a crash or a hang loses that row only) under a share
of the ``--budget``, and writes what it has measured as it goes, so a row cut short keeps its first figures.

A row builds the recipe's model (with the row's overrides) on the device and times what ``sciformer fit`` runs per
batch, :meth:`Trainer.train_step` (forward, the recipe's loss, backward, Adam; on one GPU replayed from one CUDA graph,
``train.cuda_graphs=true``), on random fields: inputs
``[B, initial_step × channels, 256, 256]``, targets ``[B, channels, 256, 256]``, ``B = train.batch_size``. Time and
memory do not depend on the values. ms/step: CUDA events over ``--steps`` steps after ``--warmup``; s/epoch = ms/step ×
ceil(training windows / B), windows = training trajectories × windows per trajectory of the recipe's generated data
(:func:`train_windows`). Peak memory: ``torch.cuda.max_memory_allocated`` (None on a CPU). Then, in a fresh trainer, one
eager step at batch 1 on each grid of :data:`GRIDS` until one runs out of memory: the largest that trained, its peak memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operator_table import BACKEND_ENV, KERNEL_FAMILIES, SETS, Row, rows_of, write_results
from runs import REPO

sys.path.insert(0, str(REPO))

SET = "ns2d_256"
GRIDS = (256, 512, 1024, 2048)  # the timed grid first, then the ladder (batch 1, one step each)
TINY_GRIDS = (16, 32)
RESULTS = REPO / "benchmarks" / "results" / "operators.json"
GIB = 2**30
COLUMNS = [
    "model",
    "backend",
    "parameters",
    "ms/step at {g}² (batch {b})",
    "s/epoch at {g}² ({w:,} windows)",
    "peak GiB at {g}²",
    "largest grid trained (batch 1)",
    "its peak GiB",
]


# ------------------------------------------------------------------------------------------------- pure facts
def grid_ladder(first: int, largest: int) -> tuple[int, ...]:
    """``first``, doubled up to ``largest``: the grids the largest-grid search tries in order."""
    if first < 1 or largest < first:
        raise ValueError(f"expected 1 <= first <= largest, got first={first}, largest={largest}")
    grids = [first]
    while grids[-1] * 2 <= largest:
        grids.append(grids[-1] * 2)
    return tuple(grids)


def train_windows(data) -> tuple[int, int]:
    """(training trajectories, windows per trajectory) of a recipe's ``data`` section with ``data.generate``.

    Trajectories: ``n`` less the test split (PDEBench's first ``int(0.1 n)`` of a generated file) less the validation
    split (``round(VAL_FRACTION × rest)``, at least one); frames from the generator's plan; windows per trajectory:
    frames − initial_step (one-step targets)."""
    from sciformer.data.generators import GENERATORS
    from sciformer.data.operator import VAL_FRACTION
    from sciformer.data.pde import windows_per_trajectory

    if data.generate is None:
        raise ValueError(f"data '{data.name}' is not generated: its windows need the file, which this benchmark does not read")
    spec = dict(data.generate)
    generator, n, res = GENERATORS[spec.pop("generator")], spec.pop("n"), spec.pop("res")
    frames = generator.plan(res, **generator.params(**spec)).n_t
    train = n - int(n * 0.1)
    train -= max(1, round(train * VAL_FRACTION))
    return train, windows_per_trajectory(frames, data.initial_step)


def row_spec(row: Row) -> dict:
    """What a child process needs to measure ``row``: the row, the recipe's batch size and its training windows."""
    from sciformer.config import load_recipe

    recipe = load_recipe(REPO / "recipes" / f"{row.recipe}.yaml", list(row.overrides))
    trajectories, per_trajectory = train_windows(recipe.data)
    return {"row": asdict(row), "batch_size": recipe.train.batch_size, "windows": trajectories * per_trajectory, "input_frames": recipe.data.initial_step}


def seconds_per_epoch(ms_per_step: float, windows: int, batch_size: int) -> float:
    return ms_per_step * math.ceil(windows / batch_size) / 1000


def time_limit(remaining: float, weights: list[float], cap: float) -> float:
    """Seconds for the next row: the share ``weights[0] / sum(weights)`` of the ``remaining`` budget (``weights``: this
    row's and those of the rows after it), at most ``cap``, at least one. A row that ends early leaves its time to the rest."""
    return max(1.0, min(cap, remaining * weights[0] / sum(weights)))


def weight(row: Row) -> float:
    """A row on the Triton kernels gets twice the time of the others: it compiles and tunes them at every new shape."""
    return 2.0 if row.family in KERNEL_FAMILIES and row.backend is None else 1.0


# ------------------------------------------------------------------------------------------------- one row (child)
def measure(spec: dict, grids: tuple[int, ...], warmup: int, steps: int, out: Path) -> None:
    """Time ``spec``'s row at ``grids[0]`` and search the largest grid it trains on; ``out`` is rewritten after each
    figure, so a row killed at its time limit keeps what it measured."""
    import torch

    row, bench = Row(**spec["row"]), SETS[spec["row"]["set"]]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trainer, in_channels = _trainer(row, ("train.cuda_graphs=true",), device)
    result = {
        "machine": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "backend": _backend_used(device),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "cuda_graphs": trainer.use_graphs,
        "ladder": [],
    }

    def save() -> None:
        out.write_text(json.dumps(result, indent=1))

    save()
    batch_size = spec["batch_size"]
    with warnings.catch_warnings(record=True) as caught:  # a CUDA graph that could not be captured says so here
        warnings.simplefilter("always")
        timed, error = _attempt(trainer, lambda: _timed_steps(trainer, _batch(batch_size, in_channels, bench.channels, grids[0], device), warmup, steps))
    result["warnings"] = sorted({str(w.message).splitlines()[0][:200] for w in caught})
    result["cuda_graphs"] = trainer.use_graphs and not any("graph capture failed" in w for w in result["warnings"])
    if error is None:
        ms, peak = timed
        result |= {"ms_per_step": ms, "seconds_per_epoch": seconds_per_epoch(ms, spec["windows"], batch_size), "peak_gib": peak}
    else:
        result["timing_error"] = f"{error} at batch {batch_size}"
    save()
    # the ladder: eager steps of a fresh trainer; the timed one's CUDA graph holds a memory pool of the timed batch
    del trainer
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    trainer, _ = _trainer(row, ("train.cuda_graphs=false",), device)
    for grid in grids:
        peak, error = _attempt(trainer, lambda g=grid: _one_step(trainer, _batch(1, in_channels, bench.channels, g, device)))
        result["ladder"].append({"grid": grid, **({"peak_gib": peak} if error is None else {"error": error})})
        save()
        if error is not None:
            break


def _trainer(row: Row, overrides: tuple[str, ...], device):
    """The row's model on ``device`` in a :class:`Trainer` of its recipe's ``train`` section (and ``overrides``), and
    the model's input channels."""
    from sciformer.config import load_recipe
    from sciformer.engine.trainer import Trainer
    from sciformer.registry import build_model

    recipe = load_recipe(REPO / "recipes" / f"{row.recipe}.yaml", [*row.overrides, *overrides])
    bench = SETS[row.set]
    in_channels = recipe.data.initial_step * bench.channels
    model = build_model(recipe.model.name, recipe.model.args, in_channels=in_channels, out_channels=bench.channels, n_dims=bench.n_dims)
    return Trainer(model, recipe.train, device), in_channels


def _backend_used(device) -> str:
    """The backend of the kernel ops here: ``SCIFORMER_BACKEND``, else what automatic dispatch picks on ``device``."""
    from sciformer.kernels.dispatch import get_backend

    return get_backend("linear_attention") if device.type == "cuda" else "torch"


def _batch(b: int, in_channels: int, out_channels: int, grid: int, device):
    import torch

    from sciformer.data.operator import OperatorBatch

    return OperatorBatch(torch.randn(b, in_channels, grid, grid, device=device), torch.randn(b, out_channels, grid, grid, device=device))


def _timed_steps(trainer, batch, warmup: int, steps: int) -> tuple[float, float | None]:
    """ms per training step over ``steps`` steps after ``warmup`` (at least until a CUDA graph is captured and replayed
    once), and the peak memory of them all (GiB; None on a CPU)."""
    import torch

    from sciformer.engine.cuda_graphs import CudaGraphStep

    cuda, lr = trainer.device.type == "cuda", trainer.cfg.lr
    if trainer.use_graphs:  # eager side-stream steps, then the capture: the timed steps replay the graph
        warmup = max(warmup, CudaGraphStep.WARMUP + 2)
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    for _ in range(warmup):
        trainer.train_step(batch, lr)
    if not cuda:
        started = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(batch, lr)
        return (time.perf_counter() - started) * 1000 / steps, None
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        trainer.train_step(batch, lr)
    end.record()
    torch.cuda.synchronize(trainer.device)
    return start.elapsed_time(end) / steps, torch.cuda.max_memory_allocated(trainer.device) / GIB


def _one_step(trainer, batch) -> float | None:
    """One training step on ``batch``: its peak memory (GiB; None on a CPU)."""
    import torch

    if trainer.device.type != "cuda":
        trainer.train_step(batch, trainer.cfg.lr)
        return None
    torch.cuda.reset_peak_memory_stats(trainer.device)
    trainer.train_step(batch, trainer.cfg.lr)
    torch.cuda.synchronize(trainer.device)
    return torch.cuda.max_memory_allocated(trainer.device) / GIB


def _attempt(trainer, work):
    """``(work(), None)``, or ``(None, why)`` when it failed (``"out of memory"`` when it did not fit), with the memory of
    the failed work given back, so that the next attempt starts from the model and its optimiser alone."""
    import torch

    try:
        return work(), None
    except torch.cuda.OutOfMemoryError:
        why = "out of memory"
    except RuntimeError as exc:  # cuFFT reports a failed workspace allocation in its own words
        text = str(exc)
        why = "out of memory" if "ALLOC_FAILED" in text or "out of memory" in text else f"{type(exc).__name__}: {text.splitlines()[0][:200]}"
    trainer.optimizer.zero_grad(set_to_none=True)
    gc.collect()  # the exception's frames held the failed step's tensors
    if trainer.device.type == "cuda":
        torch.cuda.empty_cache()
    return None, why


# ------------------------------------------------------------------------------------------------- all rows (parent)
def run_rows(specs: list[dict], args: argparse.Namespace, record) -> list[dict]:
    """Each row in a child process under its share of the remaining budget (:func:`time_limit`); ``record(results so
    far)`` after each."""
    deadline = time.monotonic() + args.budget
    weights = [weight(Row(**spec["row"])) for spec in specs]
    results: list[dict] = []
    for i, spec in enumerate(specs):
        row = Row(**spec["row"])
        timeout = time_limit(deadline - time.monotonic(), weights[i:], args.row_timeout)
        out = args.out / "rows" / (re.sub(r"[^\w.-]", "", row.key) + ".json")  # plain file names: galerkin_reference.json
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "SCIFORMER_BACKEND"}  # a default-dispatch row is one
        if row.backend is not None:
            env["SCIFORMER_BACKEND"] = BACKEND_ENV.get(row.backend, row.backend)
        cmd = [
            sys.executable,
            __file__,
            "--child",
            json.dumps(spec),
            "--child-out",
            str(out),
            "--warmup",
            str(args.warmup),
            "--steps",
            str(args.steps),
            "--largest",
            str(args.largest),
            *(["--tiny"] if args.tiny else []),
        ]
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
            failure = None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:200]
            if failure:
                out.with_suffix(".stderr.txt").write_text(proc.stderr)
        except subprocess.TimeoutExpired:
            failure = f"stopped at its {timeout:.3g} s limit"
        measured = json.loads(out.read_text()) if out.is_file() else {}
        results.append(
            {
                "label": row.label,
                "family": row.family,
                "backend_row": row.backend,
                "parameters": row.parameters,
                "batch_size": spec["batch_size"],
                "windows": spec["windows"],
                "input_frames": spec["input_frames"],
                "seconds": round(time.monotonic() - started, 1),
                **measured,
                **({"failed": failure} if failure else {}),
            }
        )
        print(f"{row.label}: {failure or 'done'} in {results[-1]['seconds']} s", file=sys.stderr, flush=True)
        record(results)
    return results


# ------------------------------------------------------------------------------------------------- tables
def _seconds(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.3f}"


def _gib(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def largest_grid(ladder: list[dict], failed: str | None = None) -> tuple[str, str]:
    """The largest-grid cells: the largest grid that trained (and what stopped the search: an error of the ladder, else
    ``failed``, why the row ended early) and its peak memory."""
    trained = [step for step in ladder if "error" not in step]
    stop = next((f"{step['error']} at {step['grid']}²" for step in ladder if "error" in step), None)
    stop = stop or failed
    if not trained:
        return (f"none ({stop})" if stop else "–"), "–"
    best = trained[-1]
    return f"{best['grid']}²" + (f" ({stop})" if stop else " (all tried)"), _gib(best["peak_gib"])


def table_rows(results: list[dict]) -> list[list]:
    rows = []
    for r in results:
        backend = "–" if r["family"] not in KERNEL_FAMILIES else r.get("backend", "–") + (" (reference)" if r["backend_row"] else "")
        timed = "ms_per_step" in r
        rows.append(
            [
                r["family"],
                backend,
                f"{r['parameters']:,}",
                f"{r['ms_per_step']:.1f}" if timed else r.get("timing_error") or f"failed: {r.get('failed', 'no result')}",
                _seconds(r["seconds_per_epoch"]) if timed else "–",
                _gib(r.get("peak_gib")),
                *largest_grid(r.get("ladder", []), r.get("failed") if timed or "timing_error" in r else None),  # else said already
            ]
        )
    return rows


def render(facts: dict) -> dict:
    """The results-page table (caption, command, machine, date, columns, rows, notes) of a run's ``large_grid.json``."""
    results, grids, first = facts["rows"], facts["grids"], facts["rows"][0]
    fields = {"g": grids[0], "b": first["batch_size"], "w": first["windows"]}
    notes = [
        f"Random fields on the recipes' shapes ({first['input_frames']} input frames → 1); one training step as `sciformer fit` runs it "
        f"(forward, relative-L2 loss, backward, Adam). ms/step: mean of {facts['steps']} steps after {facts['warmup']} of warm-up; s/epoch = "
        f"ms/step × ceil({first['windows']:,} training windows / batch {first['batch_size']}); peak memory: torch.cuda.max_memory_allocated.",
        _graphs_note(results),
        f"Largest grid: one eager step at batch 1 on {', '.join(f'{g}²' for g in grids)} in turn until one runs out of memory.",
        "Widths matched to FNO's parameters as in the operator table; `(reference)` rows run with SCIFORMER_BACKEND=torch.",
    ]
    notes += [n for n in SETS[SET].notes if "run twice" not in n]
    prefix = "Tiny CPU check, not a result: " if facts["tiny"] else ""
    return {
        "caption": f"{prefix}Large grid, speed and memory: Navier–Stokes 2D at {grids[0]}² and up, Triton kernels on and off",
        "command": facts["command"],
        "machine": facts["machine"],
        "date": facts["date"][:10],
        "columns": [c.format(**fields) for c in COLUMNS],
        "rows": table_rows(results),
        "notes": notes,
    }


def _graphs_note(results: list[dict]) -> str:
    graphs = [r["label"] for r in results if r.get("cuda_graphs")]
    eager = [r["label"] for r in results if r.get("cuda_graphs") is False]
    if not graphs:
        return "Timed steps run eagerly (no CUDA graph)."
    note = "Timed steps replay one CUDA graph per step (train.cuda_graphs=true)"
    return note + (f"; {', '.join(eager)} eagerly: the capture failed (warnings in large_grid.json)." if eager else ".")


def write(results: list[dict], grids: tuple[int, ...], args: argparse.Namespace, command: str) -> dict:
    """``large_grid.json`` (machine, date, command, settings, rows) and ``large_grid.md`` in ``--out``; their table."""
    from results_page import render_table

    facts = {
        "machine": next((r["machine"] for r in results if "machine" in r), "–"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": command,
        "tiny": args.tiny,
        "grids": list(grids),
        "warmup": args.warmup,
        "steps": args.steps,
        "rows": results,
    }
    table = render(facts)
    (args.out / "large_grid.json").write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n")
    (args.out / "large_grid.md").write_text("\n".join(render_table(table)) + "\n")
    return table


# ------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for large_grid.json, large_grid.md and the rows' own files")
    parser.add_argument("--models", nargs="+", default=None, choices=sorted(SETS[SET].recipes), help="only these model families")
    parser.add_argument("--tiny", action="store_true", help=f"tiny models on {'² and '.join(map(str, TINY_GRIDS))}² on the CPU")
    parser.add_argument("--largest", type=int, default=GRIDS[-1], help="the largest grid the search tries (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first: kernel tuning, then (CUDA graphs) 3 eager steps and the capture")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--budget", type=float, default=200.0, help="seconds for all rows, shared out as they go (see time_limit)")
    parser.add_argument("--row-timeout", type=float, default=75.0, help="at most this many seconds per row")
    parser.add_argument("--record", action="store_true", help="put the table into the results JSON (a table of the same caption is replaced)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="--record: the results JSON (default: %(default)s)")
    parser.add_argument(
        "--record-from", dest="table_of", type=Path, metavar="JSON", help="measure nothing: record this large_grid.json's table (see --results)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a row's spec: this process measures that row alone
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is None and args.table_of is None and args.out is None:
        parser.error("--out is required (or --record-from)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.table_of is not None:  # a measurement made elsewhere (the GPU machine): its table into the results
        write_results([render(json.loads(args.table_of.read_text()))], args.results)
        print(f"recorded {args.table_of} in {args.results}", file=sys.stderr)
        return
    grids = TINY_GRIDS if args.tiny else grid_ladder(GRIDS[0], args.largest)
    if args.child is not None:
        measure(json.loads(args.child), grids, args.warmup, args.steps, args.child_out)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in rows_of(SET, args.out / "data" if args.tiny else None) if args.models is None or r.family in args.models]
    specs = [row_spec(r) for r in rows]
    command = "python benchmarks/large_grid.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = run_rows(specs, args, lambda done: write(done, grids, args, command))
    table = write(results, grids, args, command)
    if args.record:
        write_results([table], args.results)
        print(f"recorded in {args.results}", file=sys.stderr)
    print((args.out / "large_grid.md").read_text())


if __name__ == "__main__":
    main()
