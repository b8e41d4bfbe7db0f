"""Time-series files: a path checked and its first bytes sniffed before anything reads it whole.

A data file is a CSV (one row per timestamp) or an xarray store (NetCDF ``.nc``, Zarr ``.zarr``). Before a CSV
is parsed, its first MiB is inspected: an empty file, NUL bytes, a known binary format or a first line longer
than a MiB are refused at once, so a wrong file costs milliseconds instead of a hang and gigabytes of memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from sciformer.errors import DataError, check_input_file, user_path

SNIFF_BYTES = 1 << 20  # a CSV line longer than this is not a table row
XARRAY_SUFFIXES = (".nc", ".nc4", ".cdf", ".netcdf", ".zarr")

# (leading bytes, what the file is): formats users hand over by mistake
MAGIC = (
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a NetCDF-4 file needs the .nc suffix)"),
    (b"CDF\x01", "a NetCDF file (give it the .nc suffix)"),
    (b"CDF\x02", "a NetCDF file (give it the .nc suffix)"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx, .npz or zipped file)"),
    (b"\x1f\x8b", "a gzip-compressed file (decompress it first)"),
    (b"PAR1", "a Parquet file (read it with pandas and pass the DataFrame)"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\x7fELF", "an executable"),
)


def is_xarray_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in XARRAY_SUFFIXES


def data_label(path: Path) -> str:
    """How messages name a data file: "CSV file 'x.csv'", "NetCDF file 'x.nc'", "Zarr store 'x.zarr'"."""
    suffix = path.suffix.lower()
    kind = "Zarr store" if suffix == ".zarr" else "NetCDF file" if suffix in XARRAY_SUFFIXES else "CSV file"
    return f"{kind} '{path}'"


def data_file(path: str | os.PathLike) -> Path:
    """``path`` (``~`` expanded) if it is a readable data file (a ``.zarr`` store is a folder)."""
    p = user_path(path)
    if p.suffix.lower() == ".zarr" and p.is_dir():
        return p
    return check_input_file(p, "data file")


def read_csv(path: Path, label: str) -> pd.DataFrame:
    """The CSV at ``path`` as read by pandas, after :func:`sniff_csv` found it to be text in lines."""
    sniff_csv(path, label)
    try:
        return pd.read_csv(path, encoding_errors="replace")
    except pd.errors.EmptyDataError:
        raise DataError(f"{label} has no header line; expected a CSV file with a header and one row per timestamp") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[-1][:160]  # pandas' reason names a line number, not its content
        raise DataError(f"{label} cannot be parsed as CSV: {reason}") from None


def sniff_csv(path: Path, label: str) -> None:
    """Refuse a file whose first MiB shows it is not a CSV text file, saying what was found."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head:
        raise DataError(f"{label} is empty; expected a CSV file with a header line and one row per timestamp")
    for magic, what in MAGIC:
        if head.startswith(magic):
            raise DataError(f"{label} is {what}, not a CSV text file")
    nul = head.find(b"\0")
    if nul >= 0:
        raise DataError(f"{label} holds NUL bytes (the first at byte {nul}): a binary file or UTF-16/32 text, not a UTF-8 CSV file")
    if len(head) == SNIFF_BYTES and b"\n" not in head and b"\r" not in head:
        raise DataError(f"{label} has no line break in its first {SNIFF_BYTES // (1 << 20)} MiB: not a CSV file of one row per line")


def open_xarray(path: Path, label: str):
    """The NetCDF file or Zarr store at ``path`` as a lazily read ``xarray.Dataset`` (use it as a context manager)."""
    import xarray as xr  # deferred: heavy import

    if path.suffix.lower() == ".zarr":
        _require("zarr", label)
        opener: Callable[[Path], Any] = xr.open_zarr
    else:
        opener = partial(xr.open_dataset, engine=_netcdf_engine(path, label))
    try:
        return opener(path)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{label} cannot be read by xarray: {reason}") from None


def _netcdf_engine(path: Path, label: str) -> str:
    """scipy reads NetCDF3 (no extra package); NetCDF-4 is HDF5 and needs h5netcdf or netCDF4."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith((b"CDF\x01", b"CDF\x02")):
        return "scipy"
    if head.startswith(b"\x89HDF"):
        for package, engine in (("h5netcdf", "h5netcdf"), ("netCDF4", "netcdf4")):
            try:
                __import__(package)
                return engine
            except ImportError:
                continue
        raise DataError(f"{label} is NetCDF-4 (HDF5): reading it needs h5netcdf (pip install h5netcdf) or netCDF4")
    if not head:
        raise DataError(f"{label} is empty; expected a NetCDF file")
    raise DataError(f"{label} is not a NetCDF file (its first bytes are {head[:4]!r}, expected b'CDF' or b'\\x89HDF')")


def _require(package: str, label: str) -> None:
    try:
        __import__(package)
    except ImportError:
        raise DataError(f"{label}: reading a Zarr store needs the '{package}' package (pip install {package})") from None
