"""The Well's HDF5 layout (Ohana et al., "The Well: a Large-Scale Collection of Diverse Physics
Simulations for Machine Learning", arXiv 2412.00568; format: ``docs/data_format.md`` of
github.com/PolymathicAI/the_well).

One file holds ``n_trajectories`` runs of one simulation::

    @n_spatial_dims, @n_trajectories, @simulation_parameters = ['ParamA', ...], @ParamA = 1.0
    dimensions/   @spatial_dims = ['x', 'y'];  time [T];  x [W];  y [H]
    t0_fields/    @field_names;  FieldA [B, T, *grid]             (scalars: one channel)
    t1_fields/    @field_names;  VFieldA [B, T, *grid, D]         (vectors: D channels, FieldA_x ...)
    t2_fields/    @field_names;  TFieldA [B, T, *grid, D, D]      (tensors: D² channels, FieldA_xy ...)

A field whose ``time_varying`` (or ``sample_varying``) attribute is false lacks that axis and is
repeated over it; fields that vary along only some spatial axes (``dim_varying``) are refused.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from sciformer.data.sources.base import sample_ids
from sciformer.data.sources.hdf5 import HDF5Source, attributes, check_dataset, member, name_list, read_h5, read_samples
from sciformer.errors import DataError

GROUPS = ("t0_fields", "t1_fields", "t2_fields")


def is_the_well(f: Any) -> bool:
    return "dimensions" in f and any(g in f for g in GROUPS)


class _Field:
    """One dataset of a ``tN_fields`` group and how its axes map to ``[B, T, *grid, components]``."""

    def __init__(self, key: str, ds: Any, order: int, n_dims: int):
        self.key, self.order = key, order
        self.samples = bool(ds.attrs.get("sample_varying", True))
        self.frames = bool(ds.attrs.get("time_varying", True))
        self.components = n_dims**order
        dims = ds.attrs.get("dim_varying")
        self.partial = dims is not None and not bool(np.all(dims))


class TheWellSource(HDF5Source):
    kind = "the_well"

    def __init__(self, path: Path, f: Any):
        self.path = Path(path)
        dims = member(path, f, "dimensions")
        axes = name_list(dims.attrs.get("spatial_dims"))
        n_dims = int(f.attrs.get("n_spatial_dims", len(axes)))
        if not axes or len(axes) != n_dims or not 1 <= n_dims <= 3:
            raise DataError(f"{path}: 'dimensions' names spatial axes {axes} but the file has n_spatial_dims={n_dims}; expected 1 to 3 named axes")
        self.axis_names = axes
        self.coords = {}
        for ax_key, ax in zip(axes, ("x", "y", "z")):
            ds = member(path, dims, ax_key)
            check_dataset(path, ds, f"dimensions/{ax_key}")
            self.coords[ax] = read_h5(path, ds, f"dimensions/{ax_key}", ()).astype(np.float64).reshape(-1)
        self.grid_shape = tuple(c.size for c in self.coords.values())
        self.fields: list[_Field] = []
        self.channels = []
        for order, group in enumerate(GROUPS):
            if group not in f:
                continue
            g = member(path, f, group)
            for name in name_list(g.attrs.get("field_names")) or sorted(g.keys()):
                key = f"{group}/{name}"
                ds = member(path, f, key)
                check_dataset(path, ds, key)
                field = _Field(key, ds, order, n_dims)
                if field.partial:
                    raise DataError(f"{path}: field '{key}' varies along only some spatial axes (dim_varying); not supported")
                self.fields.append(field)
                suffixes = ["".join(p) for p in itertools.product(axes, repeat=order)] if order else [""]
                self.channels += [f"{name}_{s}" if s else name for s in suffixes]
        if not self.fields:
            raise DataError(f"{path}: The Well layout with no fields in {', '.join(GROUPS)}")
        self.n_samples = int(f.attrs.get("n_trajectories", 0)) or self._leading(f, "samples")
        time = member(path, dims, "time") if "time" in dims else None
        self.n_frames = self._leading(f, "frames")
        self.times = (
            np.arange(self.n_frames, dtype=np.float64)
            if time is None
            else read_h5(path, time, "dimensions/time", ()).astype(np.float64).reshape(-1)[-self.n_frames :]
        )
        self.attrs = attributes(f)
        self._check_shapes(f)

    def _leading(self, f: Any, what: str) -> int:
        for field in self.fields:
            shape = f[field.key].shape
            if what == "samples" and field.samples:
                return shape[0]
            if what == "frames" and field.frames:
                return shape[int(field.samples)]
        return 1

    def _expected(self, field: _Field) -> tuple[int, ...]:
        lead = ((self.n_samples,) if field.samples else ()) + ((self.n_frames,) if field.frames else ())
        return (*lead, *self.grid_shape, *((len(self.axis_names),) * field.order))

    def _check_shapes(self, f: Any) -> None:
        for field in self.fields:
            shape, want = tuple(f[field.key].shape), self._expected(field)
            if shape != want:
                raise DataError(f"{self.path}: field '{field.key}' has shape {shape}; expected {want} (trajectories, time, *grid, components as its flags say)")

    def dataset_name(self, channel: int, sample: int) -> str:
        for field in self.fields:
            if channel < field.components:
                return field.key
            channel -= field.components
        return self.channels[channel]

    def _read(self, f: Any, samples, frames: slice, stride: int) -> np.ndarray:
        n, t = len(sample_ids(samples, self.n_samples)), len(range(self.n_frames)[frames])
        space = (slice(None, None, stride),) * len(self.grid_shape)
        parts = []
        for field in self.fields:
            rest = ((frames,) if field.frames else ()) + space
            if field.samples:
                a = read_samples(self.path, f[field.key], field.key, samples, rest, self.n_samples)
            else:
                a = read_h5(self.path, f[field.key], field.key, rest, "every sample")
            if not field.samples:
                a = a[None]
            if not field.frames:
                a = a[:, None]
            a = a.reshape(*a.shape[: 2 + len(space)], field.components)  # [.., *grid, D^order]
            a = np.broadcast_to(a, (n, t, *a.shape[2:]))
            parts.append(np.moveaxis(a, -1, 2))  # [n, t, components, *grid]
        return np.concatenate(parts, axis=2).astype(np.float32)
