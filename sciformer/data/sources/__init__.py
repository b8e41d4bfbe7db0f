"""Trajectory sources: one class per data format, each giving lazy indexed reads of PDE trajectories.

Every source is a :class:`TrajectorySource` holding ``N`` trajectories of ``T`` frames of ``C``
channels on a 1D-3D grid. What it exposes (and what fit, evaluate and rollout read through)::

    src = open_source("2D_CFD_Rand_M0.1_Eta0.01_Zeta0.01_periodic_128_Train.hdf5")
    src.n_samples, src.n_frames, src.channels, src.grid_shape      # sizes
    src.coords["x"], src.times, src.params, src.attrs               # grid, times, PDE coefficients
    src.coefficient                                                 # steady problems (Darcy): the input field's name
    src.read(slice(0, 8), frames=slice(0, 10), stride=2)            # float32 [8, 10, C, *grid/2]
    src.read([3, 17, 42])                                           # increasing sample indices
    src.read_coefficient(slice(0, 8))                               # steady problems: float32 [8, 1, *grid]
    src.fingerprint(); src.check_unchanged(fingerprint)             # path, size, mtime, shapes: no data read
    with src: ...                                                   # close(); pickles without its handle

Reads never return silently wrong numbers: NaN/inf values, complex or non-numeric fields, empty axes,
never-written HDF5 chunks, external or virtual storage, link cycles and unreadable (truncated,
corrupted) chunks each raise one :class:`~sciformer.errors.DataError` line naming the file, the
dataset and the first bad sample. A source opens its file lazily, once per process, so one object
can be handed to ``DataLoader`` workers and each opens its own handle.

Formats (:func:`open_source` picks one by suffix, then by content):

* PDEBench HDF5, single-file and group-per-sample layouts (:mod:`.hdf5`);
* The Well's HDF5 layout (:mod:`.the_well`);
* neuraloperator ``.npz`` / ``.pt`` (``x``, ``y``; :mod:`.arrays`);
* NetCDF and Zarr through xarray, as :func:`sciformer.data.xarray_io.to_xarray` lays them out (:mod:`.xarray_files`);
* arrays in memory (generated sets): :class:`ArraySource`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sciformer.data.sources.arrays import ArraySource, neuralop_source
from sciformer.data.sources.base import SPACE_AXES, TrajectorySource
from sciformer.data.sources.hdf5 import PDEBenchGroup, PDEBenchSingle, open_h5, open_pdebench_source
from sciformer.data.sources.the_well import TheWellSource, is_the_well
from sciformer.data.sources.xarray_files import SUFFIXES as XARRAY_SUFFIXES
from sciformer.data.sources.xarray_files import XarraySource
from sciformer.errors import DataError, describe_kind, user_path

__all__ = ["SPACE_AXES", "SUFFIXES", "ArraySource", "PDEBenchGroup", "PDEBenchSingle", "TheWellSource", "TrajectorySource", "XarraySource", "open_source"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
ARRAY_SUFFIXES = (".npz", ".pt")
SUFFIXES = HDF5_SUFFIXES + XARRAY_SUFFIXES + ARRAY_SUFFIXES  # what a PDE data file may be named
_MAGIC = {b"\x89HDF\r\n\x1a\n": "hdf5", b"CDF\x01": "netcdf", b"CDF\x02": "netcdf", b"PK\x03\x04": "zip"}


def _sniff(path: Path) -> str | None:
    """The format of a file with an unfamiliar suffix, from its first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def open_hdf5_source(path: Path) -> TrajectorySource:
    with open_h5(path) as f:
        return TheWellSource(path, f) if is_the_well(f) else open_pdebench_source(path, f)


def open_source(path: str | os.PathLike | Any) -> TrajectorySource:
    """The source of a data file (or of an in-memory ``xarray.Dataset``), by suffix, else by content.

    DataError for a missing, unreadable or unrecognised file, naming it and what was expected.
    """
    if not isinstance(path, (str, os.PathLike)):
        return XarraySource(path)
    path = user_path(path)
    kind = describe_kind(path)
    if kind == "missing":
        raise DataError(f"{path}: file not found (expected a PDE data file: {', '.join(SUFFIXES)})")
    if kind is not None and not (kind == "a directory" and path.suffix == ".zarr"):
        raise DataError(f"PDE data file '{path}' is {kind}, not a regular file ({', '.join(SUFFIXES)}) or a .zarr store")
    suffix = path.suffix.lower()
    kind = (
        "hdf5"
        if suffix in HDF5_SUFFIXES
        else "netcdf"
        if suffix in XARRAY_SUFFIXES
        else "zip"
        if suffix == ".npz"
        else "pt"
        if suffix == ".pt"
        else _sniff(path)
    )
    if kind == "hdf5":
        return open_hdf5_source(path)
    if kind == "netcdf":
        return XarraySource(path)
    if kind in ("zip", "pt"):
        return neuralop_source(path)
    raise DataError(f"PDE data file '{path}': unrecognised format; expected HDF5 (PDEBench or The Well), NetCDF, Zarr, .npz or .pt ({', '.join(SUFFIXES)})")
