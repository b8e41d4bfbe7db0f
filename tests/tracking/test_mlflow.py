"""MLflow tracking of a fit: the SQLite default store, what a run holds (name, params, metrics, dataset input,
LoggedModel), KILLED runs, and a failing tracker never losing a run."""

import contextlib
import io
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from conftest import write_csv

from sciformer.cli import _tracker, main
from sciformer.config import TrackingConfig, load_recipe, recipe_from_dict
from sciformer.engine.callbacks import Callback
from sciformer.engine.runner import fit_recipe
from sciformer.errors import RunInterrupted
from sciformer.tracking.mlflow import MLflowTracker, default_run_name, flatten

pytest_plugins = ["tracking_fixtures"]  # migrated_store, store_uri
mlflow = pytest.importorskip("mlflow")


def tiny_recipe(tmp_path: Path, uri: str, epochs: int = 2, **top) -> dict:
    return {
        "data": {"name": str(write_csv(tmp_path / "series.csv", n_rows=300)), "lookback": 24, "horizon": 12},
        "model": {"name": "itransformer", "d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 3e-3, "patience": 0, "progress": False},
        "tracking": {"enabled": True, "uri": uri},
        "seed": 0,
        **top,
    }


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, migrated_store):
    """One tiny ``sciformer fit`` with tracking into a SQLite store: (tmp dir, store URI, the MLflow run)."""
    root = tmp_path_factory.mktemp("tracked")
    shutil.copy(migrated_store, root / "mlflow.db")
    uri = f"sqlite:///{root}/mlflow.db"
    recipe = root / "tiny.yaml"
    recipe.write_text(json.dumps(tiny_recipe(root, uri)))
    cwd, printed = os.getcwd(), io.StringIO()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(printed):
            assert main(["fit", str(recipe), "--out", str(root / "run")]) == 0
    finally:
        os.chdir(cwd)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sciformer").experiment_id])
    assert printed.getvalue().splitlines()[-1] == f"MLflow run 'itransformer-series-12' ({run.info.run_id}) in {uri}"  # where to look
    return root, uri, run


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
    assert flatten({"model": {"name": "fno", "args": {}}}) == {"model.name": "fno", "model.args": {}}  # kept: differs from absent


def test_runs_are_named_by_model_data_and_horizon_unless_the_recipe_names_them(tmp_path):
    assert default_run_name({"model": {"name": "patchtst"}, "data": {"name": "/d/exchange_rate.csv", "horizon": 96}}) == "patchtst-exchange_rate-96"
    assert default_run_name({"model": {"name": "fno"}, "data": {"name": "burgers.h5", "horizon": 1}}) == "fno-burgers"
    raw = tiny_recipe(tmp_path, "sqlite:///unused.db")
    (tmp_path / "ett_itransformer.yaml").write_text(json.dumps(raw))
    (tmp_path / "named.yaml").write_text(json.dumps({**raw, "name": "baseline"}))
    assert _tracker(load_recipe(tmp_path / "ett_itransformer.yaml"), str(tmp_path / "ett_itransformer.yaml")).run_name is None  # the stem is no name
    assert _tracker(load_recipe(tmp_path / "named.yaml"), str(tmp_path / "named.yaml")).run_name == "baseline"
    assert MLflowTracker(TrackingConfig(run_name="mine"), run_name="baseline").run_name == "mine"


@pytest.mark.integration  # a whole tracked `sciformer fit` (tens of seconds on a busy machine)
def test_cli_run_holds_name_params_metrics_and_files(cli_run):
    root, uri, run = cli_run
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    assert run.info.status == "FINISHED" and run.info.run_name == "itransformer-series-12"
    assert run.data.params["model.name"] == "itransformer" and run.data.params["train.epochs"] == "2"
    metrics = json.loads((root / "run" / "metrics.json").read_text())
    assert run.data.metrics["test_mse"] == pytest.approx(metrics["test_mse"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    assert "sys.torch" in run.data.tags
    assert {"checkpoint", "metrics.json", "forecast.png", "recipe.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.mark.integration  # a whole tracked `sciformer fit` (tens of seconds on a busy machine)
def test_the_training_data_is_the_runs_dataset_input(cli_run):
    root, uri, run = cli_run
    (entry,) = run.inputs.dataset_inputs
    dataset = entry.dataset
    fingerprint = json.loads((root / "run" / "checkpoint" / "config.json").read_text())["data"]["fingerprint"]
    assert dataset.name == "series" and dataset.digest == fingerprint[:36]
    assert json.loads(dataset.source)["uri"] == str(root / "series.csv")
    assert [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]] == ["v0", "v1", "OT"]
    assert {t.key: t.value for t in entry.tags}.get("mlflow.data.context") == "training"
    mlflow.set_tracking_uri(uri)
    try:  # what the UI's run table reads
        found = mlflow.search_runs(experiment_names=["sciformer"], filter_string=f"dataset.name = 'series' AND dataset.digest = '{dataset.digest}'")
    finally:
        mlflow.set_tracking_uri(None)
    assert list(found["run_id"]) == [run.info.run_id]


@pytest.mark.integration  # a whole tracked `sciformer fit` (tens of seconds on a busy machine)
def test_the_checkpoint_is_a_logged_model_of_the_run(cli_run):
    _, uri, run = cli_run
    mlflow.set_tracking_uri(uri)
    try:
        (model,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
        info = mlflow.models.get_model_info(f"models:/{model.model_id}")
    finally:
        mlflow.set_tracking_uri(None)
    assert model.source_run_id == run.info.run_id and model.name == "model"
    assert info.signature.params.to_dict()[0]["name"] == "level"


class Interrupt(Callback):
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def on_epoch_end(self, epoch, logs):
        raise self.error


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RunInterrupted(signal.SIGTERM, "run")], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_fit_ends_its_mlflow_run_killed(tmp_path, store_uri, error):
    uri = store_uri
    recipe = recipe_from_dict(tiny_recipe(tmp_path, uri))
    with pytest.raises(type(error)):
        fit_recipe(recipe, tmp_path / "run", [MLflowTracker(recipe.tracking), Interrupt(error)])
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sciformer").experiment_id])
    assert run.info.status == "KILLED" and mlflow.active_run() is None


def test_a_tracker_failing_mid_run_warns_and_the_run_finishes(tmp_path, store_uri, monkeypatch):
    recipe = recipe_from_dict(tiny_recipe(tmp_path, store_uri))

    def broken(*args, **kwargs):
        raise ConnectionError("tracking server went away\nwith a second line")

    monkeypatch.setattr(mlflow, "log_metrics", broken)
    with pytest.warns(RuntimeWarning) as caught:
        result = fit_recipe(recipe, tmp_path / "run", [MLflowTracker(recipe.tracking)])
    (warning,) = [w for w in caught if "MLflowTracker" in str(w.message)]
    assert "logging epoch metrics in MLflow store" in str(warning.message) and "tracking server went away" in str(warning.message)
    assert "\n" not in str(warning.message)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_mse"] == result.metrics["test_mse"] and (tmp_path / "run" / "checkpoint" / "weights.safetensors").is_file()
    assert mlflow.active_run() is None


def test_an_unreachable_server_fails_fast_unless_the_user_set_mlflow_retries(monkeypatch):
    # MLflow's defaults retry for about four minutes, which looks like a hung training
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    MLflowTracker(TrackingConfig(uri="http://127.0.0.1:9"))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"  # the user's choice stands


@pytest.mark.integration
def test_sigterm_ends_the_mlflow_run_killed_and_resume_alone_finishes_it(tmp_path, store_uri):
    import subprocess
    import sys

    (tmp_path / "tiny.yaml").write_text(json.dumps(tiny_recipe(tmp_path, store_uri, epochs=30)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "sciformer", "fit", "tiny.yaml", "--out", "run"], stderr=subprocess.PIPE, text=True, env=env)
    seen = [proc.stderr.readline()]
    while not seen[-1].startswith("epoch") and proc.poll() is None:  # training has begun
        seen.append(proc.stderr.readline())
    proc.send_signal(signal.SIGTERM)
    err = "".join(seen) + proc.stderr.read()
    assert proc.wait(timeout=120) == 143, err
    assert err.strip().splitlines()[-1].endswith("continue it with: sciformer fit --resume run"), err
    client = mlflow.tracking.MlflowClient(tracking_uri=store_uri)
    experiment = client.get_experiment_by_name("sciformer").experiment_id
    (killed,) = client.search_runs([experiment])
    assert killed.info.status == "KILLED"
    resumed = subprocess.run([sys.executable, "-m", "sciformer", "fit", "--resume", "run"], capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    (run,) = client.search_runs([experiment])
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED" and run.data.tags["sciformer.resumes"] == "1"


def test_training_dataset_names_the_file_digest_and_schema(tmp_path):
    from sciformer.tracking.mlflow import training_dataset

    csv = write_csv(tmp_path / "load.csv", n_rows=10)
    series = training_dataset({"data": {"name": str(csv), "columns": ["v0", "v1", "OT"], "fingerprint": "ab" * 32}, "model": {}})
    assert (series.name, series.digest) == ("load", "ab" * 18)
    assert series.source.to_dict() == {"uri": str(csv)} and series.schema.input_names() == ["v0", "v1", "OT"]
    fields = training_dataset({"data": {"name": "flow.h5", "kind": "operator", "grid": [16, 16]}, "model": {"data_sizes": {"out_channels": 2}}})
    assert fields.name == "flow" and fields.schema.inputs[0].shape == (-1, -1, 2, 16, 16)


@pytest.mark.integration
def test_an_operator_run_logs_its_checkpoint_as_a_surrogate_model(tmp_path, store_uri):
    from sciformer.api.pyfunc import log_run_model

    raw = {
        "data": {"name": str(tmp_path / "burgers.h5"), "generate": {"generator": "burgers1d", "n": 10, "res": 16, "nu": 0.01, "t_end": 0.1, "dt_save": 0.02}},
        "model": {"name": "galerkin", "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8, "modes": 2, "freq_dim": 4, "n_regressor_layers": 1},
        "train": {"epochs": 1, "batch_size": 8, "progress": False},
        "tracking": {"enabled": True, "uri": store_uri},
    }
    recipe = recipe_from_dict(raw)
    fit_recipe(recipe, tmp_path / "run", [MLflowTracker(recipe.tracking, log_model=log_run_model)])
    client = mlflow.tracking.MlflowClient(tracking_uri=store_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sciformer").experiment_id])
    (model,) = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert run.info.run_name == "galerkin-burgers" and run.info.status == "FINISHED" and model.source_run_id == run.info.run_id
    assert run.inputs.dataset_inputs[0].dataset.name == "burgers"


def test_an_api_fit_uploads_no_files_of_the_working_directory(tmp_path, store_uri):
    import numpy as np
    import pandas as pd

    from sciformer import Forecaster

    (tmp_path / "thesis.tex").write_text("the user's own file, not a run's")
    t = np.arange(300)
    frame = pd.DataFrame({"date": pd.date_range("2021-01-01", periods=300, freq="h"), "a": np.sin(t / 4), "OT": np.cos(t / 5)})
    tiny = {"d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1, "epochs": 1, "batch_size": 64, "progress": False}
    Forecaster("itransformer", horizon=12, lookback=24, tracking={"enabled": True, "uri": store_uri}, **tiny).fit(frame)
    client = mlflow.tracking.MlflowClient(tracking_uri=store_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sciformer").experiment_id])
    assert run.info.status == "FINISHED" and "val_mse" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"recipe.json"}
