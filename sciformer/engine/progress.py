"""Where training stands: the counters a resumable state saves, and the result of a fit."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

from sciformer.errors import CheckpointError, TrainingDivergedError


@dataclass
class FitResult:
    best_epoch: int
    epochs: int
    train_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        return self.train_seconds / max(self.epochs, 1)


@dataclass
class Progress:
    """Where training stands: everything besides tensors that a resumed run needs."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps completed in the current epoch
    loss_sum: float = 0.0  # sum of this epoch's global-batch mean losses so far (independent of the world size)
    best_loss: float = math.inf
    best_epoch: int = 0
    stale: int = 0  # epochs without improvement
    done: bool = False  # early stopping has ended training
    seconds: float = 0.0  # training time so far, over every attempt
    history: list[dict[str, float]] = field(default_factory=list)


_PROGRESS_TYPES = {
    "epoch": int,
    "step": int,
    "loss_sum": float,
    "best_loss": float,
    "best_epoch": int,
    "stale": int,
    "done": bool,
    "seconds": float,
    "history": list,
}


def checked_progress(saved: Any) -> dict[str, Any]:
    """A saved :class:`Progress` mapping, refused (TypeError/ValueError) when an entry is missing or of the wrong type."""
    if not isinstance(saved, dict) or saved.keys() != _PROGRESS_TYPES.keys():
        raise TypeError(f"its progress entries are {sorted(saved) if isinstance(saved, dict) else type(saved).__name__}, expected {sorted(_PROGRESS_TYPES)}")
    for key, kind in _PROGRESS_TYPES.items():
        value = saved[key]
        numeric = kind is float and isinstance(value, int)
        if not (isinstance(value, kind) or numeric) or (kind is not bool and isinstance(value, bool)):
            raise TypeError(f"progress.{key} is {value!r}, expected {kind.__name__}")
        if kind is int and value < 0:
            raise ValueError(f"progress.{key} is {value}, expected a count >= 0")
    return saved


def check_position(progress: Progress, epochs: int, n_batches: int, where: object) -> None:
    """Refuse a restored position outside the run: an epoch past ``train.epochs`` or a step past the epoch's end."""
    if progress.epoch > epochs or progress.step > n_batches:
        raise CheckpointError(
            f"the training state in '{where}' is at epoch {progress.epoch}, step {progress.step}; this run has {epochs} "
            f"epochs of {n_batches} steps, so the state is damaged or belongs to another run"
        )


def check_finite(loss: float, what: str, where: str) -> None:
    """Stop a diverged run before a NaN or infinite loss can reach a saved state or the best weights."""
    if not math.isfinite(loss):
        raise TrainingDivergedError(
            f"training diverged: the {what} is {loss} {where}; the run keeps its last good checkpoint and state "
            "(lower train.lr or set train.grad_clip, then start a new run)"
        )


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar of an epoch's steps on stderr, or None when progress is off."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)
