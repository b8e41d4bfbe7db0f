"""MLflow tracking: the embedded SQLite default store, and a failing tracker never losing a run."""

import json
import os
from pathlib import Path

import pytest

from sciformer.config import load_recipe
from sciformer.engine.runner import fit_recipe
from sciformer.tracking.mlflow import MLflowTracker, flatten

REPO = Path(__file__).resolve().parents[2]
mlflow = pytest.importorskip("mlflow")


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
    assert flatten({"model": {"name": "fno", "args": {}}}) == {"model.name": "fno", "model.args": {}}  # kept: differs from absent


def _recipe(tmp_path):
    recipe = load_recipe(REPO / "recipes/smoke/itransformer.yaml", ["tracking.enabled=true", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "train.epochs=2"])
    return recipe


def test_run_is_logged_to_sqlite_store(data_dir, tmp_path):
    recipe = _recipe(tmp_path)
    result = fit_recipe(recipe, tmp_path / "run", [MLflowTracker(recipe.tracking, run_name="smoke")])
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("sciformer").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "smoke"
    assert run.data.params["model.name"] == "itransformer" and run.data.params["train.epochs"] == "2"
    assert run.data.metrics["test_mse"] == pytest.approx(result.metrics["test_mse"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    assert "sys.torch" in run.data.tags
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoint", "metrics.json", "forecast.png", "recipe.json"} <= artifacts


def test_a_tracker_failing_mid_run_warns_and_the_run_finishes(data_dir, tmp_path, monkeypatch):
    recipe = _recipe(tmp_path)

    def broken(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(mlflow, "log_metrics", broken)
    with pytest.warns(RuntimeWarning, match="MLflowTracker.on_epoch_end failed .*tracking server went away.*run directory still holds"):
        result = fit_recipe(recipe, tmp_path / "run", [MLflowTracker(recipe.tracking)])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_mse"] == result.metrics["test_mse"] and (tmp_path / "run" / "checkpoint" / "weights.safetensors").is_file()
    assert mlflow.active_run() is None


def test_an_unreachable_server_fails_fast_unless_the_user_set_mlflow_retries(monkeypatch):
    # MLflow's defaults retry for about four minutes, which looks like a hung training
    from sciformer.config import TrackingConfig

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    MLflowTracker(TrackingConfig(uri="http://127.0.0.1:9"))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"  # the user's choice stands
