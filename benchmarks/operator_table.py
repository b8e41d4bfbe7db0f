"""Operator models side by side, each data set's models with one training budget, FNO as the bar.

    python benchmarks/operator_table.py --sets darcy burgers ns2d --jobs 8 --out docs/operator_table.md

Every entry is ``sciformer fit RECIPE`` in its own process (``--jobs`` at once, sharing the device, which the
table header states); the recipes of one data set share epochs, batch size, optimiser and loss. Columns: one-step
test relative L2 and nRMSE (PDEBench definitions, per sample then averaged), rollout nRMSE after 10 and 50
autoregressive steps for time-dependent sets, parameters, seconds per epoch, peak memory. Darcy is also
re-tested at the unseen resolution 32 from the same checkpoint. Data files that recipes generate on first use
are generated once, before the runs start, so concurrent runs never race to write them. ``--seeds 0 1 2`` runs
every entry once per seed; a row then shows mean ± std over its seeds, and the verdicts compare means:

    python benchmarks/operator_table.py --sets ns2d --models "Galerkin Transformer" FNO --seeds 0 1 2 --jobs 6 \\
        --extra data.num_samples=200 train.epochs=10
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runs import REPO, fit, mean_std, run_pool  # noqa: E402

sys.path.insert(0, str(REPO))

# data set -> [(label, recipe, overrides of that entry)]; each transformer's verdict against FNO follows the table
PDE_T_MATCHED = ("model.name=pde_transformer", "model.hidden_size=32", "model.n_heads=4", "model.depths=[2,5,8,5,2]")  # 3.9 M parameters
SETS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "darcy": [("Galerkin Transformer", "darcy_galerkin", ()), ("FNO", "darcy2d_fno", ())],
    "burgers": [("Galerkin Transformer", "burgers_galerkin", ()), ("FNO", "burgers_fno", ())],
    "ns2d": [
        ("Galerkin Transformer", "ns2d_galerkin", ()),
        ("FactFormer", "ns2d_factformer", ()),
        ("Poseidon-style scOT", "ns2d_poseidon", ()),
        ("PDE-Transformer S", "ns2d_pde_transformer", ()),
        ("PDE-Transformer, 3.9 M (size matched to FNO/FactFormer)", "ns2d_pde_transformer", PDE_T_MATCHED),
        ("FNO", "ns2d_fno", ()),
        ("FNO + residual", "ns2d_fno", ("model.residual=true",)),  # the increment over the input frame, as Galerkin's
    ],
}
COLUMNS = [
    ("test rel. L2", "test_rel_l2"),
    ("test nRMSE", "test_nrmse"),
    ("rollout nRMSE @10", "rollout_nrmse_step10"),
    ("rollout nRMSE @50", "rollout_nrmse_step50"),
    ("rel. L2 @32² (unseen)", "test_rel_l2_res32"),
]


def generate_data(recipes: list[str]) -> None:
    from sciformer.config import load_recipe
    from sciformer.data.operator import generate_missing

    for name in dict.fromkeys(recipes):
        data = load_recipe(REPO / "recipes" / f"{name}.yaml").data
        path = REPO / data.name
        if data.generate is not None and not path.is_file():
            started = time.perf_counter()
            generate_missing(path, data.generate)
            print(f"generated {path.name} in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)


def run_entry(entry: tuple[str, str, str, tuple[str, ...], int | None], runs: Path, extra: list[str]) -> dict:
    dataset, label, recipe, overrides, seed = entry
    out = runs / (recipe if not overrides else f"{recipe}-{re.sub(r'[^a-z0-9]+', '_', label.lower()).strip('_')}")
    if seed is not None:
        out, overrides = out.with_name(f"{out.name}-s{seed}"), (*overrides, f"seed={seed}")
    metrics = fit(REPO / "recipes" / f"{recipe}.yaml", [*overrides, *extra], out)
    row = {"dataset": dataset, "model": label, "recipe": recipe, "seed": seed}
    if metrics is None:
        return {**row, "failed": True}
    if dataset == "darcy" and "test_rel_l2_res32" not in metrics:
        from sciformer.engine.runner import evaluate_run

        metrics["test_rel_l2_res32"] = evaluate_run(out, overrides=["data.test_resolution=32"])["test_rel_l2"]
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {**row, **metrics}


def values_of(runs: list[dict], key: str) -> list[float]:
    return [r[key] for r in runs if r.get(key) is not None]


def cell(runs: list[dict], key: str) -> str:
    values = values_of(runs, key)
    return mean_std(values, digits=4) if values else "–"


def mean_of(runs: list[dict], key: str) -> float | None:
    values = values_of(runs, key)
    return statistics.mean(values) if values else None


def table(results: list[dict], header: str) -> str:
    """One row per model of a data set: a run's figures, or mean ± std over its seeds. The verdicts compare each
    transformer's means with each FNO row's (a mean inside the other's spread still counts, so read the ± too)."""
    lines = [header]
    for dataset, entries in SETS.items():
        groups: dict[str, list[dict]] = {}
        for r in results:
            if r["dataset"] == dataset and not r.get("failed"):
                groups.setdefault(r["model"], []).append(r)
        if not groups:
            continue
        order = [label for label, _, _ in entries]
        models = sorted(groups, key=order.index)
        lines += ["", f"**{dataset}**", "", "| model | seeds | " + " | ".join(c for c, _ in COLUMNS) + " | parameters | s / epoch | epochs | peak memory (MiB) |",
                  "|---|---|" + "---|" * (len(COLUMNS) + 4)]
        for model in models:
            runs = groups[model]
            cells = " | ".join(cell(runs, key) for _, key in COLUMNS)
            epochs = {r["epochs"] for r in runs}
            lines.append(f"| {model} | {len(runs)} | {cells} | {runs[0]['parameters']:,} | {mean_of(runs, 'seconds_per_epoch'):.2f} | "
                         f"{'/'.join(map(str, sorted(epochs)))} | {max(r['peak_memory_mb'] for r in runs):.0f} |")
        bars = [m for m in models if m.startswith("FNO")]  # FNO and its variants are the bars
        for bar in bars:
            theirs = {key: mean_of(groups[bar], key) for _, key in COLUMNS}
            for model in models:
                if model in bars:
                    continue
                ours = {key: mean_of(groups[model], key) for _, key in COLUMNS}
                worse = [c for c, key in COLUMNS if ours[key] is not None and theirs[key] is not None and ours[key] > theirs[key]]
                verdict = f"beats {bar} on every metric" if not worse else f"loses to {bar} on {', '.join(worse)}"
                lines.append(f"* {model}: {verdict}.")
    failed = [r for r in results if r.get("failed")]
    if failed:
        lines += ["", "Failed runs: " + ", ".join(r["recipe"] + ("" if r.get("seed") is None else f" (seed {r['seed']})") for r in failed)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (they share the device)")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "operators", help="run directories (finished runs are reused)")
    parser.add_argument("--models", nargs="+", default=None, help="only the entries with these labels")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="run every entry with each seed (default: the recipe's)")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here (and print it)")
    parser.add_argument("--json", type=Path, default=None, help="write every run's metrics here")
    args = parser.parse_args()

    entries = [(dataset, *entry) for dataset in args.sets for entry in SETS[dataset]]
    if args.models:
        unknown = set(args.models) - {label for _, label, _, _ in entries}
        if unknown:
            parser.error(f"--models: no entry labelled {sorted(unknown)} in sets {args.sets}")
        entries = [e for e in entries if e[1] in args.models]
    generate_data([recipe for _, _, recipe, _ in entries])
    entries = [(*entry, seed) for entry in entries for seed in (args.seeds or [None])]
    args.runs.mkdir(parents=True, exist_ok=True)
    seeds = f"seeds {' '.join(map(str, args.seeds))}" if args.seeds else "the recipes' seeds"
    header = f"Operator table ({time.strftime('%Y-%m-%d')}; {args.jobs} run(s) at a time on the device; {seeds})"

    def record(results: list[dict]) -> None:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(table(results, header))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))

    results = run_pool(entries, lambda e: run_entry(e, args.runs, args.extra), record, args.jobs)
    print(table(results, header))


if __name__ == "__main__":
    main()
