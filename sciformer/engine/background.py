"""Checkpoint writes off the training loop's thread: the loop pays only for the device→host copy."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch


def to_cpu(value: Any) -> Any:
    """A CPU copy of every tensor in a nested structure (dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


class BackgroundWriter:
    """Runs checkpoint writes one at a time on a thread.

    A write that fails re-raises in the training loop at the next submission or at :meth:`close`.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sciformer-checkpoint")
        self._pending: list[Future] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        while self._pending and (self._pending[0].done() or len(self._pending) >= 2):  # at most two copies in memory
            self._pending.pop(0).result()  # re-raises a failed write
        self._pending.append(self._pool.submit(fn, *args))

    def close(self, quiet: bool = False) -> None:
        """Wait for every pending write; re-raise the first failure (only warn about it when ``quiet``)."""
        try:
            for future in self._pending:
                error = future.exception()
                if error is not None and quiet:
                    warnings.warn(f"a checkpoint write failed too ({type(error).__name__}: {error})", RuntimeWarning, stacklevel=2)
                elif error is not None:
                    raise error
        finally:
            self._pending = []
            self._pool.shutdown(wait=True)
