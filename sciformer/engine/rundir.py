"""The run directory: its file names, who may write into it, its lock, and what a resume must find in it.

A run writes only into a new or empty folder, or into a run directory of sciformer's (it holds what only a run
writes: ``recipe.json`` as a run writes it, a training state, a model checkpoint or the lock file); a folder with
anything else in it is refused, and nothing in it is touched. While a run or resume executes, it holds an exclusive lock (:func:`fcntl.flock`) on
``RUN/.sciformer.lock``, which also records its PID for the message that refuses a second process.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import suppress
from pathlib import Path
from typing import Any

from sciformer.config import Recipe
from sciformer.engine.checkpoint import LATEST, check_destination, is_checkpoint_dir, write_json
from sciformer.errors import ConfigError, DataError, RunLockedError, describe_kind, storage_error

CHECKPOINT_DIR = "checkpoint"  # the best model so far, then the final one
RESUME_DIR = "resume"  # the resumable training state (removed when the run finishes)
RECIPE_FILE = "recipe.json"  # the resolved recipe, to check that a resume uses the same one
DATA_FILE = "data.json"  # the fingerprint of the data the run trains on, to check that a resume uses the same data
METRICS_FILE = "metrics.json"  # written when the run has finished
HISTORY_FILE = "history.json"
RUN_FILE = "mlflow_run.json"  # which MLflow run a resumed fit continues (written by the tracker)
LOCK_FILE = ".sciformer.lock"

# outputs of an earlier run that a fresh run in the same directory removes before it starts
OUTPUT_DIRS = (RESUME_DIR, CHECKPOINT_DIR)
OUTPUT_FILES = (METRICS_FILE, HISTORY_FILE, RUN_FILE, DATA_FILE)
_RECIPE_SECTIONS = {"model", "data", "train"}


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-4}}`` → ``{"train.lr": 1e-4}``. An empty mapping stays a value of its own, so that
    ``{"args": {}}`` and a missing ``args`` flatten differently."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


# ------------------------------------------------------------------------------------------ ownership
def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a run directory of sciformer's: it holds a run's lock file, training state, model
    checkpoint or recipe.json."""
    if (path / LOCK_FILE).is_file() or (path / RESUME_DIR / LATEST).is_file() or is_checkpoint_dir(path / CHECKPOINT_DIR):
        return True
    recipe = path / RECIPE_FILE
    try:
        if recipe.stat().st_size > 2**20:  # a resolved recipe is a few kB
            return False
        stored = json.loads(recipe.read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(stored, dict) and stored.keys() >= _RECIPE_SECTIONS


def check_run_destination(path: Path) -> None:
    """Refuse ``path`` as a run directory unless it is missing, an empty folder or a run directory of sciformer's."""
    check_destination(path, "a run", is_run_dir, "that sciformer did not write")


# ----------------------------------------------------------------------------------------------- lock
class RunLock:
    """An exclusive lock on a run directory, held from :meth:`acquire` to :meth:`release` (or the process's end)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise storage_error(exc, self.path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunLockedError(
                    f"run directory '{self.directory}' is in use by another sciformer process (PID {holder}); wait for it to finish or give another folder"
                ) from None
            if self._same_file(fd):
                break
            os.close(fd)  # the previous holder removed the file between our open and our lock: lock the new one
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise storage_error(exc, self.path) from None
        self._fd = fd
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is None:
            return
        with suppress(OSError):  # a lock file that cannot be removed is harmless: the next run locks it again
            self.path.unlink(missing_ok=True)  # while still locked, so no other process holds this file
        os.close(self._fd)
        self._fd = None


# --------------------------------------------------------------------------------------- new and resumed
def claim_new_run_dir(path: Path, recipe: Recipe, outputs: tuple[str, ...] = ()) -> RunLock:
    """Make ``path`` ready for a fresh run: check the destination, lock it, remove an older run's outputs (and
    the files named in ``outputs``), write the recipe. Returns the held lock."""
    check_run_destination(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, path) from None
    lock = RunLock(path).acquire()
    try:
        check_run_destination(path)  # another process may have filled the folder before we locked it
        # a fresh run in a used directory never continues an older state, counts as finished because an older run
        # did, or leaves an older model for `sciformer evaluate` (or an older MLflow run for --resume) if it fails early
        for old in OUTPUT_DIRS:
            shutil.rmtree(path / old, ignore_errors=True)
        for old in (*OUTPUT_FILES, *outputs):
            (path / old).unlink(missing_ok=True)
        write_json(path / RECIPE_FILE, recipe.to_dict(), indent=2, default=str)
    except BaseException:
        lock.release()
        raise
    return lock


# Recipe keys that change how a run executes, not what it computes: they may differ when it is resumed.
RESUMABLE_CHANGES = (
    "name",
    "tracking.",
    "train.progress",
    "train.device",
    "train.checkpoint_every",
    "train.fused_optimizer",
    "train.cuda_graphs",
    "train.compile",
    "train.eval_batch_size",
)


def claim_resumable_run_dir(path: Path | None, recipe: Recipe) -> RunLock:
    """Lock the run directory ``path`` that a resume continues, after checking that it can be resumed with ``recipe``."""
    if path is None:
        raise ConfigError("resuming needs the run directory: sciformer fit --resume RUN_DIR")
    kind = describe_kind(path)
    if kind == "missing":
        raise ConfigError(f"cannot resume: run directory '{path}' does not exist")
    if kind != "a directory":
        raise ConfigError(f"cannot resume: '{path}' is {kind or 'a regular file'}, not a run directory")
    check_run_destination(path)
    lock = RunLock(path).acquire()
    try:
        if (path / METRICS_FILE).is_file():
            raise ConfigError(f"run '{path}' has finished (it has {METRICS_FILE}); there is nothing to resume")
        _check_same_recipe(path, recipe)
    except BaseException:
        lock.release()
        raise
    return lock


def _has_state(path: Path) -> bool:
    """Whether the run in ``path`` has saved a training state: then its recipe and data records must be there."""
    return (path / RESUME_DIR / LATEST).is_file()


def _read_run_json(path: Path) -> Any:
    kind = describe_kind(path)
    if kind is not None:  # missing, or a device or FIFO whose reading would never end
        raise ConfigError(f"cannot resume: '{path}' is {kind}, not a file of the run; start a new run")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ConfigError(f"cannot resume: '{path}' is damaged ({type(exc).__name__}); start a new run") from None


def _check_same_recipe(path: Path, recipe: Recipe) -> None:
    stored = path / RECIPE_FILE
    if not stored.is_file() and not _has_state(path):
        return
    before = _read_run_json(stored)
    if not isinstance(before, dict):
        raise ConfigError(f"cannot resume: '{stored}' is damaged (not a recipe mapping); start a new run")
    before = flatten(before)
    now = flatten(json.loads(json.dumps(recipe.to_dict(), default=str)))
    # a key a newer sciformer added (absent from the stored recipe) counts as unchanged at its default value
    before |= {k: v for k, v in flatten(json.loads(json.dumps(Recipe().to_dict(), default=str))).items() if k not in before}
    changed = [k for k in sorted(before.keys() | now.keys()) if before.get(k) != now.get(k) and not k.startswith(RESUMABLE_CHANGES)]
    if changed:
        detail = ", ".join(f"{k} ({before.get(k)!r} -> {now.get(k)!r})" for k in changed[:5])
        raise ConfigError(f"cannot resume '{path}': the recipe differs from the one it was started with: {detail}; resume with the same recipe and overrides")


def record_data(path: Path, data_name: str, fingerprint: str, resume: bool) -> None:
    """Keep the fingerprint of a run's data in ``path``; on resume, refuse data that differs from the recorded one."""
    recorded = path / DATA_FILE
    if resume and (recorded.is_file() or _has_state(path)):
        before = _read_run_json(recorded)
        if not isinstance(before, dict) or "fingerprint" not in before:
            raise ConfigError(f"cannot resume: '{recorded}' is damaged (no data fingerprint); start a new run")
        if before["fingerprint"] != fingerprint:
            raise DataError(
                f"cannot resume '{path}': data '{data_name}' has changed since the run started (its fingerprint differs "
                "from the recorded one); resume with the data it started with, or start a new run"
            )
        return
    write_json(recorded, {"name": data_name, "fingerprint": fingerprint}, indent=2)
