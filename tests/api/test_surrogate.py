"""``Surrogate``: fit on a file or an xarray.Dataset, predict/rollout from every input kind, evaluate, save/load, a
run directory, MLflow pyfunc; and the code of docs/pde.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sciformer import Surrogate
from sciformer.data.generators import generate
from sciformer.data.pde import open_pdebench
from sciformer.data.xarray_io import to_xarray
from sciformer.errors import ConfigError, DataError, StorageError

DOC = Path(__file__).resolve().parents[2] / "docs" / "pde.md"
TINY = dict(d_model=8, n_heads=2, n_layers=1, d_ff=8, modes=2, freq_dim=4, n_regressor_layers=1)
SETTINGS = dict(initial_step=2, epochs=1, lr=1e-3, batch_size=16, progress=False)


@pytest.fixture(scope="module")
def burgers(tmp_path_factory):
    root = tmp_path_factory.mktemp("surrogate")
    path = generate("burgers1d", root / "b.h5", 10, 16, seed=2, nu=0.05, t_end=0.1, dt_save=0.02, progress=False)
    return path, Surrogate("galerkin", **TINY, **SETTINGS).fit(path)


@pytest.fixture(scope="module")
def test_set(burgers):
    with open_pdebench(burgers[0], "test", mode="trajectory") as ds:
        return to_xarray(ds)


def test_rollout_is_a_dataarray_with_time_and_grid_coordinates(burgers, test_set):
    _, sg = burgers
    u0 = test_set["tensor"].isel(t=slice(0, 2))
    traj = sg.rollout(u0, steps=3)
    assert traj.dims == ("sample", "t", "channel", "x") and traj.shape == (1, 3, 1, 16)
    assert traj["t"].values == pytest.approx([0.04, 0.06, 0.08])
    np.testing.assert_allclose(traj["x"].values, test_set["x"].values)
    one = sg.rollout(u0.isel(sample=0), steps=3)  # one unbatched history
    assert one.dims == ("t", "channel", "x")
    np.testing.assert_allclose(one.values, traj.values[0], rtol=1e-6)


def test_every_input_kind_gives_the_same_step(burgers, test_set):
    _, sg = burgers
    u0 = test_set["tensor"].isel(t=slice(0, 2)).transpose("sample", "t", "x").values[:, :, None]  # [1, 2, 1, 16]
    from_numpy = sg.predict(u0)
    from_torch = sg.predict(torch.from_numpy(u0))
    from_xarray = sg.predict(test_set.isel(t=slice(0, 2)))
    from_longer = sg.predict(test_set["tensor"].values[:, :, None])  # a whole trajectory: its last 2 frames
    assert isinstance(from_numpy, np.ndarray) and from_numpy.shape == (1, 1, 16)
    assert isinstance(from_torch, torch.Tensor)
    assert from_xarray.dims == ("sample", "channel", "x")
    np.testing.assert_allclose(from_torch.numpy(), from_numpy, rtol=1e-6)
    np.testing.assert_allclose(from_xarray.values, from_numpy, rtol=1e-6)
    np.testing.assert_allclose(sg.rollout(u0, 1).values[:, 0], from_numpy, rtol=1e-6)
    assert not np.allclose(from_longer, from_numpy)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, 2, 3, 16), np.float32), r"expected 1 channel\(s\), got 3"),
    (np.zeros((2, 16), np.float32), r"expected a field of shape \[B, T, C, \*grid\]"),
    (np.zeros((1, 1, 1, 16), np.float32), "the history has 1 frame"),
    (np.full((1, 2, 1, 16), np.nan, np.float32), "NaN or infinite"),
    ("text", "expected a field as a torch tensor"),
])
def test_bad_fields_are_one_line_data_errors(burgers, bad, message):
    with pytest.raises(DataError, match=message):
        burgers[1].predict(bad)


def test_rollout_steps_must_be_positive(burgers, test_set):
    with pytest.raises(ConfigError, match="--steps must be an integer >= 1, got 0"):
        burgers[1].rollout(test_set, 0)


def test_save_load_gives_identical_numbers_and_runs_load_too(burgers, test_set, tmp_path):
    sg = burgers[1]
    folder = sg.save(tmp_path / "model")
    assert {p.name for p in folder.iterdir()} == {"weights.safetensors", "config.json"}
    again = Surrogate.load(folder)
    np.testing.assert_array_equal(again.rollout(test_set, 2).values, sg.rollout(test_set, 2).values)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(StorageError, match="not a sciformer checkpoint"):
        sg.save(mine)  # a folder of the user's
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"


def test_fit_on_an_xarray_dataset_and_evaluate(burgers):
    path, sg = burgers
    with open_pdebench(path, "all", mode="trajectory") as ds:
        dataset = to_xarray(ds)
    other = Surrogate("galerkin", **TINY, **SETTINGS).fit(dataset)
    metrics = other.evaluate(path)
    assert {"test_nrmse", "test_rel_l2", "test_rmse", "rollout_steps"} <= set(metrics)
    assert metrics["test_nrmse"] > 0 and metrics["rollout_steps"] == 6 - 2
    assert sg.evaluate(dataset)["test_nrmse"] == pytest.approx(sg.evaluate(path)["test_nrmse"], rel=1e-5)


def test_arguments_are_checked():
    with pytest.raises(ConfigError, match="Surrogate got an unknown argument 'width'"):
        Surrogate("galerkin", width=3)
    with pytest.raises(ConfigError, match="Surrogate needs an operator model; 'patchtst' is a forecast model"):
        Surrogate("patchtst")
    with pytest.raises(DataError, match="not fitted yet"):
        Surrogate("galerkin", **TINY).predict(np.zeros((1, 1, 16)))


@pytest.mark.integration  # MLflow's model logging takes seconds
def test_log_model_serves_a_rollout(burgers, test_set, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        info = burgers[1].log_model()
        served = mlflow.pyfunc.load_model(info.model_uri)
        u0 = test_set["tensor"].isel(t=slice(0, 2)).values[:, :, None].astype(np.float32)
        out = served.predict(u0, params={"steps": 3})
    finally:
        mlflow.set_tracking_uri(None)
    np.testing.assert_allclose(out, burgers[1].rollout(u0, 3).values, rtol=1e-6)


@pytest.mark.cupy
def test_cupy_arrays_cross_without_a_copy(burgers, test_set):
    cupy = pytest.importorskip("cupy")
    sg = Surrogate.load(burgers[1].save(Path(burgers[0]).parent / "gpu_model"), device="cuda")
    u0 = test_set["tensor"].isel(t=slice(0, 2)).values[:, :, None].astype(np.float32)
    got = sg.predict(cupy.asarray(u0))
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(got), burgers[1].predict(u0), rtol=1e-4, atol=1e-5)


def test_pde_guide_surrogate_code_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = DOC.read_text()
    section = text[text.index("## From Python: `Surrogate`"):]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    assert namespace["traj"].shape == (2, 5, 1, 32) and namespace["next_frame"].shape == (2, 1, 32)
    np.testing.assert_array_equal(namespace["same"].values, namespace["traj"].values)
    assert namespace["metrics"]["test_nrmse"] > 0


def test_load_opens_a_fit_run_directory(burgers, test_set, tmp_path):
    from sciformer.config import recipe_from_dict
    from sciformer.engine.runner import fit_recipe

    path, _ = burgers
    recipe = {"data": {"name": str(path), "initial_step": 2}, "model": {"name": "galerkin", **TINY}, "seed": 0,
              "train": {"epochs": 1, "batch_size": 16, "progress": False}, "tracking": {"enabled": False}}
    run = fit_recipe(recipe_from_dict(recipe), tmp_path / "run").run_dir
    sg = Surrogate.load(run)
    traj = sg.rollout(test_set, steps=2)  # a whole trajectory: the rollout continues after its last frame (t = 0.1)
    assert traj.dims == ("sample", "t", "channel", "x") and traj["t"].values == pytest.approx([0.12, 0.14])
    import json

    from sciformer.engine.checkpoint import find_checkpoint

    config_file = find_checkpoint(run) / "config.json"
    config = json.loads(config_file.read_text())
    assert config["data"]["n_frames"] == 6  # t = 0, 0.02, ..., 0.1
    del config["data"]["n_frames"]  # an older run's checkpoint: the frames are read from its data
    config_file.write_text(json.dumps(config))
    assert Surrogate.load(run).rollout(test_set, steps=2)["t"].values == pytest.approx([0.12, 0.14])


def test_steady_darcy_maps_a_coefficient_to_a_solution(tmp_path):
    path = generate("darcy2d", tmp_path / "d.h5", 10, 8, progress=False)
    sg = Surrogate("galerkin", **TINY, epochs=1, batch_size=16, progress=False).fit(path)
    with open_pdebench(path, "test", mode="trajectory") as ds:
        block = ds.trajectory_block(0, ds.n_samples)  # [n, 2, 1, X, Y]: coefficient, solution
    field = sg.predict(block[:, 0])
    assert field.shape == (1, 1, 8, 8) and sg.steady
    with pytest.raises(DataError, match="no time to roll out"):
        sg.rollout(block[:, 0], 2)
    again = Surrogate.load(sg.save(tmp_path / "model"))
    np.testing.assert_array_equal(again.predict(block[:, 0]), field)


def test_from_recipe_takes_the_recipes_model_and_settings():
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "smoke" / "galerkin.yaml"
    sg = Surrogate.from_recipe(recipe, ["train.epochs=3"])
    assert sg.recipe.model.name == "galerkin" and sg.recipe.train.epochs == 3 and sg.model is None


def test_two_channels_on_a_2d_grid_keep_the_files_names_and_coordinates(tmp_path):
    path = generate("diffreact2d", tmp_path / "dr.h5", 10, 8, t_end=0.1, progress=False)
    sg = Surrogate("galerkin", **TINY, epochs=1, progress=False).fit(path)
    traj = sg.rollout(np.zeros((1, 1, 2, 8, 8), np.float32), 2)
    assert traj.dims == ("sample", "t", "channel", "x", "y") and list(traj["channel"].values) == ["u", "v"]
    assert traj["x"].values[0] == pytest.approx(-0.875) and traj["t"].values == pytest.approx([0.05, 0.1])
