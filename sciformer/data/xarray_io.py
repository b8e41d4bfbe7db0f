"""PDE sample sets ↔ ``xarray.Dataset`` with named dims and coordinates; NetCDF write/read.

Layout of the ``xarray.Dataset``: one data variable per channel with dims
``("sample", "t", "x"[, "y"[, "z"]])``, coordinates ``sample`` (file position), ``t``, ``x``, ``y``,
``z``; a Darcy coefficient is a variable with dims ``("sample", "x", ...)`` named by the attribute
``coefficient``; the channel order is kept in the attribute ``channels`` and the PDE parameters
(``beta``, ``Nu``, ...) as attributes. NetCDF goes through xarray's default engine (netCDF4 or
h5netcdf when installed, else scipy's NetCDF3 writer).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sciformer.data.pde import SPACE_AXES, PDEDataset
from sciformer.data.sources.xarray_files import XarraySource
from sciformer.errors import DataError

__all__ = ["from_xarray", "read_netcdf", "to_xarray", "write_netcdf"]


def _xr():
    import xarray as xr  # deferred: heavy import

    return xr


def _netcdf_attr(v: Any):
    """NetCDF attributes must be str or numbers (NetCDF3: no int64, no bool)."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v) if -(2**31) <= int(v) < 2**31 else float(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple, np.ndarray)):
        a = np.asarray(v)
        if a.dtype.kind in "fiu":
            return a.astype(np.float64)
    return str(v)


def to_xarray(
    data: PDEDataset | torch.Tensor | np.ndarray,
    *,
    coords: dict[str, Any] | None = None,
    channels: list[str] | None = None,
    attrs: dict[str, Any] | None = None,
    coefficient: torch.Tensor | np.ndarray | None = None,
    max_samples: int | None = None,
):
    """Build an ``xarray.Dataset`` from a :class:`PDEDataset` (its selected split, all frames after
    striding) or from an array ``u [N, T, C, *grid]`` with ``coords`` (``"t"``, ``"x"``, ...).

    The result is in memory: pass ``max_samples`` to cap it for large files.
    """
    xr = _xr()
    if isinstance(data, PDEDataset):
        ds = data
        n = ds.n_samples if max_samples is None else min(max_samples, ds.n_samples)
        if ds.is_darcy:
            block = ds.trajectory_block(0, n)  # [n, 2, 1, *grid]: coefficient, solution
            coefficient, u = block[:, 0, 0], block[:, 1:]
            t = np.zeros(1)
        else:
            u = ds.trajectory_block(0, n)
            t = ds.grid["t"].double().numpy()
        coords = {ax: ds.grid[ax].double().numpy() for ax in SPACE_AXES[: len(ds.spatial_shape)]}
        coords["t"] = t
        channels = ds.channels
        attrs = {**ds.attrs, **(attrs or {})}
        sample = np.asarray(ds._rows[:n], dtype=np.int32)
    else:
        u = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        if max_samples is not None:
            u = u[:max_samples]
        if not 4 <= u.ndim <= 6:
            raise DataError(f"to_xarray: expected u of shape [N, T, C, *grid] (1D-3D), got {u.shape}")
        coords = dict(coords or {})
        channels = channels or ([f"c{i}" for i in range(u.shape[2])] if u.shape[2] > 1 else ["u"])
        attrs = dict(attrs or {})
        sample = np.arange(u.shape[0], dtype=np.int32)
        if coefficient is not None:
            coefficient = (coefficient.detach().cpu().numpy() if isinstance(coefficient, torch.Tensor) else np.asarray(coefficient))[: u.shape[0]]
    n_space = u.ndim - 3
    dims_space = SPACE_AXES[:n_space]
    if len(channels) != u.shape[2]:
        raise DataError(f"to_xarray: {u.shape[2]} channels but names {channels}")
    crd: dict[str, Any] = {"sample": sample}
    for ax, size in zip(("t", *dims_space), (u.shape[1], *u.shape[3:])):
        c = coords.get(ax)
        c = np.arange(size, dtype=np.float64) if c is None else np.asarray(c, dtype=np.float64).reshape(-1)
        if c.size != size:
            raise DataError(f"to_xarray: coordinate {ax!r} has {c.size} entries; expected {size}")
        crd[ax] = c
    dims = ("sample", "t", *dims_space)
    variables = {name: (dims, u[:, :, i]) for i, name in enumerate(channels)}
    out_attrs = {k: _netcdf_attr(v) for k, v in attrs.items()}
    out_attrs["channels"] = ",".join(channels)
    if coefficient is not None:
        cname = "nu" if "nu" not in channels else "coefficient"
        variables[cname] = (("sample", *dims_space), np.asarray(coefficient, dtype=np.float32))
        out_attrs["coefficient"] = cname
    return xr.Dataset(variables, coords=crd, attrs=out_attrs)


def from_xarray(xds, split: str = "all", **kwargs) -> PDEDataset:
    """A :class:`PDEDataset` over an ``xarray.Dataset`` laid out as :func:`to_xarray` writes it.

    Channels: the attribute ``channels`` if present, else every variable with dims
    ``("sample", "t", ...)``. ``split`` / ``kwargs`` as for :func:`~sciformer.data.pde.open_pdebench`
    (the single-file split rule: test = first 10%).
    """
    return PDEDataset(XarraySource(xds), split, **kwargs)


def write_netcdf(xds, path: str | os.PathLike, engine: str | None = None) -> Path:
    """Write an ``xarray.Dataset`` to NetCDF (xarray's default engine unless ``engine`` is given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    xds.to_netcdf(path, engine=engine)
    return path


def read_netcdf(path: str | os.PathLike, engine: str | None = None):
    """Read a NetCDF file into memory as an ``xarray.Dataset``; DataError if unreadable."""
    xr = _xr()
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found (expected a NetCDF file)")
    try:
        with xr.open_dataset(path, engine=engine) as xds:
            return xds.load()
    except (OSError, ValueError, TypeError) as e:
        raise DataError(f"{path}: cannot read as NetCDF ({e})") from None
