"""SIGTERM and SIGINT during a run: stop cleanly, resumable, with the command that continues the run.

While :class:`Interrupts` is active (the main thread of ``fit``), either signal becomes
:class:`~sciformer.errors.RunInterrupted`. Inside the training loop (:meth:`Interrupts.deferred`) the signal is
only recorded: the trainer finishes the step in flight, saves a training state at that step and raises it, so
the resumed run continues exactly there. Anywhere else (loading data, testing, writing results) it is raised at
once, and the run resumes from its last saved state. A second signal while one is pending is raised at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from sciformer.errors import RunInterrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupts:
    """Installs the handlers for the duration of a ``with`` block (a no-op outside the main thread)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.pending: RunInterrupted | None = None
        self._deferring = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        interrupted = RunInterrupted(signum, self.run_dir)
        if self._deferring and self.pending is None:
            self.pending = interrupted
            return
        raise interrupted

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Within this block a signal is recorded in :attr:`pending` for the caller to act on at a safe point."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
