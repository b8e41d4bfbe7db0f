"""PDEBench conventions over any trajectory source: splits, striding, windows, and ``describe``.

PDEBench (Takamoto et al., "PDEBench: An Extensive Benchmark for Scientific Machine Learning",
arXiv 2210.07182) fixes how a file becomes training data (see ``shared/reference/PDE.md`` §1.2-1.4):
samples are strided (``reduced_batch``) and truncated (``num_samples_max``) before the split; the test
split is the **first** 10% of a single-file file and the **last** 10% of the sorted keys of a
group-per-sample file; space and time are strided (``reduced_resolution``, ``reduced_resolution_t``).
:class:`PDEDataset` applies these rules to any :class:`~sciformer.data.sources.TrajectorySource`
(the file formats live in :mod:`sciformer.data.sources`), lazily: it reads hyperslabs on demand, and
:meth:`PDEDataset.iter_trajectories` / :meth:`PDEDataset.iter_batches` stream contiguous sample
blocks, so memory is bounded by the block, not by the file.

Operator contract: one pair is ``u_in [initial_step * C, *grid]`` (the history frames stacked
time-major along channels) and ``u_out [C, *grid]`` (the next frame); batches add a leading ``B``.
Darcy files give ``(a [1, *grid], u [1, *grid])``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sciformer.data.sources import SPACE_AXES, TrajectorySource, open_source
from sciformer.data.sources.hdf5 import CFD_FIELDS, PDEBenchGroup, attributes, h5py, open_h5, open_pdebench_source
from sciformer.errors import DataError

__all__ = ["CFD_FIELDS", "SPACE_AXES", "PDEDataset", "PairDataset", "describe", "detect_layout", "gather_windows", "open_pdebench", "windows_per_trajectory"]

CHUNK_BYTES = 64 * 2**20  # default streaming block: ~64 MB of float32 per read
LAYOUTS = {"pdebench-single": "single", "pdebench-group": "group"}


def detect_layout(path: str | os.PathLike) -> str:
    """``"single"`` or ``"group"``; :class:`DataError` if the file is neither PDEBench layout (or unreadable)."""
    return LAYOUTS[open_pdebench_source(path).kind]


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

    def __init__(
        self,
        source,
        split: str = "train",
        *,
        test_ratio: float = 0.1,
        num_samples_max: int = -1,
        reduced_batch: int = 1,
        reduced_resolution: int = 1,
        reduced_resolution_t: int = 1,
        initial_step: int = 1,
        t_train: int | None = None,
        mode: str = "pairs",
    ):
        # DataError, not ValueError: these arrive from recipe keys, and the CLI reports DataError in one line
        if split not in ("train", "test", "all"):
            raise DataError(f"split must be 'train', 'test' or 'all', got {split!r}")
        if mode not in ("pairs", "trajectory"):
            raise DataError(f"mode must be 'pairs' or 'trajectory', got {mode!r}")
        for name, v in (
            ("reduced_batch", reduced_batch),
            ("reduced_resolution", reduced_resolution),
            ("reduced_resolution_t", reduced_resolution_t),
            ("initial_step", initial_step),
        ):
            if int(v) < 1:
                raise DataError(f"{name} must be >= 1, got {v}")
        if t_train is not None and int(t_train) < 1:
            raise DataError(f"t_train must be >= 1 (frames to keep) or None (all), got {t_train}")
        if not 0 < test_ratio < 1:
            raise DataError(f"test_ratio must lie strictly between 0 and 1, got {test_ratio}")
        self.source: TrajectorySource = source
        self.layout = LAYOUTS.get(source.kind, source.kind)
        self.split = split
        self.mode = mode
        self.is_darcy = source.coefficient is not None
        self.initial_step = 1 if self.is_darcy else int(initial_step)
        self.s = int(reduced_resolution)
        self.rt = int(reduced_resolution_t)

        # Samples: stride, truncate, split (PDEBench's order of operations).
        rows = list(range(0, source.n_samples, int(reduced_batch)))
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
        frames = list(range(0, source.n_frames, self.rt))
        if t_train is not None:
            frames = frames[: int(t_train)]
        self._n_frames = len(frames)
        if not self.is_darcy and mode == "pairs" and self._n_frames <= self.initial_step:
            raise DataError(
                f"{source.path}: {self._n_frames} frames after striding (reduced_resolution_t="
                f"{self.rt}, t_train={t_train}) but initial_step={self.initial_step}; need more "
                "frames than initial_step"
            )
        self.spatial_shape = tuple(len(range(0, d, self.s)) for d in source.grid_shape)
        self.channels = list(source.channels)
        self.attrs = dict(source.attrs)
        f32 = lambda c: torch.from_numpy(np.array(c, dtype=np.float32))  # noqa: E731  (copy: source may be read-only)
        self.grid = {ax: f32(c[:: self.s]) for ax, c in source.coords.items()}
        self.grid["t"] = f32(source.times[:: self.rt][: self._n_frames])
        self._windows = 1 if self.is_darcy else windows_per_trajectory(self._n_frames, self.initial_step)

    # ---- the source's file handle is opened lazily, once per process (DataLoader workers fork/spawn) ----
    def close(self) -> None:
        self.source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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
        return self.source.params

    @property
    def sample_bytes(self) -> int:
        """Bytes of one selected trajectory ``[T', C, *grid]`` as float32 (Darcy: coefficient and solution)."""
        return self.n_frames * self.n_channels * math.prod(self.spatial_shape) * 4

    @property
    def nbytes(self) -> int:
        """Bytes of the whole split in memory."""
        return self.n_samples * self.sample_bytes

    # ---- reading ----
    def _row_slice(self, i0: int, i1: int) -> slice:
        """File rows of selected samples i0..i1-1 (contiguous in the selection → one strided slice)."""
        return slice(self._rows[i0], self._rows[i1 - 1] + 1, self._row_step)

    def _frames(self, i0: int, i1: int, k0: int = 0, k1: int | None = None) -> np.ndarray:
        """Strided frames k0..k1-1 of selected samples i0..i1-1: ``[b, k, C, *grid]`` float32."""
        k1 = self._n_frames if k1 is None else k1
        t = slice(k0 * self.rt, (k1 - 1) * self.rt + 1, self.rt)
        return self.source.read(self._row_slice(i0, i1), t, self.s)

    def _darcy(self, i0: int, i1: int) -> tuple[np.ndarray, np.ndarray]:
        a = self.source.read_coefficient(self._row_slice(i0, i1), self.s)  # [b, 1, *grid]
        u = self.source.read(self._row_slice(i0, i1), slice(0, 1), self.s)[:, 0]  # [b, 1, *grid]
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
        return max(1, CHUNK_BYTES // max(self.sample_bytes, 1))

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

    def iter_batches(self, batch_size: int, chunk_size: int | None = None, *, drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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
        where = self.source.path
        return (
            f"PDEDataset({where}, layout={self.layout}, split={self.split}, mode={self.mode}, "
            f"samples={self.n_samples}, frames={self.n_frames}, channels={self.channels}, "
            f"grid={self.spatial_shape}, initial_step={self.initial_step})"
        )


def open_pdebench(path: str | os.PathLike, split: str = "train", **kwargs) -> PDEDataset:
    """Open a PDEBench HDF5 file of either layout as a lazy :class:`PDEDataset`.

    ``kwargs``: ``test_ratio=0.1, num_samples_max=-1, reduced_batch=1, reduced_resolution=1,
    reduced_resolution_t=1, initial_step=1, t_train=None, mode="pairs"|"trajectory"``. PDEBench's
    1D/2D time-dependent configs use ``initial_step=10`` (1D also ``reduced_resolution=4,
    reduced_resolution_t=5``); Darcy uses 1. Raises :class:`DataError` naming the file and key for
    unreadable, truncated, wrongly shaped or unrecognised files.
    """
    return PDEDataset(open_source(path), split, **kwargs)


class PairDataset(Dataset):
    """In-memory pairs ``(u_in [N, C_in, *grid], u_out [N, C_out, *grid])`` with a ``grid`` dict."""

    def __init__(self, u_in: torch.Tensor, u_out: torch.Tensor, grid: dict[str, torch.Tensor], attrs: dict[str, Any] | None = None, name: str = ""):
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
            yield self.u_in[i : i + batch_size], self.u_out[i : i + batch_size]

    def __repr__(self) -> str:
        return f"PairDataset({self.name}, n={len(self)}, u_in={tuple(self.u_in.shape[1:])}, u_out={tuple(self.u_out.shape[1:])})"


# --------------------------------------------------------------------------------------------------
# describe (for `sciformer datasets inspect`)
# --------------------------------------------------------------------------------------------------


def _fmt_attrs(attrs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(attrs.items())) or "(none)"


def _hdf5_keys(f: Any, source: TrajectorySource | None) -> list[str]:
    """Key listing of an HDF5 file: a group file's first sample group, else every top-level key."""
    lines: list[str] = []

    def show(prefix: str):
        def add(name: str, obj: Any) -> None:
            if isinstance(obj, h5py().Dataset):
                lines.append(f"  {prefix}{name}: {tuple(obj.shape)} {obj.dtype}")

        return add

    if isinstance(source, PDEBenchGroup):
        keys = source.keys
        lines.append(f"sample groups: {len(keys)} ('{keys[0]}' .. '{keys[-1]}')")
        lines.append(f"group '{keys[0]}':")
        f[keys[0]].visititems(show(f"{keys[0]}/"))
        if "grid" in f:
            f["grid"].visititems(show("grid/"))
        return lines
    for k in sorted(f.keys()):
        link = f.get(k, getlink=True)
        obj = f.get(k) if isinstance(link, h5py().HardLink) else None
        if isinstance(obj, h5py().Dataset):
            lines.append(f"  {k}: {tuple(obj.shape)} {obj.dtype} chunks={obj.chunks}")
        elif obj is not None:
            lines.append(f"  {k}/ (group, {len(obj)} members)")
        else:
            lines.append(f"  {k}: {type(link).__name__}")
    return lines


def _summary(src: TrajectorySource) -> list[str]:
    n = src.n_samples
    group = src.kind == "pdebench-group"
    n_test = n - int(n * 0.9) if group else int(n * 0.1)
    lines = [
        f"samples: {n} (PDEBench split: {n - n_test} train / {n_test} test, test = " + ("last 10% of sorted keys" if group else "first 10%") + ")",
        f"frames: {src.n_frames}; grid: {src.grid_shape}; channels: {src.channels}" + (f"; Darcy coefficient: '{src.coefficient}'" if src.coefficient else ""),
    ]
    for ax, c in (*src.coords.items(), ("t", src.times)):
        lines.append(f"  {ax}: [{c[0]:.6g} .. {c[-1]:.6g}] ({c.size} points)")
    return lines


def describe(path: str | os.PathLike) -> str:
    """Human-readable summary of a PDE data file: format, keys, shapes, dtypes, attributes, splits (and the problem
    that keeps sciformer from reading it, if any)."""
    text, problem = inspect_file(path)
    return text + (f"\nproblem: {problem}" if problem else "")


def inspect_file(path: str | os.PathLike) -> tuple[str, str | None]:
    """:func:`describe`'s summary, and apart from it the problem that keeps sciformer from reading the file (None
    when it reads)."""
    path = Path(path)
    lines = [f"file: {path} ({path.stat().st_size / 2**20:.1f} MiB)" if path.is_file() else f"file: {path}"]
    try:
        src, err = open_source(path), None
    except DataError as e:
        src, err = None, str(e)
    lines.append(f"layout: {LAYOUTS.get(src.kind, src.kind) if src is not None else 'unrecognised'}")
    if path.suffix.lower() in (".h5", ".hdf5", ".hdf") or (src is not None and src.kind in (*LAYOUTS, "the_well")):
        with open_h5(path) as f:
            lines.append(f"attributes: {_fmt_attrs(attributes(f))}")
            lines += _hdf5_keys(f, src)
    elif src is not None:
        lines.append(f"attributes: {_fmt_attrs(src.attrs)}")
    if src is not None:
        lines += _summary(src)
        src.close()
    return "\n".join(lines), err
