"""Shared fixtures. Unit tests read the small committed files of tests/fixtures/ (``ett_like_csv``, ``burgers_h5``,
``darcy_h5``: copies in the test's own directory). Real data comes from $SCIFORMER_DATA_DIR (CI: ../shared/datasets);
tests that need it (``data_dir``) skip with a reason when it is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # written by tests/fixtures/make_fixtures.py
_SHARED = REPO.parent / "shared" / "datasets"
if "SCIFORMER_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["SCIFORMER_DATA_DIR"] = str(_SHARED)
if os.environ.get("SCIFORMER_DATA_DIR"):
    # CI passes a relative path (../shared/datasets); tests run in their own temporary directories
    os.environ["SCIFORMER_DATA_DIR"] = str(Path(os.environ["SCIFORMER_DATA_DIR"]).resolve())


NO_DATA = "real benchmark data not found: set SCIFORMER_DATA_DIR to ../shared/datasets"


def benchmark_data() -> Path | None:
    """The real-data directory ($SCIFORMER_DATA_DIR), or None where it lacks the ETT files."""
    path = Path(os.environ.get("SCIFORMER_DATA_DIR", ""))
    return path if (path / "ETT-small" / "ETTh1.csv").is_file() else None


@pytest.fixture
def data_dir() -> Path:
    path = benchmark_data()
    if path is None:
        pytest.skip(NO_DATA)
    return path


def _fixture_copy(name: str, tmp_path: Path) -> Path:
    copy = tmp_path / "fixtures" / name
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(FIXTURES / name, copy)
    return copy


@pytest.fixture
def ett_like_csv(tmp_path) -> Path:
    """200 hourly rows with ETTh1's columns (``date`` first, ``OT`` last); too short for the ETT split, so use it
    as a custom CSV (``data.name: <path>``, 7:1:2 split) with a short lookback."""
    return _fixture_copy("ett_like.csv", tmp_path)


@pytest.fixture
def burgers_h5(tmp_path) -> Path:
    """10 Burgers trajectories ``tensor [10, 201, 16]`` in PDEBench's single-file layout (9 train, 1 test)."""
    return _fixture_copy("burgers1d_tiny.h5", tmp_path)


@pytest.fixture
def darcy_h5(tmp_path) -> Path:
    """10 Darcy samples on an 8² grid: ``nu [10, 8, 8]`` and ``tensor [10, 1, 8, 8]`` (9 train, 1 test)."""
    return _fixture_copy("darcy2d_tiny.h5", tmp_path)


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Run every test in its own directory so runs/, mlflow.db and ./data never touch the checkout."""
    monkeypatch.chdir(tmp_path)


def write_csv(path: Path, n_rows: int = 600, n_cols: int = 3, freq: str = "h", seed: int = 0, columns: list[str] | None = None) -> Path:
    """A small synthetic series: sines plus noise, a ``date`` column first."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows)
    columns = columns or [f"v{i}" for i in range(n_cols - 1)] + ["OT"]
    values = np.stack([np.sin(2 * np.pi * t / (24 + 5 * i)) + 0.1 * rng.standard_normal(n_rows) for i in range(len(columns))], axis=1)
    frame = pd.DataFrame(values, columns=columns)
    frame.insert(0, "date", pd.date_range("2020-01-01", periods=n_rows, freq=freq).strftime("%Y-%m-%d %H:%M:%S"))
    frame.to_csv(path, index=False)
    return path



def tiny_forecast_recipe(tmp_path: Path, **train) -> dict:
    """A raw recipe that fits a tiny iTransformer on a 160-row CSV in about a second; ``train`` overrides its train keys."""
    path = write_csv(tmp_path / "s.csv", n_rows=160)
    return {
        "data": {"name": str(path), "lookback": 16, "horizon": 8},
        "model": {"name": "itransformer", "d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1},
        "train": {"epochs": 1, "batch_size": 32, "patience": 0, "progress": False, **train},
        "tracking": {"enabled": False},
    }
