"""benchmarks/scot_ablation.py: the variants are valid recipe overrides, and the table scores each against FNO."""

import argparse
import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scot_ablation.py"


def _script():
    spec = importlib.util.spec_from_file_location("scot_ablation_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_variants_are_valid_overrides_of_their_recipes():
    from sciformer.config import load_recipe

    bench = _script()
    modes = set()
    for recipe, overrides in bench.VARIANTS.values():
        r = load_recipe(bench.REPO / "recipes" / f"{recipe}.yaml", list(overrides))
        modes.add((r.model.name, r.train.mode, r.model.args.get("residual", False)))
    assert {("poseidon", "all_to_all", False), ("poseidon", "one_step", True), ("fno", "one_step", False)} <= modes
    assert set(bench.EPOCH_FACTORS) <= set(bench.VARIANTS)  # a longer run names a variant


def test_table_gives_each_variant_its_ratio_to_fno_and_names_a_failed_run():
    bench = _script()
    metric = {"test_nrmse": 0.1, "parameters": 1000, "seconds_per_epoch": 2.5}
    results = {"scOT, one step": {**metric, "test_rel_l2": 0.08}, "scOT, lead-time pairs + residual": None, "FNO (the bar)": {**metric, "test_rel_l2": 0.04}}
    args = argparse.Namespace(res=32, n=120, epochs=20)
    t = bench.table(results, args, "python benchmarks/scot_ablation.py --out X", "CPU")
    assert t["rows"][0][:3] == ["scOT, one step", "0.0800", "2.00"] and t["rows"][1][1] == "failed" and t["rows"][2][2] == "1.00"
    assert "32², 120 trajectories, 20 epochs" in t["caption"]
