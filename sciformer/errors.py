"""User-facing errors, and the checks of user-given paths that raise them.

Everything a user can cause (a bad recipe, a missing file, malformed data, a corrupt checkpoint, a full disk)
raises a subclass of :class:`SciformerError`. The CLI turns these into a one-line message and exit code 2;
anything else is a bug and keeps its traceback. This module imports nothing of sciformer, so every layer may use it.
"""

from __future__ import annotations

import difflib
import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class SciformerError(Exception):
    """Base class of errors caused by the user's input rather than by a bug."""


class ConfigError(SciformerError):
    """A recipe or override is invalid: unknown key, wrong type, unknown name."""


class DataError(SciformerError):
    """A data file or frame cannot be used: missing, malformed, too short, non-finite, wrong layout."""


class CheckpointError(SciformerError):
    """A checkpoint directory is missing files, corrupt, or incompatible with this version."""


class StorageError(SciformerError):
    """A file or folder cannot be written: no space left, read-only, not a folder, or holding the user's own files."""


class RunLockedError(SciformerError):
    """Another sciformer process holds the run directory."""


class TrainingDivergedError(SciformerError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def did_you_mean(name: Any, choices: Iterable[Any]) -> str:
    """Return " (did you mean 'x'?)" for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def user_path(path: str | os.PathLike) -> Path:
    """A path as the user typed it, with ``~`` expanded: the one place where user paths are expanded."""
    return Path(os.fspath(path)).expanduser()


def describe_kind(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file ("a directory", "a FIFO", ...), or None for a regular file.

    Raises nothing: a path that does not exist is "missing"."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_input_file(path: str | os.PathLike, what: str, error: type[SciformerError] = DataError) -> Path:
    """``path`` (``~`` expanded) if it is a readable regular file; else ``error`` saying what it is instead.

    ``what`` names the role in the message, e.g. "recipe" or "data file"."""
    p = user_path(path)
    kind = describe_kind(p)
    if kind == "missing":
        raise error(f"{what} '{p}' does not exist")
    if kind is not None:
        raise error(f"{what} '{p}' is {kind}, not a regular file")
    if not os.access(p, os.R_OK):
        raise error(f"{what} '{p}' is not readable (permission denied)")
    return p


def storage_error(exc: OSError, path: str | os.PathLike) -> StorageError:
    """The one-line error for a failed write of ``path``: "no space left" for ENOSPC/EDQUOT, else the OS's reason."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"cannot write '{path}': no space left on the device")
    if exc.errno in (errno.EROFS,):
        return StorageError(f"cannot write '{path}': the file system is read-only")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StorageError(f"cannot write '{path}': permission denied")
    return StorageError(f"cannot write '{path}': {exc.strerror or exc}")


class RunInterrupted(BaseException):
    """A run was ended by SIGTERM or SIGINT after saving a resumable state.

    A ``BaseException`` (like ``KeyboardInterrupt``), so that no ``except Exception`` on the way swallows it.
    ``signal`` is the signal's number; ``exit_code`` is what a shell reports for it (143 for SIGTERM, 130 for
    SIGINT); the message is one line that names the command which continues the run, or, when the run had
    finished (``finished``: only the trackers' final logging was cut short), where its results are.
    """

    def __init__(self, signum: int, run_dir: str | os.PathLike, finished: bool = False) -> None:
        import signal as signals

        self.signal, self.run_dir, self.finished = signum, Path(run_dir), finished
        self.exit_code = 128 + signum
        name = signals.Signals(signum).name
        if finished:
            super().__init__(f"interrupted by {name} after the run had finished; its results are complete in {self.run_dir}")
        else:
            super().__init__(f"interrupted by {name}; the run keeps a resumable state, continue it with: sciformer fit --resume {self.run_dir}")
