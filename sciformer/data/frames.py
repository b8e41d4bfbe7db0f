"""User data in, forecasts out: CSV and NetCDF/Zarr paths, wide or long DataFrames, xarray objects.

:func:`read_frame` and :func:`to_wide` turn any supported input into one checked wide frame (sorted unique
``DatetimeIndex`` × float64 columns); :func:`to_wide` also returns a :class:`Layout` that remembers the input's
shape, and :func:`from_wide` gives a forecast back in that shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sciformer.data.series_checks import check_time_index, excerpt, numeric_columns, quote_columns
from sciformer.data.series_files import data_file, data_label, is_xarray_path, open_xarray, read_csv
from sciformer.data.series_xarray import Bounds, forecast_xarray, is_xarray, xarray_table
from sciformer.errors import DataError, did_you_mean

LONG_COLUMNS = ("unique_id", "ds", "y")
TIME_COLUMNS = ("date", "ds", "time", "timestamp")


@dataclass
class Layout:
    """How the user's data was shaped, so results can be returned the same way."""

    kind: str  # "wide" | "long" | "dataarray" | "dataset"
    time_name: str = "date"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Loaded:
    frame: pd.DataFrame
    time_col: str | None  # None: the frame is indexed by its timestamps
    label: str  # names the input in messages: "CSV file 'x.csv'", "the DataFrame", ...
    layout: Layout


def read_frame(source: Any, time_col: str | None = None, columns: list[str] | None = None, target: str | None = None, check_time: bool = True) -> pd.DataFrame:
    """A checked frame: a sorted, unique ``DatetimeIndex`` and finite float64 columns (target last).

    ``source`` is a CSV/NetCDF/Zarr path, a DataFrame with a time column (or a ``DatetimeIndex``), or an xarray
    object. Errors name the input, the column and the row of the first bad value. ``check_time=False`` keeps the
    rows of a registered benchmark file verbatim (the upstream weather file repeats one timestamp, and the
    published splits count it).
    """
    return _checked(_load(source, time_col), columns, target, check_time)


def to_wide(data: Any, time_col: str | None = None, target: str | None = None, columns: list[str] | None = None) -> tuple[pd.DataFrame, Layout]:
    """A checked wide frame (as :func:`read_frame`) and the input's layout."""
    loaded = _load(data, time_col)
    return _checked(loaded, columns, target, True), loaded.layout


def _load(data: Any, time_col: str | None) -> _Loaded:
    if isinstance(data, (str, Path)):
        path = data_file(data)
        label = data_label(path)
        if is_xarray_path(path):
            with open_xarray(path, label) as dataset:
                return _from_xarray(dataset, time_col, label)
        return _Loaded(read_csv(path, label), time_col or "date", label, Layout("wide", time_col or "date"))
    if isinstance(data, pd.DataFrame):
        if time_col is None and set(LONG_COLUMNS) <= set(data.columns):
            return _Loaded(_long_to_wide(data), None, "the long DataFrame", Layout("long", "ds"))
        if time_col is None and not isinstance(data.index, pd.DatetimeIndex):
            time_col = next((c for c in TIME_COLUMNS if c in data.columns), None)
            if time_col is None:
                raise DataError(
                    "the DataFrame has no time column: expected a DatetimeIndex, a column named date/ds/time/timestamp, "
                    f"or time_col=...; its columns are {quote_columns(list(data.columns))}"
                )
        return _Loaded(data.copy(), time_col, "the DataFrame", Layout("wide", str(time_col or data.index.name or "date")))
    if is_xarray(data):
        return _from_xarray(data, time_col, f"the xarray {type(data).__name__}")
    raise DataError(
        f"unsupported data of type {type(data).__name__}; expected a CSV/NetCDF/Zarr path, a wide or long (unique_id, ds, y) "
        "pandas DataFrame, or an xarray DataArray/Dataset with a time dimension"
    )


def _from_xarray(obj, time_col: str | None, label: str) -> _Loaded:
    frame, kind, time_name, extra = xarray_table(obj, time_col, label)
    return _Loaded(frame, None, label, Layout(kind, time_name, extra))


def _checked(loaded: _Loaded, columns: list[str] | None, target: str | None, check_time: bool) -> pd.DataFrame:
    frame, label = loaded.frame, loaded.label
    if loaded.time_col is None:
        timestamps = frame.index
    else:
        timestamps = _timestamps(frame, loaded.time_col, label)
        frame = frame.drop(columns=[loaded.time_col])
    frame.index = pd.DatetimeIndex(timestamps, name="time").as_unit("ns")  # one resolution everywhere (pandas 3 infers us)
    if len(frame) == 0:
        raise DataError(f"{label} has no data rows (only a header); expected one row per timestamp")

    duplicated = frame.columns[frame.columns.duplicated()].unique().tolist()
    if duplicated:
        raise DataError(f"{label} has duplicated column names {quote_columns(duplicated)}; every variable needs a name of its own")
    for wanted, role in ((columns or [], "column(s)"), ([target] if target is not None else [], "target column")):
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise DataError(
                f"{label} has no {role} {quote_columns(missing)}{did_you_mean(missing[0], frame.columns)}; its columns are {quote_columns(list(frame.columns))}"
            )
    if columns is not None:
        frame = frame[list(columns)]
    if target is not None:
        frame = frame[[c for c in frame.columns if c != target] + [target]]
    if frame.shape[1] == 0:
        raise DataError(f"{label} has no value columns besides the time column")
    frame = numeric_columns(frame, label)
    if check_time:
        check_time_index(frame.index, label)
    return frame


def _timestamps(frame: pd.DataFrame, time_col: str, label: str) -> pd.DatetimeIndex:
    if time_col not in frame.columns:
        if frame.shape[1] < 2 and not label.startswith("the "):
            found = "its first line is not a comma-separated header"  # quoting it could echo any file's first line
        else:
            found = f"its columns are {quote_columns(list(frame.columns))}{did_you_mean(time_col, frame.columns)}"
        raise DataError(f"{label} has no time column {excerpt(time_col)}; {found}; name the time column with data.time_col (or time_col=)")
    raw = frame[time_col]
    parsed = pd.to_datetime(raw, format="mixed", errors="coerce")
    bad = (parsed.isna() & raw.notna()).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{label}: time column {excerpt(time_col)} has {excerpt(raw.iloc[row])} at row {row}, which is not a timestamp")
    return pd.DatetimeIndex(parsed)


def _long_to_wide(data: pd.DataFrame) -> pd.DataFrame:
    frame = data[list(LONG_COLUMNS)].copy()
    frame["ds"] = pd.to_datetime(frame["ds"])
    dup = frame.duplicated(["unique_id", "ds"])
    if dup.any():
        row = frame[dup].iloc[0]
        raise DataError(f"the long DataFrame has series {excerpt(row['unique_id'])} twice at ds={row['ds']}; expected one value per (unique_id, ds)")
    wide = frame.pivot(index="ds", columns="unique_id", values="y")
    wide.columns = [str(c) for c in wide.columns]
    missing = wide.isna()
    if missing.any().any():
        col = missing.any().idxmax()
        ds = wide.index[missing[col].to_numpy().argmax()]
        raise DataError(f"series {excerpt(col)} of the long DataFrame has no value at ds={ds}; all series must share the same timestamps")
    return wide


def with_intervals(point: pd.DataFrame, bounds: Bounds) -> pd.DataFrame:
    """``point`` with ``<col>-lo-<level>`` / ``<col>-hi-<level>`` columns after each column."""
    out = {}
    for c in point.columns:
        out[c] = point[c]
        for level, (lower, upper) in bounds.items():
            out[f"{c}-lo-{level:g}"] = lower[c]
            out[f"{c}-hi-{level:g}"] = upper[c]
    return pd.DataFrame(out, index=point.index)


def from_wide(point: pd.DataFrame, layout: Layout, bounds: Bounds | None = None):
    """A forecast ``point`` (``DatetimeIndex`` × columns) and its interval ``bounds`` in the user's original shape."""
    bounds = bounds or {}
    if layout.kind in ("dataarray", "dataset"):
        return forecast_xarray(point, bounds, layout.kind, layout.time_name, layout.extra)
    frame = with_intervals(point, bounds)
    if layout.kind == "long":
        out = frame.rename_axis("ds").reset_index().melt(id_vars="ds", var_name="column", value_name="value")
        # columns "<series>" hold the forecast, "<series>-lo-80" etc. the intervals
        parts = out["column"].str.extract(r"^(?P<unique_id>.*?)(?P<suffix>-(?:lo|hi)-[\d.]+)?$")
        out["unique_id"] = parts["unique_id"]
        out["name"] = "y" + parts["suffix"].fillna("")
        wide = out.pivot_table(index=["unique_id", "ds"], columns="name", values="value", sort=False).reset_index()
        wide.columns.name = None
        return wide[["unique_id", "ds"] + [c for c in wide.columns if c not in ("unique_id", "ds")]]
    return frame.rename_axis(layout.time_name)
