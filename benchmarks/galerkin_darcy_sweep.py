"""Galerkin Transformer settings against FNO on neuraloperator's small Darcy set, one budget (the recipes'),
each run tested at 16² and, from the same checkpoint, at the unseen 32².

    python benchmarks/galerkin_darcy_sweep.py --jobs 12 --out runs/darcy_sweep
    python benchmarks/galerkin_darcy_sweep.py --variants aug_fno aug_gal_reg3_L3 --seed 1 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runs import REPO, fit, run_pool  # noqa: E402

sys.path.insert(0, str(REPO))

# name -> (recipe, overrides). The recipes have changed since these sweeps ran, so every variant spells out the
# recipe it started from: the first sweep's (4 attention layers, the paper's 2 regressor layers, no augmentation;
# "gal_wd0" also drops the weight decay) and the second's (the same with the transpose augmentation).
_S2_FNO = ["train.augment=none"]
_S2 = ["model.n_layers=4", "model.n_regressor_layers=2", "train.augment=none"]
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "fno": ("darcy2d_fno", _S2_FNO),
    "gal_recipe": ("darcy_galerkin", _S2),
    "gal_wd0": ("darcy_galerkin", _S2 + ["train.weight_decay=0"]),
    "gal_wd1e-4": ("darcy_galerkin", _S2 + ["train.weight_decay=1e-4"]),
    "gal_wd3e-4": ("darcy_galerkin", _S2 + ["train.weight_decay=3e-4"]),
    "gal_wd1e-4_L2": ("darcy_galerkin", _S2 + ["train.weight_decay=1e-4", "model.n_layers=2"]),
    "gal_wd3e-4_d64_drop_m6": ("darcy_galerkin", _S2 + ["train.weight_decay=3e-4", "model.d_model=64", "model.d_ff=128", "model.dropout=0.1", "model.modes=6"]),
    "gal_wd0_drop0.1": ("darcy_galerkin", _S2 + ["train.weight_decay=0", "model.dropout=0.1"]),
    "gal_wd0_d64": ("darcy_galerkin", _S2 + ["train.weight_decay=0", "model.d_model=64", "model.d_ff=128"]),
    "gal_wd0_fourier": ("darcy_galerkin", _S2 + ["train.weight_decay=0", "model.attention=fourier"]),
    "gal_wd0_pointwise": ("darcy_galerkin", _S2 + ["train.weight_decay=0", "model.decoder=pointwise"]),
    "gal_wd0_modes6": ("darcy_galerkin", _S2 + ["train.weight_decay=0", "model.modes=6"]),
}
# the second sweep: the transpose augmentation (the grid's exact symmetry) on both models
_AUG_FNO = ["train.augment=transpose"]
_AUG = ["model.n_layers=4", "model.n_regressor_layers=2", "train.augment=transpose"]
VARIANTS |= {
    "aug_fno": ("darcy2d_fno", _AUG_FNO),
    "aug_fno_w80": ("darcy2d_fno", _AUG_FNO + ["model.width=80"]),
    "aug_fno_w96": ("darcy2d_fno", _AUG_FNO + ["model.width=96"]),
    "aug_gal": ("darcy_galerkin", _AUG),
    "aug_gal_L6": ("darcy_galerkin", _AUG + ["model.n_layers=6"]),
    "aug_gal_d192": ("darcy_galerkin", _AUG + ["model.d_model=192"]),
    "aug_gal_ff512": ("darcy_galerkin", _AUG + ["model.d_ff=512"]),
    "aug_gal_h8": ("darcy_galerkin", _AUG + ["model.n_heads=8"]),
    "aug_gal_freq64": ("darcy_galerkin", _AUG + ["model.freq_dim=64"]),
    "aug_gal_reg3": ("darcy_galerkin", _AUG + ["model.n_regressor_layers=3"]),
    "aug_gal_reg4": ("darcy_galerkin", _AUG + ["model.n_regressor_layers=4"]),
    "aug_gal_reg3_L3": ("darcy_galerkin", _AUG + ["model.n_regressor_layers=3", "model.n_layers=3"]),  # = the recipe now
    "aug_gal_clip1": ("darcy_galerkin", _AUG + ["train.grad_clip=1.0"]),
    "aug_gal_h1loss": ("darcy_galerkin", _AUG + ["train.loss=rel_l2_h1"]),
    "aug_gal_xav0.1": ("darcy_galerkin", _AUG + ["model.xavier_init=0.1", "model.diagonal_weight=0.1"]),
    "aug_gal_drop0.1": ("darcy_galerkin", _AUG + ["model.dropout=0.1"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=None, help="override every recipe's seed")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (they share the device)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "darcy_sweep")
    args = parser.parse_args()
    from sciformer.engine.runner import evaluate_run

    def one(name: str) -> dict:
        recipe, overrides = VARIANTS[name]
        overrides = overrides + ([f"seed={args.seed}"] if args.seed is not None else [])
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
