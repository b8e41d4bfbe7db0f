"""The ``sciformer`` command on tiny runs: intermixed fit arguments, ``fit --resume RUN`` alone, ``predict --out``,
``rollout`` on the run's own data."""

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_csv

from sciformer.cli import main
from sciformer.config import recipe_from_dict
from sciformer.engine.callbacks import Callback
from sciformer.engine.runner import fit_recipe

TINY_MODEL = {"name": "itransformer", "d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1}


def tiny_recipe(tmp_path: Path, epochs: int = 1) -> dict:
    return {
        "data": {"name": str(write_csv(tmp_path / "series.csv", n_rows=300)), "lookback": 24, "horizon": 12},
        "model": TINY_MODEL,
        "train": {"epochs": epochs, "batch_size": 64, "lr": 3e-3, "patience": 0, "progress": False},
        "tracking": {"enabled": False},
        "seed": 0,
    }


def _recipe_file(tmp_path: Path, raw: dict) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    return str(path)


class Crash(BaseException):
    """Stands in for the process dying after an epoch (not an Exception: nothing on the way catches it)."""


class CrashAtEpoch(Callback):
    """Dies when epoch 2 ends, before its state is saved: epoch 1's state is on disk."""

    def on_epoch_end(self, epoch, logs):
        if epoch == 2:
            raise Crash(f"died at the end of epoch {epoch}")


def test_fit_takes_overrides_after_the_options(tmp_path, capsys):
    recipe = _recipe_file(tmp_path, tiny_recipe(tmp_path))
    assert main(["fit", recipe, "--out", "runs/mine", "data.horizon=6", "model.d_model=4"]) == 0
    config = json.loads(Path("runs/mine/checkpoint/config.json").read_text())
    assert config["recipe"]["data"]["horizon"] == 6 and config["model"]["args"]["d_model"] == 4
    assert "run directory: runs/mine" in capsys.readouterr().out


def test_resume_alone_continues_with_the_runs_own_recipe(tmp_path, capsys):
    raw = tiny_recipe(tmp_path, epochs=3)
    with pytest.raises(Crash):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run", [CrashAtEpoch()])
    err = main(["fit", "--resume", "run", "train.lr=0.5"])
    assert err == 2 and "recipe differs" in capsys.readouterr().err  # what it computes cannot change on resume
    assert main(["fit", "--resume", "run", "train.progress=false"]) == 0  # how it runs may
    assert "run directory: run" in capsys.readouterr().out
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]


def test_predict_writes_a_new_file_and_never_overwrites_one(tmp_path, capsys):
    fit_recipe(recipe_from_dict(tiny_recipe(tmp_path)), tmp_path / "run")
    assert main(["predict", "run", "--out", "forecast.csv", "--level", "90"]) == 0
    forecast = pd.read_csv(tmp_path / "forecast.csv")
    assert len(forecast) == 12 and {"OT", "OT-lo-90", "OT-hi-90"} <= set(forecast.columns)
    capsys.readouterr()
    (tmp_path / "mine.csv").write_text("the user's own file")
    assert main(["predict", "run", "--out", "mine.csv"]) == 2
    assert "cannot write 'mine.csv': it exists" in capsys.readouterr().err
    assert (tmp_path / "mine.csv").read_text() == "the user's own file"


def test_rollout_defaults_to_the_runs_own_data(tmp_path, capsys):
    raw = {
        "data": {"name": str(tmp_path / "burgers.h5"), "generate": {"generator": "burgers1d", "n": 10, "res": 16, "nu": 0.01, "t_end": 0.1, "dt_save": 0.02}},
        "model": {"name": "galerkin", "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8, "modes": 2, "freq_dim": 4, "n_regressor_layers": 1},
        "train": {"epochs": 1, "batch_size": 8, "progress": False},
        "tracking": {"enabled": False},
        "seed": 0,
    }
    fit_recipe(recipe_from_dict(raw), tmp_path / "run")
    capsys.readouterr()
    assert main(["rollout", "run", "--steps", "2", "--no-tracking"]) == 0
    assert "rollout of 2 steps written to run/rollout" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "run" / "rollout" / "metrics.json").read_text())["per_step"]["nrmse"]) == 2
