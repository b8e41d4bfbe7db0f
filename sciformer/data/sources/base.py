"""The trajectory-source contract every data format implements (see the package docstring)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sciformer.errors import DataError

SPACE_AXES = ("x", "y", "z")
Samples = slice | Sequence[int] | np.ndarray


def check_real_values(what: str, dtype: Any, shape: Any, *, numeric: bool = True) -> None:
    """Refuse values that would read back wrong: complex (never cast to real silently), non-numeric, or with an empty
    axis. ``what`` names them in the message, e.g. ``"file.h5: dataset 'tensor'"``."""
    if dtype.kind == "c":
        raise DataError(
            f"{what} is complex-valued ({dtype}); sciformer does not cast it to real silently: store the real and imaginary parts as two real channels"
        )
    if numeric and dtype.kind not in "fiub":
        raise DataError(f"{what} has dtype {dtype}; expected real numbers (float or integer)")
    if shape is None or 0 in shape:
        raise DataError(f"{what} has an empty axis (shape {shape}); expected data along every axis")


def sample_ids(samples: Samples, n: int) -> np.ndarray:
    """Absolute sample positions of a selection (a slice or increasing integers)."""
    if isinstance(samples, slice):
        return np.arange(n)[samples]
    ids = np.asarray(samples, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise IndexError(f"sample index out of range 0..{n - 1}: {ids.min()}..{ids.max()}")
    return ids


def as_selection(samples: Samples, n: int) -> slice | np.ndarray:
    """A slice with positive step as is; integers as a sorted unique array (what HDF5 point selection takes)."""
    if isinstance(samples, slice):
        start, stop, step = samples.indices(n)
        if step < 1:
            raise IndexError(f"sample slices must step forwards, got step {step}")
        return slice(start, max(start, stop), step)
    ids = sample_ids(samples, n)
    if ids.size > 1 and np.any(np.diff(ids) <= 0):
        raise IndexError("sample indices must be strictly increasing")
    return ids


def file_stamp(path: Path) -> dict[str, Any]:
    """Size and modification time of ``path``: what changes when a file is rewritten or appended to."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot stat the data file ({exc.strerror or exc})") from None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class TrajectorySource:
    """Lazy, indexed access to ``N`` trajectories ``[T, C, *grid]`` of one data file (or array set).

    Attributes every source sets: ``kind``, ``path``, ``n_samples``, ``n_frames``, ``channels``,
    ``grid_shape``, ``coords`` (``{"x": [X], ...}`` float64), ``times`` (``[T]`` float64), ``attrs``
    (root attributes) and ``coefficient`` (name of a static input field of a steady problem such as
    Darcy flow, else None). Subclasses implement :meth:`_open` (the per-process handle) and
    :meth:`_read`; :meth:`read` adds the non-finite check.
    """

    kind = "abstract"
    path: Path
    n_samples: int
    n_frames: int
    channels: list[str]
    grid_shape: tuple[int, ...]
    coords: dict[str, np.ndarray]
    times: np.ndarray
    attrs: dict[str, Any]
    coefficient: str | None = None

    _handle: Any = None
    _pid: int | None = None

    # ---- handle: opened lazily, once per process (DataLoader workers fork or spawn) ----
    def _open(self) -> Any:
        return None

    def handle(self) -> Any:
        if self._handle is None or self._pid != os.getpid():
            self._handle = self._open()
            self._pid = os.getpid()
        return self._handle

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid() and hasattr(self._handle, "close"):
            self._handle.close()
        self._handle = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None  # file handles do not pickle; each worker opens its own
        return state

    def __enter__(self) -> TrajectorySource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:  # noqa: SIM105  (contextlib itself may be gone at interpreter shutdown)
            self.close()
        except Exception:  # interpreter shutdown: h5py may already be gone
            pass

    # ---- description ----
    @property
    def params(self) -> dict[str, float]:
        """Numeric root attributes: the PDE coefficients (``beta``, ``Nu``, ...)."""
        return {k: float(v) for k, v in self.attrs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, T, C, *grid)``."""
        return (self.n_samples, self.n_frames, len(self.channels), *self.grid_shape)

    @property
    def sample_bytes(self) -> int:
        """Bytes of one trajectory as float32 (plus its coefficient field)."""
        frames = self.n_frames * len(self.channels) + (self.coefficient is not None)
        return 4 * frames * math.prod(self.grid_shape)

    def fingerprint(self) -> dict[str, Any]:
        """Cheap identity of the data: path, size, modification time and shapes (no data is read)."""
        stamp = file_stamp(self.path) if self.path.is_file() else {}
        return {"kind": self.kind, "path": str(self.path), **stamp, "shape": list(self.shape), "channels": list(self.channels)}

    def check_unchanged(self, fingerprint: dict[str, Any]) -> None:
        """DataError when the file is not the one ``fingerprint`` describes (rewritten, appended, replaced)."""
        now = self.fingerprint()
        changed = [k for k in ("size", "mtime_ns", "shape") if fingerprint.get(k) != now.get(k)]
        if changed:
            detail = ", ".join(f"{k} {fingerprint.get(k)} -> {now.get(k)}" for k in changed)
            raise DataError(f"{self.path}: the data file changed while it was in use ({detail}); restart the run on a file that stays unchanged")

    def dataset_name(self, channel: int, sample: int) -> str:
        """The file's name for what channel ``channel`` of sample ``sample`` is read from (for messages)."""
        return self.channels[channel]

    # ---- reading ----
    def _read(self, handle: Any, samples: slice | np.ndarray, frames: slice, stride: int) -> np.ndarray:
        raise NotImplementedError

    def _read_coefficient(self, handle: Any, samples: slice | np.ndarray, stride: int) -> np.ndarray:
        raise DataError(f"{self.path}: this data has no static coefficient field")

    def read(self, samples: Samples, frames: slice = slice(None), stride: int = 1) -> np.ndarray:
        """Trajectories ``samples`` (slice or increasing ints), frames ``frames``, every ``stride``-th grid
        point: float32 ``[n, t, C, *grid']``. DataError naming file, dataset and sample for unreadable or
        non-finite data."""
        sel = as_selection(samples, self.n_samples)
        block = self._read(self.handle(), sel, frames, stride)
        self._check_finite(block, sel, frames, channel_axis=2)
        return block

    def read_coefficient(self, samples: Samples, stride: int = 1) -> np.ndarray:
        """The static coefficient field of steady problems: float32 ``[n, 1, *grid']``."""
        sel = as_selection(samples, self.n_samples)
        block = self._read_coefficient(self.handle(), sel, stride)
        self._check_finite(block[:, None], sel, slice(None), channel_axis=None)
        return block

    def _check_finite(self, block: np.ndarray, sel: slice | np.ndarray, frames: slice, channel_axis: int | None) -> None:
        # a float32 sum is one fast pass and is non-finite whenever an element is (or it overflowed: look closer)
        if block.size == 0 or np.isfinite(block.sum(dtype=np.float32)):
            return
        bad = np.argwhere(~np.isfinite(block))
        if not len(bad):
            return
        i, t = bad[0][0], bad[0][1]
        c = bad[0][channel_axis] if channel_axis is not None else 0
        sample = int(sample_ids(sel, self.n_samples)[i])
        frame = int(np.arange(self.n_frames)[frames][t]) if channel_axis is not None else None
        value = block[tuple(bad[0])]
        where = self.coefficient if channel_axis is None else self.dataset_name(int(c), sample)
        at = f"sample {sample}" + (f", frame {frame}" if frame is not None else "")
        raise DataError(
            f"{self.path}: dataset '{where}' holds {value} at {at}; training on NaN or infinite "
            "values gives NaN results, so such data is refused (clean or drop those samples)"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path}, samples={self.n_samples}, frames={self.n_frames}, channels={self.channels}, grid={self.grid_shape})"


def time_coordinate(values: np.ndarray | None, n_t: int) -> np.ndarray:
    """PDEBench stores T+1 times for T frames; take the first T. Missing or unrelated → frame index."""
    if values is None:
        return np.arange(n_t, dtype=np.float64)
    t = np.asarray(values, dtype=np.float64).reshape(-1)
    if t.size in (n_t, n_t + 1):
        return t[:n_t]
    return np.arange(n_t, dtype=np.float64)  # Darcy files carry a 10-entry t-coordinate for a single frame
