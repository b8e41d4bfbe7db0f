"""A tracking server that dies mid-run or during the final upload: the fit finishes with every result on disk, and
the tracker says so in one warning line (no traceback)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import write_csv

from sciformer.config import recipe_from_dict
from sciformer.engine.runner import fit_recipe
from sciformer.tracking.mlflow import MLflowTracker

pytestmark = pytest.mark.integration
pytest_plugins = ["tracking_fixtures"]  # migrated_store, store_uri
mlflow = pytest.importorskip("mlflow")
REPO = Path(__file__).resolve().parents[2]


def tiny_recipe(tmp_path: Path, uri: str, epochs: int) -> dict:
    return {
        "data": {"name": str(write_csv(tmp_path / "series.csv", n_rows=300)), "lookback": 24, "horizon": 12},
        "model": {"name": "itransformer", "d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1},
        "train": {"epochs": epochs, "batch_size": 64, "patience": 0, "progress": False},
        "tracking": {"enabled": True, "uri": uri},
        "seed": 0,
    }


class Server:
    """``mlflow server`` on a copy of the migrated store, in its own process group so that it can be killed whole."""

    def __init__(self, root: Path, store_uri: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri, "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", "1"]
        with open(root / "server.log", "w") as log:
            self.proc = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=5):
                    return
            except OSError:
                assert self.proc.poll() is None, (root / "server.log").read_text()
                time.sleep(1)
        self.kill()
        raise AssertionError("mlflow server did not start within 180 s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)


@pytest.fixture
def server(tmp_path, store_uri):
    server = Server(tmp_path, store_uri)
    yield server
    server.kill()


def test_a_server_killed_mid_run_costs_one_warning_line(tmp_path, server):
    (tmp_path / "tiny.yaml").write_text(json.dumps(tiny_recipe(tmp_path, server.uri, epochs=20)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "sciformer", "fit", "tiny.yaml", "--out", "run"], stderr=subprocess.PIPE, text=True, env=env)
    seen = [proc.stderr.readline()]
    while not seen[-1].startswith("epoch") and proc.poll() is None:
        seen.append(proc.stderr.readline())
    server.kill()
    err = "".join(seen) + proc.stderr.read()
    assert proc.wait(timeout=600) == 0, err
    assert (tmp_path / "run" / "metrics.json").is_file() and (tmp_path / "run" / "checkpoint" / "weights.safetensors").is_file()
    lines = [line for line in err.splitlines() if not line.startswith("epoch ")]
    assert len(lines) == 1 and lines[0].startswith("sciformer: warning: MLflowTracker.") and "still holds every result" in lines[0], err


def test_a_server_killed_during_the_final_upload_costs_one_warning(tmp_path, server, monkeypatch, capfd):
    recipe = recipe_from_dict(tiny_recipe(tmp_path, server.uri, epochs=1))
    upload = mlflow.log_artifacts

    def server_dies_first(*args, **kwargs):
        server.kill()
        return upload(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_artifacts", server_dies_first)
    with pytest.warns(RuntimeWarning) as caught:
        result = fit_recipe(recipe, tmp_path / "run", [MLflowTracker(recipe.tracking)])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_mse"] == result.metrics["test_mse"]
    (warning,) = [str(w.message) for w in caught if "MLflowTracker" in str(w.message)]
    assert warning.startswith("MLflowTracker.on_fit_end failed (TrackingUnavailable: logging the results in MLflow store") and "\n" not in warning
    assert "Traceback" not in capfd.readouterr().err and mlflow.active_run() is None
