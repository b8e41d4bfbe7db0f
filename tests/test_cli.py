"""The ``sciformer`` command: smoke fits, evaluate, and user errors (exit code 2, one line, no traceback)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_csv

from sciformer.cli import main

REPO = Path(__file__).resolve().parents[1]
# the pretrain → fine-tune pair is trained end to end, in order, by tests/engine/test_pretrained.py
SMOKE = sorted(p for p in (REPO / "recipes" / "smoke").glob("*.yaml") if not p.stem.startswith(("pretrain_", "finetune_")))


@pytest.mark.parametrize("recipe", SMOKE, ids=[p.stem for p in SMOKE])
@pytest.mark.integration  # every smoke recipe trained end to end
def test_smoke_recipes_fit_and_evaluate_reproduces_metrics(data_dir, recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", str(recipe), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"run directory: {out}" in printed and "test_mse" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"test_mse", "val_mse", "best_epoch", "epochs", "train_seconds", "seconds_per_epoch", "peak_memory_mb"}
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    assert (out / "checkpoint" / "weights.safetensors").is_file() and config["model"]["name"] == recipe.stem
    operator = config["data"].get("kind") == "operator"
    assert (out / ("fields.png" if operator else "forecast.png")).stat().st_size > 10_000
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr().out
    again = json.loads(printed[: printed.rindex("}") + 1])
    if operator:
        assert set(metrics) >= {"test_rel_l2", "test_nrmse", "test_frmse_low"}
        assert again["test_rel_l2"] == pytest.approx(metrics["test_rel_l2"], rel=1e-6)
    else:
        assert len(config["data"]["scaler"]["mean"]) == 7 and f"matches {out / 'metrics.json'}" in printed
        assert (again["test_mse"], again["test_mae"]) == (metrics["test_mse"], metrics["test_mae"])


@pytest.mark.integration  # a full fit
def test_overrides_on_the_command_line(data_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["fit", str(REPO / "recipes/smoke/itransformer.yaml"), "data.horizon=12", "model.d_model=8", "--out", str(out)]) == 0
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    assert config["recipe"]["data"]["horizon"] == 12 and config["model"]["args"]["d_model"] == 8


def test_validate_and_ls(capsys):
    assert main(["validate", str(REPO / "recipes/ett_itransformer.yaml")]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["ls", "models"]) == 0
    assert "itransformer" in capsys.readouterr().out
    assert main(["ls", "datasets"]) == 0
    listed = capsys.readouterr().out
    assert all(n in listed for n in ("ett_h1", "ett_m2", "weather", "traffic", "electricity"))
    assert main(["ls", "recipes"]) == 0
    assert "recipes/ett_itransformer.yaml" in capsys.readouterr().out


def _recipe(tmp_path, text: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return str(path)


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sciformer: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_recipes_exit_2_with_one_line(tmp_path, capsys):
    assert "unknown recipe key 'train.epoch'" in _error(capsys, ["validate", _recipe(tmp_path, "train: {epoch: 3}\n")])
    assert "unknown model 'itransfomer'" in _error(capsys, ["fit", _recipe(tmp_path, "model: {name: itransfomer}\n")])
    assert "expected int, got str" in _error(capsys, ["fit", _recipe(tmp_path, "train: {batch_size: large}\n")])
    assert "unknown dataset" in _error(capsys, ["fit", _recipe(tmp_path, "data: {name: etth1}\n")])
    assert "does not exist" in _error(capsys, ["fit", str(tmp_path / "missing.yaml")])


def test_bad_data_exit_2(tmp_path, capsys):
    no_time = tmp_path / "no_time.csv"
    pd.DataFrame({"a": range(300), "b": range(300)}).to_csv(no_time, index=False)
    base = "model: {name: itransformer, d_model: 8, d_ff: 8, n_heads: 2}\ntracking: {enabled: false}\ntrain: {progress: false}\n"
    assert "has no time column 'date'" in _error(capsys, ["fit", _recipe(tmp_path, base + f"data: {{name: '{no_time}'}}\n")])
    nan_csv = write_csv(tmp_path / "nan.csv", n_rows=300)
    frame = pd.read_csv(nan_csv)
    frame.loc[42, "v1"] = None
    frame.to_csv(nan_csv, index=False)
    assert "column 'v1' has a missing value (NaN) at row 42" in _error(capsys, ["fit", _recipe(tmp_path, base + f"data: {{name: '{nan_csv}'}}\n")])
    text_csv = write_csv(tmp_path / "text.csv", n_rows=300)
    frame = pd.read_csv(text_csv).astype({"OT": object})
    frame.loc[5, "OT"] = "n/a!"
    frame.to_csv(text_csv, index=False)
    assert "column 'OT' has a non-numeric value 'n/a!' at row 5" in _error(capsys, ["fit", _recipe(tmp_path, base + f"data: {{name: '{text_csv}'}}\n")])
    short = write_csv(tmp_path / "short.csv", n_rows=150)
    assert "fewer than lookback + horizon = 192" in _error(capsys, ["fit", _recipe(tmp_path, base + f"data: {{name: '{short}'}}\n")])


def test_missing_data_file_offline_exit_2(tmp_path, capsys, monkeypatch):
    from sciformer.data import catalog

    monkeypatch.setenv("SCIFORMER_DATA_DIR", str(tmp_path / "nothing"))
    offline = catalog.Manifest(name="ett_h1", file="ETT-small/ETTh1.csv", url="http://127.0.0.1:9/ETTh1.csv", sha256="0" * 64, split="ett_hour")
    monkeypatch.setattr(catalog, "manifests", lambda: {"ett_h1": offline})
    err = _error(capsys, ["fit", str(REPO / "recipes/smoke/itransformer.yaml")])
    assert "'ETT-small/ETTh1.csv' not found in" in err and "failed" in err


@pytest.mark.integration  # a full fit first
def test_corrupt_checkpoint_exit_2(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", str(REPO / "recipes/smoke/itransformer.yaml"), "--out", str(out)]) == 0
    weights = out / "checkpoint" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    capsys.readouterr()
    assert "corrupt or truncated" in _error(capsys, ["evaluate", str(out)])


@pytest.mark.integration  # two fresh interpreters
def test_debug_shows_traceback_and_plain_run_does_not(tmp_path):
    bad = _recipe(tmp_path, "train: {epoch: 3}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    plain = subprocess.run([sys.executable, "-m", "sciformer", "validate", bad], capture_output=True, text=True, env=env)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and plain.stderr.count("\n") == 1
    debug = subprocess.run([sys.executable, "-m", "sciformer", "--debug", "validate", bad], capture_output=True, text=True, env=env)
    assert "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_help_on_every_verb(capsys):
    for verb in ("fit", "evaluate", "validate", "ls", "datasets"):
        with pytest.raises(SystemExit) as exit_:
            main([verb, "--help"])
        assert exit_.value.code == 0
        assert "usage: sciformer" in capsys.readouterr().out


def test_import_sciformer_stays_light():
    code = "import sys, sciformer, sciformer.config, sciformer.registry; print(sorted(m for m in ('mlflow', 'triton', 'cupy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert out.stdout.strip() == "[]"


def test_datasets_generate_and_inspect(tmp_path, capsys):
    out = tmp_path / "burgers.h5"
    assert main(["datasets", "generate", "burgers1d", "--n", "2", "--res", "32", "--nu", "0.001", "--out", str(out)]) == 0
    assert out.is_file()
    capsys.readouterr()
    assert main(["datasets", "inspect", str(out)]) == 0
    described = capsys.readouterr().out
    assert "layout: single" in described and "Nu=0.001" in described and "tensor: (2, 201, 32)" in described
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")  # not PDE data: what could be read, then exit 2 with one line
    assert main(["datasets", "inspect", str(tmp_path / "notes.csv")]) == 2
    shown = capsys.readouterr()
    assert "layout: unrecognised" in shown.out and "problem" not in shown.out
    assert shown.err.startswith("sciformer: error: ") and "notes.csv" in shown.err and shown.err.count("\n") == 1
    assert "has no parameter(s) ['beta']" in _error(capsys, ["datasets", "generate", "burgers1d", "--n", "1", "--res", "16", "--beta", "2", "--out", str(out)])
    assert "unknown generator 'burger1d'" in _error(capsys, ["datasets", "generate", "burger1d", "--n", "1", "--res", "16", "--out", str(out)])


def test_datasets_generate_passes_layout_dtype_and_compression(tmp_path, capsys):
    import h5py

    out = tmp_path / "burgers_group.h5"
    args = ["--layout", "group", "--dtype", "float64", "--compression", "none", "--out", str(out)]
    assert main(["datasets", "generate", "burgers1d", "--n", "2", "--res", "16", "--nu", "0.05", *args]) == 0
    with h5py.File(out, "r") as f:
        assert f["0000/data"].compression is None and f["0000/data"].dtype == "float32"
    with pytest.raises(SystemExit):
        main(["datasets", "generate", "burgers1d", "--n", "1", "--res", "16", "--compression", "lzf", "--out", str(tmp_path / "x.h5")])
    assert "invalid choice: 'lzf'" in capsys.readouterr().err


def test_fit_help_documents_resume_and_nproc(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    assert "--resume RUN_DIR" in text and "--nproc N" in text and "torchrun" in text


def test_resuming_a_missing_run_exits_2(tmp_path, capsys):
    err = _error(capsys, ["fit", str(REPO / "recipes/smoke/itransformer.yaml"), "--resume", str(tmp_path / "nowhere")])
    assert "cannot resume: run directory" in err and "does not exist" in err
