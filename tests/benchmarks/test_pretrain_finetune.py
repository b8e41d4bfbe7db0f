"""benchmarks/pretrain_finetune.py: Poseidon's EG and AG from power-law fits, and the whole pipeline at --tiny."""

import json

import pytest
from benchmark_script import load_benchmark


def _script():
    return load_benchmark("pretrain_finetune")


def test_gains_follow_poseidons_definitions():
    bench = _script()
    ns = [8, 32, 128, 512]
    baseline = [n**-0.5 for n in ns]
    model = [0.25 * n**-0.5 for n in ns]  # 4x smaller error at every N: reaches the baseline's error at N_ref / 16
    g = bench.gains(ns, model, baseline)
    assert g["AG"] == pytest.approx(4.0) and g["EG"] == pytest.approx(16.0) and g["alpha"] == pytest.approx(0.5)
    flat = bench.gains(ns, [0.5] * 4, baseline)  # never improves, never reaches 512^-0.5
    assert flat["EG"] is None and bench._gain(flat["EG"]) == "–"


def test_a_rerun_with_other_settings_is_refused_before_it_mixes_old_runs_into_the_table(tmp_path):
    from dataclasses import replace

    bench = _script()
    bench.check_settings(bench.TINY, tmp_path, seed=0)
    bench.check_settings(bench.TINY, tmp_path, seed=0)  # the same settings: what is there is reused
    with pytest.raises(SystemExit, match=r"other settings \(pretrain_epochs, epochs differ\): give another --out"):
        bench.check_settings(replace(bench.TINY, pretrain_epochs=3, epochs=5), tmp_path, seed=0)
    with pytest.raises(SystemExit, match=r"\(seed differs\)"):
        bench.check_settings(bench.TINY, tmp_path, seed=1)


@pytest.mark.integration  # pretrain, zero-shot, 3 models x 2 N (in child processes) on a CPU: about a minute
def test_tiny_run_writes_results_table_and_plot_and_a_rerun_keeps_what_is_finished(tmp_path, capsys):
    bench = _script()
    assert bench.main(["--tiny", "--ns", "2", "4", "--out", str(tmp_path / "out"), "--jobs", "2"]) == 0  # 6 runs, 2 processes at a time
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["ns"] == [2, 4] and set(results["errors"]) == {"scOT pretrained + fine-tuned", "scOT from scratch", "FNO from scratch"}
    assert all(len(e) == 2 for e in results["errors"].values()) and results["zero_shot"] > 0
    assert results["pretrained"]["weights_sha256"] and (tmp_path / "out" / "error_vs_n.png").stat().st_size > 5_000
    assert "| zero-shot (pretrained, no fine-tuning) |" in capsys.readouterr().out
    # a rerun with the same --out (the next short GPU job) trains nothing it has: a finished entry is kept as it is
    finished = tmp_path / "out" / "finished" / "fno_from_scratch_n4.json"
    finished.write_text(json.dumps({**json.loads(finished.read_text()), "error": 123.0}))
    assert bench.main(["--tiny", "--ns", "2", "4", "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["errors"]["FNO from scratch"][1] == 123.0
    # --record: the table goes to the results page's operators topic, the plot beside the docs
    bench.RESULTS, bench.FIGURE = tmp_path / "operators.json", tmp_path / "img" / "pretrain_finetune.png"
    bench.record(results, tmp_path / "out", "python benchmarks/pretrain_finetune.py --tiny")
    recorded = json.loads(bench.RESULTS.read_text())["tables"][0]
    assert recorded["image"] == "img/pretrain_finetune.png" and bench.FIGURE.is_file()
    assert [row[0] for row in recorded["rows"]][-1].startswith("zero-shot") and len(recorded["rows"][0]) == len(recorded["columns"])

