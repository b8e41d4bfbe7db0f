"""Multivariate time series: benchmark splits, scaling, windows as device tensors.

The conventions are those of the long-term forecasting benchmark (TSLib ``data_provider/data_loader.py``):

* splits: ETT hourly 12/4/4 months of 30 days (8640/2880/2880 rows), ETT minute ×4, every other dataset
  7:1:2 by row count; the validation and test slices start ``lookback`` rows before their border;
* a per-column StandardScaler fit on the training rows only, applied to the whole series; metrics are
  computed on the scaled values;
* windows ``x = s[i : i+L]``, ``y = s[i+L : i+L+H]``, ``len(slice) - L - H + 1`` per split, none dropped.

Reading and checking user data is the job of :mod:`sciformer.data.frames`. The whole scaled series lives on
the training device as one tensor; a batch is gathered with one index operation (no per-sample Python, no
DataLoader workers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from sciformer.data import catalog
from sciformer.data.frames import read_frame
from sciformer.data.series_checks import check_finite, infer_frequency, regular_frequency
from sciformer.data.series_files import data_label
from sciformer.data.timefeatures import feature_code, time_features
from sciformer.errors import ConfigError, DataError, user_path

SPLITS = ("train", "val", "test")


class ForecastBatch(NamedTuple):
    """One batch of windows: ``x [B, L, N]``, ``x_mark [B, L, F]``, ``y [B, H, N]``, ``y_mark [B, H, F]``."""

    x: torch.Tensor
    x_mark: torch.Tensor
    y: torch.Tensor
    y_mark: torch.Tensor


@dataclass(frozen=True)
class SplitRange:
    """Rows ``[start, stop)`` of the series that one split's windows are cut from."""

    start: int
    stop: int
    n_windows: int


# ------------------------------------------------------------------------------------------- reading
def check_manifest_shape(frame: pd.DataFrame, manifest, path: Path, columns_selected: bool = False) -> None:
    """A benchmark file has the rows (and, when every column was read, the columns) its manifest states: the
    published splits are fixed row borders, so a truncated or different file would silently move them."""
    found = {"rows": len(frame)} | ({} if columns_selected else {"columns": frame.shape[1] + 1})  # + the time column
    wrong = {k: v for k, v in found.items() if getattr(manifest, k) is not None and v != getattr(manifest, k)}
    if wrong:
        what = ", ".join(f"{v} {k} (expected {getattr(manifest, k)})" for k, v in wrong.items())
        raise DataError(
            f"'{path}' has {what} for dataset '{manifest.name}': the file is truncated or another version; delete it "
            f"and run `sciformer datasets download {manifest.name}`"
        )


# -------------------------------------------------------------------------------------------- splits
def split_borders(n_rows: int, rule: str, lookback: int, fractions: list[float] | None = None) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, stop)`` per split; val/test start ``lookback`` rows before their border."""
    if rule in ("ett_hour", "ett_minute"):
        scale = 1 if rule == "ett_hour" else 4
        n_train, n_val, n_test = 12 * 30 * 24 * scale, 4 * 30 * 24 * scale, 4 * 30 * 24 * scale
        if n_rows < n_train + n_val + n_test:
            raise DataError(f"split rule '{rule}' needs {n_train + n_val + n_test} rows, the series has {n_rows}")
    elif rule == "ratio":
        train_frac, _, test_frac = fractions or (0.7, 0.1, 0.2)
        n_train, n_test = int(n_rows * train_frac), int(n_rows * test_frac)
        n_val = n_rows - n_train - n_test
    else:
        raise DataError(f"unknown split rule {rule!r}; expected ett_hour, ett_minute or ratio")
    borders = {
        "train": (0, n_train),
        "val": (max(n_train - lookback, 0), n_train + n_val),
        "test": (max(n_train + n_val - lookback, 0), n_train + n_val + n_test),
    }
    return borders


# -------------------------------------------------------------------------------------------- module
class TimeSeriesData:
    """A scaled multivariate series with its splits, ready to be windowed on a device.

    Attributes: ``columns`` (names, target last), ``timestamps``, ``values [T, N]`` and ``marks [T, F]``
    (float32 tensors, scaled), ``mean``/``std`` (the training-split scaler), ``splits``.
    Splits come from a benchmark rule (``split_rule``) or explicit row ranges (``borders``, e.g. train and val
    only); the scaler is fit on the ``train`` rows unless ``scaler`` is given.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        lookback: int,
        horizon: int,
        split_rule: str = "ratio",
        split_fractions: list[float] | None = None,
        borders: dict[str, tuple[int, int]] | None = None,
        time_features_freq: str = "h",
        freq: str | None = None,
        name: str = "series",
        fingerprint: str | None = None,
        scaler: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.name = name
        self.columns = list(frame.columns)
        self.timestamps = frame.index
        self.lookback, self.horizon = lookback, horizon
        self.freq = freq or infer_frequency(frame.index)
        self.time_features_freq = feature_code(time_features_freq)
        raw = frame.to_numpy(dtype=np.float64)
        if borders is None:
            borders = split_borders(len(raw), split_rule, lookback, split_fractions)
        elif "train" not in borders or any(not 0 <= start < stop <= len(raw) for start, stop in borders.values()):
            raise DataError(
                f"{name}: borders {dict(borders)} must include 'train' and give each split rows (start, stop) with "
                f"0 <= start < stop <= {len(raw)} (the number of rows)"
            )
        self.splits: dict[str, SplitRange] = {}
        for split, (start, stop) in borders.items():
            n_windows = stop - start - lookback - horizon + 1
            if n_windows < 1:
                raise DataError(
                    f"{name}: the {split} split has {stop - start} rows (rows {start}..{stop - 1}), fewer than "
                    f"lookback + horizon = {lookback + horizon}; use a longer series or a shorter lookback/horizon"
                )
            self.splits[split] = SplitRange(start, stop, n_windows)
        if scaler is None:
            train = raw[slice(*borders["train"])]
            mean, std = train.mean(axis=0), train.std(axis=0)
            std = np.where(std == 0, 1.0, std)  # constant columns stay put, as sklearn does
        else:
            mean, std = (np.asarray(s, dtype=np.float64) for s in scaler)
        self.mean, self.std = mean, std
        with np.errstate(over="ignore"):  # an overflow is reported by check_finite, naming the cell
            scaled = ((raw - mean) / std).astype(np.float32)
        check_finite(scaled, self.columns, self.timestamps, name, " after scaling (too far from the scaler's mean)")
        self.values = torch.from_numpy(scaled)
        self.tail = raw[-lookback:].copy()  # the newest lookback rows in original units: the history of a real forecast
        self.marks = torch.from_numpy(time_features(frame.index, self.time_features_freq))
        self.fingerprint = fingerprint or hashlib.sha256(np.ascontiguousarray(raw).tobytes()).hexdigest()

    # -------------------------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, cfg, scaler: tuple[np.ndarray, np.ndarray] | None = None) -> TimeSeriesData:
        """Build from a recipe's ``data`` section (a :class:`sciformer.config.DataConfig`).

        ``scaler`` (mean, std) reuses a trained model's statistics instead of fitting them on this data.
        """
        if cfg.name in catalog.manifests():
            manifest = catalog.get_manifest(cfg.name)
            if cfg.split is not None and manifest.split != "ratio":
                raise ConfigError(
                    f"recipe key 'data.split': dataset '{cfg.name}' has the published fixed split ({manifest.split}); "
                    "remove data.split (it applies to ratio-split datasets and CSV files)"
                )
            path = catalog.resolve(cfg.name)
            frame = read_frame(path, cfg.time_col or manifest.time_col, cfg.columns, cfg.target or manifest.target, check_time=False)
            check_manifest_shape(frame, manifest, path, columns_selected=cfg.columns is not None)
            return cls(
                frame,
                cfg.lookback,
                cfg.horizon,
                split_rule=manifest.split,
                split_fractions=cfg.split,
                time_features_freq=cfg.time_features or manifest.time_features,
                freq=manifest.freq,
                name=f"dataset '{cfg.name}'",
                scaler=scaler,
            )
        frame = read_frame(cfg.name, cfg.time_col, cfg.columns, cfg.target)
        label = data_label(user_path(cfg.name))
        freq = regular_frequency(frame.index, None, label)  # a window must not span a gap
        return cls(
            frame,
            cfg.lookback,
            cfg.horizon,
            split_rule="ratio",
            split_fractions=cfg.split,
            time_features_freq=cfg.time_features or freq,
            freq=freq,
            name=label,
            scaler=scaler,
        )

    @property
    def n_vars(self) -> int:
        return len(self.columns)

    @property
    def n_marks(self) -> int:
        return self.marks.shape[1]

    def to(self, device: torch.device | str) -> TimeSeriesData:
        self.values, self.marks = self.values.to(device), self.marks.to(device)
        return self

    def scaler_state(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    # ---------------------------------------------------------------------------------- windowing
    def window_starts(self, split: str) -> torch.Tensor:
        """Row index of the first lookback step of every window of ``split``."""
        r = self.splits[split]
        return torch.arange(r.start, r.start + r.n_windows, device=self.values.device)

    def gather(self, starts: torch.Tensor) -> ForecastBatch:
        """The windows beginning at rows ``starts [B]`` (one gather per tensor)."""
        L, H = self.lookback, self.horizon
        x_rows = starts[:, None] + torch.arange(L, device=starts.device)  # [B, L]
        y_rows = starts[:, None] + torch.arange(L, L + H, device=starts.device)  # [B, H]
        return ForecastBatch(self.values[x_rows], self.marks[x_rows], self.values[y_rows], self.marks[y_rows])

    def batches(
        self, split: str, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1
    ) -> Iterator[ForecastBatch]:
        """Iterate over ``split`` in batches; with ``world_size > 1`` each rank takes a disjoint share.

        Every window is visited exactly once per pass (the last batch may be smaller: nothing dropped).
        """
        starts = self.window_starts(split)
        if shuffle:
            order = torch.randperm(len(starts), generator=generator, device="cpu").to(starts.device)
            starts = starts[order]
        starts = starts[rank::world_size]
        for i in range(0, len(starts), batch_size):
            yield self.gather(starts[i : i + batch_size])

    def n_batches(self, split: str, batch_size: int, world_size: int = 1) -> int:
        n = len(range(0, self.splits[split].n_windows, world_size))
        return -(-n // batch_size)
