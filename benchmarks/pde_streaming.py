"""Stream a large generated 2D PDEBench file through the reader and report peak resident memory.

    python benchmarks/pde_streaming.py --size-gb 4.2                 # ≥ 4 GB file in a temp dir
    python benchmarks/pde_streaming.py --size-gb 0.2 --keep out.h5   # quick run, keep the file

The file is generated in a separate (spawned) process, so this process's peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) measures the reader alone: opening the file,
``iter_batches`` over every ``initial_step`` window of the train split. The file's pages are dropped
from the OS cache (``posix_fadvise(DONTNEED)``) before streaming, so the read is from disk where the
OS honours it. The claim to hold: peak RSS stays under 1.5 GB whatever the file size.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _drop_cache(path: Path) -> None:
    """Evict our own file from the OS page cache so the pass reads from disk (advisory)."""
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def _parse_params(items: list[str]) -> dict:
    out = {}
    for it in items:
        k, v = it.split("=", 1)
        try:
            out[k] = float(v) if any(c in v for c in ".e") else int(v)
        except ValueError:
            out[k] = v
    return out


def _generate(name, path, n, res, device, params, threads):
    import torch

    from sciformer.data.generators import generate

    if threads:
        torch.set_num_threads(threads)

    generate(name, path, n, res, seed=0, device=device, **params)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=4.2, help="target file size in GB (10^9 bytes)")
    ap.add_argument("--generator", default="diffreact2d")
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--param", action="append", default=["t_end=1.0", "dt_save=0.01"],
                    help="generator parameter k=v (repeatable); default t_end=1.0 dt_save=0.01 (101 frames)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64, help="pairs per batch")
    ap.add_argument("--chunk-size", type=int, default=None, help="samples per read (default ~64 MB)")
    ap.add_argument("--initial-step", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads in both processes (1 avoids OpenMP stalls on a busy machine)")
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--keep", default=None, help="move the generated file here instead of deleting it")
    args = ap.parse_args()

    from sciformer.data.generators import GENERATORS

    gen = GENERATORS[args.generator]
    params = _parse_params(args.param)
    plan = gen.plan(args.res, **gen.params(**params))
    per_sample = len(plan.fields) * plan.n_t * math.prod(plan.space) * 4
    n = math.ceil(args.size_gb * 1e9 / per_sample)
    tmp = Path(tempfile.mkdtemp(prefix="sciformer_stream_", dir=args.tmpdir))
    path = tmp / f"{args.generator}_{args.res}.h5"
    print(f"generating {n} samples of {args.generator} at {args.res}^2 ({plan.n_t} frames, "
          f"{per_sample / 2**20:.2f} MiB/sample) into {path}", flush=True)
    try:
        t0 = time.perf_counter()
        proc = mp.get_context("spawn").Process(target=_generate,
                                               args=(args.generator, path, n, args.res, args.device, params,
                                                     args.threads))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"generation failed (exit code {proc.exitcode})")
        t_gen = time.perf_counter() - t0
        size = path.stat().st_size
        print(f"generated {size / 1e9:.2f} GB in {t_gen:.0f} s ({n / t_gen:.1f} samples/s)", flush=True)

        import torch

        from sciformer.data.pde import open_pdebench

        if args.threads:
            torch.set_num_threads(args.threads)
        rss0, peak0 = _rss_mb(), _peak_rss_mb()
        ds = open_pdebench(path, "train", initial_step=args.initial_step)
        raw = ds.n_samples * ds.n_frames * ds.n_channels * math.prod(ds.spatial_shape) * 4

        # pass 1: whole trajectories [b, T, C, X, Y], one read per block
        _drop_cache(path)
        t0 = time.perf_counter()
        n_traj = sum(traj.shape[0] for traj in ds.iter_trajectories(args.chunk_size))
        t_traj = time.perf_counter() - t0
        assert n_traj == ds.n_samples
        print(f"pass 1, iter_trajectories: {n_traj} trajectories in {t_traj:.1f} s = "
              f"{raw / 2**20 / t_traj:.0f} MiB/s; peak RSS so far {_peak_rss_mb():.0f} MiB", flush=True)

        # pass 2: every initial_step window as (u_in, u_out) batches
        _drop_cache(path)
        t0 = time.perf_counter()
        n_pairs, checksum, n_bytes = 0, 0.0, 0
        for u_in, u_out in ds.iter_batches(args.batch_size, args.chunk_size):
            n_pairs += u_in.shape[0]
            checksum += float(u_out.double().sum())  # touch the data
            n_bytes += u_out.numel() * 4
        t_read = time.perf_counter() - t0
        print(f"pass 2, iter_batches: train split: {ds.n_samples} samples, {n_pairs} pairs "
              f"(u_in {tuple(u_in.shape[1:])}, u_out {tuple(u_out.shape[1:])}) in {t_read:.1f} s "
              f"= {raw / 2**20 / t_read:.0f} MiB/s of file data, {n_pairs / t_read:.0f} pairs/s "
              f"(u_out checksum {checksum:.6g})")
        assert n_pairs == len(ds)
        print(f"RSS before open: {rss0:.0f} MiB (peak so far {peak0:.0f} MiB, torch imported)")
        print(f"peak RSS (ru_maxrss) after streaming {size / 1e9:.2f} GB: {_peak_rss_mb():.0f} MiB; "
              f"current {_rss_mb():.0f} MiB; torch {torch.__version__}")
        print("PASS: peak RSS < 1.5 GB" if _peak_rss_mb() < 1.5e9 / 2**20 else "FAIL: peak RSS >= 1.5 GB")
        ds.close()
        if args.keep:
            shutil.move(str(path), args.keep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
