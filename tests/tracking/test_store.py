"""The tracking store: an unusable one (read-only, deleted, impossible path) costs one warning line and never the
training; opening a new SQLite store is serialised across processes."""

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from conftest import write_csv

from sciformer.config import recipe_from_dict
from sciformer.engine.callbacks import Callback
from sciformer.engine.runner import fit_recipe
from sciformer.tracking.mlflow import MLflowTracker
from sciformer.tracking.store import absolute_uri, one_line, store_lock

pytest_plugins = ["tracking_fixtures"]  # migrated_store, store_uri
mlflow = pytest.importorskip("mlflow")
REPO = Path(__file__).resolve().parents[2]


def tiny_recipe(tmp_path: Path, uri: str) -> dict:
    return {
        "data": {"name": str(write_csv(tmp_path / "series.csv", n_rows=300)), "lookback": 24, "horizon": 12},
        "model": {"name": "itransformer", "d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1},
        "train": {"epochs": 2, "batch_size": 64, "progress": False},
        "tracking": {"enabled": True, "uri": uri},
        "seed": 0,
    }


def _fit_warns_once(tmp_path, uri, capfd, extra=()) -> str:
    """Fit with a tracker on ``uri``; the run must finish with its results, one tracker warning, no logged traceback."""
    recipe = recipe_from_dict(tiny_recipe(tmp_path, uri))
    with pytest.warns(RuntimeWarning) as caught:
        result = fit_recipe(recipe, tmp_path / "run", [*extra, MLflowTracker(recipe.tracking)])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_mse"] == result.metrics["test_mse"]
    (warning,) = [str(w.message) for w in caught if "MLflowTracker" in str(w.message)]
    assert "\n" not in warning and "still holds every result" in warning
    err = capfd.readouterr().err
    assert "Traceback" not in err and "mlflow.store" not in err and "sqlalchemy" not in err.lower()
    assert mlflow.active_run() is None
    return warning


def test_a_store_in_an_impossible_place_warns_once(tmp_path, capfd):
    (tmp_path / "a_file").write_text("not a folder")
    warning = _fit_warns_once(tmp_path, f"sqlite:///{tmp_path}/a_file/mlflow.db", capfd)
    assert "starting the run in MLflow store" in warning and "a_file/mlflow.db" in warning


def _immutable(path: Path, on: bool) -> bool:
    done = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True)
    return done.returncode == 0


def test_a_read_only_store_warns_once(tmp_path, store_uri, capfd):
    store, work = tmp_path / "mlflow.db", tmp_path / "work"
    work.mkdir()
    if not _immutable(store, True):
        pytest.skip("chattr +i is not available here (read-only files even for root)")
    try:
        _immutable(tmp_path, True)  # no journal file beside the store either
        warning = _fit_warns_once(work, store_uri, capfd)
    finally:
        _immutable(tmp_path, False)
        _immutable(store, False)
    assert "readonly database" in warning


class DeleteStore(Callback):
    def __init__(self, store: Path) -> None:
        self.store = store

    def on_epoch_end(self, epoch, logs):
        self.store.unlink(missing_ok=True)


def test_a_store_deleted_mid_run_never_costs_the_run(tmp_path, store_uri, capfd):
    recipe = recipe_from_dict(tiny_recipe(tmp_path, store_uri))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit_recipe(recipe, tmp_path / "run", [DeleteStore(tmp_path / "mlflow.db"), MLflowTracker(recipe.tracking)])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_mse"] == result.metrics["test_mse"]
    tracker_warnings = [str(w.message) for w in caught if "MLflowTracker" in str(w.message)]
    assert len(tracker_warnings) <= 1 and all("\n" not in w for w in tracker_warnings)
    assert "Traceback" not in capfd.readouterr().err and mlflow.active_run() is None


def test_store_lock_serialises_holders(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    order = []
    held = threading.Event()

    def first():
        with store_lock(uri):
            held.set()
            time.sleep(0.2)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait()
    with store_lock(uri):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"] and (tmp_path / "mlflow.db.lock").is_file()


def test_relative_sqlite_uris_become_absolute_and_errors_one_line(tmp_path):
    assert absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/mlflow.db"
    assert absolute_uri("http://host:5000") == "http://host:5000"
    raised = RuntimeError(
        "(raised as a result of Query-invoked autoflush; consider using a session.no_autoflush block if this flush is occurring prematurely)\n"
        "(sqlite3.OperationalError) attempt to write a readonly database\n[SQL: INSERT INTO runs ...]\n[parameters: ('e1c3', 'x')]\n"
        "(Background on this error at: https://sqlalche.me/e/21/e3q8)"
    )
    assert one_line(raised) == "(sqlite3.OperationalError) attempt to write a readonly database"


def _open_new_store(uri: str, barrier) -> str:
    from sciformer.tracking.store import open_experiment, quiet_store_logs

    barrier.wait()
    with quiet_store_logs():
        return open_experiment(uri, "sciformer")


@pytest.mark.integration
def test_two_first_runs_on_one_new_store_are_both_tracked(tmp_path):
    # without the lock, one of two processes fails MLflow's schema migration ("duplicate column name", "expected to
    # match one row") or the experiment's creation
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(2)
    with context.Pool(2) as pool:
        ids = pool.starmap(_open_new_store, [(uri, barrier), (uri, barrier)])
    assert ids[0] == ids[1]


@pytest.mark.integration
def test_cli_fit_on_a_read_only_store_prints_one_warning_line(tmp_path, store_uri):
    store = tmp_path / "mlflow.db"
    if not _immutable(store, True):
        pytest.skip("chattr +i is not available here")
    recipe = tmp_path / "work" / "tiny.yaml"
    recipe.parent.mkdir()
    recipe.write_text(json.dumps(tiny_recipe(recipe.parent, store_uri)))
    try:
        _immutable(tmp_path, True)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "sciformer", "fit", str(recipe), "--out", str(recipe.parent / "run")]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
    finally:
        _immutable(tmp_path, False)
        _immutable(store, False)
    assert done.returncode == 0 and (recipe.parent / "run" / "metrics.json").is_file()
    lines = [line for line in done.stderr.splitlines() if not line.startswith("epoch ")]
    assert len(lines) == 1 and lines[0].startswith("sciformer: warning: MLflowTracker.on_fit_start failed") and "readonly database" in lines[0], done.stderr
