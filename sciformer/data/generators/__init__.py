"""Offline PDE generators writing PDEBench's HDF5 layout (readable by :mod:`sciformer.data.pde`).

``generate(name, out, n, res, seed=0, device="cpu", **params)`` is the one entry point (the CLI's
``sciformer datasets generate``). Each generator is seeded, vectorised over samples in PyTorch
(``device="cuda"`` runs on a GPU), shows a tqdm bar and writes chunked, gzip-compressed HDF5 batch by
batch; rerunning an interrupted generation continues it (:mod:`~sciformer.data.generators.writer`).
Every parameter is range-checked before any work (one-line :class:`~sciformer.errors.ConfigError`).

| name | PDE | fields | main parameters (defaults) |
|---|---|---|---|
| ``advection1d`` | ∂t u + β ∂x u = 0, [0, 1] periodic | ``tensor [N, 201, X]`` | ``beta=1.0, t_end=2, dt_save=0.01, ic="random"|"sine"`` |
| ``burgers1d`` | ∂t u + ∂x(u²/2) = (ν/π) ∂xx u | ``tensor [N, 201, X]`` | ``nu=0.01`` (≥ 0, attr ``Nu``), ``t_end=2, dt_save=0.01`` |
| ``darcy2d`` | −∇·(a∇u) = β, u = 0 on ∂Ω | ``nu [N, X, X]``, ``tensor [N, 1, X, X]`` | ``beta=1.0`` |
| ``ns2d`` | vorticity NS, forced | ``tensor [N, 21, X, X]`` | ``nu=1e-3, forcing="fno"|"kolmogorov"|"none", t_end=20, dt_save=1`` |
| ``diffreact2d`` | FitzHugh–Nagumo | ``u``, ``v`` ``[N, 101, X, X]`` | ``du=1e-3, dv=5e-3, k=5e-3, t_end=5, dt_save=0.05`` |
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sciformer.data.generators.advection import Advection1D
from sciformer.data.generators.burgers import Burgers1D
from sciformer.data.generators.common import PDEGenerator
from sciformer.data.generators.darcy import Darcy2D
from sciformer.data.generators.diffusion_reaction import DiffusionReaction2D
from sciformer.data.generators.navier_stokes import NavierStokes2D
from sciformer.data.generators.writer import run_generator
from sciformer.errors import ConfigError

__all__ = ["GENERATORS", "generate"]

GENERATORS: dict[str, PDEGenerator] = {g.name: g for g in (Advection1D(), Burgers1D(), Darcy2D(), NavierStokes2D(), DiffusionReaction2D())}


def generate(
    name: str,
    out: str | os.PathLike,
    n: int,
    res: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    *,
    batch_size: int | None = None,
    layout: str = "single",
    dtype: str | torch.dtype = "float32",
    progress: bool = True,
    compression: str = "gzip",
    **params,
) -> Path:
    """Generate ``n`` samples of PDE ``name`` at resolution ``res`` (cells per axis) into ``out``.

    ``params`` override the generator's defaults (``GENERATORS[name].defaults``; e.g. ``beta=0.4``,
    ``nu=0.001``); ``None`` values are ignored so CLI flags can pass through unset. ``layout``:
    ``"single"`` (PDEBench single file, default) or ``"group"`` (one group per sample; not Darcy).
    ``dtype``: simulation precision (files are float32 like PDEBench; random draws are float64 either
    way, so both start from the same samples). ``compression``: ``"gzip"`` (level 1 with byte shuffle)
    or ``"none"``. Output depends on ``(seed, batch_size)``; the batch size actually used is stored as
    attribute ``batch_size``. ``out`` must not exist; ``out.partial`` from an interrupted run with the
    same arguments is continued.
    """
    if name not in GENERATORS:
        from sciformer.errors import did_you_mean

        raise ConfigError(f"unknown generator {name!r}{did_you_mean(name, GENERATORS)}; available: {', '.join(sorted(GENERATORS))}")
    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if dtype not in dtypes and dtype not in dtypes.values():
        raise ConfigError(f"generate: dtype must be 'float32' or 'float64', got {dtype!r}")
    return run_generator(
        GENERATORS[name],
        out,
        n,
        res,
        seed,
        device,
        batch_size=batch_size,
        layout=layout,
        dtype=dtype if isinstance(dtype, torch.dtype) else dtypes[dtype],
        progress=progress,
        compression=compression,
        **params,
    )
