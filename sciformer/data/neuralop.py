"""neuraloperator's small Darcy-flow and Burgers sets as named datasets ``darcy_small`` / ``burgers_small``.

The files come from the neuraloperator project (Kossaifi et al., "A Library for Learning Neural
Operators", arXiv 2309.15325; data from Li et al., "Fourier Neural Operator for Parametric PDEs",
arXiv 2010.08895); see ``shared/datasets/neuralop_small/README.md``. They are read without
unpickling: ``.npz`` through ``np.load(allow_pickle=False)``, the original ``.pt`` through
``torch.load(weights_only=True)``.

* ``darcy_small``: ``x (N, R, R)`` bool permeability mask → ``u_in [1, R, R]`` float32;
  ``y (N, R, R)`` pressure → ``u_out [1, R, R]``. Train: 1000 at R=16; test: 50 at R=16 or 32.
* ``burgers_small``: ``x (N, 16)`` initial condition, ``y (N, 17, 16)`` trajectory. Default
  (neuralop's ``Burgers1dTimeDataProcessor`` convention): ``u_in [1, 17, 16]`` = the initial
  condition repeated along time, ``u_out [1, 17, 16]`` = the trajectory (a 2D space-time grid).
  ``mode="trajectory"`` gives the trajectories to :class:`~sciformer.data.pde.PDEDataset` instead
  (next-step pairs, rollouts). Viscosity 0.01 is in ``attrs["visc"]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from sciformer.data.pde import PairDataset, PDEDataset
from sciformer.data.sources.arrays import ArraySource, load_arrays, neuralop_source
from sciformer.errors import DataError

__all__ = ["NEURALOP_SMALL", "load_neuralop_small", "neuralop_split_source", "resolve_data_file"]

_SUBDIR = "neuralop_small"
# name -> split -> resolution -> file stem
NEURALOP_SMALL: dict[str, dict[str, dict[int, str]]] = {
    "darcy_small": {"train": {16: "darcy_train_16"}, "test": {16: "darcy_test_16", 32: "darcy_test_32"}},
    "burgers_small": {"train": {16: "burgers_train_16"}, "test": {16: "burgers_test_16"}},
}


def _search_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    from sciformer.data.catalog import data_dirs

    roots = ([Path(data_dir)] if data_dir is not None else []) + data_dirs()
    return [d for r in roots for d in (r / _SUBDIR, r)]


def resolve_data_file(names: list[str], data_dir: str | os.PathLike | None = None, dataset: str = "") -> Path:
    """First existing ``<dir>/neuralop_small/<name>`` or ``<dir>/<name>`` over ``data_dir``,
    ``$SCIFORMER_DATA_DIR`` and ``./data``, trying ``names`` in order. When none exists and ``data_dir`` is not
    given, a registered ``dataset`` is downloaded (sha256-verified, :func:`sciformer.data.catalog.download`), as the
    time-series sets are; it fails clearly offline."""
    from sciformer.data import catalog

    dirs = _search_dirs(data_dir)

    def first_existing() -> Path | None:
        return next((d / name for name in names for d in dirs if (d / name).is_file()), None)

    found = first_existing()
    if found is None and data_dir is None and dataset in catalog.manifests():
        catalog.download(dataset)
        found = first_existing()
    if found is not None:
        return found
    raise DataError(
        f"dataset {dataset!r}: file {names[0]!r} not found; searched {[str(d) for d in dirs]}. "
        "Set SCIFORMER_DATA_DIR to the directory that holds neuralop_small/ (or pass data_dir=)."
    )


def _named_file(name: str, split: str, resolution: int, data_dir: str | os.PathLike | None, prefer: str) -> Path:
    if name not in NEURALOP_SMALL:
        from sciformer.errors import did_you_mean

        raise DataError(f"unknown dataset {name!r}{did_you_mean(name, NEURALOP_SMALL)}; known: {sorted(NEURALOP_SMALL)}")
    files = NEURALOP_SMALL[name]
    if split not in files:
        raise DataError(f"dataset {name!r}: split must be one of {sorted(files)}, got {split!r}")
    if resolution not in files[split]:
        raise DataError(f"dataset {name!r}: split {split!r} has resolutions {sorted(files[split])}, got {resolution}")
    stem = files[split][resolution]
    exts = [".npz", ".pt"] if prefer == "npz" else [".pt", ".npz"]
    return resolve_data_file([stem + e for e in exts], data_dir, name)


def neuralop_split_source(name: str, split: str, resolution: int = 16, data_dir: str | os.PathLike | None = None) -> ArraySource:
    """The trajectory source of one file of a named set: ``burgers_small`` trajectories ``[N, 17, 1, 16]``, or
    ``darcy_small`` coefficient → solution (coefficient ``x``, one frame ``y``)."""
    return neuralop_source(_named_file(name, split, resolution, data_dir, "npz"))


def load_neuralop_small(
    name: str,
    split: str = "train",
    resolution: int = 16,
    *,
    data_dir: str | os.PathLike | None = None,
    prefer: str = "npz",
    mode: str = "pairs",
    **trajectory_kwargs,
) -> PairDataset | PDEDataset:
    """Load ``darcy_small`` or ``burgers_small`` (see the module docstring for shapes).

    ``prefer="npz"|"pt"`` picks the file format tried first. ``mode="trajectory"`` (Burgers only)
    returns a :class:`PDEDataset` over ``[N, 17, 1, 16]`` trajectories; ``trajectory_kwargs`` go to
    it (``initial_step``, ``mode="pairs"|"trajectory"`` as ``traj_mode``), with ``split="all"``
    because the files are already split.
    """
    path = _named_file(name, split, resolution, data_dir, prefer)
    arr = load_arrays(path)
    for key in ("x", "y"):
        if key not in arr:
            raise DataError(f"{path}: missing key '{key}' (expected 'x' and 'y')")
    x, y = arr["x"], arr["y"]

    if name == "darcy_small":
        if x.ndim != 3 or y.shape != x.shape:
            raise DataError(f"{path}: key 'x' {x.shape} / 'y' {y.shape}; expected both [N, R, R]")
        r = x.shape[-1]
        c = torch.arange(r, dtype=torch.float32) / (r - 1)  # neuralop's grid: linspace(0, 1, R)
        return PairDataset(
            torch.from_numpy(x.astype(np.float32))[:, None],
            torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[:, None],
            {"x": c, "y": c.clone()},
            {},
            name=f"{name}/{split}@{r}",
        )

    # burgers_small
    if x.ndim != 2 or y.ndim != 3 or y.shape[0] != x.shape[0] or y.shape[2] != x.shape[1]:
        raise DataError(f"{path}: key 'x' {x.shape} / 'y' {y.shape}; expected x [N, X], y [N, T, X]")
    visc = float(np.asarray(arr.get("visc", np.nan)).reshape(-1)[0])
    n, n_t, n_x = y.shape
    # The files store no coordinates: periodic x on [0, 1) and t on [0, 1] (normalised).
    grid = {"x": torch.arange(n_x, dtype=torch.float32) / n_x, "t": torch.linspace(0, 1, n_t, dtype=torch.float32)}
    if mode == "trajectory":
        kw = dict(trajectory_kwargs)
        traj_mode = kw.pop("traj_mode", "pairs")
        src = ArraySource(y[:, :, None].astype(np.float32), ["u"], {"x": grid["x"].double().numpy()}, grid["t"].double().numpy(), {"visc": visc}, path=path)
        return PDEDataset(src, "all", mode=traj_mode, **kw)
    if mode != "pairs":
        raise ValueError(f"mode must be 'pairs' or 'trajectory', got {mode!r}")
    u0 = torch.from_numpy(x.astype(np.float32))[:, None, None, :].expand(n, 1, n_t, n_x).contiguous()
    return PairDataset(u0, torch.from_numpy(y.astype(np.float32))[:, None], grid, {"visc": visc}, name=f"{name}/{split}@{n_x}")
