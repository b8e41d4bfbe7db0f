"""Writing generated samples: PDEBench's HDF5 layouts, chunked and compressed, appended batch by batch
so that an interrupted generation resumes.

:func:`run_generator` simulates batch after batch and writes each into ``OUT.partial``, recording
after every batch how many are complete. Rerunning the same command finds the partial file, checks
that it was started with the same settings, and continues from the first missing batch; since every
batch draws from its own ``(seed, batch)`` stream, the finished file holds exactly what an
uninterrupted run writes. Only then is it renamed to ``OUT``. An existing ``OUT`` is never touched.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

from sciformer.data.generators.common import FilePlan, PDEGenerator, batch_generator, check_value, choice, whole
from sciformer.errors import ConfigError, DataError, StorageError, storage_error, user_path

__all__ = ["COMPRESSIONS", "run_generator"]

_CHUNK_BYTES = 2**20  # ~1 MB HDF5 chunks: good for both per-window reads and block streaming
_BATCH_ELEMS = 2**21  # default batch: ~2M grid values of state per batch (~16 MB float64 each copy)
_MAX_FRAME_ELEMS = 2**28  # one saved frame of one sample must stay below 1 GiB in float32
# compression name -> h5py dataset options (gzip level 1 + byte shuffle: most of gzip's gain on floats
# at a fraction of its time; any HDF5 reader decodes it)
COMPRESSIONS = {"gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True}, "none": {}}
_DONE = "batches_done"  # attribute of a partial file: complete batches so far


def _time_chunk(frame_elems: int, n_t: int) -> int:
    """Frames per HDF5 chunk: ≤ ~1 MB, and balanced over T (HDF5 allocates whole chunks, so a
    ragged last chunk would waste file space)."""
    k_max = max(1, _CHUNK_BYTES // (4 * frame_elems))
    return math.ceil(n_t / math.ceil(n_t / k_max))


class _SingleWriter:
    """``tensor``/named fields ``[N, T, *space]`` float32 chunked ``(1, k, *space)``; coordinates;
    static fields ``[N, *space]``; parameters as root attributes."""

    def __init__(self, f, n: int, plan: FilePlan, filters: dict, create: bool):
        self.f, self.plan = f, plan
        self.k = _time_chunk(math.prod(plan.space), plan.n_t)
        if not create:
            return
        for name in plan.fields:
            f.create_dataset(name, (n, plan.n_t, *plan.space), dtype="f4", chunks=(1, self.k, *plan.space), **filters)
        for name in plan.static:
            f.create_dataset(name, (n, *plan.space), dtype="f4", chunks=(1, *plan.space), **filters)
        for ax, c in plan.coords.items():
            f.create_dataset(f"{ax}-coordinate", data=np.asarray(c, dtype=np.float32))
        if plan.fields != ["tensor"]:  # tells the reader which datasets are the channels
            f.attrs["fields"] = ",".join(plan.fields)

    def static(self, i0: int, arrays: dict[str, np.ndarray]) -> None:
        for name, a in arrays.items():
            self.f[name][i0 : i0 + a.shape[0]] = a

    def frames(self, i0: int, t0: int, arrays: dict[str, np.ndarray]) -> None:
        for name, a in arrays.items():  # a: [b, k, *space]
            self.f[name][i0 : i0 + a.shape[0], t0 : t0 + a.shape[1]] = a


class _GroupWriter:
    """PDEBench group layout: ``f"{i:04d}/data" [T, *space, C]`` and ``f"{i:04d}/grid/x|y|t"``."""

    def __init__(self, f, n: int, plan: FilePlan, filters: dict, create: bool):
        self.f, self.plan = f, plan
        c = len(plan.fields)
        self.k = _time_chunk(math.prod(plan.space) * c, plan.n_t)
        width = max(4, len(str(n - 1)))
        self.keys = [f"{i:0{width}d}" for i in range(n)]
        if not create:
            return
        for key in self.keys:
            g = f.create_group(key)
            g.create_dataset("data", (plan.n_t, *plan.space, c), dtype="f4", chunks=(self.k, *plan.space, c), **filters)
            grid = g.create_group("grid")
            for ax, cc in plan.coords.items():
                grid.create_dataset(ax, data=np.asarray(cc, dtype=np.float32))
        f.attrs["channels"] = ",".join(plan.fields)

    def static(self, i0, arrays):  # pragma: no cover - guarded by PDEGenerator.single_only
        raise ValueError("the group layout has no static fields")

    def frames(self, i0: int, t0: int, arrays: dict[str, np.ndarray]) -> None:
        block = np.stack([arrays[k] for k in self.plan.fields], axis=-1)  # [b, k, *space, C]
        for j in range(block.shape[0]):  # one dataset per sample group: I/O, not compute
            self.f[self.keys[i0 + j]]["data"][t0 : t0 + block.shape[1]] = block[j]


def _check_arguments(gen_obj: PDEGenerator, n, res, seed, batch_size, layout, compression) -> None:
    check_value("generate: n (samples)", n, whole(1))
    check_value("generate: res (cells per axis)", res, whole(2))
    check_value("generate: seed", seed, whole(0))
    if batch_size is not None:
        check_value("generate: batch_size", batch_size, whole(1))
    check_value("generate: layout", layout, choice("single", "group"))
    check_value("generate: compression", compression, choice(*COMPRESSIONS))
    if layout == "group" and gen_obj.single_only:
        raise ConfigError(f"{gen_obj.name} writes the single-file layout only (no time axis to group)")


def _open_partial(tmp: Path, spec: str):
    """Open ``tmp`` to continue it (same settings) or create it; returns ``(file, batches done)``."""
    import h5py

    if not tmp.exists():
        return h5py.File(tmp, "w-"), 0
    try:
        f = h5py.File(tmp, "r+")
    except OSError as exc:
        raise DataError(f"'{tmp}' holds an unfinished generation that cannot be read ({exc}); remove it to start over") from None
    started = f.attrs.get("generate_spec", "")
    if started != spec or _DONE not in f.attrs:
        f.close()
        raise DataError(
            f"'{tmp}' holds an unfinished generation with other settings ({started or 'unknown'}); "
            f"rerun with those settings to finish it, or remove it to start over"
        )
    return f, int(f.attrs[_DONE])


def run_generator(
    gen_obj: PDEGenerator,
    out: str | os.PathLike,
    n: int,
    res: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    *,
    batch_size: int | None = None,
    layout: str = "single",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    compression: str = "gzip",
    **params,
) -> Path:
    """Simulate ``n`` samples in batches and write them to ``out`` in PDEBench layout; returns ``out``.

    Every argument is checked before any work. Memory: one batch of state plus one chunk of frames.
    An interrupted run leaves ``out.partial`` (when at least one batch was complete); the same call
    resumes it (see the module docstring).
    """
    from tqdm.auto import tqdm

    _check_arguments(gen_obj, n, res, seed, batch_size, layout, compression)
    p = gen_obj.params(**params)
    gen_obj.check_work(res, p)
    plan = gen_obj.plan(res, **p)
    frame_elems = len(plan.fields) * math.prod(plan.space)
    if frame_elems > _MAX_FRAME_ELEMS:
        raise ConfigError(f"{gen_obj.name} at res={res}: one frame holds {frame_elems:.3g} values, more than {_MAX_FRAME_ELEMS:.3g}")
    bs = batch_size or max(1, min(n, _BATCH_ELEMS // frame_elems))
    out = user_path(out)
    if out.exists():
        raise StorageError(f"'{out}' already exists; generate never overwrites a file: choose another output path or remove it")
    tmp = out.with_name(out.name + ".partial")
    attrs = {**plan.attrs, "generator": gen_obj.name, "seed": int(seed), "batch_size": int(bs), "sim_dtype": str(dtype).replace("torch.", "")}
    spec = json.dumps({"n": int(n), "res": int(res), "layout": layout, "compression": compression, **attrs}, sort_keys=True, default=str)
    device = torch.device(device)
    n_batches = -(-n // bs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        f, done = _open_partial(tmp, spec)
    except OSError as exc:
        raise storage_error(exc, tmp) from None
    try:
        with f:
            if done == 0:
                for k, v in {**attrs, "generate_spec": spec, _DONE: 0}.items():
                    f.attrs[k] = v
            writer = (_SingleWriter if layout == "single" else _GroupWriter)(f, n, plan, COMPRESSIONS[compression], done == 0)
            with tqdm(
                total=n * plan.n_t, initial=min(n, done * bs) * plan.n_t, unit="frame", desc=gen_obj.name, disable=not progress, dynamic_ncols=True
            ) as bar:
                for bi in range(done, n_batches):
                    _write_batch(gen_obj, writer, plan, bi, bs, n, res, seed, device, dtype, p, bar)
                    f.attrs[_DONE] = bi + 1
                    f.flush()
            del f.attrs[_DONE]
        os.replace(tmp, out)
    except OSError as exc:
        raise storage_error(exc, tmp) from None
    except BaseException:
        _keep_or_drop(tmp, n_batches, progress)
        raise
    return out


def _keep_or_drop(tmp: Path, n_batches: int, progress: bool) -> None:
    """After an interruption: keep a partial file with complete batches (and say how to continue), drop one with none."""
    import h5py

    if not tmp.exists():
        return
    try:
        with h5py.File(tmp, "r") as f:
            done = int(f.attrs.get(_DONE, 0))
    except OSError:  # interrupted while the file was being laid out
        done = 0
    if done == 0:
        tmp.unlink()
    elif progress:
        print(f"generation stopped after {done} of {n_batches} batches; '{tmp}' keeps them, and the same command continues from there", file=sys.stderr)


def _write_batch(gen_obj, writer, plan: FilePlan, bi: int, bs: int, n: int, res: int, seed: int, device, dtype, p, bar) -> None:
    """Simulate batch ``bi`` and write its frames whole HDF5 chunks at a time."""
    i0 = bi * bs
    b = min(bs, n - i0)
    static, frames = gen_obj.simulate(b, res, batch_generator(seed, bi, device), device, dtype, **p)
    if static:
        writer.static(i0, {k: v.float().cpu().numpy() for k, v in static.items()})
    buf: dict[str, list[np.ndarray]] = {k: [] for k in plan.fields}
    t0 = t = 0
    for fr in frames:
        for k in plan.fields:
            buf[k].append(fr[k].float().cpu().numpy())
        t += 1
        bar.update(b)
        if t - t0 == writer.k or t == plan.n_t:
            writer.frames(i0, t0, {k: np.stack(v, axis=1) for k, v in buf.items()})
            buf = {k: [] for k in plan.fields}
            t0 = t
    if t != plan.n_t:
        raise RuntimeError(f"{gen_obj.name}: simulated {t} frames, planned {plan.n_t}")
    bar.set_postfix(samples=i0 + b)
