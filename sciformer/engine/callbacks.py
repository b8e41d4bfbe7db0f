"""The small interface through which trackers (and anything else) observe a run.

The engine calls these hooks; it never imports a tracker. A callback that raises is disabled with one
warning, so a failing tracker never costs a finished training.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Callback:
    """Override the hooks you need; all are optional.

    ``on_fit_start``'s ``info`` holds system facts and, from the runner, ``run_dir``, ``resumed`` (True when an
    interrupted run continues: reopen what you logged before) and ``world_size``. ``on_failure`` receives the
    error that ended the run: :class:`~sciformer.errors.RunInterrupted` (SIGTERM/SIGINT; a resumable state is on
    disk, or with ``finished`` the results are complete) or ``KeyboardInterrupt`` when the user stopped it,
    anything else when it failed. Under torchrun, hooks are called on rank 0 only.
    """

    def on_fit_start(self, recipe: dict[str, Any], info: dict[str, Any]) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...

    def on_fit_end(self, metrics: dict[str, Any], run_dir: Path) -> None: ...

    def on_failure(self, error: BaseException) -> None: ...


class CallbackList:
    """Calls each callback's hook; a callback that raises is warned about and dropped."""

    def __init__(self, callbacks: list[Callback] | tuple[Callback, ...] = ()) -> None:
        self.callbacks = list(callbacks)

    def __getattr__(self, hook: str):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args: Any, **kwargs: Any) -> None:
            for callback in list(self.callbacks):
                try:
                    getattr(callback, hook)(*args, **kwargs)
                except Exception as exc:  # a tracker must never take the run down
                    self.callbacks.remove(callback)
                    warnings.warn(
                        f"{type(callback).__name__}.{hook} failed ({type(exc).__name__}: {exc}); it is disabled for the "
                        "rest of this run, and the run directory still holds every result",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    try:
                        callback.on_failure(exc)
                    except Exception:
                        log.debug("on_failure of %s raised too", type(callback).__name__, exc_info=True)

        return call
