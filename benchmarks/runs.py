"""What the benchmark scripts share: ``sciformer fit`` in a child process (finished runs are reused), and a
pool that records every result as soon as it arrives, so a benchmark cut short keeps what finished."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def fit(recipe: Path, overrides: list[str], out: Path, cwd: Path = REPO, env: dict[str, str] | None = None) -> dict | None:
    """``sciformer fit RECIPE OVERRIDES --out OUT`` without tracking; the run's ``metrics.json``, or None if it
    failed (the last line of its error is printed). A finished run directory is reused only while the recipe file,
    the overrides and ``env`` (extra environment variables) it was run with are unchanged (a stamp beside its
    metrics records them); an interrupted one (a ``resume/`` state and no metrics) continues with ``fit --resume``."""
    metrics_file, stamp_file = out / "metrics.json", out / "benchmark_stamp.txt"
    state = run_state(out, run_stamp(recipe, overrides, env))
    if state == "stale":
        print(f"re-running {out.name}: its recipe or overrides changed since it ran", file=sys.stderr, flush=True)
    if state != "done":
        where = ["--resume", str(out)] if state == "resume" else ["--out", str(out)]
        cmd = [sys.executable, "-m", "sciformer", "fit", str(recipe), *overrides, "tracking.enabled=false", "train.progress=false", *where]
        started = time.perf_counter()
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {}), "PYTHONPATH": path})
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            print(f"FAILED {out.name}: {err[-1] if err else proc.returncode}", file=sys.stderr, flush=True)
            (out.parent / f"{out.name}.stderr.txt").write_text(proc.stderr)
            return None
        stamp_file.write_text(run_stamp(recipe, overrides, env))
        print(f"{'resumed' if state == 'resume' else 'done'} {out.name} in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    return json.loads(metrics_file.read_text())


def run_stamp(recipe: Path, overrides: list[str], env: dict[str, str] | None = None) -> str:
    """What makes a finished run reusable: the recipe's text, the overrides and any extra environment."""
    facts = [recipe.read_text(), list(overrides)] + ([dict(sorted(env.items()))] if env else [])
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()


def run_state(out: Path, stamp: str) -> str:
    """``done`` (metrics of this stamp), ``stale`` (metrics of another), ``resume`` (an interrupted run's saved
    state; ``sciformer fit --resume`` refuses it if the recipe differs) or ``new``."""
    metrics, stamp_file = out / "metrics.json", out / "benchmark_stamp.txt"
    if metrics.is_file():
        return "done" if stamp_file.is_file() and stamp_file.read_text() == stamp else "stale"
    return "resume" if (out / "resume").is_dir() else "new"


def run_pool(jobs: Iterable[T], run: Callable[[T], dict], record: Callable[[list[dict]], None], n_jobs: int) -> list[dict]:
    """Run ``run(job)`` for every job, ``n_jobs`` at a time, calling ``record(results so far)`` after each; the
    results in the order of ``jobs``."""
    results: list[dict] = []
    lock = threading.Lock()

    def run_and_record(job: T) -> dict:
        result = run(job)
        with lock:
            results.append(result)
            record(results)
        return result

    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(run_and_record, jobs))


def mean_std(values: list[float], digits: int = 3) -> str:
    """One value as it is; several as ``mean ± sample std``."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
