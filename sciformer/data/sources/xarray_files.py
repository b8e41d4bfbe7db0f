"""NetCDF and Zarr files (or an in-memory ``xarray.Dataset``) laid out as :func:`sciformer.data.xarray_io.to_xarray`
writes them: one variable per channel with dims ``("sample", "t", "x"[, "y"[, "z"]])``, coordinates ``t``, ``x``
..., the channel order in the attribute ``channels`` and a steady problem's coefficient (dims ``("sample", "x",
...)``) named by the attribute ``coefficient``.

Files are opened lazily (xarray's backend arrays): a read loads only the selected samples and frames.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sciformer.data.sources.base import TrajectorySource, check_real_values, time_coordinate
from sciformer.errors import DataError

SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf", ".zarr")


def xarray():
    import xarray  # deferred: heavy import

    return xarray


def open_xarray_file(path: Path) -> Any:
    """Open a NetCDF file or Zarr store lazily; DataError if it cannot be read."""
    if not path.exists():
        raise DataError(f"{path}: file not found (expected a NetCDF file or a Zarr store)")
    xr = xarray()
    try:
        if path.suffix == ".zarr" or path.is_dir():
            return xr.open_zarr(path)
        return xr.open_dataset(path)
    except ImportError as e:
        raise DataError(f"{path}: reading it needs a package that is not installed ({e})") from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise DataError(f"{path}: cannot read as NetCDF/Zarr ({' '.join(str(e).split())[:300]})") from None


class XarraySource(TrajectorySource):
    """A source over an ``xarray.Dataset``: a file path (reopened lazily per process) or a Dataset in memory."""

    kind = "xarray"

    def __init__(self, data: Any, name: str | os.PathLike | None = None):
        in_memory = not isinstance(data, (str, os.PathLike))
        self.path = Path(name) if name is not None else (Path("<xarray>") if in_memory else Path(data))
        self._memory = data if in_memory else None
        xds = self.handle()
        names = [s for s in str(xds.attrs.get("channels", "")).split(",") if s] or [k for k, v in xds.data_vars.items() if v.dims[:2] == ("sample", "t")]
        if not names:
            raise DataError(f"{self.path}: no variable with dims ('sample', 't', ...) and no 'channels' attribute")
        for k in names:
            if k not in xds.data_vars:
                raise DataError(f"{self.path}: missing variable '{k}' named in 'channels'")
        dims = xds[names[0]].dims
        if dims[:2] != ("sample", "t") or not 3 <= len(dims) <= 5:
            raise DataError(f"{self.path}: variable '{names[0]}' has dims {dims}; expected ('sample', 't', 'x'[, 'y'[, 'z']])")
        for k in names:
            self._check_variable(xds, k, dims)
        self.dims, self.channels = dims, names
        self.n_samples, self.n_frames = xds.sizes["sample"], xds.sizes["t"]
        self.grid_shape = tuple(xds.sizes[d] for d in dims[2:])
        self.coords = {d: np.asarray(xds[d].values, dtype=np.float64) if d in xds.coords else np.arange(xds.sizes[d], dtype=np.float64) for d in dims[2:]}
        self.times = time_coordinate(xds["t"].values if "t" in xds.coords else None, self.n_frames)
        self.attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in xds.attrs.items() if k not in ("channels", "coefficient")}
        cname = xds.attrs.get("coefficient")
        if cname:
            if cname not in xds.data_vars:
                raise DataError(f"{self.path}: missing coefficient variable '{cname}'")
            self._check_variable(xds, cname, ("sample", *dims[2:]))
            self.coefficient = str(cname)

    def _check_variable(self, xds: Any, name: str, dims: tuple) -> None:
        var = xds[name]
        if set(var.dims) != set(dims):
            raise DataError(f"{self.path}: variable '{name}' has dims {var.dims}; expected {dims}")
        check_real_values(f"{self.path}: variable '{name}'", var.dtype, var.shape)

    def _open(self) -> Any:
        return self._memory if self._memory is not None else open_xarray_file(self.path)

    def close(self) -> None:
        if self._memory is None:
            super().close()
        self._handle = None

    def _load(self, var: Any, name: str, index: dict[str, Any]) -> np.ndarray:
        try:
            return np.asarray(var.isel(index).values)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise DataError(f"{self.path}: cannot read variable '{name}' ({' '.join(str(e).split())[:300]}); the file may be truncated or corrupt") from None

    def _read(self, xds: Any, samples, frames: slice, stride: int) -> np.ndarray:
        index = {"sample": samples, "t": frames, **{d: slice(None, None, stride) for d in self.dims[2:]}}
        parts = [self._load(xds[k].transpose(*self.dims), k, index) for k in self.channels]
        return np.stack(parts, axis=2).astype(np.float32)

    def _read_coefficient(self, xds: Any, samples, stride: int) -> np.ndarray:
        index = {"sample": samples, **{d: slice(None, None, stride) for d in self.dims[2:]}}
        name = self.coefficient or "coefficient"
        var = xds[name].transpose("sample", *self.dims[2:])
        return self._load(var, name, index)[:, None].astype(np.float32)
