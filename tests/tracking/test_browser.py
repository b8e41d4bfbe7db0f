"""What a user sees in the MLflow UI after ``sciformer fit``: the run page names the run, shows its training
dataset and links its logged model. Headless Chromium (Debian's, driven by Playwright) loads the page from
``mlflow server`` on the run's SQLite store; the screenshots are docs/img/mlflow_run.png (name, status, dataset)
and docs/img/mlflow_run_models.png (the logged model).

Needs ``pip install playwright`` and ``apt-get install chromium`` (``playwright install`` is not used); skips
with the reason when either is missing.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sciformer.cli import main

pytestmark = pytest.mark.integration
pytest_plugins = ["tracking_fixtures"]  # migrated_store, store_uri
mlflow = pytest.importorskip("mlflow")

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
SCREENSHOT = REPO / "docs" / "img" / "mlflow_run.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"mlflow server did not answer {url} within {timeout} s")


@pytest.fixture
def sync_playwright():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    return sync_playwright


def test_run_page_shows_the_run_name_dataset_and_logged_model(tmp_path, migrated_store, sync_playwright):
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    from conftest import write_csv

    recipe = {
        "data": {"name": str(write_csv(tmp_path / "sensors.csv", n_rows=300)), "lookback": 24, "horizon": 12},
        "model": {"name": "itransformer", "d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1},
        "train": {"epochs": 1, "batch_size": 64, "progress": False},
        "tracking": {"enabled": True, "uri": uri},
    }
    (tmp_path / "tiny.yaml").write_text(json.dumps(recipe))
    assert main(["fit", "tiny.yaml", "--out", "run"]) == 0
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sciformer").experiment_id])
    (model,) = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    digest = run.inputs.dataset_inputs[0].dataset.digest

    port = _free_port()
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its own process group: the workers stop with it
        )
    try:
        _wait_for(f"http://127.0.0.1:{port}/health", server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}", timeout=120_000)
            page.wait_for_selector("text=itransformer-sensors-12", timeout=120_000)
            page.wait_for_selector(f"text=sensors ({digest})", timeout=60_000)
            page.wait_for_selector("text=Logged models (1)", timeout=60_000)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))  # name, status, dataset
            page.get_by_text("Logged models (1)").scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT.with_name("mlflow_run_models.png")))  # the logged model, linked
            links = page.locator(f"a[href*='{model.model_id}']").all_inner_texts()
            text = page.inner_text("body")
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert "itransformer-sensors-12" in text and f"sensors ({digest})" in text and "Finished" in text
    assert "model" in links  # the run page links its LoggedModel
