"""Fixtures of the tracking tests (import them into a test module): a migrated MLflow SQLite store made once per
session and copied per test. Creating a store runs MLflow's schema migrations (seconds); opening a copy does not."""

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """A store with the 'sciformer' experiment, shared by every module that imports this fixture."""
    mlflow = pytest.importorskip("mlflow")
    from sciformer.tracking.store import open_experiment, quiet_store_logs

    path = tmp_path_factory.getbasetemp() / "migrated-store" / "mlflow.db"
    if not path.is_file():  # each importing module has its own copy of this fixture; the store is made once
        path.parent.mkdir(exist_ok=True)
        with quiet_store_logs():
            open_experiment(f"sqlite:///{path}", "sciformer")
        mlflow.set_tracking_uri(None)
    return path


@pytest.fixture
def store_uri(tmp_path, migrated_store) -> str:
    """A tracking URI of a fresh, already migrated SQLite store (with the 'sciformer' experiment) in ``tmp_path``."""
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"
