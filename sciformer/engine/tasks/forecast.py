"""Long-term forecasting of time series: windows ``x [B, L, N]`` → ``[B, H, N]`` on scaled values.

A forecasting checkpoint carries what a real forecast needs without the data file: the columns, the scaler, the
sampling frequency, the newest ``lookback`` rows with their timestamps, and conformal calibration scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sciformer.config import Recipe
from sciformer.data.operator import is_operator_dataset
from sciformer.data.timeseries import TimeSeriesData
from sciformer.engine.conformal import calibration_scores
from sciformer.engine.plots import forecast_figure, save_figure
from sciformer.engine.tasks.base import Task
from sciformer.engine.trainer import Trainer
from sciformer.errors import ConfigError, DataError


class ForecastTask(Task):
    name = "forecast"
    data_kind = "a time series"
    plot_file = "forecast.png"

    def handles(self, data_name: str) -> bool:
        return not is_operator_dataset(data_name)

    def load_data(self, recipe: Recipe, *, allow_generate: bool, checkpoint: dict[str, Any] | None = None) -> TimeSeriesData:
        if recipe.train.augment != "none":
            raise ConfigError(f"train.augment={recipe.train.augment} rotates PDE fields; data '{recipe.data.name}' is a time series")
        scaler = None
        if checkpoint is not None:
            stats = checkpoint["data"]["scaler"]
            scaler = (np.asarray(stats["mean"]), np.asarray(stats["std"]))
        return TimeSeriesData.from_config(recipe.data, scaler=scaler)

    def data_sizes(self, data: TimeSeriesData, recipe: Recipe) -> dict[str, Any]:
        return data_sizes(data, recipe)

    def fingerprint(self, data: TimeSeriesData, recipe: Recipe) -> str:
        return data.fingerprint

    def checkpoint_config(self, recipe: Recipe, data: TimeSeriesData) -> dict[str, Any]:
        return checkpoint_config(recipe, data)

    def interim_extras(self, data: TimeSeriesData) -> dict[str, torch.Tensor]:
        return history_tensors(data.tail, data.timestamps[-data.lookback :])

    def final_extras(self, model: torch.nn.Module, data: TimeSeriesData, batch_size: int) -> dict[str, torch.Tensor]:
        return checkpoint_extras(model, data, batch_size)

    @torch.no_grad()
    def plot(self, model: torch.nn.Module, data: TimeSeriesData, recipe: Recipe, path: Path) -> Path:
        return plot_forecasts(model, data, path, title=f"{recipe.model.name} on {recipe.data.name}")

    def evaluate(self, model: torch.nn.Module, checkpoint: dict[str, Any], recipe: Recipe, device: torch.device, run_dir: Path) -> dict[str, Any]:
        data = self.load_data(recipe, allow_generate=False, checkpoint=checkpoint).to(device)
        trained_on = checkpoint["data"]["columns"]
        if data.columns != trained_on:
            raise DataError(f"the data of run '{run_dir}' now has columns {data.columns}; the checkpoint was trained on {trained_on}")
        test = Trainer(model, recipe.train, device, seed=recipe.seed).evaluate(data, "test")
        return {"test_mse": test["mse"], "test_mae": test["mae"], "data_changed": data.fingerprint != checkpoint["data"]["fingerprint"]}


def data_sizes(data: TimeSeriesData, recipe: Recipe) -> dict[str, Any]:
    return {
        "n_vars": data.n_vars,
        "n_marks": data.n_marks,
        "lookback": recipe.data.lookback,
        "horizon": recipe.data.horizon,
        "label_len": recipe.data.label_len,
    }


def checkpoint_config(recipe: Recipe, data: TimeSeriesData) -> dict[str, Any]:
    """The checkpoint entries of a forecaster trained on ``data`` (also what :class:`~sciformer.api.forecaster.Forecaster` saves)."""
    return {
        "model": {"name": recipe.model.name, "args": recipe.model.args, "data_sizes": data_sizes(data, recipe)},
        "recipe": recipe.to_dict(),
        "data": {
            "name": recipe.data.name,
            "columns": data.columns,
            "scaler": data.scaler_state(),
            "fingerprint": data.fingerprint,
            "freq": data.freq,
            "time_features": data.time_features_freq,
            "last_timestamp": str(data.timestamps[-1]),
        },
    }


def checkpoint_extras(model: torch.nn.Module, data: TimeSeriesData, batch_size: int) -> dict[str, torch.Tensor]:
    """Conformal scores of the validation windows and the newest lookback rows (with their timestamps), so a
    checkpoint alone can forecast the real future with intervals."""
    return {"calibration_scores": calibration_scores(model, data.batches("val", batch_size)), **history_tensors(data.tail, data.timestamps[-data.lookback :])}


def history_tensors(values: np.ndarray, index: pd.DatetimeIndex) -> dict[str, torch.Tensor]:
    """History rows (original units, float64) and their timestamps (int64 nanoseconds) for a checkpoint."""
    return {"history": torch.tensor(values, dtype=torch.float64), "history_time_ns": torch.from_numpy(index.as_unit("ns").asi8.copy())}


def history_frame(extras: dict[str, torch.Tensor], columns: list[str]) -> pd.DataFrame | None:
    """The history saved by :func:`history_tensors`, as a frame indexed by its timestamps."""
    if "history" not in extras:
        return None
    index = pd.DatetimeIndex(extras["history_time_ns"].numpy().astype("datetime64[ns]"))
    return pd.DataFrame(extras["history"].numpy(), index=index, columns=columns)


@torch.no_grad()
def plot_forecasts(model: torch.nn.Module, data: TimeSeriesData, path: Path, n_windows: int = 3, max_vars: int = 3, title: str = "") -> Path:
    """History, truth and forecast for a few evenly spaced test windows and the last ``max_vars`` variables."""
    model.eval()
    r = data.splits["test"]
    picks = torch.linspace(0, r.n_windows - 1, n_windows).long() + r.start
    batch = data.gather(picks.to(data.values.device))
    pred = model(batch.x, batch.x_mark, batch.y_mark).float()
    cols = list(range(max(0, data.n_vars - max_vars), data.n_vars))
    as_np = lambda t: t[..., cols].cpu().numpy()  # noqa: E731
    fig = forecast_figure(as_np(batch.x), as_np(batch.y), as_np(pred), [data.columns[c] for c in cols], title)
    return save_figure(fig, path)
