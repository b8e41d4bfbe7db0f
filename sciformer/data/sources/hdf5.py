"""HDF5 access that refuses what would read back silently wrong, and the two PDEBench layouts.

PDEBench (Takamoto et al., "PDEBench: An Extensive Benchmark for Scientific Machine Learning",
arXiv 2210.07182) ships two layouts:

* **single file**: top-level ``tensor [N, T, X(, Y, Z)]`` (or the compressible-NS fields
  ``density / pressure / Vx / Vy / Vz``; or fields named by the root attribute ``fields``, as
  sciformer's generators write them), coordinates ``x-coordinate`` ... ``t-coordinate``, and for
  Darcy flow the coefficient ``nu [N, X, Y]`` beside the solution ``tensor [N, 1, X, Y]``.
* **group per sample**: ``"0000"/data [T, X(, Y, Z), C]`` with ``"0000"/grid/x|y|z|t`` (a top-level
  ``grid`` group is accepted as well).

Every dataset is checked before it is read (:func:`check_dataset`): real numeric dtype, no empty
axis, no external or virtual storage, every chunk written (an unwritten chunk reads back as the fill
value). Read failures (truncated or corrupted chunks) name the file, the dataset and the samples.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from sciformer.data.sources.base import SPACE_AXES, TrajectorySource, check_real_values, sample_ids, time_coordinate
from sciformer.errors import DataError

CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")
EXPECTED_SINGLE = "a top-level dataset 'tensor' [N, T, X(, Y, Z)] (or 'density'/'pressure'/'Vx'...)"
EXPECTED_GROUP = "sample groups '0000'/'data' [T, X(, Y, Z), C] with 'grid/x'"


def h5py():
    import h5py  # deferred: `import sciformer` must stay light

    return h5py


def open_h5(path: str | os.PathLike) -> Any:
    """Open ``path`` read-only, turning every low-level failure into a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected an HDF5 .hdf5/.h5 file)")
    try:
        # A 4 MB chunk cache holds a few chunks of a 2D frame block; reads are chunk-sized anyway.
        return h5py().File(path, "r", rdcc_nbytes=4 * 2**20)
    except OSError as e:
        raise DataError(f"{path}: cannot open as HDF5 ({e}); the file is truncated, corrupt or not HDF5") from None


def member(path: Path, group: Any, key: str) -> Any:
    """``group[key]``, refusing external links and turning link cycles or dangling links into a DataError."""
    link = group.get(key, getlink=True)
    if link is None:
        raise DataError(f"{path}: missing key '{key}'")
    if isinstance(link, h5py().ExternalLink):
        raise DataError(f"{path}: key '{key}' is an external link to '{link.filename}'; sciformer reads only data stored in the file itself")
    try:
        return group[key]
    except (KeyError, RuntimeError, OSError) as e:
        raise DataError(f"{path}: key '{key}' cannot be opened ({e}); a link cycle or a dangling link") from None


def check_dataset(path: Path, ds: Any, key: str, *, numeric: bool = True) -> None:
    """Refuse a dataset that would read back wrong: complex, non-numeric, empty, external, virtual, unwritten."""
    check_real_values(f"{path}: dataset '{key}'", ds.dtype, ds.shape, numeric=numeric)
    if ds.external:
        raise DataError(
            f"{path}: dataset '{key}' keeps its data in external files ({ds.external[0][0]!r} ...); sciformer reads only data stored in the file itself"
        )
    if ds.is_virtual:
        raise DataError(f"{path}: dataset '{key}' is a virtual dataset mapped from other files; sciformer reads only data stored in the file itself")
    _check_written(path, ds, key)


def _check_written(path: Path, ds: Any, key: str) -> None:
    """Every chunk (or the contiguous block) of ``ds`` was written; an unwritten one reads as the fill value."""
    if ds.chunks is None:
        if ds.id.get_storage_size() == 0:
            raise DataError(f"{path}: dataset '{key}' was never written (no storage allocated); it would read as fill values")
        return
    grid = [math.ceil(n / c) for n, c in zip(ds.shape, ds.chunks)]
    expected = math.prod(grid)
    written = ds.id.get_num_chunks()
    if written >= expected:
        return
    present = {ds.id.get_chunk_info(i).chunk_offset for i in range(written)}  # the error path only: one pass
    for flat in range(expected):
        index = np.unravel_index(flat, grid)
        offset = tuple(int(i) * c for i, c in zip(index, ds.chunks))
        if offset not in present:
            raise DataError(
                f"{path}: dataset '{key}' has {expected - written} of {expected} chunks never written "
                f"(the first at sample {offset[0]}); they would read back as fill values"
            )


def read_h5(path: Path, ds: Any, key: str, index: tuple, samples: str = "") -> np.ndarray:
    """``ds[index]`` with I/O failures (truncated data, corrupted chunks) reported as one DataError line."""
    try:
        return np.asarray(ds[index])
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as e:
        at = f" at {samples}" if samples else ""
        reason = " ".join(str(e).split())
        raise DataError(f"{path}: cannot read dataset '{key}'{at} ({reason}); the file may be truncated or corrupt") from None


def attributes(obj: Any) -> dict[str, Any]:
    """HDF5 attributes as plain Python values (bytes → str, 0-d arrays → scalars)."""
    out: dict[str, Any] = {}
    for k, v in obj.attrs.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, (np.ndarray, np.generic)) and np.ndim(v) == 0:
            v = v.item()
        out[str(k)] = v
    return out


def name_list(value: Any) -> list[str]:
    """An attribute holding names: a comma-separated string or an array of (byte) strings."""
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(value).reshape(-1)]


def read_samples(path: Path, ds: Any, key: str, samples: slice | np.ndarray, rest: tuple, n: int) -> np.ndarray:
    """``ds[samples, *rest]`` (samples on the first axis); a failed read is retried sample by sample, so the error
    names the first sample that cannot be read."""
    ids = sample_ids(samples, n)
    where = f"sample {ids[0]}" if len(ids) == 1 else f"samples {ids[0]}..{ids[-1]}"
    try:
        return read_h5(path, ds, key, (samples, *rest), where)
    except DataError:
        if len(ids) == 1:
            raise
    for i in ids:  # the error path only
        read_h5(path, ds, key, (slice(i, i + 1), *rest), f"sample {i}")
    raise DataError(f"{path}: cannot read dataset '{key}' at {where}; the file may be truncated or corrupt")


class HDF5Source(TrajectorySource):
    """Shared by the HDF5 layouts: the handle and coordinate reading."""

    def _open(self) -> Any:
        return open_h5(self.path)

    def _coordinate(self, f: Any, key: str, size: int, what: str) -> np.ndarray:
        if key not in f:
            raise DataError(f"{self.path}: missing key '{key}' (expected a coordinate array of length {size} {what})")
        ds = member(self.path, f, key)
        check_dataset(self.path, ds, key)
        c = read_h5(self.path, ds, key, ()).astype(np.float64).reshape(-1)
        if c.size != size:
            raise DataError(f"{self.path}: key '{key}' has {c.size} entries; expected {size}")
        return c

    def _times(self, f: Any, key: str) -> np.ndarray:
        if key not in f:
            return time_coordinate(None, self.n_frames)
        ds = member(self.path, f, key)
        check_dataset(self.path, ds, key)
        return time_coordinate(read_h5(self.path, ds, key, ()), self.n_frames)


def single_fields(f: Any, path: Path) -> list[str] | None:
    """Names of the time-dependent fields of a single-file file, in channel order, or None."""
    datasets = {k for k in f if isinstance(member(path, f, k), h5py().Dataset)}
    if "tensor" in datasets:
        return ["tensor"]
    cfd = [k for k in CFD_FIELDS if k in datasets]
    if cfd:
        return cfd
    names = name_list(f.attrs.get("fields"))  # multi-field files from sciformer's generators (FitzHugh-Nagumo u, v)
    if names:
        missing = [k for k in names if k not in datasets]
        if missing:
            raise DataError(f"{path}: root attribute 'fields' names {names} but key '{missing[0]}' is missing")
        return names
    return None


class PDEBenchSingle(HDF5Source):
    """PDEBench single-file layout: each field ``[N, T, *grid]``; channels are the fields."""

    kind = "pdebench-single"

    def __init__(self, path: Path, f: Any, fields: list[str]):
        self.path, self.fields = Path(path), fields
        first = member(path, f, fields[0])
        shape = first.shape
        if not 3 <= len(shape) <= 5:
            raise DataError(f"{path}: key '{fields[0]}' has shape {tuple(shape)}; expected [N, T, X], [N, T, X, Y] or [N, T, X, Y, Z] (rank 3 to 5)")
        for k in fields:
            ds = member(path, f, k)
            if ds.shape != shape:
                raise DataError(f"{path}: key '{k}' has shape {tuple(ds.shape)}; expected {tuple(shape)} like '{fields[0]}'")
            check_dataset(path, ds, k)
        if fields[0] in CFD_FIELDS:
            need = list(CFD_FIELDS[: len(shape)])  # compressible NS: rank 3 → 3 fields, 4 → 4, 5 → 5
            missing = [k for k in need if k not in fields]
            if missing:
                raise DataError(f"{path}: compressible-NS file of rank {len(shape)} is missing key '{missing[0]}' (expected {need})")
        self.n_samples, self.n_frames, self.grid_shape = shape[0], shape[1], tuple(shape[2:])
        self.channels = list(fields)
        if "nu" in f and fields == ["tensor"]:
            nu = member(path, f, "nu")
            if tuple(nu.shape) != (self.n_samples, *self.grid_shape):
                raise DataError(
                    f"{path}: Darcy key 'nu' has shape {tuple(nu.shape)}; expected [N, *grid] = "
                    f"{(self.n_samples, *self.grid_shape)} to match 'tensor' {tuple(shape)}"
                )
            check_dataset(path, nu, "nu")
            self.coefficient = "nu"
        what = f"for the {len(self.grid_shape)}D field '{fields[0]}' {tuple(shape)}"
        self.coords = {ax: self._coordinate(f, f"{ax}-coordinate", n, what) for ax, n in zip(SPACE_AXES, self.grid_shape)}
        self.times = self._times(f, "t-coordinate")
        self.attrs = attributes(f)

    def _read(self, f: Any, samples, frames: slice, stride: int) -> np.ndarray:
        space = (slice(None, None, stride),) * len(self.grid_shape)
        arrays = [read_samples(self.path, f[k], k, samples, (frames, *space), self.n_samples) for k in self.fields]
        return np.stack(arrays, axis=2).astype(np.float32, copy=False)

    def _read_coefficient(self, f: Any, samples, stride: int) -> np.ndarray:
        space = (slice(None, None, stride),) * len(self.grid_shape)
        key = self.coefficient or "nu"
        a = read_samples(self.path, f[key], key, samples, space, self.n_samples)
        return a[:, None].astype(np.float32, copy=False)


class PDEBenchGroup(HDF5Source):
    """PDEBench group-per-sample layout: ``KEY/data [T, *grid, C]``, samples in sorted key order."""

    kind = "pdebench-group"

    def __init__(self, path: Path, f: Any, keys: list[str]):
        self.path, self.keys = Path(path), keys
        first = keys[0]
        data = member(path, f, f"{first}/data")
        check_dataset(path, data, f"{first}/data")
        shape = tuple(data.shape)
        if not 3 <= len(shape) <= 5:
            raise DataError(f"{path}: key '{first}/data' has shape {shape}; expected [T, X, C], [T, X, Y, C] or [T, X, Y, Z, C] (rank 3 to 5)")
        self.sample_shape = shape
        self.n_samples, self.n_frames, self.grid_shape = len(keys), shape[0], tuple(shape[1:-1])
        n_c = shape[-1]
        # PDEBench writes the grid inside each sample group; a shared top-level one is accepted too.
        base = f"{first}/grid" if f"{first}/grid" in f else ("grid" if "grid" in f else f"{first}/grid")
        what = f"for '{first}/data' {shape}"
        self.coords = {ax: self._coordinate(f, f"{base}/{ax}", n, what) for ax, n in zip(SPACE_AXES, self.grid_shape)}
        self.times = self._times(f, f"{base}/t")
        channels = [f"c{i}" for i in range(n_c)] if n_c > 1 else ["u"]
        names = name_list(f.attrs.get("channels"))
        self.channels = names if len(names) == n_c else channels
        self.attrs = attributes(f)

    def dataset_name(self, channel: int, sample: int) -> str:
        return f"{self.keys[sample]}/data"

    def _read(self, f: Any, samples, frames: slice, stride: int) -> np.ndarray:
        space = (slice(None, None, stride),) * len(self.grid_shape)
        out = []
        for i in sample_ids(samples, self.n_samples):  # one hyperslab per sample group: groups are separate datasets
            key = f"{self.keys[i]}/data"
            d = member(self.path, f, key)
            if d.shape != self.sample_shape:
                raise DataError(f"{self.path}: key '{key}' has shape {tuple(d.shape)}; expected {self.sample_shape} like '{self.keys[0]}/data'")
            check_dataset(self.path, d, key)
            a = read_h5(self.path, d, key, (frames, *space, slice(None)), f"sample {i}")
            out.append(np.moveaxis(a, -1, 1))  # [t, *grid, C] -> [t, C, *grid]
        return np.stack(out).astype(np.float32, copy=False)


def group_keys(f: Any, path: Path) -> list[str]:
    return sorted(k for k in f if k != "grid" and isinstance(member(path, f, k), h5py().Group))


def open_pdebench_source(path: str | os.PathLike, f: Any | None = None) -> PDEBenchSingle | PDEBenchGroup:
    """The PDEBench source of an HDF5 file (layout detected); DataError if it is neither layout."""
    path = Path(path)
    if f is None:
        with open_h5(path) as handle:
            return open_pdebench_source(path, handle)
    fields = single_fields(f, path)
    if fields is not None:
        return PDEBenchSingle(path, f, fields)
    keys = group_keys(f, path)
    if keys:
        for k in keys:
            if "data" not in member(path, f, k):
                raise DataError(f"{path}: group '{k}' has no key '{k}/data'; expected {EXPECTED_GROUP} in every sample group")
        return PDEBenchGroup(path, f, keys)
    found = sorted(f.keys())
    raise DataError(
        f"{path}: neither PDEBench layout; expected {EXPECTED_SINGLE} (single-file layout) or {EXPECTED_GROUP} "
        f"(group-per-sample layout); found keys {found[:12]}" + (" ..." if len(found) > 12 else "")
    )
