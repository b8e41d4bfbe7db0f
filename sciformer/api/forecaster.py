"""``Forecaster``: fit any registered forecaster on your own data and forecast the real future.

    fc = Forecaster("patchtst", horizon=96, lookback=336).fit(df)       # wide/long DataFrame, xarray, CSV path
    future = fc.predict(level=[80, 95])                                  # next 96 timestamps, original units
    fc.save("model/"); Forecaster.load("model/").predict()              # identical numbers

A thin layer over the engine (the same :class:`~sciformer.engine.trainer.Trainer` and checkpoint format as
``sciformer fit``): the validation windows are the last ``val_size`` of the data, and they also calibrate the
split-conformal intervals (:mod:`sciformer.engine.conformal`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sciformer.config import DATA_FILLED, Recipe, TrainConfig, load_recipe, recipe_from_dict, stored_recipe
from sciformer.data.frames import Layout, from_wide, to_wide, with_intervals
from sciformer.data.series_checks import check_finite, excerpt, future_index, quote_columns, regular_frequency
from sciformer.data.series_xarray import Bounds
from sciformer.data.timefeatures import time_features
from sciformer.data.timeseries import TimeSeriesData
from sciformer.engine.callbacks import CallbackList
from sciformer.engine.checkpoint import load_model, read_config, read_extras, save_checkpoint
from sciformer.engine.conformal import interval
from sciformer.engine.tasks import train
from sciformer.engine.tasks.forecast import checkpoint_config, checkpoint_extras, history_frame, history_tensors
from sciformer.engine.trainer import pick_device, seed_everything
from sciformer.errors import CheckpointError, ConfigError, DataError, did_you_mean, user_path
from sciformer.registry import get_model

_TRAIN_KEYS = set(TrainConfig.__dataclass_fields__)
_NOT_FITTED = "this Forecaster is not fitted yet: call fit(data) or Forecaster.load(dir) first"


@dataclass
class Backtest:
    """``windows``: one row per forecast origin; ``summary``: MSE/MAE over all windows, scaled and original units."""

    windows: pd.DataFrame
    summary: pd.DataFrame


class Forecaster:
    """Fit/predict/backtest/save for any registered forecasting model.

    Keyword arguments are constructor arguments of the model (``d_model=128``) or keys of a recipe's ``train``
    section (``epochs=5, lr=1e-3``); ``seed`` and ``tracking`` (bool, or a ``tracking`` mapping) are accepted too.
    Tracking is off unless asked for.

    Errors: an invalid argument (unknown keyword, a level, a window count, a column to plot) raises
    :class:`~sciformer.errors.ConfigError`; data that cannot be used (unreadable, non-finite, gaps, too short,
    other columns) raises :class:`~sciformer.errors.DataError`. Both subclass ``SciformerError``.
    """

    def __init__(self, model: str, horizon: int, lookback: int, **overrides: Any) -> None:
        model_args, train_args = {}, {}
        seed = overrides.pop("seed", 2021)
        tracking = overrides.pop("tracking", False)
        label_len = overrides.pop("label_len", None)
        accepted = inspect.signature(get_model(model).__init__).parameters
        for key, value in overrides.items():
            if key in _TRAIN_KEYS:
                train_args[key] = value
            elif key in accepted and key not in DATA_FILLED:
                model_args[key] = value
            else:
                raise ConfigError(
                    f"Forecaster got an unknown argument '{key}'{did_you_mean(key, [*accepted, *_TRAIN_KEYS])}: expected a "
                    f"'{model}' model argument or a train setting ({', '.join(sorted(_TRAIN_KEYS))})"
                )
        raw = {
            "data": {"lookback": lookback, "horizon": horizon, "label_len": label_len},
            "model": {"name": model, **model_args},
            "train": train_args,
            "tracking": tracking if isinstance(tracking, dict) else {"enabled": bool(tracking)},
            "seed": seed,
            "name": f"forecaster-{model}",
        }
        self._init(recipe_from_dict(raw, check_data=False))

    def _init(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.model: torch.nn.Module | None = None
        self.columns: list[str] = []
        self.freq: str | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.scores: torch.Tensor | None = None
        self.history: pd.DataFrame | None = None
        self.layout = Layout("wide")
        self.time_features = recipe.data.time_features or "h"
        self.device = pick_device(recipe.train.device)

    @classmethod
    def from_recipe(cls, path: str | Path, overrides: list[str] | None = None) -> Forecaster:
        """A forecaster with a recipe's model and train settings (its ``data`` section gives lookback/horizon)."""
        forecaster = cls.__new__(cls)
        forecaster._init(load_recipe(path, overrides))
        return forecaster

    @property
    def horizon(self) -> int:
        return self.recipe.data.horizon

    @property
    def lookback(self) -> int:
        return self.recipe.data.lookback

    # ------------------------------------------------------------------------------------------- fit
    def fit(self, data: Any, target: str | None = None, time_col: str | None = None, freq: str | None = None, val_size: float | int = 0.2) -> Forecaster:
        """Train on ``data``; the last ``val_size`` (fraction or rows) of it validates and calibrates intervals.

        A recipe's ``data.time_col``, ``data.target`` and ``data.columns`` (see :meth:`from_recipe`) apply unless
        ``time_col``/``target`` are given."""
        _check_val_size(val_size)
        spec = self.recipe.data
        frame, self.layout = to_wide(data, self._time_col(data, time_col), target or spec.target, spec.columns)
        n = len(frame)
        n_val = round(val_size * n) if isinstance(val_size, (float, np.floating)) else int(val_size)
        L, H = self.lookback, self.horizon
        if n < L + 2 * H:
            raise DataError(
                f"the training data has {n} row{'s' if n != 1 else ''}: too few rows for lookback {L} and horizon {H} (at least {L + 2 * H} needed)"
            )
        self.freq = regular_frequency(frame.index, freq, "the training data")
        if self.recipe.data.time_features is None:
            self.time_features = _feature_freq(self.freq)
        if n_val < H or n - n_val < L + H:
            raise DataError(
                f"the training data has {n} rows; with lookback {L} and horizon {H} it needs at least {L + H} training rows "
                f"and {H} validation rows (val_size={val_size} gives {n_val})"
            )
        borders = {"train": (0, n - n_val), "val": (n - n_val - L, n)}
        seed_everything(self.recipe.seed)
        series = TimeSeriesData(frame, L, H, borders=borders, time_features_freq=self.time_features, freq=self.freq, name="the training data")
        series.to(self.device)
        hooks = CallbackList(self._callbacks())
        hooks.on_fit_start(self.recipe.to_dict(), {"rows": n, "columns": list(frame.columns), "freq": self.freq})
        try:
            self.model, trainer, fit = train(self.recipe, series, self.device, hooks)
        except BaseException as exc:
            hooks.on_failure(exc)
            raise
        self.model.eval()
        self.columns, self.mean, self.std = series.columns, series.mean, series.std
        extras = checkpoint_extras(self.model, series, self.recipe.train.eval_rows)
        self.scores = extras["calibration_scores"]
        self.history = frame.iloc[-L:].copy()
        self._checkpoint_config = checkpoint_config(self.recipe, series)
        self.fit_result = fit
        hooks.on_fit_end({"val_mse": trainer.evaluate(series, "val")["mse"], "best_epoch": fit.best_epoch, "epochs": fit.epochs}, Path("."))
        return self

    def _callbacks(self) -> list:
        if not self.recipe.tracking.enabled:
            return []
        from sciformer.tracking.mlflow import MLflowTracker

        return [MLflowTracker(self.recipe.tracking, run_name=self.recipe.name)]

    # --------------------------------------------------------------------------------------- predict
    def _require_fitted(self) -> torch.nn.Module:
        if self.model is None:
            raise DataError(_NOT_FITTED)
        return self.model

    def _scaler(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` of the training columns, in data units."""
        if self.mean is None or self.std is None:
            raise DataError(_NOT_FITTED)
        return self.mean, self.std

    def _frequency(self) -> str:
        if self.freq is None:
            raise CheckpointError("this forecaster's checkpoint records no sampling frequency (its data was irregular): it cannot date a forecast")
        return self.freq

    def _calibration_scores(self) -> torch.Tensor:
        if self.scores is None:
            raise CheckpointError("this forecaster's checkpoint holds no calibration scores (it was saved before training ended): forecast without level")
        return self.scores

    def _saved_history(self) -> pd.DataFrame:
        if self.history is None:
            raise DataError("this forecaster's checkpoint holds no history rows: pass the history as data")
        return self.history

    def _input_frame(self, data: Any, time_col: str | None, label: str) -> tuple[pd.DataFrame, Layout]:
        """``data`` as a frame of the training columns, checked as ``fit`` checks its data (no gap anywhere)."""
        frame, layout = to_wide(data, self._time_col(data, time_col), columns=self.recipe.data.columns)
        missing = [c for c in self.columns if c not in frame.columns]
        extra = [c for c in frame.columns if c not in self.columns]
        if missing or (extra and self.recipe.data.columns is None):
            raise DataError(
                f"the data's columns differ from training: missing {quote_columns(missing)}, unexpected "
                f"{quote_columns(extra)}; expected {quote_columns(self.columns)}"
            )
        frame = frame[self.columns]  # by name: a recipe's data.target moved its column last
        regular_frequency(frame.index, self.freq, label)
        mean, std = self._scaler()
        with np.errstate(over="ignore"):  # an overflow is reported by check_finite, naming the cell
            scaled = ((frame.to_numpy(dtype=np.float64) - mean) / std).astype(np.float32)
        check_finite(scaled, self.columns, frame.index, label, " after scaling with the training statistics")
        return frame, layout

    def _time_col(self, data: Any, time_col: str | None) -> str | None:
        """The recipe's ``data.time_col`` applies to files and frames that have that column (a run's own CSV)."""
        recipe_col = self.recipe.data.time_col
        if time_col is not None or recipe_col is None:
            return time_col
        if isinstance(data, (str, Path)) or (isinstance(data, pd.DataFrame) and recipe_col in data.columns):
            return recipe_col
        return None

    def _history_frame(self, data: Any, time_col: str | None) -> tuple[pd.DataFrame, Layout]:
        if data is None:
            return self._saved_history(), self.layout
        frame, layout = self._input_frame(data, time_col, "the history")
        if len(frame) < self.lookback:
            raise DataError(f"the history has {len(frame)} rows, fewer than the lookback of {self.lookback}; give at least {self.lookback} rows")
        return frame.iloc[-self.lookback :], layout

    def _scale(self, values: np.ndarray) -> torch.Tensor:
        mean, std = self._scaler()
        return torch.from_numpy(((values - mean) / std).astype(np.float32))

    @torch.no_grad()
    def _forecast(self, windows: np.ndarray, starts: list[pd.Timestamp]) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled lookbacks ``x [B, L, N]`` and forecasts ``[B, H, N]`` for raw windows ``[B, L, N]``."""
        L, H = self.lookback, self.horizon
        model, freq = self._require_fitted(), self._frequency()
        x = self._scale(windows).to(self.device)
        marks = []
        for first in starts:
            stamps = pd.date_range(first, periods=L + H, freq=freq)
            marks.append(time_features(stamps, self.time_features))
        marks_t = torch.from_numpy(np.stack(marks)).to(self.device)
        pred = model(x, marks_t[:, :L], marks_t[:, L:]).float()
        return x, pred

    def predict(self, data: Any = None, level: list[float] | float | None = None, time_col: str | None = None):
        """The next ``horizon`` steps after the last timestamp of ``data`` (default: the training data).

        Returns the input's shape, in the data's units, with the training column names: a DataFrame indexed by
        the future timestamps (``level=[80, 95]`` adds ``<col>-lo-80``/``<col>-hi-80`` columns), a long frame
        (``y-lo-80``...), or xarray: the input's type for a point forecast, and with ``level`` a Dataset with
        ``mean``, ``lower`` and ``upper`` (``lower``/``upper`` along a ``level`` dimension). Intervals are
        split-conformal. ``level`` is in percent, in (1, 100), or a fraction in (0, 1) (0.9 is 90 %); all levels
        on one scale.
        """
        levels = _levels(level)
        self._require_fitted()
        history, layout = self._history_frame(data, time_col)
        point, bounds = self._forecast_frames(history, levels)
        return from_wide(point, layout, bounds)

    def _forecast_frames(self, history: pd.DataFrame, levels: list[float]) -> tuple[pd.DataFrame, Bounds]:
        """The point forecast after ``history`` and its interval bounds per level, as frames in data units."""
        x, pred = self._forecast(history.to_numpy(dtype=np.float64)[None], [history.index[0]])
        future = future_index(history.index[-1], self._frequency(), self.horizon)
        mean, std = self._scaler()

        def frame(scaled: torch.Tensor) -> pd.DataFrame:  # [1, H, N] scaled -> H × N in data units
            return pd.DataFrame(scaled[0].double().cpu().numpy() * std + mean, index=future, columns=self.columns)

        bounds = {}
        for lvl in levels:
            lo, hi = interval(pred, x, self._calibration_scores(), lvl / 100)
            bounds[lvl] = (frame(lo), frame(hi))
        return frame(pred), bounds

    # -------------------------------------------------------------------------------------- backtest
    @torch.no_grad()
    def backtest(
        self,
        data: Any,
        windows: int | None = None,
        stride: int | None = None,
        level: list[float] | float | None = None,
        time_col: str | None = None,
        batch_size: int = 256,
    ) -> Backtest:
        """Rolling-origin evaluation: forecasts from the last ``windows`` origins of ``data``, ``stride`` rows apart
        (default: the horizon), each scored against the truth on scaled and original units; with ``level`` also
        the empirical coverage of the prediction intervals (``coverage_90`` = share of true values inside).
        ``windows``, ``stride`` and ``batch_size`` are positive integers (ConfigError otherwise)."""
        for name, value, optional in (("windows", windows, True), ("stride", stride, True), ("batch_size", batch_size, False)):
            _check_positive_int(f"backtest {name}", value, optional)
        levels = _levels(level)
        self._require_fitted()
        frame, _ = self._input_frame(data, time_col, "the backtest data")
        L, H = self.lookback, self.horizon
        stride = stride or H
        last = len(frame) - L - H
        if last < 0:
            raise DataError(f"the backtest data has {len(frame)} rows, fewer than lookback + horizon = {L + H}")
        origins = list(range(last, -1, -stride))[: windows or None][::-1]
        raw = frame.to_numpy(dtype=np.float64)
        mean, std = self._scaler()
        rows = []
        for i in range(0, len(origins), batch_size):
            chunk = origins[i : i + batch_size]
            windows_raw = np.stack([raw[s : s + L] for s in chunk])
            truth = np.stack([raw[s + L : s + L + H] for s in chunk])
            x, pred = self._forecast(windows_raw, [frame.index[s] for s in chunk])
            pred_orig = pred.double().cpu().numpy() * std + mean
            err_orig = pred_orig - truth
            err_scaled = err_orig / std
            truth_scaled = self._scale(truth).to(pred.device)
            inside = {}
            for lvl in levels:
                lo, hi = interval(pred, x, self._calibration_scores(), lvl / 100)
                inside[f"coverage_{lvl:g}"] = ((truth_scaled >= lo) & (truth_scaled <= hi)).double().mean(dim=(1, 2)).cpu().numpy()
            for j, s in enumerate(chunk):
                rows.append(
                    {
                        "origin": frame.index[s + L - 1],
                        "first_forecast": frame.index[s + L],
                        "mse": float(np.mean(err_scaled[j] ** 2)),
                        "mae": float(np.mean(np.abs(err_scaled[j]))),
                        "mse_original": float(np.mean(err_orig[j] ** 2)),
                        "mae_original": float(np.mean(np.abs(err_orig[j]))),
                        **{k: float(v[j]) for k, v in inside.items()},
                    }
                )
        per_window = pd.DataFrame(rows)
        metrics = ["mse", "mae"] + [c for c in per_window.columns if c.startswith("coverage_")]
        summary = pd.DataFrame(
            {
                "scaled": [per_window[m].mean() for m in metrics],
                "original": [per_window["mse_original"].mean(), per_window["mae_original"].mean()] + [per_window[m].mean() for m in metrics[2:]],
            },
            index=metrics,
        )
        return Backtest(per_window, summary)

    # ----------------------------------------------------------------------------------- save / load
    def save(self, directory: str | Path) -> Path:
        """A checkpoint directory (the format of ``sciformer fit``) that :meth:`load` restores exactly."""
        model = self._require_fitted()
        config = {**self._checkpoint_config, "forecaster": {"freq": self.freq, "time_features": self.time_features, "layout": vars(self.layout)}}
        extras = {} if self.scores is None else {"calibration_scores": self.scores}
        if self.history is not None:
            extras.update(history_tensors(self.history.to_numpy(dtype=np.float64), self.history.index))
        return save_checkpoint(user_path(directory), model, config, extras)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> Forecaster:
        """Restore a forecaster saved by :meth:`save` or a ``sciformer fit`` run's ``checkpoint/``."""
        directory = user_path(directory)
        if (directory / "checkpoint").is_dir():
            directory = directory / "checkpoint"
        config = read_config(directory)
        if (config.get("data") or {}).get("kind") == "operator":
            raise CheckpointError(f"'{directory}' holds an operator model's checkpoint, not a forecaster's; load it with Surrogate.load")
        forecaster = cls.__new__(cls)
        forecaster._init(stored_recipe(config["recipe"]))
        forecaster.device = torch.device(device)
        forecaster.model, _ = load_model(directory, device)
        extras = read_extras(directory)
        data = config["data"]
        saved = config.get("forecaster", {})
        forecaster.columns = data["columns"]
        forecaster.mean = np.asarray(data["scaler"]["mean"], dtype=np.float64)
        forecaster.std = np.asarray(data["scaler"]["std"], dtype=np.float64)
        forecaster.freq = saved.get("freq") or data.get("freq")
        forecaster.time_features = saved.get("time_features") or data.get("time_features") or "h"
        forecaster.layout = Layout(**saved["layout"]) if "layout" in saved else Layout("wide")
        forecaster.scores = extras.get("calibration_scores")
        forecaster.history = history_frame(extras, forecaster.columns)
        forecaster._checkpoint_config = {k: v for k, v in config.items() if k not in ("format", "sciformer_version", "forecaster")}
        return forecaster

    # ---------------------------------------------------------------------------------------- extras
    def plot(self, data: Any = None, level: list[float] | float | None = 90, columns: list[str] | None = None, history: int | None = None):
        """A matplotlib figure of the history, the forecast and its intervals (one panel per column)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        levels = _levels(level)
        _check_positive_int("plot history", history, optional=True)
        self._require_fitted()
        columns = [columns] if isinstance(columns, str) else list(columns or self.columns[-3:])
        for name in columns:
            if name not in self.columns:
                raise ConfigError(f"plot: unknown column {excerpt(name)}{did_you_mean(name, self.columns)}; the columns are {quote_columns(self.columns)}")
        past = self._saved_history() if data is None else self._input_frame(data, None, "the history")[0]
        past = past.iloc[-(history or 3 * self.lookback) :]
        forecast = with_intervals(*self._forecast_frames(past.iloc[-self.lookback :], levels))
        fig, axes = plt.subplots(len(columns), 1, figsize=(10, 2.6 * len(columns)), squeeze=False, sharex=True)
        for ax, col in zip(axes[:, 0], columns):
            ax.plot(past.index, past[col], color="0.35", lw=1, label="history")
            ax.plot(forecast.index, forecast[col], color="C3", lw=1.3, label="forecast")
            for lvl in sorted(levels, reverse=True):
                lower, upper = forecast[f"{col}-lo-{lvl:g}"], forecast[f"{col}-hi-{lvl:g}"]
                ax.fill_between(forecast.index, lower, upper, color="C3", alpha=0.15, lw=0, label=f"{lvl:g}% interval")
            ax.set_ylabel(col)
        axes[0, 0].legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        return fig

    def log_model(self, name: str = "forecaster", **kwargs: Any):
        """Log this forecaster to the active (or a new) MLflow run as a pyfunc model:
        ``mlflow.pyfunc.load_model(uri).predict(history_df)`` returns the forecast DataFrame."""
        from sciformer.api.pyfunc import log_forecaster

        return log_forecaster(self, name, **kwargs)


def _levels(level: Any) -> list[float]:
    """Interval levels in percent. All in (1, 100): percentages; all in (0, 1): fractions (0.9 → 90). Anything
    else (1 itself, <= 0, >= 100, a mix of the two scales, not a number) is ambiguous or impossible: refused."""
    if level is None:
        return []
    levels = list(level) if isinstance(level, (list, tuple, np.ndarray)) else [level]
    for lvl in levels:
        if isinstance(lvl, bool) or not isinstance(lvl, (int, float, np.integer, np.floating)) or not np.isfinite(lvl):
            raise ConfigError(f"interval level must be a number, got {excerpt(lvl)}; e.g. level=90 or level=[80, 95]")
    if all(1 < lvl < 100 for lvl in levels):
        return [float(lvl) for lvl in levels]
    if all(0 < lvl < 1 for lvl in levels):
        return [round(100 * float(lvl), 10) for lvl in levels]
    raise ConfigError(
        f"interval levels {[float(v) for v in levels]} are ambiguous or out of range: give percentages in (1, 100) "
        "such as [80, 95], or fractions in (0, 1) such as [0.8, 0.95], all on one scale"
    )


def _check_positive_int(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer{' or None' if optional else ''}, got {excerpt(value)}")


def _check_val_size(val_size: Any) -> None:
    """A fraction in (0, 1) or a row count >= 1."""
    fraction = isinstance(val_size, (float, np.floating)) and 0 < val_size < 1
    rows = isinstance(val_size, (int, np.integer)) and not isinstance(val_size, bool) and val_size >= 1
    if not (fraction or rows):
        raise ConfigError(f"val_size must be a fraction in (0, 1) or a number of rows >= 1, got {excerpt(val_size)}")


def _feature_freq(freq: str) -> str:
    """Calendar features for the data's own sampling frequency (the benchmark convention 'h' is for recipes)."""
    from sciformer.data.timefeatures import feature_code

    try:
        return feature_code(freq)
    except ConfigError:
        return "h"


__all__ = ["Backtest", "Forecaster"]
