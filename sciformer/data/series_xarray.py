"""xarray time series ↔ wide frames: the time dimension found, variables as columns, forecasts back as xarray.

Input: a ``Dataset`` (every variable along the time dimension alone is a column) or a ``DataArray`` of dims
``(time,)`` or ``(time, variable)``. The time dimension is the one carrying a datetime coordinate (``time_col``
names it when there are several). Output: the input's type for a point forecast; with interval levels, a
``Dataset`` with ``mean [time, variable]`` and ``lower``/``upper [level, time, variable]`` (levels in percent).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sciformer.data.series_checks import excerpt, quote_columns
from sciformer.errors import DataError, did_you_mean

Bounds = dict[float, tuple[pd.DataFrame, pd.DataFrame]]  # level (percent) -> (lower, upper), each time × column


def is_xarray(data: Any) -> bool:
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover - xarray is a core dependency
        return False
    return isinstance(data, (xr.DataArray, xr.Dataset))


def time_coordinate(obj, time_col: str | None, label: str) -> tuple[str, str]:
    """``(dimension, coordinate)`` of the time axis: a 1-D datetime coordinate, named by ``time_col`` if given."""
    datetimes = [str(n) for n, c in obj.coords.items() if c.ndim == 1 and np.issubdtype(c.dtype, np.datetime64)]
    if time_col is not None:
        if time_col not in datetimes:
            raise DataError(
                f"{label} has no datetime coordinate {excerpt(time_col)}{did_you_mean(time_col, list(obj.coords))}; "
                f"its datetime coordinates are {quote_columns(datetimes)}"
            )
        name = time_col
    elif len(datetimes) == 1 or "time" in datetimes:
        name = datetimes[0] if len(datetimes) == 1 else "time"
    elif not datetimes:
        raise DataError(
            f"{label} has no datetime coordinate among dims {quote_columns(list(obj.dims))}; expected one time "
            "dimension with datetime values (CF-encoded times are decoded when the file is opened)"
        )
    else:
        raise DataError(f"{label} has several datetime coordinates {quote_columns(datetimes)}; name the time axis with time_col=")
    return str(obj.coords[name].dims[0]), name


def xarray_table(obj, time_col: str | None, label: str) -> tuple[pd.DataFrame, str, str, dict[str, Any]]:
    """A wide frame (``DatetimeIndex`` × columns, values as stored) and what :func:`forecast_xarray` needs to
    shape results like ``obj``: the kind ("dataset" | "dataarray"), the time coordinate's name, and
    ``{"name", "variable_dim"}`` of a DataArray."""
    import xarray as xr

    dim, coord = time_coordinate(obj, time_col, label)
    index = pd.DatetimeIndex(obj.coords[coord].to_numpy())
    if isinstance(obj, xr.Dataset):
        columns = _dataset_columns(obj, dim, label)
        frame = pd.DataFrame({name: obj[name].to_numpy() for name in columns}, index=index)
        return frame, "dataset", coord, {}
    if obj.ndim == 1:
        frame = pd.DataFrame({str(obj.name or "value"): obj.to_numpy()}, index=index)
        return frame, "dataarray", coord, {"name": obj.name, "variable_dim": None}
    if obj.ndim != 2:
        raise DataError(f"{label} is a DataArray of dims {tuple(obj.dims)}; expected (time,) or (time, variable)")
    var_dim = next(str(d) for d in obj.dims if d != dim)
    names = obj[var_dim].to_numpy() if var_dim in obj.coords else np.arange(obj.sizes[var_dim])
    frame = pd.DataFrame(obj.transpose(dim, var_dim).to_numpy(), index=index, columns=[str(n) for n in names])
    return frame, "dataarray", coord, {"name": obj.name, "variable_dim": var_dim}


def _dataset_columns(ds, dim: str, label: str) -> list[str]:
    """Variables along ``dim`` alone; static variables (without ``dim``) and CF time bounds are left out."""
    bounds = {c.attrs.get("bounds") for c in ds.coords.values()}
    columns: list[str] = []
    refused: list[str] = []
    for name, var in ds.data_vars.items():
        if dim not in var.dims or name in bounds:
            continue
        (columns if var.dims == (dim,) else refused).append(str(name))
    if refused:
        var = ds[refused[0]]
        raise DataError(
            f"{label}: variable {excerpt(refused[0])} has dims {tuple(map(str, var.dims))}; expected only ('{dim}',): "
            f"select one position of its other dims (ds.sel(...)) or drop it (ds.drop_vars({refused!r}))"
        )
    if not columns:
        raise DataError(f"{label} has no variable along '{dim}'; its variables are {quote_columns(list(ds.data_vars))}")
    return columns


def forecast_xarray(point: pd.DataFrame, bounds: Bounds, kind: str, time_name: str, extra: dict[str, Any]):
    """``point`` (future time × columns) and interval ``bounds`` shaped like the input :func:`xarray_table` read."""
    import xarray as xr

    var_dim = extra.get("variable_dim") or "variable"
    one_d = kind == "dataarray" and extra.get("variable_dim") is None
    times = point.index.rename(time_name)

    def array(frame: pd.DataFrame) -> xr.DataArray:
        if one_d:
            return xr.DataArray(frame.iloc[:, 0].to_numpy(), coords={time_name: times}, dims=(time_name,))
        return xr.DataArray(frame.to_numpy(), coords={time_name: times, var_dim: list(frame.columns)}, dims=(time_name, var_dim))

    if bounds:
        levels = xr.DataArray(sorted(bounds), dims="level", attrs={"units": "percent"})
        lower = xr.concat([array(bounds[lvl][0]) for lvl in sorted(bounds)], dim=levels)
        upper = xr.concat([array(bounds[lvl][1]) for lvl in sorted(bounds)], dim=levels)
        return xr.Dataset({"mean": array(point), "lower": lower, "upper": upper})
    if kind == "dataset":
        return xr.Dataset({c: (time_name, point[c].to_numpy()) for c in point.columns}, coords={time_name: times})
    return array(point).rename(extra.get("name"))
