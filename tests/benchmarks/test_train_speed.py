"""benchmarks/train_speed.py: the five forecasters by default, settings that exist, and a table that shows a failed
fit as failed rather than as numbers."""

from benchmark_script import load_benchmark


def _script():
    return load_benchmark("train_speed")


def test_every_forecaster_recipe_exists_and_every_setting_is_valid_recipe_overrides():
    from sciformer.config import load_recipe

    bench = _script()
    assert sorted(bench.FORECASTERS) == ["autoformer", "etsformer", "informer", "itransformer", "patchtst"]
    assert all((bench.REPO / "recipes" / f"ett_{name}.yaml").is_file() for name in bench.FORECASTERS)
    for overrides in bench.SETTINGS.values():
        load_recipe(bench.REPO / "recipes" / "ett_patchtst.yaml", overrides)
    assert "train.cuda_graphs=false" in bench.SETTINGS["eager"] and "train.cuda_graphs=true" in bench.SETTINGS["graphs"]


def test_table_rows_and_profiles():
    bench = _script()
    fit = {"wall_s": 12.34, "s_per_epoch": 0.5, "s_per_epoch_after_first": 0.4, "epochs": 6, "test_mse": 0.45678}
    results = {
        "machine": "GPU X", "date": "2026-12-07 06:00 UTC",
        "recipes": {"ett_autoformer": {
            "eager": {"fit": {"error": "sciformer: error: boom", "wall_s": 1.0}},
            "graphs": {"fit": fit, "profile": {"ms_per_step": 1.5, "host_enqueue_ms_per_step": 0.1, "val_pass_s": 0.2,
                                               "profiled_steps": 20, "steps_per_epoch": 265, "top_ops": "OPS TABLE"}},
        }},
    }
    text = bench.markdown(results, "python benchmarks/train_speed.py --out x")
    assert "| ett_autoformer | eager | failed: sciformer: error: boom |" in text
    assert "| ett_autoformer | graphs | 12.3 | 0.500 | 0.400 | 6 | 0.4568 | 1.500 | 0.100 | 0.200 |" in text
    assert "## ett_autoformer, graphs: top operators of 20 training steps (265 steps/epoch)" in text and "OPS TABLE" in text
    assert "GPU X" in text and "2026-12-07" in text
