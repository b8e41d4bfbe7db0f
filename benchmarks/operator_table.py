"""Operator transformers against FNO under one protocol: matched size, one GPU-time cap, one sweep, three seeds.

    python benchmarks/operator_table.py --dry-run                        # every run: overrides, parameters
    python benchmarks/operator_table.py --sets ns2d_fno_paper darcy16    # run (resumable), write the tables
    python benchmarks/operator_table.py --tiny --sets burgers --runs /tmp/ops   # the whole protocol in seconds on CPU

Per data set (:data:`SETS`) and model:
1. **Size.** Parameters are counted by building each model on the set's data sizes (meta device, no memory); the
   width argument of every transformer (:data:`WIDTHS`) is chosen so that its count lands within ±25 % of the
   set's FNO. ``--recipe-sizes`` adds a row at the recipe's own size where that lies outside the band.
2. **Time.** The trainer has no time budget, so the cap is an epoch count: a calibration run of two epochs, alone on
   the device, measures s/epoch (its second epoch: no start-up), and every run of that row trains
   ``floor(cap / s_per_epoch)`` epochs (at least one). :data:`PROTOCOL_TRAIN`: every run uses its whole budget, its
   steps replayed from CUDA graphs on a GPU (a table note names any model whose capture failed). The cap
   is thus lone GPU time even where ``--jobs`` runs several trials at once to build the table sooner.
3. **Sweep.** ``train.lr`` × ``train.weight_decay`` (:data:`LRS` × :data:`DECAYS`) at seed 0, the same for every
   model including FNO; the pair with the lowest *validation* relative L2 wins (test metrics are not read).
4. **Seeds.** The chosen pair with seeds 0, 1, 2 (seed 0 is the sweep's run): test mean ± std.

Every run is ``sciformer fit`` in its own folder under ``--runs``: a finished run (same recipe and overrides) is
skipped, an interrupted one resumes (``fit --resume``), so the table is built over several short GPU jobs. The results
JSON (the results page's format) and the Markdown are written by this script, never by hand. External anchor: the FNO
paper (arXiv 2010.08895: FNO-2D 0.0128 at ν = 1e-3, T = 50, N = 1000, 500 epochs); its set states the epoch fraction.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runs import REPO, fit, mean_std, run_pool, run_stamp, run_state

sys.path.insert(0, str(REPO))

LRS = (3e-4, 1e-3, 3e-3)
DECAYS = (0.0, 1e-4)
SEEDS = (0, 1, 2)
BAND = 0.25  # parameters within ±25 % of FNO's
SELECT_ON = "val_rel_l2"
CALIBRATION_EPOCHS = 2  # the second is timed
# every run spends its whole budget; steps replay from CUDA graphs on a GPU (eagerly a small grid's step is bound by
# kernel launches: 20 ms for FNO and 55 ms for scOT at Darcy 16², so the cap would time Python, not the model)
PROTOCOL_TRAIN = ("train.patience=0", "train.cuda_graphs=true")
EXTRA = "benchmark_extra.json"  # a run's figures besides fit's own
ANCHOR = {"paper": "FNO-2D, Li et al. 2021 (arXiv 2010.08895), Table 1", "rel_l2": 0.0128, "epochs": 500}
# width argument of each transformer, its step (head counts divide it) and the arguments scaled in proportion to it
# (each rounded to its multiple): the spectral regressor's width, the FFN, the head size
WIDTHS: dict[str, tuple[str, int, tuple[tuple[str, int], ...]]] = {
    "galerkin": ("d_model", 16, (("d_ff", 16), ("freq_dim", 4))),
    "factformer": ("dim", 16, (("dim_head", 8),)),
    "pde_transformer": ("hidden_size", 8, ()),
    "poseidon": ("embed_dim", 8, ()),
}
FAMILIES = ("fno", "galerkin", "factformer", "pde_transformer", "poseidon")
KERNEL_FAMILIES = ("galerkin", "factformer")  # the models that run on sciformer's Triton kernels
BACKEND_ENV = {"reference": "torch"}  # a row's backend -> SCIFORMER_BACKEND (the dispatcher's name of the PyTorch reference)


@dataclass(frozen=True)
class BenchSet:
    """One data set of the table: a recipe per model, the data sizes models are built on, the GPU-time cap."""

    caption: str
    recipes: dict[str, str]  # model family -> recipe stem (fno first: the bar)
    channels: int  # fields per frame (input channels = initial_step × channels; steady sets: the coefficient's)
    n_dims: int
    cap_seconds: float  # per run
    steady: bool = False
    extra_tests: tuple[tuple[str, str], ...] = ()  # (metric name, data override) re-tested from each checkpoint
    backends: tuple[str | None, ...] = (None,)  # SCIFORMER_BACKEND values, each a row (None: the default dispatch)
    tiny: tuple[str, ...] = ()  # --tiny: data overrides that make the set seconds on a CPU
    notes: tuple[str, ...] = ()
    extra_rows: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (label, family, overrides on the matched size)


def _recipes(prefix: str, families=FAMILIES) -> dict[str, str]:
    return {f: f"{prefix}_{f}" for f in families}


TINY_NS = ("data.generate={generator: ns2d, n: 10, res: 16, nu: 0.001, t_end: 4, dt_save: 1}", "data.initial_step=2")
SETS: dict[str, BenchSet] = {
    "darcy16": BenchSet(
        "Darcy (neuraloperator's small set: 900 training pairs at 16², tested at 16² and at the unseen 32²)",
        {"fno": "darcy2d_fno", "galerkin": "darcy_galerkin", "factformer": "darcy_factformer", "poseidon": "darcy_poseidon"},
        1, 2, 30, steady=True, extra_tests=(("test_rel_l2_res32", "data.test_resolution=32"),), tiny=("data.num_samples=24",),
        notes=("PDE-Transformer is left out at 16²: its two patch merges leave fewer tokens than one attention window.",)),
    "darcy64": BenchSet("Darcy (generated, β = 1, 64², 891 training pairs)", _recipes("darcy64"), 1, 2, 300, steady=True,
                        tiny=("data.generate={generator: darcy2d, n: 12, res: 16}",)),
    "burgers": BenchSet(
        "Burgers 1D (ν = 0.001, 256 points, 41 frames, 810 training trajectories)", _recipes("burgers", ("fno", "galerkin")), 1, 1, 180,
        tiny=("data.generate={generator: burgers1d, n: 10, res: 32, nu: 0.001, t_end: 0.2, dt_save: 0.05}",),
        notes=("FactFormer, PDE-Transformer and scOT are 2D/3D models.",)),
    "ns2d_fno_paper": BenchSet(
        "Navier–Stokes 2D at the FNO paper's setting (ν = 1e-3, 64², 10 input frames, rollout to T = 50, 1001 training trajectories)",
        _recipes("ns2d_fno_paper"), 1, 2, 900, tiny=TINY_NS,
        extra_rows=(("fno paper size", "fno", ("model.modes=12", "model.width=20")), ("poseidon all_to_all", "poseidon", ("train.mode=all_to_all",))),
        notes=("The bar is FNO at the width of the other sets (2.4 M parameters); `fno paper size` is the paper's FNO-2D "
               "(12 modes, width 20) for the anchor; `poseidon all_to_all` trains scOT on lead-time pairs as its paper does.",)),
    "ns2d_nu1e-4": BenchSet("Navier–Stokes 2D, turbulent (ν = 1e-4, 64², 10 input frames, rollout to T = 30, 1001 training trajectories)",
                            _recipes("ns2d_nu1e-4"), 1, 2, 900, tiny=TINY_NS),
    "diffreact2d": BenchSet("2D diffusion–reaction, PDEBench format (FitzHugh–Nagumo, 128², 2 fields, 10 input frames, 91-step rollout)",
                            _recipes("diffreact2d"), 2, 2, 900,
                            tiny=("data.generate={generator: diffreact2d, n: 10, res: 16, t_end: 0.2, dt_save: 0.05}", "data.initial_step=2")),
    "ns2d_256": BenchSet(
        "Large grid: Navier–Stokes 2D at 256² (ν = 1e-3, 10 input frames, rollout to T = 30, 203 training trajectories)",
        _recipes("ns2d_256"), 1, 2, 1200, backends=(None, "reference"), tiny=TINY_NS,
        notes=("Galerkin and FactFormer run twice: on the Triton kernels (CUDA default) and on the PyTorch reference (SCIFORMER_BACKEND=torch).",
               "Global softmax attention over 65,536 points needs a 16 GiB fp32 score matrix per head and sample; PDE-Transformer "
               "and scOT attend within windows.")),
}
# --tiny: models small enough for a CPU test (the width search still matches them to the tiny FNO)
TINY_MODELS = {
    "fno": ("model.modes=4", "model.width=16", "model.n_layers=2"),
    "galerkin": ("model.n_layers=1", "model.n_regressor_layers=1", "model.modes=4", "model.freq_dim=8"),
    "factformer": ("model.depth=1", "model.dim_head=8"),
    "pde_transformer": ("model.depths=[1,1,1]", "model.patch_size=2", "model.window_size=4"),
    "poseidon": ("model.depths=[1,1]", "model.n_heads=[2,4]", "model.skip_blocks=[1,0]", "model.patch_size=2", "model.window_size=4"),
}


# ------------------------------------------------------------------------------------------------- sizes
def parameters(recipe: str, overrides: list[str], bench: BenchSet) -> int:
    """Parameters of the recipe's model built on the set's data sizes (meta device: shapes only)."""
    import torch

    from sciformer.config import load_recipe
    from sciformer.registry import build_model

    r = load_recipe(REPO / "recipes" / f"{recipe}.yaml", overrides)
    frames = 1 if bench.steady or r.train.mode == "all_to_all" else r.data.initial_step  # all_to_all: one frame and a lead time
    in_channels = frames * bench.channels
    with torch.device("meta"):
        model = build_model(r.model.name, r.model.args, in_channels=in_channels, out_channels=bench.channels, n_dims=bench.n_dims)
    return sum(p.numel() for p in model.parameters())


def match_width(count: Callable[[dict], int], target: int, step: int, tie: Callable[[int], dict], top: int = 2048) -> tuple[dict, int]:
    """The width (a multiple of ``step`` up to ``top``) whose parameter count is nearest ``target`` in ratio, by
    bisection (counts grow with width), and that count."""
    lo, hi = 1, top // step
    while lo < hi:
        mid = (lo + hi) // 2
        if count(tie(mid * step)) < target:
            lo = mid + 1
        else:
            hi = mid
    nearest = [(abs(math.log(n / target)), args, n) for w in {max(1, lo - 1), lo} for args in [tie(w * step)] for n in [count(args)]]
    _, args, n = min(nearest, key=lambda c: c[0])
    return args, n


def in_band(n: int, target: int) -> bool:
    return abs(n - target) <= BAND * target


@dataclass(frozen=True)
class Row:
    """One table row: a model at one size (and kernel backend), with the overrides every one of its runs shares."""

    set: str
    family: str
    label: str
    recipe: str
    overrides: tuple[str, ...]
    parameters: int
    matched: bool
    backend: str | None = None

    @property
    def key(self) -> str:
        return self.label.replace(" ", "_").replace(",", "")


def rows_of(name: str, tiny_data: Path | None = None, recipe_sizes: bool = False) -> list[Row]:
    """The rows of set ``name``: FNO, then each transformer at FNO's size and (``recipe_sizes``), where it lies outside
    the band, at its recipe's. ``tiny_data``: the folder of ``--tiny``'s data files (tiny data and models)."""
    bench = SETS[name]
    tiny = ()
    if tiny_data is not None:
        generated = any(o.startswith("data.generate=") for o in bench.tiny)
        tiny = (*bench.tiny, *([f"data.name={tiny_data / name}.h5"] if generated else []))
    base = {f: (*tiny, *(TINY_MODELS[f] if tiny_data is not None else ())) for f in bench.recipes}
    target = parameters(bench.recipes["fno"], list(base["fno"]), bench)
    rows = []
    for family, recipe in bench.recipes.items():
        def count(overrides: tuple[str, ...], recipe: str = recipe) -> int:
            return parameters(recipe, list(overrides), bench)

        own = count(base[family])
        sizes = [("", base[family], own)]
        if family in WIDTHS:
            step, tie = width_tie(family, recipe, base[family])
            args, n = match_width(lambda a, b=base[family], count=count: count((*b, *_model_overrides(a))), target, step, tie)
            sizes = [("", (*base[family], *_model_overrides(args)), n)]
            sizes += [(" recipe size", base[family], own)] if recipe_sizes and not in_band(own, target) else []
        sizes += [(f" {label.split(' ', 1)[1]}", (*sizes[0][1], *over), count((*sizes[0][1], *over)))
                  for label, fam, over in bench.extra_rows if fam == family]
        for backend in bench.backends:
            if backend is not None and family not in KERNEL_FAMILIES:
                continue
            suffix = "" if backend is None else f" ({backend})"
            rows += [Row(name, family, f"{family}{tag}{suffix}", recipe, (*over, *PROTOCOL_TRAIN), n, in_band(n, target), backend)
                     for tag, over, n in sizes if backend is None or not tag]
    return rows


def width_tie(family: str, recipe: str, overrides: tuple[str, ...]) -> tuple[int, Callable[[int], dict]]:
    """The width's step, and width -> the arguments that scale with it (in the recipe's own ratios)."""
    import inspect

    from sciformer.config import load_recipe
    from sciformer.registry import get_model

    knob, step, scaled = WIDTHS[family]
    args = {k: p.default for k, p in inspect.signature(get_model(family)).parameters.items()}
    args |= load_recipe(REPO / "recipes" / f"{recipe}.yaml", list(overrides)).model.args
    ratios = {k: (args[k] / args[knob], multiple) for k, multiple in scaled}
    return step, lambda w: {knob: w, **{k: max(multiple, round(w * r / multiple) * multiple) for k, (r, multiple) in ratios.items()}}


def _model_overrides(args: dict) -> tuple[str, ...]:
    return tuple(f"model.{k}={v}" for k, v in args.items())


# ------------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Run:
    row: Row
    overrides: tuple[str, ...]
    out: Path

    @property
    def env(self) -> dict[str, str] | None:
        return None if self.row.backend is None else {"SCIFORMER_BACKEND": BACKEND_ENV.get(self.row.backend, self.row.backend)}


def calibration(row: Row, runs: Path) -> Run:
    return Run(row, (*row.overrides, f"train.epochs={CALIBRATION_EPOCHS}", "seed=0"), runs / row.set / row.key / "calibrate")


def lone_seconds_per_epoch(run: Run) -> float:
    """A finished calibration's last epoch (no start-up, the device to itself): the row's s/epoch."""
    return float(json.loads((run.out / "history.json").read_text())[-1]["epoch_seconds"])  # fit writes it before metrics


def trial(row: Row, runs: Path, epochs: int, lr: float, decay: float, seed: int) -> Run:
    overrides = (*row.overrides, f"train.epochs={epochs}", f"train.lr={lr}", f"train.weight_decay={decay}", f"seed={seed}")
    return Run(row, overrides, runs / row.set / row.key / f"lr{lr:g}_wd{decay:g}_s{seed}")


def budget_epochs(seconds_per_epoch: float, cap: float) -> int:
    return max(1, int(cap // seconds_per_epoch))


def select(sweep: dict[tuple[float, float], dict]) -> tuple[float, float]:
    """The (lr, weight decay) whose run has the lowest validation relative L2; only ``val_*`` keys are read."""
    finished = {pair: m[SELECT_ON] for pair, m in sweep.items() if m is not None and math.isfinite(m.get(SELECT_ON, math.nan))}
    if not finished:
        raise ValueError("no finished sweep run to choose from")
    return min(finished, key=finished.get)


def execute(run: Run) -> dict | None:
    run.out.parent.mkdir(parents=True, exist_ok=True)
    if state(run) != "done":  # figures of an earlier run in this folder
        (run.out / EXTRA).unlink(missing_ok=True)
    return fit(REPO / "recipes" / f"{run.row.recipe}.yaml", list(run.overrides), run.out, env=run.env)


def state(run: Run) -> str:
    return run_state(run.out, run_stamp(REPO / "recipes" / f"{run.row.recipe}.yaml", list(run.overrides), run.env))


def generate_data(rows: list[Row]) -> None:
    """Simulate each recipe's data once, before runs start, so concurrent runs never race to write a file."""
    from sciformer.config import load_recipe
    from sciformer.data.operator import generate_missing

    for row in rows:
        data = load_recipe(REPO / "recipes" / f"{row.recipe}.yaml", list(row.overrides)).data
        path = REPO / data.name
        if data.generate is not None and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            generate_missing(path, data.generate)


def protocol(rows: list[Row], runs: Path, jobs: int, tiny: bool) -> dict[Row, dict]:
    """Calibrate (one run at a time), sweep, select on validation, seeds (``jobs`` at a time): every row's runs
    (finished ones skipped)."""
    calibrated = dict(zip(rows, run_pool([calibration(r, runs) for r in rows], execute, lambda _: None, 1)))
    lone = {r: lone_seconds_per_epoch(calibration(r, runs)) for r, m in calibrated.items() if m is not None}
    epochs = {r: budget_epochs(s, _cap(r, tiny)) for r, s in lone.items()}
    pairs = [(lr, wd) for lr in LRS for wd in DECAYS]
    sweep_runs = [(r, pair, trial(r, runs, epochs[r], *pair, SEEDS[0])) for r in epochs for pair in pairs]
    swept = run_pool([run for _, _, run in sweep_runs], execute, lambda _: None, jobs)
    by_row: dict[Row, dict] = {r: {} for r in epochs}
    for (r, pair, _), metrics in zip(sweep_runs, swept):
        by_row[r][pair] = metrics
    chosen = {r: select(s) for r, s in by_row.items() if any(m is not None for m in s.values())}
    seed_runs = [trial(r, runs, epochs[r], *chosen[r], seed) for r in chosen for seed in SEEDS]
    seeded = run_pool(seed_runs, execute, lambda _: None, jobs)
    results = {}
    for r in rows:
        own = [(run, m) for run, m in zip(seed_runs, seeded) if run.row == r]
        results[r] = {"calibration": calibrated[r], "seconds_per_epoch": lone.get(r), "epochs": epochs.get(r), "chosen": chosen.get(r),
                      "sweep": by_row.get(r, {}),
                      "seeds": [dict(m, **extra_tests(run, m)) for run, m in own if m is not None],
                      "failed": sum(m is None for m in [calibrated[r], *by_row.get(r, {}).values()] + [m for _, m in own])}
    return results


def _cap(row: Row, tiny: bool) -> float:
    return 2.0 if tiny else SETS[row.set].cap_seconds


def extra_tests(run: Run, metrics: dict) -> dict:
    """Figures besides fit's own, kept in :data:`EXTRA`: re-tests at other data settings (Darcy at 32²) and the
    rollout over the whole test horizon (nRMSE at the last step and averaged over steps)."""
    path = run.out / EXTRA
    if path.is_file():
        return json.loads(path.read_text())
    import torch

    from sciformer.engine.rollout import rollout_run
    from sciformer.engine.runner import evaluate_run

    device = "cuda" if torch.cuda.is_available() else "cpu"
    extra = {key: evaluate_run(run.out, device, [override])["test_rel_l2"] for key, override in SETS[run.row.set].extra_tests}
    if "rollout_steps" in metrics:
        rolled = rollout_run(run.out, out=run.out / "rollout", device=device, figures=False)
        extra |= {"rollout_nrmse_last": rolled["nrmse_last"], "rollout_nrmse_mean": rolled["nrmse_mean"]}
    path.write_text(json.dumps(extra, indent=2))
    return extra


# ------------------------------------------------------------------------------------------------- tables
COLUMNS = ["model", "parameters", "epochs (cap)", "lr / wd (on val)", "seeds", "test rel. L2", "test nRMSE", "rollout nRMSE @10",
           "rollout nRMSE @T", "s/epoch", "peak memory (MiB)", "GPU-hours"]


def summary(row: Row, result: dict) -> dict:
    """One row's figures: mean ± std over its seeds of the test metrics; the lone s/epoch, memory, and the GPU-hours
    of all its runs (calibration, sweep and seeds: their epochs at the lone s/epoch)."""
    seeds = result["seeds"]
    trials = [m for m in [*result["sweep"].values(), *seeds[1:]] if m is not None]
    lone = result["seconds_per_epoch"]
    values = {key: [s[key] for s in seeds if s.get(key) is not None] for key in
              ("test_rel_l2", "test_nrmse", "rollout_nrmse_step10", "rollout_nrmse_last", "rollout_nrmse_mean",
               *(key for key, _ in SETS[row.set].extra_tests))}
    return {
        "label": row.label, "parameters": row.parameters, "matched": row.matched, "epochs": result["epochs"], "chosen": result["chosen"],
        "seeds": len(seeds), "values": values, "failed": result["failed"],
        "graphs_failed": any(s.get("cuda_graphs") == "failed" for s in seeds),
        "seconds_per_epoch": lone,
        "peak_memory_mb": max((s["peak_memory_mb"] for s in seeds), default=None),
        "gpu_hours": 0.0 if lone is None else lone * (CALIBRATION_EPOCHS + len(trials) * (result["epochs"] or 0)) / 3600,
    }


def _cell(values: list[float]) -> str:
    return mean_std(values, digits=4) if values else "–"

def table_rows(summaries: list[dict], bench: BenchSet) -> tuple[list[str], list[list]]:
    columns = COLUMNS[:9] + [name for name, _ in _extra_columns(bench)] + COLUMNS[9:]
    rows = []
    for s in summaries:
        v = s["values"]
        lr_wd = "–" if s["chosen"] is None else f"{s['chosen'][0]:g} / {s['chosen'][1]:g}"
        rows.append([s["label"], f"{s['parameters']:,}" + ("" if s["matched"] else " (outside ±25 %)"), s["epochs"] or "–", lr_wd, s["seeds"],
                     _cell(v["test_rel_l2"]), _cell(v["test_nrmse"]), _cell(v["rollout_nrmse_step10"]), _cell(v["rollout_nrmse_last"]),
                     *[_cell(v[key]) for _, key in _extra_columns(bench)],
                     "–" if s["seconds_per_epoch"] is None else f"{s['seconds_per_epoch']:.2f}",
                     "–" if s["peak_memory_mb"] is None else round(s["peak_memory_mb"]), f"{s['gpu_hours']:.2f}"])
    return columns, rows


def _extra_columns(bench: BenchSet) -> list[tuple[str, str]]:
    return [(f"rel. L2 @{override.split('=')[1]}² (unseen)", key) for key, override in bench.extra_tests]


def verdicts(summaries: list[dict]) -> list[str]:
    """Each transformer at FNO's size against FNO on test relative L2: below or above beyond one std, or within it."""
    bar = next((s for s in summaries if s["label"] == "fno"), None)
    if bar is None or not bar["values"]["test_rel_l2"]:
        return []
    def mean_sd(values: list[float]) -> tuple[float, float]:
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    fno, fno_std = mean_sd(bar["values"]["test_rel_l2"])
    notes = []
    for s in summaries:
        if s["label"].startswith("fno") or not s["values"]["test_rel_l2"]:
            continue
        mean, std = mean_sd(s["values"]["test_rel_l2"])
        spread = max(std, fno_std)
        where = "below" if mean < fno - spread else "above" if mean > fno + spread else "within one std of"
        notes.append(f"{s['label']}: {where} FNO ({mean:.4f} vs {fno:.4f}, {100 * (mean - fno) / fno:+.0f} %).")
    return notes


def anchor_note(summaries: list[dict]) -> str | None:
    paper = next((s for s in summaries if s["label"] == "fno paper size" and s["epochs"]), None)
    if paper is None:
        return None
    got = paper["values"]["rollout_nrmse_mean"]
    return (f"Anchor: {ANCHOR['paper']} reports {ANCHOR['rel_l2']} (relative L2 over the rollout, {ANCHOR['epochs']} epochs); "
            f"here the paper-size FNO trains {paper['epochs']} epochs, {paper['epochs'] / ANCHOR['epochs']:.1%} of the paper's budget, "
            f"rollout nRMSE averaged over steps {_cell(got)}.")


def render(results: dict[Row, dict], command: str, machine: str, tiny: bool = False) -> list[dict]:
    """One results-page table per set (``tiny``: captions say so)."""
    tables = []
    for name, bench in SETS.items():
        summaries = [summary(r, res) for r, res in results.items() if r.set == name]
        if not summaries:
            continue
        columns, rows = table_rows(summaries, bench)
        cap = _cap(next(r for r in results if r.set == name), tiny)
        notes = [f"Cap {cap:.0f} s of GPU time per run (epochs = cap / s/epoch of a lone calibration run); sweep lr {LRS} × weight decay "
                 f"{DECAYS} at seed 0, chosen on validation rel. L2; seeds {SEEDS}. Widths matched to FNO's parameters within ±25 %."]
        notes += list(bench.notes) + verdicts(summaries) + [n for n in [anchor_note(summaries)] if n]
        eager = [s["label"] for s in summaries if s["graphs_failed"]]
        if eager:
            notes.append(f"CUDA graph capture failed, so these trained eagerly within the same cap: {', '.join(eager)}.")
        failed = sum(s["failed"] for s in summaries)
        if failed:
            notes.append(f"{failed} run(s) failed: their rows lack them (see the .stderr.txt files beside the run folders).")
        caption = f"{'Tiny CPU check, not a result: ' if tiny else ''}{bench.caption}"
        tables.append({"caption": caption, "command": command, "machine": machine, "date": time.strftime("%Y-%m-%d"),
                       "columns": columns, "rows": rows, "notes": notes})
    return tables


def write_results(tables: list[dict], path: Path) -> None:
    """Put ``tables`` into the results JSON at ``path``, replacing tables of the same caption and keeping others."""
    topic = json.loads(path.read_text()) if path.is_file() else {
        "title": "Operator protocol: FNO's size, one GPU-time cap, one sweep, three seeds", "order": 3.5,
        "about": "Generated by benchmarks/operator_table.py (see its docstring for the protocol); FNO (neuraloperator) is the bar.",
        "tables": []}
    fresh = {t["caption"]: t for t in tables}
    topic["tables"] = [fresh.pop(t["caption"], t) for t in topic["tables"]] + list(fresh.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(topic, indent=1, ensure_ascii=False) + "\n")


def markdown(tables: list[dict]) -> str:
    from results_page import render_table

    return "\n".join(line for t in tables for line in render_table(t)) + "\n"


# ------------------------------------------------------------------------------------------------- plan
def plan(rows: list[Row], runs: Path, tiny: bool) -> list[str]:
    """Every run with its state, parameters and overrides (epochs and the chosen pair once they are known)."""
    lines, hours = [], 0.0
    for row in rows:
        cal = calibration(row, runs)
        backend = f" SCIFORMER_BACKEND={BACKEND_ENV.get(row.backend, row.backend)}" if row.backend else ""
        lines.append(f"{row.set} / {row.label}: {row.parameters:,} parameters{'' if row.matched else ' (outside ±25 %)'}; "
                     f"{row.recipe}.yaml {' '.join(row.overrides)}{backend}")
        lines.append(f"    calibrate [{state(cal)}] train.epochs={CALIBRATION_EPOCHS}")
        epochs = budget_epochs(lone_seconds_per_epoch(cal), _cap(row, tiny)) if state(cal) == "done" else None
        hours += _cap(row, tiny) * (len(LRS) * len(DECAYS) + len(SEEDS) - 1) / 3600
        states = [state(trial(row, runs, epochs, lr, wd, SEEDS[0])) for lr in LRS for wd in DECAYS] if epochs else ["after calibration"]
        lines.append(f"    sweep train.lr in {LRS} x train.weight_decay in {DECAYS}, seed {SEEDS[0]}, train.epochs={epochs or 'cap / s_per_epoch'}: "
                     f"{', '.join(states)}; then seeds {', '.join(map(str, SEEDS))} with the pair of lowest {SELECT_ON}")
    lines.append(f"{len(rows)} rows, {len(rows) * (len(LRS) * len(DECAYS) + len(SEEDS))} runs; at most {hours:.1f} GPU-hours besides calibration")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--models", nargs="+", default=None, choices=FAMILIES, help="only these model families (FNO always runs)")
    parser.add_argument("--jobs", type=int, default=1, help="trials at once (calibrations run alone, so the cap stays lone GPU time)")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "operator_protocol", help="run directories (finished runs are skipped)")
    parser.add_argument("--recipe-sizes", action="store_true", help="also a row per transformer at its recipe's own size")
    parser.add_argument("--dry-run", action="store_true", help="list every run with its overrides and parameter count; run nothing")
    parser.add_argument("--tiny", action="store_true", help="tiny data and models, a 2 s cap: the whole protocol on a CPU")
    parser.add_argument("--json", type=Path, default=None, help="results JSON (default: benchmarks/results/; --tiny: RUNS/)")
    parser.add_argument("--md", type=Path, default=None, help="also write the tables as Markdown here")
    parser.add_argument("--machine", default=None, help="the machine named in the tables (default: the GPU's name, else CPU)")
    args = parser.parse_args()

    args.runs = args.runs.resolve()
    rows = [r for name in args.sets for r in rows_of(name, args.runs / "data" if args.tiny else None, args.recipe_sizes)
            if args.models is None or r.family in {"fno", *args.models}]
    if args.dry_run:
        print("\n".join(plan(rows, args.runs, args.tiny)))
        return
    generate_data(rows)
    results = protocol(rows, args.runs, args.jobs, args.tiny)
    command = "python benchmarks/operator_table.py " + " ".join(sys.argv[1:])
    tables = render(results, command, args.machine or _machine(args.jobs), args.tiny)
    out = args.json or (args.runs / "operator_protocol.json" if args.tiny else REPO / "benchmarks" / "results" / "operator_protocol.json")
    write_results(tables, out)
    text = markdown(tables)
    if args.md:
        args.md.write_text(text)
    print(f"{text}\nwrote {out}")


def _machine(jobs: int) -> str:
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return name if jobs == 1 else f"{name}, {jobs} trials at a time (s/epoch and cap from lone calibration runs)"


if __name__ == "__main__":
    main()
