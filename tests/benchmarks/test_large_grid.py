"""benchmarks/large_grid.py: the grid ladder, the training windows of the large-grid recipe, the time shares of the rows,
out-of-memory steps recorded rather than fatal, table cells of finished, failed and cut-short rows, and (integration)
the whole script on tiny models with --record into a copy of a results file."""

import json
from types import SimpleNamespace

import pytest
from benchmark_script import load_benchmark


def _script():
    return load_benchmark("large_grid")


def test_the_ladder_doubles_from_the_timed_grid_up_to_the_largest():
    bench = _script()
    assert bench.grid_ladder(256, 2048) == (256, 512, 1024, 2048) == bench.GRIDS
    assert bench.grid_ladder(256, 1000) == (256, 512)
    assert bench.grid_ladder(16, 16) == (16,)
    with pytest.raises(ValueError, match="first <= largest"):
        bench.grid_ladder(512, 256)


def test_an_epoch_of_the_large_grid_set_is_its_203_training_trajectories_times_21_windows():
    bench = _script()
    row = bench.Row(bench.SET, "fno", "fno", bench.SETS[bench.SET].recipes["fno"], ("train.patience=0",), 0, True)
    spec = bench.row_spec(row)
    # 250 generated trajectories: 25 test, 22 validation, 203 train; 31 frames (t = 0..30), 10 input frames -> 21 windows
    assert spec["windows"] == 203 * 21 and spec["batch_size"] == 4 and spec["input_frames"] == 10
    assert bench.seconds_per_epoch(100.0, spec["windows"], spec["batch_size"]) == pytest.approx(0.1 * 1066)


def test_each_row_gets_its_weighted_share_of_what_is_left_of_the_budget():
    bench = _script()
    assert bench.time_limit(200.0, [1, 2, 1, 2, 1, 1, 1], cap=75) == pytest.approx(200 / 9)
    assert bench.time_limit(200.0, [2, 1], cap=75) == 75  # capped
    assert bench.time_limit(-5.0, [1], cap=75) == 1.0  # a spent budget still starts the row
    kernels = bench.Row("ns2d_256", "galerkin", "galerkin", "r", (), 1, True)
    reference = bench.Row("ns2d_256", "galerkin", "galerkin (reference)", "r", (), 1, True, "reference")
    assert bench.weight(kernels) == 2.0 and bench.weight(reference) == 1.0
    assert bench.BACKEND_ENV["reference"] == "torch"  # the dispatcher refuses SCIFORMER_BACKEND=reference


def test_a_step_that_runs_out_of_memory_is_recorded_and_its_gradients_dropped():
    import torch

    bench = _script()
    dropped = []
    trainer = SimpleNamespace(device=torch.device("cpu"), optimizer=SimpleNamespace(zero_grad=lambda set_to_none: dropped.append(set_to_none)))

    def raise_(error):
        raise error

    assert bench._attempt(trainer, lambda: 3.5) == (3.5, None) and not dropped
    assert bench._attempt(trainer, lambda: raise_(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried"))) == (None, "out of memory")
    assert bench._attempt(trainer, lambda: raise_(RuntimeError("cuFFT error: CUFFT_ALLOC_FAILED"))) == (None, "out of memory")
    assert bench._attempt(trainer, lambda: raise_(RuntimeError("shape mismatch\nmore"))) == (None, "RuntimeError: shape mismatch")
    assert dropped == [True, True, True]
    with pytest.raises(ValueError):  # not a failure of the step: a bug of the benchmark
        bench._attempt(trainer, lambda: raise_(ValueError("bug")))


def test_table_cells_of_finished_out_of_memory_and_cut_short_rows():
    bench = _script()
    common = {"parameters": 2_067_657, "batch_size": 4, "windows": 4263}
    finished = {
        **common,
        "family": "galerkin",
        "backend_row": None,
        "backend": "triton",
        "ms_per_step": 41.26,
        "seconds_per_epoch": 43.98,
        "peak_gib": 3.456,
        "ladder": [{"grid": 256, "peak_gib": 1.0}, {"grid": 512, "peak_gib": 3.0}, {"grid": 1024, "error": "out of memory"}],
    }
    no_fit = {
        **common,
        "family": "galerkin",
        "backend_row": "reference",
        "backend": "torch",
        "timing_error": "out of memory at batch 4",
        "ladder": [{"grid": 256, "peak_gib": 70.0}, {"grid": 512, "error": "out of memory"}],
    }
    cut = {
        **common,
        "family": "factformer",
        "backend_row": None,
        "backend": "triton",
        "ms_per_step": 9.0,
        "seconds_per_epoch": 0.5,
        "peak_gib": 1.0,
        "ladder": [{"grid": 256, "peak_gib": 1.0}],
        "failed": "stopped at its 30 s limit",
    }
    never = {**common, "family": "fno", "backend_row": None, "failed": "stopped at its 30 s limit"}
    all_fit = {
        **common,
        "family": "poseidon",
        "backend_row": None,
        "backend": "triton",
        "ms_per_step": 5.0,
        "seconds_per_epoch": 5.3,
        "peak_gib": 0.5,
        "ladder": [{"grid": g, "peak_gib": g / 1024} for g in bench.GRIDS],
    }
    rows = bench.table_rows([finished, no_fit, cut, never, all_fit])
    assert rows[0] == ["galerkin", "triton", "2,067,657", "41.3", "44.0", "3.46", "512² (out of memory at 1024²)", "3.00"]
    assert rows[1] == ["galerkin", "torch (reference)", "2,067,657", "out of memory at batch 4", "–", "–", "256² (out of memory at 512²)", "70.00"]
    assert rows[2][-2:] == ["256² (stopped at its 30 s limit)", "1.00"]
    assert rows[3] == ["fno", "–", "2,067,657", "failed: stopped at its 30 s limit", "–", "–", "–", "–"]
    assert rows[4][1] == "–" and rows[4][-2:] == ["2048² (all tried)", "2.00"]  # scOT uses no sciformer kernel


def test_record_from_a_json_made_elsewhere_replaces_the_table_of_its_caption(tmp_path):
    bench = _script()
    row = {
        "label": "fno",
        "family": "fno",
        "backend_row": None,
        "parameters": 2_411_329,
        "batch_size": 4,
        "windows": 4263,
        "input_frames": 10,
        "machine": "NVIDIA H100 80GB HBM3",
        "ms_per_step": 12.0,
        "seconds_per_epoch": 12.8,
        "peak_gib": 2.0,
        "ladder": [{"grid": 256, "peak_gib": 0.5}, {"grid": 512, "error": "out of memory"}],
    }
    facts = {
        "machine": "NVIDIA H100 80GB HBM3",
        "date": "2026-12-07 09:00 UTC",
        "command": "python benchmarks/large_grid.py --out x",
        "tiny": False,
        "grids": [256, 512],
        "warmup": 3,
        "steps": 10,
        "rows": [row],
    }
    (tmp_path / "large_grid.json").write_text(json.dumps(facts))
    caption = "Large grid, speed and memory: Navier–Stokes 2D at 256² and up, Triton kernels on and off"
    results = tmp_path / "operators.json"
    results.write_text(json.dumps({"title": "Operator learning", "order": 3, "tables": [{"caption": caption, "rows": []}, {"caption": "Darcy"}]}))
    bench.main(["--record-from", str(tmp_path / "large_grid.json"), "--results", str(results)])
    table, other = json.loads(results.read_text())["tables"]
    assert other == {"caption": "Darcy"} and table["caption"] == caption
    assert (table["machine"], table["date"], table["command"]) == ("NVIDIA H100 80GB HBM3", "2026-12-07", facts["command"])
    assert table["columns"][3:5] == ["ms/step at 256² (batch 4)", "s/epoch at 256² (4,263 windows)"]
    assert table["rows"] == [["fno", "–", "2,411,329", "12.0", "12.8", "2.00", "256² (out of memory at 512²)", "0.50"]]
    assert "ceil(4,263 training windows / batch 4)" in table["notes"][0] and "mean of 10 steps after 3 of warm-up" in table["notes"][0]


def test_the_notes_say_which_rows_were_timed_from_a_cuda_graph():
    bench = _script()
    graphed, failed, cpu = {"label": "fno", "cuda_graphs": True}, {"label": "galerkin", "cuda_graphs": False}, {"label": "fno"}
    assert bench._graphs_note([graphed]).startswith("Timed steps replay one CUDA graph per step")
    assert bench._graphs_note([graphed, failed]).endswith("; galerkin eagerly: the capture failed (warnings in large_grid.json).")
    assert bench._graphs_note([failed, cpu]) == "Timed steps run eagerly (no CUDA graph)."


@pytest.mark.integration
def test_tiny_run_writes_json_markdown_and_replaces_its_table_in_the_results(tmp_path):
    bench = _script()
    results = tmp_path / "operators.json"
    old = {
        "caption": "Tiny CPU check, not a result: Large grid, speed and memory: Navier–Stokes 2D at 16² and up, Triton kernels on and off",
        "rows": [["stale"]],
    }
    other = {"caption": "Darcy", "rows": [["fno"]]}
    results.write_text(json.dumps({"title": "Operator learning", "order": 3, "tables": [other, old]}))
    out = tmp_path / "out"
    bench.main(["--tiny", "--models", "galerkin", "--warmup", "1", "--steps", "2", "--out", str(out), "--record", "--results", str(results)])

    facts = json.loads((out / "large_grid.json").read_text())
    assert facts["machine"] == "CPU" and facts["command"].startswith("python benchmarks/large_grid.py --tiny") and facts["grids"] == [16, 32]
    rows = facts["rows"]
    assert [r["label"] for r in rows] == ["galerkin", "galerkin (reference)"]
    assert all("failed" not in r and r["ms_per_step"] > 0 and r["peak_gib"] is None for r in rows), rows  # SCIFORMER_BACKEND=torch accepted
    assert [[step["grid"] for step in r["ladder"]] for r in rows] == [[16, 32], [16, 32]]
    text = (out / "large_grid.md").read_text()
    assert "| galerkin | torch (reference) | " in text and "32² (all tried)" in text

    topic = json.loads(results.read_text())
    assert [t["caption"] for t in topic["tables"]] == ["Darcy", old["caption"]]  # replaced in place, the other kept
    table = topic["tables"][1]
    assert table["rows"][0][0] == "galerkin" and table["machine"] == "CPU" and set(table) >= {"command", "date", "columns", "notes"}
