"""Supervising a launcher process (``torchrun``) from the ``sciformer`` command that started it."""

from __future__ import annotations

import signal
import subprocess


def supervise(command: list[str]) -> int:
    """Run ``command`` to its end and return its exit code; a SIGTERM sent to this process is passed on to it and
    ends this one with 143 (``kill`` and schedulers signal one process; Ctrl-C reaches the whole process group)."""
    child = subprocess.Popen(command)
    stopped: list[int] = []

    def forward(signum: int, frame: object) -> None:
        stopped.append(signum)
        child.send_signal(signum)  # torchrun stops its workers, which save a resumable state

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        code = child.wait()
    except BaseException:
        child.kill()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 128 + signal.SIGTERM if stopped else code
