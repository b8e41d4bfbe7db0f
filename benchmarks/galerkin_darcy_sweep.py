"""Galerkin Transformer settings against FNO on neuraloperator's small Darcy set, one budget (the recipes'),
each run tested at 16² and, from the same checkpoint, at the unseen 32².

    python benchmarks/galerkin_darcy_sweep.py --jobs 12 --out runs/darcy_sweep
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runs import REPO, fit, run_pool  # noqa: E402

sys.path.insert(0, str(REPO))

# name -> (recipe, overrides); the Galerkin recipe now sets weight_decay 1e-3, so "gal_wd0" restores the former
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "fno": ("darcy2d_fno", []),
    "gal_recipe": ("darcy_galerkin", []),
    "gal_wd0": ("darcy_galerkin", ["train.weight_decay=0"]),
    "gal_wd1e-4": ("darcy_galerkin", ["train.weight_decay=1e-4"]),
    "gal_wd3e-4": ("darcy_galerkin", ["train.weight_decay=3e-4"]),
    "gal_wd1e-4_L2": ("darcy_galerkin", ["train.weight_decay=1e-4", "model.n_layers=2"]),
    "gal_wd3e-4_d64_drop_m6": ("darcy_galerkin", ["train.weight_decay=3e-4", "model.d_model=64", "model.d_ff=128", "model.dropout=0.1", "model.modes=6"]),
    "gal_wd0_drop0.1": ("darcy_galerkin", ["train.weight_decay=0", "model.dropout=0.1"]),
    "gal_wd0_d64": ("darcy_galerkin", ["train.weight_decay=0", "model.d_model=64", "model.d_ff=128"]),
    "gal_wd0_fourier": ("darcy_galerkin", ["train.weight_decay=0", "model.attention=fourier"]),
    "gal_wd0_pointwise": ("darcy_galerkin", ["train.weight_decay=0", "model.decoder=pointwise"]),
    "gal_wd0_modes6": ("darcy_galerkin", ["train.weight_decay=0", "model.modes=6"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (they share the device)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "darcy_sweep")
    args = parser.parse_args()
    from sciformer.engine.runner import evaluate_run

    def one(name: str) -> dict:
        recipe, overrides = VARIANTS[name]
        metrics = fit(REPO / "recipes" / f"{recipe}.yaml", overrides, args.out / name)
        if metrics is None:
            return {"name": name, "failed": True}
        res32 = evaluate_run(args.out / name, overrides=["data.test_resolution=32"])["test_rel_l2"]
        return {"name": name, "rel_l2_16": metrics["test_rel_l2"], "rel_l2_32": res32, "parameters": metrics["parameters"], "best_epoch": metrics["best_epoch"]}

    args.out.mkdir(parents=True, exist_ok=True)
    results = run_pool(args.variants, one, lambda rs: (args.out / "sweep.json").write_text(json.dumps(rs, indent=1)), args.jobs)
    for r in sorted(results, key=lambda r: r.get("rel_l2_16", float("inf"))):
        print(r)


if __name__ == "__main__":
    main()
