"""A forecaster as an MLflow pyfunc model: signature with input and params schema, intervals through params, and
one-line HTTP 400s from the scoring server (``mlflow models serve``) for input it cannot answer."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from sciformer import Forecaster

pytest_plugins = ["tracking_fixtures"]  # migrated_store, store_uri
mlflow = pytest.importorskip("mlflow")
TINY = {"d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1, "epochs": 1, "batch_size": 64, "progress": False}


def frame(n: int = 300) -> pd.DataFrame:
    t = np.arange(n)
    values = {c: 10 * i + np.sin(2 * np.pi * t / 24) + 0.05 * np.cos(t / 7) for i, c in enumerate(("a", "b", "OT"))}
    return pd.DataFrame({"date": pd.date_range("2021-03-01", periods=n, freq="h"), **values})


@pytest.fixture(scope="module")
def logged(tmp_path_factory, migrated_store):
    """A tiny fitted forecaster, its ModelInfo and pyfunc model, logged into a SQLite store, and the store's URI."""
    root = tmp_path_factory.mktemp("pyfunc")
    shutil.copy(migrated_store, root / "mlflow.db")
    torch.manual_seed(0)
    fitted = Forecaster("itransformer", horizon=12, lookback=24, **TINY).fit(frame())
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    try:
        info = fitted.log_model("forecaster")
        model = mlflow.pyfunc.load_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    return fitted, info, model, uri


def test_signature_declares_columns_params_and_an_example(logged):
    _, info, model, _ = logged
    signature = model.metadata.signature
    assert signature.inputs.input_names() == ["date", "a", "b", "OT"]
    assert [c["type"] for c in signature.inputs.to_dict()] == ["datetime", "double", "double", "double"]
    params = {p["name"]: p for p in signature.params.to_dict()}
    assert tuple(params["level"]["shape"]) == (-1,) and params["level"]["default"] == [] and params["horizon"]["default"] == 12
    assert info.saved_input_example_info is not None


def test_predict_with_level_params_returns_interval_columns(logged):
    fitted, _, model, _ = logged
    history = frame().iloc[-30:]
    served = model.predict(history, params={"level": [80, 95]})
    direct = fitted.predict(history, level=[80, 95])
    assert {"OT-lo-80", "OT-hi-80", "OT-lo-95", "OT-hi-95"} <= set(served.columns)
    np.testing.assert_array_equal(served[direct.columns].to_numpy(), direct.to_numpy())
    assert (pd.DatetimeIndex(served["date"]) == direct.index).all()
    assert len(model.predict(history, params={"horizon": 3})) == 3


@pytest.mark.parametrize(
    "rows, params, message",
    [(10, {}, "the history has 10 rows, fewer than the lookback of 24"), (30, {"horizon": 13}, "horizon=13: expected 1 to 12")],
    ids=["too-short", "horizon-too-long"],
)
def test_unanswerable_input_is_one_invalid_parameter_line(logged, rows, params, message):
    _, _, model, _ = logged
    with pytest.raises(mlflow.exceptions.MlflowException) as raised:
        model.predict(frame().iloc[-rows:], params=params)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE" and message in raised.value.message
    assert "\n" not in raised.value.message


def test_the_scoring_server_answers_bad_input_with_a_one_line_400(logged):
    testclient = pytest.importorskip("fastapi.testclient")
    from mlflow.pyfunc import scoring_server

    _, _, model, _ = logged
    client = testclient.TestClient(scoring_server.init(model))

    def post(rows: int, params: dict | None = None):
        split = json.loads(frame().iloc[-rows:].to_json(orient="split", date_format="iso", index=False))
        return client.post("/invocations", json={"dataframe_split": split, **({"params": params} if params else {})})

    short = post(10)
    assert short.status_code == 400 and short.text.count("\n") == 0
    body = short.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE" and "stack_trace" not in body
    assert body["message"] == "the history has 10 rows, fewer than the lookback of 24; give at least 24 rows"
    answer = post(30, {"level": [90]})
    assert answer.status_code == 200
    predictions = pd.DataFrame(answer.json()["predictions"])
    assert len(predictions) == 12 and {"OT", "OT-lo-90", "OT-hi-90"} <= set(predictions.columns)


@pytest.mark.integration
def test_mlflow_models_serve_answers_over_http(logged, tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    _, info, _, uri = logged
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow.set_tracking_uri(uri)
    try:
        model_dir = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "model"))
    finally:
        mlflow.set_tracking_uri(None)
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_dir, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def post(rows: int) -> tuple[int, str]:
        split = json.loads(frame().iloc[-rows:].to_json(orient="split", date_format="iso", index=False))
        body = json.dumps({"dataframe_split": split}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(1)
        status, body = post(10)
        assert status == 400 and "\n" not in body.strip()
        assert json.loads(body)["message"] == "the history has 10 rows, fewer than the lookback of 24; give at least 24 rows"
        status, body = post(30)
        assert status == 200 and len(json.loads(body)["predictions"]) == 12
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
