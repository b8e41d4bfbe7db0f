"""benchmarks/operator_table.py: widths matched to FNO's parameters, the sweep chosen on validation only, finished
runs skipped and interrupted ones resumed, and (integration) the whole protocol on tiny data."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from benchmark_script import load_benchmark

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _script():
    return load_benchmark("operator_table")


def test_width_search_lands_nearest_the_target_in_ratio():
    bench = _script()
    calls = []

    def count(args):  # a model whose size grows with the square of its width
        calls.append(args["d_model"])
        return 100 * args["d_model"] ** 2

    args, n = bench.match_width(count, target=1_000_000, step=16, tie=lambda w: {"d_model": w})
    assert args == {"d_model": 96} and n == 921_600  # 96² · 100 is nearer 1e6 in ratio than 112² · 100 = 1,254,400
    assert bench.in_band(n, 1_000_000) and not bench.in_band(1_254_400, 1_000_000)
    assert len(calls) < 12  # bisection, not a scan of all 128 widths


def test_burgers_galerkin_is_built_within_the_band_of_fno():
    bench = _script()
    rows = {r.label: r for r in bench.rows_of("burgers", recipe_sizes=True)}
    fno, matched, own = rows["fno"], rows["galerkin"], rows["galerkin recipe size"]
    assert fno.parameters == 198_209  # burgers_fno.yaml: modes 16, width 64, 4 layers, 1 -> 1 channels
    assert matched.matched and abs(matched.parameters - fno.parameters) <= 0.25 * fno.parameters
    assert "model.d_model=64" in matched.overrides and "model.d_ff=128" in matched.overrides  # d_ff keeps the recipe's 2×
    assert own.parameters == 373_921 and not own.matched  # the recipe's own size, as a second row
    assert [r.label for r in bench.rows_of("burgers")] == ["fno", "galerkin"]  # only on request
    assert all("train.patience=0" in r.overrides for r in rows.values())  # every run spends its whole budget
    assert all("train.cuda_graphs=true" in r.overrides for r in rows.values())  # on a GPU the cap times the model, not launches


def test_the_sweep_is_chosen_on_validation_alone():
    bench = _script()
    sweep = {
        (1e-3, 0.0): {"val_rel_l2": 0.020, "test_rel_l2": 0.001},  # best on test, not on validation
        (3e-4, 1e-4): {"val_rel_l2": 0.010, "test_rel_l2": 0.050},
        (3e-3, 0.0): {"val_rel_l2": float("nan"), "test_rel_l2": 0.0001},  # diverged
        (3e-3, 1e-4): None,  # failed
    }
    assert bench.select(sweep) == (3e-4, 1e-4)
    with pytest.raises(ValueError, match="no finished sweep run"):
        bench.select({(1e-3, 0.0): None})


def test_the_time_cap_is_an_epoch_count_from_the_measured_seconds_per_epoch():
    bench = _script()
    assert bench.budget_epochs(seconds_per_epoch=7.0, cap=900) == 128
    assert bench.budget_epochs(seconds_per_epoch=2000.0, cap=900) == 1  # never zero


def test_the_cap_counts_a_lone_calibration_epoch_without_its_start_up(tmp_path):
    bench = _script()
    row = bench.Row("burgers", "fno", "fno", "burgers_fno", (), 1000, True)
    run = bench.calibration(row, tmp_path)
    assert f"train.epochs={bench.CALIBRATION_EPOCHS}" in run.overrides and bench.CALIBRATION_EPOCHS >= 2
    run.out.mkdir(parents=True)
    (run.out / "metrics.json").write_text(json.dumps({"seconds_per_epoch": 5.0}))  # start-up included
    (run.out / "history.json").write_text(json.dumps([{"epoch_seconds": 8.0}, {"epoch_seconds": 2.0}]))
    assert bench.lone_seconds_per_epoch(run) == 2.0


def test_finished_runs_are_skipped_and_interrupted_ones_resume(tmp_path):
    bench = _script()
    row = bench.Row("burgers", "fno", "fno", "burgers_fno", ("train.patience=0",), 198_209, True)
    run = bench.trial(row, tmp_path, epochs=5, lr=1e-3, decay=0.0, seed=0)
    assert bench.state(run) == "new"
    (run.out / "resume").mkdir(parents=True)
    assert bench.state(run) == "resume"  # fit --resume continues it
    (run.out / "resume").rmdir()
    (run.out / "metrics.json").write_text(json.dumps({"val_rel_l2": 0.1}))
    assert bench.state(run) == "stale"  # metrics without this run's stamp: re-run
    (run.out / "benchmark_stamp.txt").write_text(bench.run_stamp(bench.REPO / "recipes" / "burgers_fno.yaml", list(run.overrides)))
    assert bench.state(run) == "done"
    longer = bench.trial(row, tmp_path, epochs=6, lr=1e-3, decay=0.0, seed=0)  # same folder, other overrides
    assert longer.out == run.out and bench.state(longer) == "stale"
    kernels_off = bench.Row("ns2d_256", "galerkin", "galerkin (reference)", "ns2d_256_galerkin", (), 1, True, "reference")
    assert bench.trial(kernels_off, tmp_path, 5, 1e-3, 0.0, 0).env == {"SCIFORMER_BACKEND": "torch"}  # the dispatcher's name


def _seed_run(rel_l2: float, seed: int) -> dict:
    return {"test_rel_l2": rel_l2, "test_nrmse": rel_l2, "rollout_nrmse_step10": 0.02, "rollout_nrmse_last": 0.05, "rollout_nrmse_mean": 0.03,
            "seconds_per_epoch": 2.0 + seed, "peak_memory_mb": 100.0 + seed, "train_seconds": 60.0, "phase_seconds": {"train": 60.0, "test": 12.0}}


def test_rows_show_mean_std_over_seeds_and_verdicts_need_one_std():
    bench = _script()
    fno = bench.Row("burgers", "fno", "fno", "burgers_fno", (), 1000, True)
    galerkin = bench.Row("burgers", "galerkin", "galerkin", "burgers_galerkin", (), 1100, True)
    results = {
        fno: {"calibration": _seed_run(0.1, 0), "seconds_per_epoch": 2.0, "epochs": 30, "chosen": (1e-3, 0.0), "failed": 0,
              "sweep": {(1e-3, 0.0): _seed_run(0.0045, 0)}, "seeds": [_seed_run(0.0045, 0), _seed_run(0.0047, 1), _seed_run(0.0043, 2)]},
        galerkin: {"calibration": _seed_run(0.1, 0), "seconds_per_epoch": 2.5, "epochs": 20, "chosen": (3e-4, 1e-4), "failed": 1,
                   "sweep": {(3e-4, 1e-4): _seed_run(0.0030, 0), (1e-3, 0.0): None},
                   "seeds": [_seed_run(0.0030, 0), _seed_run(0.0032, 1), _seed_run(0.0034, 2)]},
    }
    (table,) = bench.render(results, "cmd", "H100")
    row = next(r for r in table["rows"] if r[0] == "galerkin")
    assert row[1:6] == ["1,100", 20, "0.0003 / 0.0001", 3, "0.0032 ± 0.0002"]
    assert row[-3:] == ["2.50", 102, "0.04"]  # lone s/epoch, the largest peak memory, (2 + 3 runs × 20) epochs × 2.5 s
    assert "galerkin: below FNO (0.0032 vs 0.0045, -29 %)." in table["notes"]
    assert any("1 run(s) failed" in note for note in table["notes"])
    assert not any("capture failed" in note for note in table["notes"])
    results[galerkin]["seeds"][1]["cuda_graphs"] = "failed"
    (table,) = bench.render(results, "cmd", "H100")
    assert "CUDA graph capture failed, so these trained eagerly within the same cap: galerkin." in table["notes"]


@pytest.mark.integration
def test_the_whole_protocol_runs_on_tiny_data_and_a_rerun_runs_nothing(tmp_path):
    cmd = [sys.executable, str(BENCH / "operator_table.py"), "--tiny", "--sets", "burgers", "--runs", str(tmp_path), "--jobs", "2"]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True)
    topic = json.loads((tmp_path / "operator_protocol.json").read_text())
    (table,) = topic["tables"]
    assert [r[0] for r in table["rows"]] == ["fno", "galerkin"]
    assert all(r[4] == 3 for r in table["rows"])  # three seeds each
    assert first.stderr.count("done ") == 2 * (1 + 6 + 2)  # per row: calibration, sweep, two more seeds
    second = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "done " not in second.stderr and "resumed " not in second.stderr
    assert json.loads((tmp_path / "operator_protocol.json").read_text())["tables"][0]["rows"] == table["rows"]


def test_the_pool_returns_results_in_the_order_of_its_jobs():
    import time

    sys.path.insert(0, str(BENCH))
    from runs import run_pool

    recorded = []
    results = run_pool([0.2, 0.0], lambda wait: time.sleep(wait) or {"wait": wait}, lambda so_far: recorded.append(len(so_far)), 2)
    assert results == [{"wait": 0.2}, {"wait": 0.0}]  # the second job finishes first
    assert recorded == [1, 2]
