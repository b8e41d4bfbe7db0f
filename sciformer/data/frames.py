"""User data in, forecasts out: wide or long DataFrames, xarray objects and CSV paths.

:func:`to_wide` turns any supported input into one checked wide frame (``DatetimeIndex`` × variables) and a
:class:`Layout` that remembers the input's shape; :func:`from_wide` gives results back in that shape.
Regular sampling is required for forecasting the real future: the frequency is inferred or given, and a gap
in the time index is reported with its position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sciformer.data.timeseries import check_time_index, infer_frequency, read_frame
from sciformer.errors import DataError

LONG_COLUMNS = ("unique_id", "ds", "y")


@dataclass
class Layout:
    """How the user's data was shaped, so results can be returned the same way."""

    kind: str  # "wide" | "long" | "dataarray" | "dataset"
    time_name: str = "date"
    extra: dict[str, Any] = field(default_factory=dict)


def to_wide(data: Any, time_col: str | None = None, target: str | None = None) -> tuple[pd.DataFrame, Layout]:
    """A checked wide frame (sorted unique ``DatetimeIndex``, float64 columns) and the input's layout."""
    if isinstance(data, (str, Path)):
        return read_frame(data, time_col, target=target), Layout("wide", time_col or "date")
    if isinstance(data, pd.DataFrame):
        if time_col is None and set(LONG_COLUMNS) <= set(data.columns):
            return _long_to_wide(data), Layout("long", "ds")
        if time_col is None and not isinstance(data.index, pd.DatetimeIndex):
            time_col = next((c for c in ("date", "ds", "time", "timestamp") if c in data.columns), None)
            if time_col is None:
                raise DataError(
                    f"the DataFrame has no time column: expected a DatetimeIndex, a column named date/ds/time/timestamp, "
                    f"or time_col=...; its columns are {list(data.columns)[:10]}"
                )
        name = time_col or data.index.name or "date"
        return read_frame(data, time_col, target=target), Layout("wide", str(name))
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover - xarray is a core dependency
        xr = None
    if xr is not None and isinstance(data, (xr.DataArray, xr.Dataset)):
        return _xarray_to_wide(data, target)
    raise DataError(
        f"unsupported data of type {type(data).__name__}; expected a CSV path, a wide or long (unique_id, ds, y) "
        "pandas DataFrame, or an xarray DataArray/Dataset with a time dimension"
    )


def _long_to_wide(data: pd.DataFrame) -> pd.DataFrame:
    frame = data[list(LONG_COLUMNS)].copy()
    frame["ds"] = pd.to_datetime(frame["ds"])
    dup = frame.duplicated(["unique_id", "ds"])
    if dup.any():
        row = frame[dup].iloc[0]
        raise DataError(f"the long DataFrame has series '{row['unique_id']}' twice at ds={row['ds']}; expected one value per (unique_id, ds)")
    wide = frame.pivot(index="ds", columns="unique_id", values="y")
    wide.columns = [str(c) for c in wide.columns]
    missing = wide.isna()
    if missing.any().any():
        col = missing.any().idxmax()
        ds = wide.index[missing[col].to_numpy().argmax()]
        raise DataError(f"series '{col}' of the long DataFrame has no value at ds={ds}; all series must share the same timestamps")
    return read_frame(wide)


def _time_dim(obj) -> str:
    for dim in obj.dims:
        if dim in obj.coords and pd.api.types.is_datetime64_any_dtype(obj.coords[dim].dtype):
            return str(dim)
    raise DataError(f"the xarray object has no datetime dimension among {list(obj.dims)}; expected one time dimension with datetime coordinates")


def _xarray_to_wide(data, target: str | None) -> tuple[pd.DataFrame, Layout]:
    import xarray as xr

    time = _time_dim(data)
    if isinstance(data, xr.Dataset):
        names = [str(v) for v, arr in data.data_vars.items() if arr.dims == (time,)]
        if not names:
            raise DataError(f"the xarray Dataset has no variable with only the '{time}' dimension; variables: {list(data.data_vars)}")
        frame = pd.DataFrame({n: data[n].to_numpy() for n in names}, index=pd.DatetimeIndex(data[time].to_numpy()))
        return read_frame(frame, target=target), Layout("dataset", time)
    if data.ndim == 1:
        frame = pd.DataFrame({str(data.name or "value"): data.to_numpy()}, index=pd.DatetimeIndex(data[time].to_numpy()))
        return read_frame(frame, target=target), Layout("dataarray", time, {"name": data.name, "variable_dim": None})
    if data.ndim != 2:
        raise DataError(f"the xarray DataArray has dims {data.dims}; expected (time,) or (time, variable)")
    var_dim = next(d for d in data.dims if d != time)
    frame = data.transpose(time, var_dim).to_pandas()
    frame.columns = [str(c) for c in frame.columns]
    return read_frame(frame, target=target), Layout("dataarray", time, {"name": data.name, "variable_dim": var_dim})


def from_wide(frame: pd.DataFrame, layout: Layout):
    """Return ``frame`` (``DatetimeIndex`` × columns) in the user's original shape."""
    if layout.kind == "long":
        out = frame.rename_axis("ds").reset_index().melt(id_vars="ds", var_name="column", value_name="value")
        # columns "<series>" hold the forecast, "<series>-lo-80" etc. the intervals
        parts = out["column"].str.extract(r"^(?P<unique_id>.*?)(?P<suffix>-(?:lo|hi)-[\d.]+)?$")
        out["unique_id"] = parts["unique_id"]
        out["name"] = "y" + parts["suffix"].fillna("")
        wide = out.pivot_table(index=["unique_id", "ds"], columns="name", values="value", sort=False).reset_index()
        wide.columns.name = None
        return wide[["unique_id", "ds"] + [c for c in wide.columns if c not in ("unique_id", "ds")]]
    if layout.kind in ("dataarray", "dataset"):
        import xarray as xr

        frame = frame.rename_axis(layout.time_name)
        if layout.kind == "dataset":
            return xr.Dataset.from_dataframe(frame)
        var_dim = layout.extra.get("variable_dim") or "variable"
        return xr.DataArray(frame, dims=(layout.time_name, var_dim), name=layout.extra.get("name"))
    return frame.rename_axis(layout.time_name)


def regular_frequency(index: pd.DatetimeIndex, freq: str | None, label: str = "the data") -> str:
    """The sampling frequency of ``index`` (given or inferred); raises on a gap or an irregular index."""
    check_time_index(index, label)
    if freq is None:
        freq = infer_frequency(index)
        if freq is None:
            freq = _dominant_step(index)
        if freq is None:
            raise DataError(f"cannot infer the sampling frequency of {label}; pass freq=, e.g. freq='h' or freq='15min'")
    offset = pd.tseries.frequencies.to_offset(freq)
    expected = pd.date_range(index[0], periods=len(index), freq=offset)
    if not expected.equals(index):
        i = int((expected != index).argmax())
        raise DataError(
            f"{label} has a gap in its time index: after {index[i - 1]} comes {index[i]}, expected {index[i - 1] + offset} "
            f"(frequency {freq}); fill or resample the series first"
        )
    return offset.freqstr


def _dominant_step(index: pd.DatetimeIndex) -> str | None:
    """The most common step, when it covers most of the index (lets a gap be reported as a gap)."""
    if len(index) < 3:
        return None
    steps = pd.Series(index[1:] - index[:-1]).value_counts()
    if steps.iloc[0] < 0.5 * (len(index) - 1):
        return None
    return pd.tseries.frequencies.to_offset(steps.index[0]).freqstr


def future_index(last: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps following ``last``."""
    offset = pd.tseries.frequencies.to_offset(freq)
    return pd.date_range(last + offset, periods=horizon, freq=offset)
