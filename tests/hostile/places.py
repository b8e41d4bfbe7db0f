"""Recipes, run copies and the user's own files that the hostile cases start from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
from conftest import write_csv

TINY_SERIES = {"name": "itransformer", "d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1}
TINY_OPERATOR = {"name": "galerkin", "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8, "modes": 2, "freq_dim": 4, "n_regressor_layers": 1}
TRAIN = {"epochs": 1, "batch_size": 32, "patience": 0, "progress": False}


def series_recipe(data: str, **data_keys) -> dict:
    return {"data": {"name": data, "lookback": 16, "horizon": 8, **data_keys}, "model": TINY_SERIES, "train": TRAIN, "tracking": {"enabled": False}, "seed": 0}


def operator_recipe(data: str) -> dict:
    return {"data": {"name": data}, "model": TINY_OPERATOR, "train": {**TRAIN, "batch_size": 8}, "tracking": {"enabled": False}, "seed": 0}


def write_recipe(path: Path, raw: dict) -> Path:
    path.write_text(json.dumps(raw))  # JSON is YAML
    return path


def copy_run(world: Path, ws: Path, name: str) -> Path:
    return Path(shutil.copytree(world / name, ws / name, symlinks=True))


def users_folder(ws: Path) -> Path:
    """A folder of the user's (made once; a second call returns it as it is)."""
    if not (ws / "thesis").exists():
        (ws / "thesis").mkdir()
        (ws / "thesis" / "thesis.tex").write_text("\\documentclass{article} years of work")
    return ws / "thesis"


def users_file(ws: Path, name: str = "notes.txt") -> Path:
    if not (ws / name).exists():
        (ws / name).write_text("the user's own file")
    return ws / name


def gappy_csv(ws: Path) -> Path:
    frame = pd.read_csv(write_csv(ws / "h.csv", n_rows=80))
    frame.drop(index=[70]).to_csv(ws / "h.csv", index=False)
    return ws / "h.csv"


BIG = "9" * 5000  # digits of an integer beyond any limit
