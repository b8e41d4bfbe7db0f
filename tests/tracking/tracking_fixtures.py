"""A migrated MLflow SQLite store made once per session and copied per test (import the fixtures): creating a
schema migrations (seconds), opening a copy does not."""

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    mlflow = pytest.importorskip("mlflow")
    from sciformer.tracking.store import open_experiment, quiet_store_logs

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    with quiet_store_logs():
        open_experiment(f"sqlite:///{path}", "sciformer")
    mlflow.set_tracking_uri(None)
    return path


@pytest.fixture
def store_uri(tmp_path, migrated_store) -> str:
    """A tracking URI of a fresh, already migrated SQLite store (with the 'sciformer' experiment) in ``tmp_path``."""
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"
