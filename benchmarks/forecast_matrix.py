"""Forecasting accuracy matrix: models × datasets × horizons × seeds, from the recipes, beside published numbers.

    python benchmarks/forecast_matrix.py --models itransformer patchtst --cells ett_h1:96,192 weather:96 \
        --seeds 2021 2022 2023 --jobs 4 --out docs/forecast_matrix.md

Each run is ``sciformer fit recipes/ett_<model>.yaml data.name=... data.horizon=... seed=...`` in its own process
(``--jobs`` run at once; on one GPU they share it, which the table header states). The Markdown table gives the
mean ± std test MSE/MAE over seeds, seconds per epoch, peak memory and the published MSE/MAE.
Published numbers: reference/TIMESERIES.md §5 (unified lookback 96; PatchTST/42 at lookback 336).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runs import REPO, fit, mean_std, run_pool  # noqa: E402

# (model, dataset, horizon) -> (MSE, MAE) as published; see reference/TIMESERIES.md §5 for sources.
PUBLISHED: dict[tuple[str, str, int], tuple[float, float]] = {
    # iTransformer, PatchTST (L=96): OLinear Table 15 transcription (B1), iTransformer rows checked against A3
    **{("itransformer", "ett_h1", h): v for h, v in zip((96, 192, 336, 720), ((0.386, 0.405), (0.441, 0.436), (0.487, 0.458), (0.503, 0.491))) },
    ("itransformer", "ett_h2", 96): (0.297, 0.349), ("itransformer", "ett_m1", 96): (0.334, 0.368),
    ("itransformer", "ett_m2", 96): (0.180, 0.264), ("itransformer", "weather", 96): (0.174, 0.214),
    **{("patchtst", "ett_h1", h): v for h, v in zip((96, 192, 336, 720), ((0.414, 0.419), (0.460, 0.445), (0.501, 0.466), (0.500, 0.488)))},
    ("patchtst", "ett_h2", 96): (0.292, 0.342), ("patchtst", "ett_m1", 96): (0.329, 0.367),
    ("patchtst", "ett_m2", 96): (0.175, 0.259), ("patchtst", "weather", 96): (0.177, 0.218),
    # PatchTST/42 (L=336), PatchTST paper Table 3 (A1)
    **{("patchtst_336", "ett_h1", h): v for h, v in zip((96, 192, 336, 720), ((0.375, 0.399), (0.414, 0.421), (0.431, 0.436), (0.449, 0.466)))},
    ("patchtst_336", "ett_h2", 96): (0.274, 0.336), ("patchtst_336", "ett_m1", 96): (0.290, 0.342),
    ("patchtst_336", "ett_m2", 96): (0.165, 0.255), ("patchtst_336", "weather", 96): (0.152, 0.199),
    # Autoformer, Informer, ETSformer: TimesNet-paper baselines (B2); ETTh2/ETTm1 Autoformer/Informer from A1
    **{("autoformer", "ett_h1", h): v for h, v in zip((96, 192, 336, 720), ((0.449, 0.459), (0.500, 0.482), (0.521, 0.496), (0.514, 0.512)))},
    **{("informer", "ett_h1", h): v for h, v in zip((96, 192, 336, 720), ((0.865, 0.713), (1.008, 0.792), (1.107, 0.809), (1.181, 0.865)))},
    **{("etsformer", "ett_h1", h): v for h, v in zip((96, 192, 336, 720), ((0.494, 0.479), (0.538, 0.504), (0.574, 0.521), (0.562, 0.535)))},
    ("autoformer", "ett_h2", 96): (0.332, 0.368), ("autoformer", "ett_m1", 96): (0.510, 0.492),
    ("autoformer", "ett_m2", 96): (0.255, 0.339), ("autoformer", "weather", 96): (0.266, 0.336),
    ("informer", "ett_h2", 96): (1.549, 0.952), ("informer", "ett_m1", 96): (0.626, 0.560),
    ("informer", "ett_m2", 96): (0.365, 0.453), ("informer", "weather", 96): (0.300, 0.384),
    ("etsformer", "ett_m2", 96): (0.189, 0.280), ("etsformer", "weather", 96): (0.197, 0.281),
}

# Per-cell settings of the official scripts that differ from the ETTh1-96 recipe (reference/TIMESERIES.md §3).
OFFICIAL_OVERRIDES: dict[tuple[str, str, int], list[str]] = {
    ("itransformer", "ett_h1", 336): ["model.d_model=512", "model.d_ff=512"],
    ("itransformer", "ett_h1", 720): ["model.d_model=512", "model.d_ff=512"],
    ("patchtst", "ett_h1", 192): ["model.n_heads=8"],
    ("patchtst", "ett_h1", 336): ["model.n_heads=8"],
    ("patchtst", "ett_h1", 720): ["model.n_heads=16"],
}


def recipe_for(model: str) -> Path:
    return REPO / "recipes" / f"ett_{model}.yaml"


def run_one(model: str, dataset: str, horizon: int, seed: int, out_root: Path, extra: list[str], device: str | None) -> dict:
    overrides = [f"data.name={dataset}", f"data.horizon={horizon}", f"seed={seed}"]
    overrides += OFFICIAL_OVERRIDES.get((model, dataset, horizon), []) + extra
    if device:
        overrides.append(f"train.device={device}")
    metrics = fit(recipe_for(model), overrides, out_root / f"{model}-{dataset}-{horizon}-s{seed}")
    cell = {"model": model, "dataset": dataset, "horizon": horizon, "seed": seed}
    return {**cell, "failed": True} if metrics is None else {**cell, **metrics}


def table(results: list[dict], header: str) -> str:
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for r in results:
        if not r.get("failed"):
            groups.setdefault((r["model"], r["dataset"], r["horizon"]), []).append(r)
    lines = [
        header,
        "",
        "| model | dataset | H | seeds | test MSE | test MAE | published MSE / MAE | s/epoch | epochs | peak memory (MB) | device |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, dataset, horizon), runs in sorted(groups.items()):
        pub = PUBLISHED.get((model, dataset, horizon))
        lines.append(
            f"| {model} | {dataset} | {horizon} | {len(runs)} | {mean_std([r['test_mse'] for r in runs])} | "
            f"{mean_std([r['test_mae'] for r in runs])} | {f'{pub[0]:.3f} / {pub[1]:.3f}' if pub else 'not known'} | "
            f"{statistics.mean(r['seconds_per_epoch'] for r in runs):.2f} | {statistics.mean(r['epochs'] for r in runs):.1f} | "
            f"{max(r.get('peak_memory_mb', float('nan')) for r in runs):.0f} | {runs[0].get('device', '?')} |"
        )
    failed = [r for r in results if r.get("failed")]
    if failed:
        lines += ["", "Failed runs: " + ", ".join(f"{r['model']}-{r['dataset']}-{r['horizon']}-s{r['seed']}" for r in failed)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["itransformer", "autoformer", "informer", "etsformer", "patchtst"])
    parser.add_argument("--cells", nargs="+", default=["ett_h1:96,192,336,720", "ett_h2:96", "ett_m1:96", "ett_m2:96", "weather:96"],
                        help="DATASET:H1,H2,... cells")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2021])
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (they share the device)")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "matrix", help="run directories (finished runs are reused)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here (and print it)")
    parser.add_argument("--json", type=Path, default=None, help="write every run's metrics here")
    args = parser.parse_args()

    jobs = []
    for cell in args.cells:
        dataset, horizons = cell.split(":")
        for model in args.models:
            if not recipe_for(model).is_file():
                sys.exit(f"no recipe {recipe_for(model)} for model '{model}'")
            for horizon in (int(h) for h in horizons.split(",")):
                for seed in args.seeds:
                    jobs.append((model, dataset, horizon, seed))
    args.runs.mkdir(parents=True, exist_ok=True)
    header = f"Forecast matrix ({time.strftime('%Y-%m-%d')}; {args.jobs} run(s) at a time on the device; seeds {' '.join(map(str, args.seeds))})"

    def record(results: list[dict]) -> None:  # rewritten after every run, so a matrix cut short keeps what finished
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(table(results, header))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))

    results = run_pool(jobs, lambda job: run_one(*job, args.runs, args.extra, args.device), record, args.jobs)
    print(table(results, header))


if __name__ == "__main__":
    main()
