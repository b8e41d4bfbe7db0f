"""Shared pieces of the PDE generators: the PDEBench-layout writer, the batch driver, seeding, the
MUSCL limiter and PDEBench's random initial conditions.

Every generator is a :class:`PDEGenerator`: ``plan(res, **params)`` says what the file holds
(fields, frames, grid, coordinates, attributes) and ``simulate(u-batch...)`` yields the saved frames
of one batch of samples, vectorised over the batch in PyTorch (so ``device="cuda"`` runs on a GPU).
:func:`run_generator` drives batches, buffers frames up to the HDF5 chunk and writes them, so a file
of any size never sits in memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sciformer.errors import DataError

__all__ = ["FilePlan", "PDEGenerator", "init_multi", "mc_slope", "run_generator"]

_CHUNK_BYTES = 2**20  # ~1 MB HDF5 chunks: good for both per-window reads and block streaming
_BATCH_ELEMS = 2**21  # default batch: ~2M grid values of state per batch (~16 MB float64 each copy)


@dataclass
class FilePlan:
    """What one generated file holds (sizes are per sample)."""

    fields: list[str]  # time-dependent fields, channel order, each [N, T, *space]
    n_t: int
    space: tuple[int, ...]
    coords: dict[str, np.ndarray]  # "x", "y", "t" (t has n_t entries)
    attrs: dict[str, Any]
    static: list[str] = field(default_factory=list)  # per-sample fields [N, *space] (Darcy "nu")


class PDEGenerator:
    """Base class: subclasses set ``name``, ``defaults`` and implement ``plan`` and ``simulate``."""

    name = ""
    defaults: dict[str, Any] = {}
    single_only = False  # True: the group layout does not apply (Darcy has no trajectory)

    def params(self, **overrides) -> dict[str, Any]:
        unknown = {k for k, v in overrides.items() if v is not None} - set(self.defaults)
        if unknown:
            from sciformer.errors import ConfigError

            raise ConfigError(f"generator '{self.name}' has no parameter(s) {sorted(unknown)}; "
                              f"its parameters: {sorted(self.defaults)}")
        return {**self.defaults, **{k: v for k, v in overrides.items() if v is not None}}

    def plan(self, res: int, **p) -> FilePlan:
        raise NotImplementedError

    def simulate(self, b: int, res: int, gen: torch.Generator, device, dtype,
                 **p) -> tuple[dict[str, torch.Tensor], Iterator[dict[str, torch.Tensor]]]:
        """``(static {name: [b, *space]}, frames)`` where ``frames`` yields ``{name: [b, *space]}``
        once per saved time."""
        raise NotImplementedError


def batch_generator(seed: int, batch_index: int, device) -> torch.Generator:
    """An independent, reproducible stream per (seed, batch): results depend on (seed, batch_size)."""
    s = int(np.random.SeedSequence([int(seed), int(batch_index)]).generate_state(1, np.uint64)[0])
    g = torch.Generator(device=device)
    g.manual_seed(s & (2**63 - 1))
    return g


def mc_slope(u: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Monotonised-central limited slope of periodic cell averages along ``dim`` (PDEBench's limiter):
    ``sign(c)·[ab > 0]·min(2·min(|a|, |b|), |c|)``, ``a``/``b`` one-sided, ``c`` the central difference / 2.
    """
    a = u - torch.roll(u, 1, dim)
    b = torch.roll(u, -1, dim) - u
    c = 0.5 * (a + b)
    lim = torch.minimum(2.0 * torch.minimum(a.abs(), b.abs()), c.abs())
    return torch.sign(c) * (a * b > 0) * lim


def init_multi(x: torch.Tensor, b: int, gen: torch.Generator, *, k_tot: int = 4, num_k: int = 2,
               p_abs: float = 0.1, p_window: float = 0.1) -> torch.Tensor:
    """PDEBench's random initial condition ``init_multi`` (PDE.md §1.7), vectorised: ``[b, X]``.

    u0 = Σ_{num_k} A sin(k x + φ), n ∈ {1..k_tot}, k = 2πn/(x[-1]-x[0]) (PDEBench's quirk: not exactly
    periodic on the domain), A ~ U(0,1), φ ~ U(0,2π); with prob. ``p_abs`` |u0|; a random sign; with prob.
    ``p_window`` a tanh window on [xL, xR], xL ~ U(0.1, 0.45), xR ~ U(0.55, 0.9) (of the domain).
    """
    dev, dt = x.device, x.dtype
    r = lambda *s: torch.rand(*s, generator=gen, device=dev, dtype=dt)  # noqa: E731
    n = torch.randint(1, k_tot + 1, (b, num_k), generator=gen, device=dev).to(dt)
    k = 2 * math.pi * n / (x[-1] - x[0])
    amp, phs = r(b, num_k), 2 * math.pi * r(b, num_k)
    u = (amp[..., None] * torch.sin(k[..., None] * x + phs[..., None])).sum(1)  # [b, X]
    use_abs = r(b, 1) < p_abs
    u = torch.where(use_abs, u.abs(), u)
    sign = torch.where(r(b, 1) < 0.5, -1.0, 1.0).to(dt)
    u = u * sign
    lo, length = x[0], x[-1] - x[0]
    xl = lo + length * (0.1 + 0.35 * r(b, 1))
    xr = lo + length * (0.55 + 0.35 * r(b, 1))
    window = 0.5 * (torch.tanh((x - xl) / 0.01) - torch.tanh((x - xr) / 0.01))
    return torch.where(r(b, 1) < p_window, u * window, u)


def cell_centers(res: int, p: dict) -> tuple[np.ndarray, float]:
    """Finite-volume cell centres ``[res]`` of ``[p["x_left"], p["x_right"]]`` and the cell width."""
    dx = (p["x_right"] - p["x_left"]) / res
    return p["x_left"] + (np.arange(res) + 0.5) * dx, dx


def save_times(t_end: float, dt_save: float) -> np.ndarray:
    """Saved times 0, dt_save, ..., t_end (inclusive, rounded to the nearest whole number of saves)."""
    return np.arange(int(round(t_end / dt_save)) + 1, dtype=np.float64) * dt_save


# --------------------------------------------------------------------------------------------------
# Writers: PDEBench single-file (default) and group-per-sample layouts
# --------------------------------------------------------------------------------------------------


def _time_chunk(frame_elems: int, n_t: int) -> int:
    """Frames per HDF5 chunk: ≤ ~1 MB, and balanced over T (HDF5 allocates whole chunks, so a
    ragged last chunk would waste file space)."""
    k_max = max(1, _CHUNK_BYTES // (4 * frame_elems))
    return math.ceil(n_t / math.ceil(n_t / k_max))


class _SingleWriter:
    """``tensor``/named fields ``[N, T, *space]`` float32 chunked ``(1, k, *space)``; coordinates;
    static fields ``[N, *space]``; parameters as root attributes."""

    def __init__(self, f, n: int, plan: FilePlan):
        self.f, self.plan = f, plan
        frame = math.prod(plan.space)
        self.k = _time_chunk(frame, plan.n_t)
        for name in plan.fields:
            f.create_dataset(name, (n, plan.n_t, *plan.space), dtype="f4",
                             chunks=(1, self.k, *plan.space))
        for name in plan.static:
            f.create_dataset(name, (n, *plan.space), dtype="f4", chunks=(1, *plan.space))
        for ax, c in plan.coords.items():
            f.create_dataset(f"{ax}-coordinate", data=np.asarray(c, dtype=np.float32))
        if plan.fields != ["tensor"]:  # tells the reader which datasets are the channels
            f.attrs["fields"] = ",".join(plan.fields)

    def static(self, i0: int, arrays: dict[str, np.ndarray]) -> None:
        for name, a in arrays.items():
            self.f[name][i0: i0 + a.shape[0]] = a

    def frames(self, i0: int, t0: int, arrays: dict[str, np.ndarray]) -> None:
        for name, a in arrays.items():  # a: [b, k, *space]
            self.f[name][i0: i0 + a.shape[0], t0: t0 + a.shape[1]] = a


class _GroupWriter:
    """PDEBench group layout: ``f"{i:04d}/data" [T, *space, C]`` and ``f"{i:04d}/grid/x|y|t"``."""

    def __init__(self, f, n: int, plan: FilePlan):
        self.f, self.plan = f, plan
        c = len(plan.fields)
        self.k = _time_chunk(math.prod(plan.space) * c, plan.n_t)
        width = max(4, len(str(n - 1)))
        self.keys = [f"{i:0{width}d}" for i in range(n)]
        for key in self.keys:
            g = f.create_group(key)
            g.create_dataset("data", (plan.n_t, *plan.space, c), dtype="f4", chunks=(self.k, *plan.space, c))
            grid = g.create_group("grid")
            for ax, cc in plan.coords.items():
                grid.create_dataset(ax, data=np.asarray(cc, dtype=np.float32))
        f.attrs["channels"] = ",".join(plan.fields)

    def static(self, i0, arrays):  # pragma: no cover - guarded by PDEGenerator.single_only
        raise ValueError("the group layout has no static fields")

    def frames(self, i0: int, t0: int, arrays: dict[str, np.ndarray]) -> None:
        block = np.stack([arrays[k] for k in self.plan.fields], axis=-1)  # [b, k, *space, C]
        for j in range(block.shape[0]):  # one dataset per sample group: I/O, not compute
            self.f[self.keys[i0 + j]]["data"][t0: t0 + block.shape[1]] = block[j]


def run_generator(gen_obj: PDEGenerator, out: str | os.PathLike, n: int, res: int, seed: int = 0,
                  device: str | torch.device = "cpu", *, batch_size: int | None = None,
                  layout: str = "single", dtype: torch.dtype = torch.float32, progress: bool = True,
                  **params) -> Path:
    """Simulate ``n`` samples in batches and write them to ``out`` in PDEBench layout; returns ``out``.

    Writes to ``out.partial`` and renames on success, so an interrupted run leaves no half file
    under the final name. Memory: one batch of state plus one chunk of frames.
    """
    import h5py
    from tqdm.auto import tqdm

    if n < 1 or res < 2:
        raise DataError(f"need n >= 1 and res >= 2, got n={n}, res={res}")
    if layout not in ("single", "group"):
        raise DataError(f"layout must be 'single' or 'group', got {layout!r}")
    if layout == "group" and gen_obj.single_only:
        raise DataError(f"{gen_obj.name} writes the single-file layout only (no time axis to group)")
    p = gen_obj.params(**params)
    plan = gen_obj.plan(res, **p)
    device = torch.device(device)
    frame_elems = len(plan.fields) * math.prod(plan.space)
    bs = batch_size or max(1, min(n, _BATCH_ELEMS // frame_elems))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    attrs = {**plan.attrs, "generator": gen_obj.name, "seed": int(seed), "batch_size": int(bs),
             "sim_dtype": str(dtype).replace("torch.", "")}
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            writer = (_SingleWriter if layout == "single" else _GroupWriter)(f, n, plan)
            bar = tqdm(total=n * plan.n_t, unit="frame", desc=gen_obj.name, disable=not progress,
                       dynamic_ncols=True)
            for bi, i0 in enumerate(range(0, n, bs)):
                b = min(bs, n - i0)
                g = batch_generator(seed, bi, device)
                static, frames = gen_obj.simulate(b, res, g, device, dtype, **p)
                if static:
                    writer.static(i0, {k: v.float().cpu().numpy() for k, v in static.items()})
                buf: dict[str, list[np.ndarray]] = {k: [] for k in plan.fields}
                t0 = t = 0
                for fr in frames:
                    for k in plan.fields:
                        buf[k].append(fr[k].float().cpu().numpy())
                    t += 1
                    bar.update(b)
                    if t - t0 == writer.k or t == plan.n_t:  # flush whole HDF5 chunks at once
                        writer.frames(i0, t0, {k: np.stack(v, axis=1) for k, v in buf.items()})
                        buf = {k: [] for k in plan.fields}
                        t0 = t
                if t != plan.n_t:
                    raise RuntimeError(f"{gen_obj.name}: simulated {t} frames, planned {plan.n_t}")
                bar.set_postfix(samples=i0 + b)
            bar.close()
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
