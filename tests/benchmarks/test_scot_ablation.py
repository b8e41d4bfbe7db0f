"""benchmarks/scot_ablation.py: the variants are valid recipe overrides, and the table scores each against FNO."""

import argparse

from benchmark_script import load_benchmark


def _script():
    return load_benchmark("scot_ablation")


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
