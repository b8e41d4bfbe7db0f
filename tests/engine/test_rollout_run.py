"""``rollout_run``: one rollout path over the data source ``fit`` read (each source kind, no --data), overrides
with any source fit accepts, and what it refuses (steps < 1, foreign output folders, data it would have to
generate)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from sciformer.config import recipe_from_dict
from sciformer.data.generators import generate
from sciformer.data.pde import open_pdebench
from sciformer.data.xarray_io import to_xarray, write_netcdf
from sciformer.engine.rollout import rollout, rollout_run
from sciformer.engine.runner import fit_recipe
from sciformer.errors import ConfigError, DataError, StorageError

TINY = {"name": "galerkin", "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8, "modes": 2, "freq_dim": 4, "n_regressor_layers": 1}
BURGERS = dict(nu=0.05, t_end=0.1, dt_save=0.02, progress=False)  # 6 frames on 16 cells


def _fit(data, run_dir, generate_spec=None):
    recipe = {"data": {"name": str(data), "initial_step": 2}, "model": TINY, "seed": 0, "tracking": {"enabled": False},
              "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "progress": False}}
    if generate_spec:
        recipe["data"]["generate"] = generate_spec
    return fit_recipe(recipe_from_dict(recipe), run_dir).run_dir


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same 10 Burgers trajectories as PDEBench HDF5 (single and group layouts), NetCDF and neuraloperator .npz."""
    root = tmp_path_factory.mktemp("sources")
    single = generate("burgers1d", root / "single.h5", 10, 16, seed=1, **BURGERS)
    group = generate("burgers1d", root / "group.hdf5", 10, 16, seed=1, layout="group", **BURGERS)
    with open_pdebench(single, "all", mode="trajectory") as ds:
        write_netcdf(to_xarray(ds), root / "burgers.nc")
    with h5py.File(single) as f:
        u = f["tensor"][:]  # [N, T, X]
    np.savez(root / "burgers.npz", x=u[:, 0], y=u)
    return {"single": single, "group": group, "netcdf": root / "burgers.nc", "npz": root / "burgers.npz"}


@pytest.fixture(scope="module")
def runs(files, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {kind: _fit(path, root / kind) for kind, path in files.items()}


@pytest.mark.parametrize("kind", ["single", "group", "netcdf", "npz"])
def test_rollout_reads_the_runs_own_source_and_split(runs, kind):
    result = rollout_run(runs[kind], steps=3, figures=kind == "single")
    out = runs[kind] / "rollout"
    assert result["out_dir"] == str(out) and result["steps"] == 3
    assert result["samples"] == 1  # the test split: a tenth of 10 samples
    per_step = json.loads((out / "metrics.json").read_text())["per_step"]
    assert len(per_step["nrmse"]) == 3 and all(v > 0 for v in per_step["nrmse"])
    names = {p.name for p in out.iterdir()}
    assert {"metrics.csv", "predictions.nc"} <= names
    assert ({"error_vs_step.png", "step_3.png", "rollout.gif"} <= names) == (kind == "single")


def test_all_sources_give_the_same_rollout_of_one_model(runs, files, tmp_path):
    """One model, the same trajectories in three formats: the same per-step errors over all samples (the layouts
    put the test samples at different ends), and the file's coordinates."""
    import xarray as xr

    scores = [rollout_run(runs["single"], data=files[kind], split="all", steps=4, out=tmp_path / kind, figures=False)["nrmse_mean"]
              for kind in files]
    assert scores == pytest.approx([scores[0]] * len(files), rel=1e-5)
    with xr.open_dataset(tmp_path / "netcdf" / "predictions.nc") as ds:
        assert ds["pred_0"].shape == (10, 4, 16)
        assert ds["t"].values == pytest.approx([0.04, 0.06, 0.08, 0.1])
        assert ds["x"].values[0] == pytest.approx(1 / 32)


def test_default_steps_cover_the_trajectory_and_splits(runs):
    result = rollout_run(runs["single"], split="train", out=runs["single"] / "train_rollout", figures=False)
    assert result["steps"] == 6 - 2 and result["samples"] == 8  # 9 training samples, the last one validates


@pytest.mark.parametrize("steps, error, message", [
    (0, ConfigError, "--steps must be an integer >= 1, got 0"),
    (-3, ConfigError, "--steps must be an integer >= 1"),
    (5, DataError, "--steps 5 goes beyond the data: the trajectories have 6 frames, 2 of them"),
])
def test_bad_steps_are_one_line_errors(runs, steps, error, message, tmp_path):
    with pytest.raises(error, match=message) as info:
        rollout_run(runs["single"], steps=steps, out=tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_folder_of_the_users_is_refused_untouched(runs, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("chapter 1")
    with pytest.raises(StorageError, match=r"holds files a rollout did not write \(thesis.tex\)"):
        rollout_run(runs["single"], steps=1, out=out, figures=False)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"] and (out / "thesis.tex").read_text() == "chapter 1"


def test_rollout_never_generates_data(files, tmp_path):
    """A run whose recipe generated its file: once the file is gone, rollout refuses instead of simulating it."""
    data = tmp_path / "made.h5"
    run = _fit(data, tmp_path / "run", {"generator": "burgers1d", "n": 10, "res": 16, **{k: v for k, v in BURGERS.items() if k != "progress"}})
    data.unlink()
    with pytest.raises(DataError, match="does not exist"):
        rollout_run(run, steps=1, out=tmp_path / "out")
    assert not data.exists() and not (tmp_path / "out").exists()


def test_time_conditioned_lead_times_span_the_training_length():
    """all_to_all models get lead j/(n_frames − 1) of the trajectories they were trained on, however few steps."""
    seen = []

    class Lead(torch.nn.Module):
        def forward(self, u, t):
            seen.append(t[0].item())
            return u

    rollout(Lead(), torch.zeros(1, 1, 1, 4), 1, 2, time_conditioned=True, n_frames=11)
    assert seen == pytest.approx([0.1, 0.2])
