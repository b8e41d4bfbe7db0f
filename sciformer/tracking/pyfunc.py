"""A saved :class:`~sciformer.api.forecaster.Forecaster` as an MLflow pyfunc model.

Logged as a "model from code" (``pyfunc_model.py`` beside this file): MLflow stores the source file and the
forecaster's checkpoint directory as an artifact, and nothing is pickled, so loading the model executes no
stored bytecode. ``mlflow.pyfunc.load_model(uri).predict(history)`` returns the forecast as a DataFrame with
a ``date`` column followed by the training columns.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")


def log_forecaster(forecaster, name: str = "forecaster", **kwargs: Any):
    """Log ``forecaster`` to the active MLflow run (a new one if none is active); returns MLflow's ModelInfo."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = forecaster.save(Path(tmp) / "forecaster")
        run = mlflow.active_run() or mlflow.start_run(run_name=f"{forecaster.recipe.model.name}-pyfunc")
        try:
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=str(MODEL_CODE),
                artifacts={"forecaster": str(checkpoint)},
                pip_requirements=["sciformer", "torch>=2.4", "pandas", "safetensors"],
                **kwargs,
            )
        finally:
            if run is not None and mlflow.active_run() is run and run.info.run_name.endswith("-pyfunc"):
                mlflow.end_run()
