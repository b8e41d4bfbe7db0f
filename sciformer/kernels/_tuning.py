"""A small launch-configuration tuner for the triton kernels (no triton import: usable by any backend).

``pick(key, candidates, launch)`` times each candidate configuration once per ``key`` (shapes, dtypes, layout) with
CUDA events and remembers the fastest; later calls with the same key launch it directly. Kernels that write their
whole output (no accumulation into it) can be re-run safely, which is all this needs. Under the triton interpreter
(CPU), and with ``SCIFORMER_KERNEL_TUNING=0`` (the GPU tests: one compilation per kernel instead of one per
candidate), the first candidate is used, untimed.

Why not ``triton.autotune``: here a candidate may change the launch grid and the number of partial sums the launch
writes (so the shape of the output it allocates), and an in-place launch must be timed on a scratch field, not on
the real one; ``triton.autotune`` times one fixed launch on the real arguments.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

from sciformer.kernels import register_cache

_best: dict[Hashable, Any] = {}
register_cache(_best.clear)


def pick(key: Hashable, candidates: Sequence[Any], launch: Callable[[Any], None], device: torch.device, trial: Callable[[Any], None] | None = None) -> Any:
    """Launch the best of ``candidates`` for ``key`` (timing them on first use) and return it.

    ``trial(config)`` is what gets timed, ``launch`` by default; a kernel that overwrites its own input cannot be
    re-run on its output, so it passes a trial on scratch data and is launched for real once, with the winner."""
    if key in _best:
        launch(_best[key])
        return _best[key]
    if device.type != "cuda" or len(candidates) == 1 or os.environ.get("SCIFORMER_KERNEL_TUNING", "1") == "0":
        _best[key] = candidates[0]
        launch(candidates[0])
        return candidates[0]
    trial = trial or launch
    timings = []
    for config in candidates:
        try:
            trial(config)  # compiles; also warms up
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            # the GPU first sleeps while the timed launches are queued, so that the events time the kernels and not
            # the host between them (a trial launch costs about as much host time as its kernel takes on a fast
            # GPU; timed without this, the choice between close candidates was random on an H100)
            fastest = float("inf")
            for _ in range(2):  # the faster of two rounds: one round's noise picked a 7% slower tile at times
                _hold(device)
                start.record()
                for _ in range(3):
                    trial(config)
                end.record()
                torch.cuda.synchronize(device)
                fastest = min(fastest, start.elapsed_time(end))
            timings.append((fastest, config))
        except Exception:  # out of shared memory / registers for this tile: not a candidate here
            continue
    if not timings:
        raise RuntimeError(f"no launch configuration of {key[0] if isinstance(key, tuple) else key} could run")
    best = min(timings, key=lambda t: t[0])[1]
    _best[key] = best
    launch(best)  # the real launch (for a re-runnable kernel: leave the chosen configuration's output)
    return best


def _hold(device: torch.device, cycles: int = 5_000_000) -> None:
    """Keep ``device`` busy for ``cycles`` GPU clock cycles (a few milliseconds) from now on its current stream."""
    sleep = getattr(torch.cuda, "_sleep", None)  # a private function of PyTorch's; without it, no hold
    if sleep is not None:
        with torch.cuda.device(device):
            sleep(cycles)
