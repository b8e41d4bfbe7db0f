"""PDEBench HDF5 readers: both layouts, 1D/2D/3D, lazy and chunked.

PDEBench (Takamoto et al., "PDEBench: An Extensive Benchmark for Scientific Machine Learning",
arXiv 2210.07182) ships two HDF5 layouts (see ``shared/reference/PDE.md`` §1.2-1.4):

* **single file**: top-level ``tensor [N, T, X(, Y, Z)]`` (or the compressible-NS fields
  ``density / pressure / Vx / Vy / Vz``, each ``[N, T, X(, Y, Z)]``), coordinate arrays
  ``x-coordinate`` / ``y-coordinate`` / ``z-coordinate`` / ``t-coordinate``, and for Darcy flow the
  coefficient ``nu [N, X, Y]`` next to the solution ``tensor [N, 1, X, Y]``. Test split = the **first**
  10% of the samples.
* **group per sample**: ``"0000"/data [T, X(, Y, Z), C]`` with ``"0000"/grid/x|y|z|t`` (a top-level
  ``grid`` group is accepted as well). Test split = the **last** 10% of the sorted keys.

Nothing is read eagerly: :class:`PDEDataset` holds the file open (one handle per process, so it works
inside ``DataLoader`` workers) and reads hyperslabs on demand; :meth:`PDEDataset.iter_trajectories` and
:meth:`PDEDataset.iter_batches` stream contiguous sample blocks, so memory is bounded by the chunk,
not by the file.

Operator contract: one pair is ``u_in [initial_step * C, *grid]`` (the history frames stacked
time-major along channels) and ``u_out [C, *grid]`` (the next frame); batches add a leading ``B``.
Darcy files give ``(a [1, *grid], u [1, *grid])``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sciformer.errors import DataError

__all__ = [
    "CFD_FIELDS",
    "PDEDataset",
    "PairDataset",
    "describe",
    "detect_layout",
    "open_pdebench",
]

CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")
SPACE_AXES = ("x", "y", "z")
_EXPECTED_SINGLE = "a top-level dataset 'tensor' [N, T, X(, Y, Z)] (or 'density'/'pressure'/'Vx'...)"
_EXPECTED_GROUP = "sample groups '0000'/'data' [T, X(, Y, Z), C] with 'grid/x'"
_CHUNK_BYTES = 64 * 2**20  # default streaming block: ~64 MB of float32 per read


def _h5py():
    import h5py  # deferred: `import sciformer` must stay light

    return h5py


def _open_h5(path: str | os.PathLike):
    """Open ``path`` read-only, turning every low-level failure into a :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found (expected a PDEBench .hdf5/.h5 file)")
    h5py = _h5py()
    try:
        # A 4 MB chunk cache holds a few chunks of a 2D frame block; reads are chunk-sized anyway.
        return h5py.File(path, "r", rdcc_nbytes=4 * 2**20)
    except OSError as e:
        raise DataError(
            f"{path}: cannot open as HDF5 ({e}); the file is truncated, corrupt or not HDF5 "
            "(expected a PDEBench .hdf5/.h5 file)"
        ) from None


def _read(path: Path, obj, key: str, index=()) -> np.ndarray:
    """``obj[index]`` with I/O errors (truncated data, bad chunks) reported as a DataError."""
    try:
        return np.asarray(obj[index])
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise DataError(
            f"{path}: cannot read key '{key}' ({e}); the file may be truncated or corrupt"
        ) from None


def _attrs(obj) -> dict[str, Any]:
    """HDF5 attributes as plain Python values (bytes → str, 0-d arrays → scalars)."""
    out: dict[str, Any] = {}
    for k, v in obj.attrs.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, np.ndarray) and v.ndim == 0:
            v = v.item()
        elif isinstance(v, np.generic):
            v = v.item()
        out[str(k)] = v
    return out


# --------------------------------------------------------------------------------------------------
# Sources: one per layout (plus in-memory arrays); they know the file structure and read hyperslabs.
# Every `read` returns float32 numpy [b, t, C, *space]; samples are addressed by position 0..n-1.
# --------------------------------------------------------------------------------------------------


@dataclass
class _Meta:
    n: int  # samples in the file
    n_t: int  # frames per trajectory
    space: tuple[int, ...]  # spatial shape
    channels: list[str]
    coords: dict[str, np.ndarray]  # "x", "y", "z", "t"
    attrs: dict[str, Any] = field(default_factory=dict)
    coef: str | None = None  # Darcy: name of the static coefficient field (input of the operator)


def _single_fields(f, path: Path) -> list[str] | None:
    """Names of the time-dependent fields of a single-file file, in channel order, or None."""
    h5py = _h5py()
    datasets = {k for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    if "tensor" in datasets:
        return ["tensor"]
    cfd = [k for k in CFD_FIELDS if k in datasets]
    if cfd:
        return cfd
    # Multi-field files written by sciformer's generators (e.g. FitzHugh-Nagumo `u`, `v`) name their
    # field datasets, in channel order, in the root attribute `fields`.
    names = f.attrs.get("fields")
    if names is not None:
        if isinstance(names, bytes):
            names = names.decode()
        names = [s.strip() for s in str(names).split(",") if s.strip()]
        missing = [k for k in names if k not in datasets]
        if missing:
            raise DataError(
                f"{path}: root attribute 'fields' names {names} but key '{missing[0]}' is missing"
            )
        return names
    return None


class _SingleSource:
    layout = "single"

    def __init__(self, path: Path, f, fields: list[str]):
        self.path = path
        self.fields = fields
        shape = f[fields[0]].shape
        if not 3 <= len(shape) <= 5:
            raise DataError(
                f"{path}: key '{fields[0]}' has shape {tuple(shape)}; expected [N, T, X], "
                "[N, T, X, Y] or [N, T, X, Y, Z] (rank 3 to 5)"
            )
        for k in fields[1:]:
            if f[k].shape != shape:
                raise DataError(
                    f"{path}: key '{k}' has shape {tuple(f[k].shape)}; expected {tuple(shape)} "
                    f"like '{fields[0]}'"
                )
        if fields[0] in CFD_FIELDS:
            # Compressible NS: density, pressure, Vx always; Vy from 2D, Vz in 3D.
            need = list(CFD_FIELDS[: len(shape)])  # rank 3 → 3 fields, 4 → 4, 5 → 5
            for k in need:
                if k not in fields:
                    raise DataError(
                        f"{path}: compressible-NS file of rank {len(shape)} is missing key '{k}' "
                        f"(expected {need})"
                    )
        n, n_t, space = shape[0], shape[1], tuple(shape[2:])
        coef = None
        if "nu" in f and fields == ["tensor"]:
            nu_shape = tuple(f["nu"].shape)
            if nu_shape != (n, *space):
                raise DataError(
                    f"{path}: Darcy key 'nu' has shape {nu_shape}; expected [N, *grid] = "
                    f"{(n, *space)} to match 'tensor' {tuple(shape)}"
                )
            coef = "nu"
        coords: dict[str, np.ndarray] = {}
        for ax, size in zip(SPACE_AXES, space):
            key = f"{ax}-coordinate"
            if key not in f:
                raise DataError(
                    f"{path}: missing key '{key}' (expected a coordinate array of length {size} "
                    f"for the {len(space)}D field '{fields[0]}' {tuple(shape)})"
                )
            c = _read(path, f[key], key, ()).astype(np.float64).reshape(-1)
            if c.size != size:
                raise DataError(f"{path}: key '{key}' has {c.size} entries; expected {size}")
            coords[ax] = c
        coords["t"] = _time_coordinate(path, f, "t-coordinate", n_t)
        self.meta = _Meta(n, n_t, space, list(fields), coords, _attrs(f), coef)

    def read(self, f, rows: slice, t: slice, s: int) -> np.ndarray:
        sp = (slice(None, None, s),) * len(self.meta.space)
        arrs = [_read(self.path, f[k], k, (rows, t, *sp)) for k in self.fields]
        return np.stack(arrs, axis=2).astype(np.float32, copy=False)

    def read_coef(self, f, rows: slice, s: int) -> np.ndarray:
        sp = (slice(None, None, s),) * len(self.meta.space)
        a = _read(self.path, f[self.meta.coef], self.meta.coef, (rows, *sp))
        return a[:, None].astype(np.float32, copy=False)


def _time_coordinate(path: Path, g, key: str, n_t: int) -> np.ndarray:
    """PDEBench stores T+1 times for T frames (§1.2); take the first T. Missing → frame index."""
    if key not in g:
        return np.arange(n_t, dtype=np.float64)
    t = _read(path, g[key], key, ()).astype(np.float64).reshape(-1)
    if t.size in (n_t, n_t + 1):
        return t[:n_t]
    # Darcy files carry a 10-entry t-coordinate for a single frame: it describes nothing here.
    return np.arange(n_t, dtype=np.float64)


class _GroupSource:
    layout = "group"

    def __init__(self, path: Path, f, keys: list[str]):
        self.path = path
        self.keys = keys
        first = keys[0]
        shape = f[first]["data"].shape
        if not 3 <= len(shape) <= 5:
            raise DataError(
                f"{path}: key '{first}/data' has shape {tuple(shape)}; expected [T, X, C], "
                "[T, X, Y, C] or [T, X, Y, Z, C] (rank 3 to 5)"
            )
        self.shape = tuple(shape)
        n_t, space, n_c = shape[0], tuple(shape[1:-1]), shape[-1]
        # PDEBench writes the grid inside each sample group; accept a shared top-level one too.
        grid_base = f"{first}/grid" if f"{first}/grid" in f else ("grid" if "grid" in f else None)
        coords: dict[str, np.ndarray] = {}
        for ax, size in zip(SPACE_AXES, space):
            key = f"{grid_base or first + '/grid'}/{ax}"
            if grid_base is None or key not in f:
                raise DataError(
                    f"{path}: missing key '{key}' (expected the {ax} grid of length {size} for "
                    f"'{first}/data' {tuple(shape)})"
                )
            c = _read(path, f[key], key, ()).astype(np.float64).reshape(-1)
            if c.size != size:
                raise DataError(f"{path}: key '{key}' has {c.size} entries; expected {size}")
            coords[ax] = c
        coords["t"] = _time_coordinate(path, f[grid_base], "t", n_t)
        channels = [f"c{i}" for i in range(n_c)] if n_c > 1 else ["u"]
        names = f.attrs.get("channels")
        if names is not None:
            names = [s.strip() for s in (names.decode() if isinstance(names, bytes) else str(names)).split(",")]
            if len(names) == n_c:
                channels = names
        self.meta = _Meta(len(keys), n_t, space, channels, coords, _attrs(f))

    def read(self, f, rows: slice, t: slice, s: int) -> np.ndarray:
        sp = (slice(None, None, s),) * len(self.meta.space)
        out = []
        for k in self.keys[rows]:  # one hyperslab per sample group: groups are separate datasets
            key = f"{k}/data"
            try:
                d = f[k]["data"]
            except KeyError:
                raise DataError(f"{self.path}: missing key '{key}'") from None
            if d.shape != self.shape:
                raise DataError(
                    f"{self.path}: key '{key}' has shape {tuple(d.shape)}; expected {self.shape} "
                    f"like '{self.keys[0]}/data'"
                )
            a = _read(self.path, d, key, (t, *sp, slice(None)))
            out.append(np.moveaxis(a, -1, 1))  # [t, *space, C] -> [t, C, *space]
        return np.stack(out).astype(np.float32, copy=False)


class _ArraySource:
    """In-memory trajectories ``fields [N, T, C, *space]`` (xarray / NetCDF / neuralop sets)."""

    layout = "array"

    def __init__(self, fields: np.ndarray, channels: Sequence[str], coords: dict[str, np.ndarray],
                 attrs: dict[str, Any] | None = None, coef: np.ndarray | None = None,
                 path: str = "<array>"):
        fields = np.asarray(fields)
        if not 4 <= fields.ndim <= 6:
            raise DataError(f"{path}: expected fields of shape [N, T, C, *grid] (1D-3D), got {fields.shape}")
        self.path = Path(path)
        self.fields = fields
        self.coef_arr = None if coef is None else np.asarray(coef)
        n, n_t, n_c = fields.shape[:3]
        space = tuple(fields.shape[3:])
        if len(channels) != n_c:
            raise DataError(f"{path}: {n_c} channels in the data but names {list(channels)}")
        if self.coef_arr is not None and self.coef_arr.shape != (n, *space):
            raise DataError(f"{path}: coefficient of shape {self.coef_arr.shape}; expected {(n, *space)}")
        self.meta = _Meta(n, n_t, space, list(channels), dict(coords), dict(attrs or {}),
                          "coef" if coef is not None else None)

    def read(self, f, rows: slice, t: slice, s: int) -> np.ndarray:
        sp = (slice(None, None, s),) * len(self.meta.space)
        # copy: callers wrap the result in torch tensors, and xarray-backed arrays are read-only
        return np.array(self.fields[(rows, t, slice(None), *sp)], dtype=np.float32, order="C", copy=True)

    def read_coef(self, f, rows: slice, s: int) -> np.ndarray:
        sp = (slice(None, None, s),) * len(self.meta.space)
        return np.array(self.coef_arr[(rows, *sp)][:, None], dtype=np.float32, order="C", copy=True)


def _group_keys(f) -> list[str]:
    h5py = _h5py()
    return sorted(k for k in f.keys() if k != "grid" and isinstance(f[k], h5py.Group))


def _inspect(path: Path, f):
    """Detect the layout of an open file and build its source; DataError if it is neither."""
    fields = _single_fields(f, path)
    if fields is not None:
        return _SingleSource(path, f, fields)
    keys = _group_keys(f)
    if keys:
        for k in keys:
            if "data" not in f[k]:
                raise DataError(
                    f"{path}: group '{k}' has no key '{k}/data'; expected {_EXPECTED_GROUP} in "
                    "every sample group"
                )
        return _GroupSource(path, f, keys)
    found = sorted(f.keys())
    raise DataError(
        f"{path}: neither PDEBench layout; expected {_EXPECTED_SINGLE} (single-file layout) or "
        f"{_EXPECTED_GROUP} (group-per-sample layout); found keys {found[:12]}"
        + (" ..." if len(found) > 12 else "")
    )


def detect_layout(path: str | os.PathLike) -> str:
    """``"single"`` or ``"group"``; :class:`DataError` if the file is neither (or unreadable)."""
    path = Path(path)
    with _open_h5(path) as f:
        return _inspect(path, f).layout


# --------------------------------------------------------------------------------------------------
# Windows of a trajectory: initial_step input frames, then the target `ahead` frames later
# --------------------------------------------------------------------------------------------------


def windows_per_trajectory(n_frames: int, initial_step: int, ahead: int = 1) -> int:
    """Windows in a trajectory of ``n_frames`` frames: window ``k`` takes frames ``k .. k+initial_step-1`` as
    input and frame ``k + initial_step + ahead - 1`` as target."""
    return n_frames - initial_step - ahead + 1


def gather_windows(traj: torch.Tensor, idx: torch.Tensor, initial_step: int, ahead: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows ``idx`` (sample-major, then window) of trajectories ``[N, T, C, *grid]`` → inputs
    ``[B, initial_step * C, *grid]`` and targets ``[B, C, *grid]``; only these windows are copied."""
    per_sample = windows_per_trajectory(traj.shape[1], initial_step, ahead)
    n, k = idx // per_sample, idx % per_sample
    frames = k[:, None] + torch.arange(initial_step, device=idx.device)  # [B, initial_step]
    return traj[n[:, None], frames].flatten(1, 2), traj[n, k + initial_step + ahead - 1]


# --------------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------------


class PDEDataset(Dataset):
    """Lazy PDEBench dataset: pairs ``(u_in [initial_step*C, *grid], u_out [C, *grid])`` or
    whole trajectories ``[T', C, *grid]``.

    Follows PDEBench's ``FNODatasetSingle`` / ``FNODatasetMult`` conventions (arXiv 2210.07182,
    ``pdebench/models/fno/utils.py``), re-implemented lazily:

    * ``reduced_batch``, ``reduced_resolution``, ``reduced_resolution_t`` stride the sample, space and
      time axes; ``num_samples_max`` truncates the (strided) samples *before* the split.
    * ``split="test"`` takes the first ``int(n * test_ratio)`` samples of a single-file file and the
      last ``n - int(n * (1 - test_ratio))`` sorted keys of a group file; ``"train"`` the rest; ``"all"``
      everything. (The orientations are opposite in PDEBench, and kept so.)
    * ``t_train`` keeps the first ``t_train`` strided frames.
    * ``mode="pairs"``: item ``k`` of sample ``j`` is the window of frames ``k-initial_step .. k-1``
      (stacked time-major into channels: ``u_in.view(initial_step, C, *grid)`` recovers them) and the
      target frame ``k``, for ``k = initial_step .. T'-1``. Darcy: ``(nu [1, *grid], u [1, *grid])``.
    * ``mode="trajectory"``: item = ``[T', C, *grid]`` (Darcy: ``[2, 1, *grid]``: coefficient at
      t=0, solution at t=1, as PDEBench stacks them).

    Attributes: ``grid`` (``{"x": [X'], ..., "t": [T']}`` float32 tensors), ``channels``, ``attrs``
    (the file's root attributes: PDE parameters), ``n_samples``, ``n_frames``, ``spatial_shape``.
    """

    def __init__(self, source, split: str = "train", *, test_ratio: float = 0.1,
                 num_samples_max: int = -1, reduced_batch: int = 1, reduced_resolution: int = 1,
                 reduced_resolution_t: int = 1, initial_step: int = 1, t_train: int | None = None,
                 mode: str = "pairs", path: Path | None = None):
        # DataError, not ValueError: these arrive from recipe keys, and the CLI reports DataError in one line
        if split not in ("train", "test", "all"):
            raise DataError(f"split must be 'train', 'test' or 'all', got {split!r}")
        if mode not in ("pairs", "trajectory"):
            raise DataError(f"mode must be 'pairs' or 'trajectory', got {mode!r}")
        for name, v in (("reduced_batch", reduced_batch), ("reduced_resolution", reduced_resolution),
                        ("reduced_resolution_t", reduced_resolution_t), ("initial_step", initial_step)):
            if int(v) < 1:
                raise DataError(f"{name} must be >= 1, got {v}")
        if t_train is not None and int(t_train) < 1:
            raise DataError(f"t_train must be >= 1 (frames to keep) or None (all), got {t_train}")
        if not 0 < test_ratio < 1:
            raise DataError(f"test_ratio must lie strictly between 0 and 1, got {test_ratio}")
        self._source = source
        self._path = path  # None for in-memory sources
        self._file = None
        self._pid = None
        m = source.meta
        self.layout = source.layout
        self.split = split
        self.mode = mode
        self.is_darcy = m.coef is not None
        self.initial_step = 1 if self.is_darcy else int(initial_step)
        self.s = int(reduced_resolution)
        self.rt = int(reduced_resolution_t)

        # Samples: stride, truncate, split (PDEBench's order of operations).
        rows = list(range(0, m.n, int(reduced_batch)))
        if num_samples_max is not None and num_samples_max > 0:
            rows = rows[:num_samples_max]
        n = len(rows)
        if split == "all":
            sel = slice(0, n)
        elif self.layout == "group":
            cut = int(n * (1 - test_ratio))
            sel = slice(cut, n) if split == "test" else slice(0, cut)
        else:
            cut = int(n * test_ratio)
            sel = slice(0, cut) if split == "test" else slice(cut, n)
        self._rows = rows[sel]
        if not self._rows:
            raise DataError(
                f"{source.path}: the {split} split is empty: {n} samples (after reduced_batch={reduced_batch} and "
                f"num_samples_max={num_samples_max}) with test_ratio={test_ratio}; keep at least "
                f"{math.ceil(1 / min(test_ratio, 1 - test_ratio))} samples"
            )
        self._row_step = int(reduced_batch)

        # Frames: stride then truncate to t_train.
        frames = list(range(0, m.n_t, self.rt))
        if t_train is not None:
            frames = frames[: int(t_train)]
        self._n_frames = len(frames)
        if not self.is_darcy and mode == "pairs" and self._n_frames <= self.initial_step:
            raise DataError(
                f"{source.path}: {self._n_frames} frames after striding (reduced_resolution_t="
                f"{self.rt}, t_train={t_train}) but initial_step={self.initial_step}; need more "
                "frames than initial_step"
            )
        self.spatial_shape = tuple(len(range(0, d, self.s)) for d in m.space)
        self.channels = list(m.channels)
        self.attrs = dict(m.attrs)
        f32 = lambda c: torch.from_numpy(np.array(c, dtype=np.float32))  # noqa: E731  (copy: source may be read-only)
        self.grid = {ax: f32(c[:: self.s]) for ax, c in m.coords.items() if ax != "t"}
        self.grid["t"] = f32(m.coords["t"][:: self.rt][: self._n_frames])
        self._windows = 1 if self.is_darcy else windows_per_trajectory(self._n_frames, self.initial_step)

    # ---- file handle: opened lazily, once per process (DataLoader workers fork/spawn) ----
    def _h5(self):
        if self._path is None:
            return None
        if self._file is None or self._pid != os.getpid():
            self._file = _open_h5(self._path)
            self._pid = os.getpid()
        return self._file

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles do not pickle; each worker opens its own
        return state

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: h5py may already be gone
            pass

    # ---- sizes ----
    @property
    def n_samples(self) -> int:
        return len(self._rows)

    @property
    def n_frames(self) -> int:
        """Frames per trajectory after striding and ``t_train`` (``T'``)."""
        return 2 if self.is_darcy else self._n_frames

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def in_channels(self) -> int:
        return 1 if self.is_darcy else self.initial_step * self.n_channels

    @property
    def out_channels(self) -> int:
        return self.n_channels

    def __len__(self) -> int:
        return self.n_samples * (self._windows if self.mode == "pairs" else 1)

    def coords(self) -> torch.Tensor:
        """Grid coordinates as one tensor ``[d, *grid]`` (``indexing="ij"``), for positional input."""
        axes = [self.grid[ax] for ax in SPACE_AXES[: len(self.spatial_shape)]]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"))

    @property
    def params(self) -> dict[str, float]:
        """Numeric root attributes (PDE coefficients such as ``beta``, ``Nu``)."""
        return {k: float(v) for k, v in self.attrs.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    # ---- reading ----
    def _row_slice(self, i0: int, i1: int) -> slice:
        """File rows of selected samples i0..i1-1 (contiguous in the selection → one strided slice)."""
        return slice(self._rows[i0], self._rows[i1 - 1] + 1, self._row_step)

    def _frames(self, i0: int, i1: int, k0: int = 0, k1: int | None = None) -> np.ndarray:
        """Strided frames k0..k1-1 of selected samples i0..i1-1: ``[b, k, C, *grid]`` float32."""
        k1 = self._n_frames if k1 is None else k1
        t = slice(k0 * self.rt, (k1 - 1) * self.rt + 1, self.rt)
        return self._source.read(self._h5(), self._row_slice(i0, i1), t, self.s)

    def _darcy(self, i0: int, i1: int) -> tuple[np.ndarray, np.ndarray]:
        f = self._h5()
        a = self._source.read_coef(f, self._row_slice(i0, i1), self.s)  # [b, 1, *grid]
        u = self._source.read(f, self._row_slice(i0, i1), slice(0, 1), self.s)[:, 0]  # [b, 1, *grid]
        return a, u

    def __getitem__(self, idx: int):
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} items")
        if self.mode == "trajectory":
            return torch.from_numpy(self.trajectory_block(idx, idx + 1)[0])
        j, w = divmod(idx, self._windows)
        if self.is_darcy:
            a, u = self._darcy(j, j + 1)
            return torch.from_numpy(a[0]), torch.from_numpy(u[0])
        k = w + self.initial_step  # target frame
        fr = self._frames(j, j + 1, k - self.initial_step, k + 1)[0]  # [initial_step+1, C, *grid]
        u_in = fr[:-1].reshape(-1, *fr.shape[2:])
        return torch.from_numpy(np.ascontiguousarray(u_in)), torch.from_numpy(fr[-1])

    def trajectory_block(self, i0: int, i1: int) -> np.ndarray:
        """Trajectories of selected samples ``i0..i1-1`` as numpy ``[b, T', C, *grid]``."""
        if self.is_darcy:
            a, u = self._darcy(i0, i1)
            return np.stack([a, u], axis=1)
        return self._frames(i0, i1)

    def default_chunk(self) -> int:
        per = self.n_frames * self.n_channels * math.prod(self.spatial_shape) * 4
        return max(1, _CHUNK_BYTES // max(per, 1))

    def iter_trajectories(self, chunk_size: int | None = None) -> Iterator[torch.Tensor]:
        """Stream the split as ``[b, T', C, *grid]`` blocks of ``chunk_size`` samples (one read each).

        Memory: one block. ``chunk_size`` defaults to ~64 MB worth of samples.
        """
        chunk = chunk_size or self.default_chunk()
        for i0 in range(0, self.n_samples, chunk):
            yield torch.from_numpy(self.trajectory_block(i0, min(i0 + chunk, self.n_samples)))

    def _gather_pairs(self, traj: torch.Tensor, p0: int, p1: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs ``p0..p1-1`` (sample-major, then target frame) of a block ``[b, T', C, *grid]``."""
        if self.is_darcy:
            return traj[p0:p1, 0].contiguous(), traj[p0:p1, 1].contiguous()
        return gather_windows(traj, torch.arange(p0, p1), self.initial_step)

    def iter_batches(self, batch_size: int, chunk_size: int | None = None, *,
                     drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Stream ``(u_in [B, in_channels, *grid], u_out [B, C, *grid])`` in file order.

        Reads contiguous blocks of ``chunk_size`` samples and gathers each batch's windows from the
        block, so memory holds one block plus one batch (the ``initial_step``-fold overlap of the
        windows is never materialised for a whole block). Order: sample-major, then target frame;
        batches run across block boundaries. For shuffled training use a ``DataLoader`` over the
        dataset itself (random per-item reads).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        carry: list[tuple[torch.Tensor, torch.Tensor]] = []
        n_carry = 0
        for traj in self.iter_trajectories(chunk_size):
            n_pairs = traj.shape[0] * self._windows
            pos = 0
            while pos < n_pairs:
                take = min(batch_size - n_carry, n_pairs - pos)
                piece = self._gather_pairs(traj, pos, pos + take)
                pos += take
                if n_carry == 0 and take == batch_size:
                    yield piece
                    continue
                carry.append(piece)
                n_carry += take
                if n_carry == batch_size:
                    yield torch.cat([c[0] for c in carry]), torch.cat([c[1] for c in carry])
                    carry, n_carry = [], 0
        if n_carry and not drop_last:
            yield torch.cat([c[0] for c in carry]), torch.cat([c[1] for c in carry])

    def __repr__(self) -> str:
        where = self._path if self._path is not None else self._source.path
        return (f"PDEDataset({where}, layout={self.layout}, split={self.split}, mode={self.mode}, "
                f"samples={self.n_samples}, frames={self.n_frames}, channels={self.channels}, "
                f"grid={self.spatial_shape}, initial_step={self.initial_step})")


def open_pdebench(path: str | os.PathLike, split: str = "train", **kwargs) -> PDEDataset:
    """Open a PDEBench HDF5 file of either layout as a lazy :class:`PDEDataset`.

    ``kwargs``: ``test_ratio=0.1, num_samples_max=-1, reduced_batch=1, reduced_resolution=1,
    reduced_resolution_t=1, initial_step=1, t_train=None, mode="pairs"|"trajectory"``. PDEBench's
    1D/2D time-dependent configs use ``initial_step=10`` (1D also ``reduced_resolution=4,
    reduced_resolution_t=5``); Darcy uses 1. Raises :class:`DataError` naming the file and key for
    unreadable, truncated, wrongly shaped or unrecognised files.
    """
    path = Path(path)
    with _open_h5(path) as f:
        source = _inspect(path, f)
    return PDEDataset(source, split, path=path, **kwargs)


class PairDataset(Dataset):
    """In-memory pairs ``(u_in [N, C_in, *grid], u_out [N, C_out, *grid])`` with a ``grid`` dict."""

    def __init__(self, u_in: torch.Tensor, u_out: torch.Tensor, grid: dict[str, torch.Tensor],
                 attrs: dict[str, Any] | None = None, name: str = ""):
        if u_in.shape[0] != u_out.shape[0]:
            raise DataError(f"{name}: {u_in.shape[0]} inputs but {u_out.shape[0]} targets")
        self.u_in, self.u_out, self.grid = u_in, u_out, grid
        self.attrs = dict(attrs or {})
        self.name = name
        self.spatial_shape = tuple(u_out.shape[2:])
        self.in_channels, self.out_channels = u_in.shape[1], u_out.shape[1]

    def __len__(self) -> int:
        return self.u_in.shape[0]

    def __getitem__(self, idx: int):
        return self.u_in[idx], self.u_out[idx]

    def iter_batches(self, batch_size: int, chunk_size: int | None = None, *, drop_last: bool = False):
        n = len(self) - (len(self) % batch_size if drop_last else 0)
        for i in range(0, n, batch_size):
            yield self.u_in[i: i + batch_size], self.u_out[i: i + batch_size]

    def __repr__(self) -> str:
        return (f"PairDataset({self.name}, n={len(self)}, u_in={tuple(self.u_in.shape[1:])}, "
                f"u_out={tuple(self.u_out.shape[1:])})")


# --------------------------------------------------------------------------------------------------
# describe (for `sciformer datasets inspect`)
# --------------------------------------------------------------------------------------------------


def _fmt_attrs(attrs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(attrs.items())) or "(none)"


def describe(path: str | os.PathLike) -> str:
    """Human-readable summary of a PDEBench file: layout, keys, shapes, dtypes, attributes, splits."""
    path = Path(path)
    h5py = _h5py()
    lines = [f"file: {path} ({path.stat().st_size / 2**20:.1f} MiB)" if path.exists() else f"file: {path}"]
    with _open_h5(path) as f:
        try:
            src = _inspect(path, f)
            layout, err = src.layout, None
        except DataError as e:
            src, layout, err = None, "unrecognised", str(e)
        lines.append(f"layout: {layout}")
        lines.append(f"attributes: {_fmt_attrs(_attrs(f))}")
        if src is not None and src.layout == "group":
            keys = src.keys
            lines.append(f"sample groups: {len(keys)} ('{keys[0]}' .. '{keys[-1]}')")
            lines.append(f"group '{keys[0]}':")
            f[keys[0]].visititems(lambda name, obj: lines.append(
                f"  {keys[0]}/{name}: {tuple(obj.shape)} {obj.dtype}") if isinstance(obj, h5py.Dataset) else None)
            if "grid" in f:
                f["grid"].visititems(lambda name, obj: lines.append(
                    f"  grid/{name}: {tuple(obj.shape)} {obj.dtype}") if isinstance(obj, h5py.Dataset) else None)
        else:
            for k in sorted(f.keys()):
                obj = f[k]
                if isinstance(obj, h5py.Dataset):
                    lines.append(f"  {k}: {tuple(obj.shape)} {obj.dtype} chunks={obj.chunks}")
                else:
                    lines.append(f"  {k}/ (group, {len(obj)} members)")
        if src is not None:
            m = src.meta
            n_test = int(m.n * 0.1) if src.layout == "single" else m.n - int(m.n * 0.9)
            lines.append(
                f"samples: {m.n} (PDEBench split: {m.n - n_test} train / {n_test} test, test = "
                + ("first 10%" if src.layout == "single" else "last 10% of sorted keys") + ")"
            )
            lines.append(f"frames: {m.n_t}; grid: {m.space}; channels: {m.channels}"
                         + (f"; Darcy coefficient: '{m.coef}'" if m.coef else ""))
            for ax in (*SPACE_AXES[: len(m.space)], "t"):
                c = m.coords[ax]
                lines.append(f"  {ax}: [{c[0]:.6g} .. {c[-1]:.6g}] ({c.size} points)")
        if err:
            lines.append(f"problem: {err}")
    return "\n".join(lines)
