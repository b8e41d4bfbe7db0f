"""Where runs are tracked, and opening that store safely.

Default store: an embedded SQLite file (``sqlite:///mlflow.db`` in the working directory), so a fresh machine needs
no server; ``tracking.uri`` or ``$MLFLOW_TRACKING_URI`` points at a server. A store that cannot be used (read-only,
deleted, unreachable) costs one warning line, never the training: MLflow's and alembic's logged tracebacks are kept
quiet while sciformer talks to the store, and the failure is reported as :class:`TrackingUnavailable` with one line.
"""

from __future__ import annotations

import fcntl
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from sciformer.config import TrackingConfig

DEFAULT_URI = "sqlite:///mlflow.db"
SQLITE = "sqlite:///"
# loggers that print a traceback for every failed store access, or chatter (migrations of a new store, model logging)
QUIET_LOGGERS = ("mlflow.store", "mlflow.tracking", "mlflow.pyfunc", "mlflow.models", "alembic", "sqlalchemy")
SQLALCHEMY_NOISE = ("[SQL:", "[parameters:", "(Background on this error", "(raised as a result of")

F = TypeVar("F", bound=Callable[..., Any])


class TrackingUnavailable(RuntimeError):
    """The tracking store failed; the message is one line naming the store and the reason."""


def tracking_uri(cfg: TrackingConfig) -> str:
    return cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def absolute_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` relative to the working directory → an absolute path, so a resume from
    elsewhere finds the same store."""
    path = sqlite_path(uri)
    return SQLITE + str(path.resolve()) if path is not None and not path.is_absolute() else uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative or absolute), else None."""
    return Path(uri[len(SQLITE) :].split("?")[0]) if uri.startswith(SQLITE) else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise opening a SQLite store across processes (a lock file beside the .db): two first fits on one new
    store would otherwise both run MLflow's schema migration, and one would lose its tracking."""
    path = sqlite_path(uri)
    if path is None:  # a server serialises itself
        yield
        return
    try:
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:  # a read-only or missing folder: the store fails (or is only read) on its own, with its own message
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def quiet_store_logs() -> Iterator[None]:
    """Silence MLflow's, alembic's and SQLAlchemy's loggers (their tracebacks of a failed store access) and the
    migration chatter of a new store; a failure still raises and is reported once, by the caller."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="alembic")  # "Unnamed CHECK constraint ..." while migrating a new store
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message as one line, without what SQLAlchemy appends (the statement, its parameters, a link,
    an autoflush hint)."""
    text = str(getattr(exc, "message", None) or exc)
    kept = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith(SQLALCHEMY_NOISE)]
    line = " ".join(kept) or type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def reported(what: str) -> Callable[[F], F]:
    """Decorate a tracker hook: store logs kept quiet, any failure re-raised as one :class:`TrackingUnavailable` line
    naming the store (the engine then warns once and disables the tracker)."""

    def decorate(hook: F) -> F:
        @wraps(hook)
        def wrapper(self, *args: Any, **kwargs: Any) -> Any:
            with quiet_store_logs():
                try:
                    return hook(self, *args, **kwargs)
                except TrackingUnavailable:
                    raise
                except Exception as exc:
                    raise TrackingUnavailable(f"{what} in MLflow store '{self.uri}' failed: {one_line(exc)}") from exc

        return wrapper  # type: ignore[return-value]

    return decorate


def open_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name`` in the store at ``uri``, created if missing (under the store lock, so that
    concurrent first runs neither migrate the schema twice nor create the experiment twice)."""
    from mlflow.tracking import MlflowClient

    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment is not None else client.create_experiment(name)
