"""Operator training through the runner, rollout files, and the errors of rollout/evaluate."""

import json
import shutil
from pathlib import Path

import h5py
import pytest
import torch

from sciformer.cli import main
from sciformer.config import load_recipe, recipe_from_dict
from sciformer.engine.checkpoint import find_checkpoint, read_config
from sciformer.engine.runner import fit_recipe

TINY_GALERKIN = {"name": "galerkin", "d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 16, "modes": 4, "freq_dim": 8, "n_regressor_layers": 1}


def _burgers_recipe(path: Path, mode: str = "one_step", **train) -> dict:
    return {
        "data": {"name": str(path), "generate": {"generator": "burgers1d", "n": 12, "res": 32, "nu": 0.01, "t_end": 0.3, "dt_save": 0.02}},
        "model": TINY_GALERKIN,
        "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "loss": "rel_l2", "mode": mode, "progress": False, **train},
        "tracking": {"enabled": False},
        "seed": 0,
    }


@pytest.fixture(scope="module")
def burgers_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("burgers")
    recipe = recipe_from_dict(_burgers_recipe(root / "burgers.h5"))
    result = fit_recipe(recipe, root / "run")
    return root, result


def test_recipe_generates_missing_data_and_trains(burgers_run):
    root, result = burgers_run
    assert (root / "burgers.h5").is_file()
    with h5py.File(root / "burgers.h5") as f:
        assert f["tensor"].shape == (12, 16, 32)
    m = result.metrics
    assert {"test_rel_l2", "test_nrmse", "rollout_nrmse_step10", "rollout_steps"} <= set(m) and m["rollout_steps"] == 15
    assert (result.run_dir / "fields.png").is_file()


@pytest.mark.parametrize("mode", ["unroll", "all_to_all"])
def test_other_training_modes(tmp_path, burgers_run, mode):
    root, _ = burgers_run
    recipe = recipe_from_dict(_burgers_recipe(root / "burgers.h5", mode, unroll_steps=3))
    metrics = fit_recipe(recipe, tmp_path / "run").metrics
    assert metrics["test_rel_l2"] > 0 and metrics["rollout_steps"] == 15


def test_rollout_writes_metrics_plots_gif_and_netcdf(burgers_run, tmp_path, capsys):
    root, result = burgers_run
    out = tmp_path / "rollout"
    assert main(["rollout", str(result.run_dir), "--data", str(root / "burgers.h5"), "--steps", "8", "--out", str(out),
                 "--frames", "1", "8", "--split", "all", "--no-tracking"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"metrics.csv", "metrics.json", "error_vs_step.png", "step_1.png", "step_8.png", "rollout.gif", "predictions.nc"} <= names
    per_step = json.loads((out / "metrics.json").read_text())["per_step"]
    assert len(per_step["nrmse"]) == 8 and all(v > 0 for v in per_step["nrmse"])
    import xarray as xr

    with xr.open_dataset(out / "predictions.nc") as ds:
        assert ds["pred_0"].shape == ds["true_0"].shape == (12, 8, 32)


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_rollout_steps_beyond_the_file(burgers_run, capsys):
    root, result = burgers_run
    err = _error(capsys, ["rollout", str(result.run_dir), "--data", str(root / "burgers.h5"), "--steps", "40", "--no-tracking"])
    assert "--steps 40 goes beyond the data: the trajectories have 16 frames" in err


def test_rollout_on_data_of_other_dimensionality(burgers_run, tmp_path, capsys):
    _, result = burgers_run
    assert main(["datasets", "generate", "diffreact2d", "--n", "12", "--res", "8", "--out", str(tmp_path / "dr.h5")]) == 0
    err = _error(capsys, ["rollout", str(result.run_dir), "--data", str(tmp_path / "dr.h5"), "--steps", "2", "--split", "all", "--no-tracking"])
    assert "has 2 channel(s) on a 2D grid; the checkpoint" in err and "expects 1 channel(s) on a 1D grid" in err


@pytest.mark.parametrize("mode", ["one_step", "unroll", "all_to_all"])
def test_residual_model_trains_rolls_out_and_reloads(tmp_path, burgers_run, capsys, mode):
    root, _ = burgers_run
    raw = _burgers_recipe(root / "burgers.h5", mode, unroll_steps=2)
    raw["data"]["initial_step"] = 2  # two history frames: the hook must add the latest (all_to_all uses one)
    raw["model"] = {**TINY_GALERKIN, "residual": True}
    result = fit_recipe(recipe_from_dict(raw), tmp_path / "run")
    assert result.metrics["rollout_steps"] > 0 and result.metrics["test_rel_l2"] > 0
    assert read_config(find_checkpoint(tmp_path / "run", "checkpoint"))["model"]["args"]["residual"] is True
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    reloaded = json.loads(out[: out.rindex("}") + 1])  # the checkpoint rebuilds the hook: the same figures
    assert reloaded["test_rel_l2"] == pytest.approx(result.metrics["test_rel_l2"], rel=1e-5)


@pytest.mark.parametrize("mode", ["one_step", "all_to_all"])
def test_normalized_model_keeps_the_training_statistics_rolls_out_and_reloads(tmp_path, burgers_run, capsys, mode):
    from safetensors.torch import load_file

    from sciformer.engine.runner import load_data

    root, _ = burgers_run
    raw = _burgers_recipe(root / "burgers.h5", mode)
    raw["data"]["initial_step"] = 1 if mode == "all_to_all" else 2
    raw["model"] = {**TINY_GALERKIN, "residual": True, "normalize": True}
    recipe = recipe_from_dict(raw)
    result = fit_recipe(recipe, tmp_path / "run")
    assert result.metrics["rollout_steps"] > 0 and 0 < result.metrics["test_rel_l2"] < 10
    weights = load_file(find_checkpoint(tmp_path / "run", "checkpoint") / "weights.safetensors")
    in_mean, in_std, out_mean, out_std = load_data(recipe, allow_generate=False).field_statistics()
    assert torch.equal(weights["field_out_shift"], out_mean) and torch.equal(weights["field_in_scale"], in_std)
    assert abs(float(out_mean)) > 1e-3 and float(out_std) != 1.0  # real statistics, not the identity
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[: out.rindex("}") + 1])["test_rel_l2"] == pytest.approx(result.metrics["test_rel_l2"], rel=1e-5)


def test_normalize_on_mixture_data_is_rejected(tmp_path, burgers_run):
    from sciformer.errors import ConfigError

    root, _ = burgers_run
    raw = _burgers_recipe(root / "burgers.h5")
    raw["data"] = {"name": "mixture", "mixture": [{"path": str(root / "burgers.h5")}]}
    raw["model"] = {**TINY_GALERKIN, "normalize": True}
    with pytest.raises(ConfigError, match=r"model.normalize .* is a mixture with presence channels"):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run")


def test_residual_on_steady_data_is_rejected(data_dir, tmp_path):
    from sciformer.errors import ConfigError

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "smoke" / "galerkin.yaml", ["model.residual=true"])
    with pytest.raises(ConfigError, match=r"model.residual .* 'darcy_small' is a steady problem"):
        fit_recipe(recipe, tmp_path / "run")


def test_forecasting_model_on_pde_data_is_rejected(tmp_path, burgers_run):
    root, _ = burgers_run
    from sciformer.errors import ConfigError

    raw = {"data": {"name": str(root / "burgers.h5")}, "model": {"name": "itransformer"}, "tracking": {"enabled": False}}
    with pytest.raises(ConfigError, match=r"model 'itransformer' is a forecast model, but data .* is PDE"):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run")


def test_evaluate_never_generates_the_data_a_checkpoint_names(burgers_run, tmp_path, capsys):
    _, result = burgers_run
    run = tmp_path / "crafted"
    shutil.copytree(result.run_dir, run)
    config_path = run / "checkpoint" / "config.json"
    config = json.loads(config_path.read_text())
    elsewhere = tmp_path / "elsewhere" / "big.h5"
    config["recipe"]["data"]["name"] = str(elsewhere)  # with data.generate still in the recipe
    config_path.write_text(json.dumps(config))
    assert "does not exist" in _error(capsys, ["evaluate", str(run)])
    assert not elsewhere.exists() and not elsewhere.parent.exists()


@pytest.mark.integration  # a CLI fit and two evaluations on the real Darcy set
def test_darcy_galerkin_evaluates_at_an_unseen_resolution(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "smoke" / "galerkin.yaml"
    assert main(["fit", str(recipe), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "data.test_resolution=32"]) == 0
    at_32 = json.loads(capsys.readouterr().out)
    assert 0 < at_32["test_rel_l2"] < 1
    assert "only data.* keys" in _error(capsys, ["evaluate", str(out), "model.d_model=8"])
