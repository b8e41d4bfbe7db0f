"""Sources over arrays: in-memory sets (generated, xarray-loaded) and neuraloperator's .npz/.pt files.

neuraloperator's files (Kossaifi et al., "A Library for Learning Neural Operators", arXiv 2309.15325)
hold ``x`` and ``y``: ``y [N, T, X]`` with ``x [N, X]`` is a trajectory set (Burgers: ``x`` is the
initial condition, repeated as ``y[:, 0]``); ``x [N, *grid]`` with ``y`` of the same shape is a
steady problem (Darcy: coefficient ``x`` → solution ``y``). They are read without unpickling:
``.npz`` through ``np.load(allow_pickle=False)``, ``.pt`` through ``torch.load(weights_only=True)``,
and held in memory (the files are small).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sciformer.data.sources.base import SPACE_AXES, TrajectorySource, check_real_values, time_coordinate
from sciformer.errors import DataError


class ArraySource(TrajectorySource):
    """Trajectories ``fields [N, T, C, *grid]`` held in memory; ``coefficient [N, *grid]`` for steady problems."""

    kind = "array"

    def __init__(
        self,
        fields: np.ndarray,
        channels: Sequence[str] | None = None,
        coords: dict[str, np.ndarray] | None = None,
        times: np.ndarray | None = None,
        attrs: dict[str, Any] | None = None,
        coefficient: np.ndarray | None = None,
        path: str | os.PathLike = "<array>",
        coefficient_name: str = "coefficient",
    ):
        fields = np.asarray(fields)
        self.path = Path(path)
        if not 4 <= fields.ndim <= 6:
            raise DataError(f"{path}: expected fields of shape [N, T, C, *grid] (1D-3D), got {fields.shape}")
        check_real_values(f"{path}: the fields", fields.dtype, fields.shape)
        self.fields = fields
        self.n_samples, self.n_frames, n_c = fields.shape[:3]
        self.grid_shape = tuple(fields.shape[3:])
        self.channels = list(channels) if channels is not None else ([f"c{i}" for i in range(n_c)] if n_c > 1 else ["u"])
        if len(self.channels) != n_c:
            raise DataError(f"{path}: {n_c} channels in the data but names {self.channels}")
        coords = dict(coords or {})
        self.coords = {}
        for ax, size in zip(SPACE_AXES, self.grid_shape):
            c = np.asarray(coords[ax], dtype=np.float64).reshape(-1) if ax in coords else np.arange(size, dtype=np.float64)
            if c.size != size:
                raise DataError(f"{path}: coordinate '{ax}' has {c.size} entries; expected {size}")
            self.coords[ax] = c
        self.times = time_coordinate(times if times is not None else coords.get("t"), self.n_frames)
        self.attrs = dict(attrs or {})
        self.coefficient_array = None if coefficient is None else np.asarray(coefficient)
        if self.coefficient_array is not None:
            if self.coefficient_array.shape != (self.n_samples, *self.grid_shape):
                raise DataError(f"{path}: coefficient of shape {self.coefficient_array.shape}; expected {(self.n_samples, *self.grid_shape)}")
            self.coefficient = coefficient_name

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        if not self.path.is_file():  # generated in memory: a cheap content digest stands in for the file stamp
            out["sample_sum"] = float(np.asarray(self.fields[:1], dtype=np.float64).sum())
        return out

    def _read(self, handle: Any, samples, frames: slice, stride: int) -> np.ndarray:
        space = (slice(None, None, stride),) * len(self.grid_shape)
        # a copy: callers wrap the result in torch tensors, and xarray-backed arrays are read-only
        return np.array(self.fields[(samples, frames, slice(None), *space)], dtype=np.float32, order="C", copy=True)

    def _read_coefficient(self, handle: Any, samples, stride: int) -> np.ndarray:
        if self.coefficient_array is None:
            raise DataError(f"{self.path}: this data has no static coefficient field")
        space = (slice(None, None, stride),) * len(self.grid_shape)
        return np.array(self.coefficient_array[(samples, *space)][:, None], dtype=np.float32, order="C", copy=True)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (no pickle) or ``.pt`` file (``weights_only=True``, a dict of tensors)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a neuraloperator .npz or .pt file)")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{path}: cannot read as .npz without pickle ({' '.join(str(e).split())})") from None
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt / pickled-object files
        raise DataError(f"{path}: cannot read with torch.load(weights_only=True) ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"{path}: expected a dict of tensors with keys 'x', 'y'; got {type(obj).__name__}")
    return {str(k): v.numpy() for k, v in obj.items()}


def neuralop_source(path: str | os.PathLike) -> ArraySource:
    """A neuraloperator ``x``/``y`` file as a source: trajectories ``y [N, T, X]`` or steady pairs ``x → y``."""
    path = Path(path)
    arrays = load_arrays(path)
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: missing key '{key}' (expected 'x' and 'y')")
    x, y = arrays["x"], arrays["y"]
    attrs = {
        k: float(np.asarray(v).reshape(-1)[0])
        for k, v in arrays.items()
        if k not in ("x", "y") and np.asarray(v).size == 1 and np.asarray(v).dtype.kind in "fiu"
    }
    if y.ndim == x.ndim + 1 and y.shape[0] == x.shape[0] and y.shape[2:] == x.shape[1:]:
        # trajectories [N, T, *grid]: periodic grid on [0, 1), times on [0, 1] (the files store no coordinates)
        grid = {ax: np.arange(n) / n for ax, n in zip(SPACE_AXES, y.shape[2:])}
        return ArraySource(y[:, :, None], ["u"], grid, np.linspace(0, 1, y.shape[1]), attrs, path=path)
    if x.shape == y.shape and 2 <= x.ndim <= 4:
        grid = {ax: np.linspace(0, 1, n) for ax, n in zip(SPACE_AXES, y.shape[1:])}  # neuralop's Darcy grid
        return ArraySource(y[:, None, None], ["u"], grid, None, attrs, coefficient=x, path=path, coefficient_name="x")
    raise DataError(
        f"{path}: key 'x' {x.shape} / 'y' {y.shape}; expected x [N, X] with y [N, T, X] (trajectories) or x and y both [N, *grid] (coefficient → solution)"
    )
