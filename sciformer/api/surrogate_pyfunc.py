"""A surrogate checkpoint as an MLflow pyfunc model: ``predict(u0, params={"steps": k})`` rolls ``k`` steps out.

Logged as a "model from code" (``surrogate_pyfunc_model.py`` beside this file) with the checkpoint directory as
its artifact, so nothing is pickled and loading the model executes no stored bytecode.

    model = mlflow.pyfunc.load_model(uri)
    model.predict(u0)                          # u0 [B, initial_step, C, *grid] float32 → [B, 1, C, *grid]
    model.predict(u0, params={"steps": 20})    # → [B, 20, C, *grid]

The signature declares the input tensor's shape (any batch size) and the ``steps`` param; a request the model
cannot answer raises an ``MlflowException`` with ``INVALID_PARAMETER_VALUE`` (HTTP 400 under ``mlflow models serve``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

from sciformer.api.surrogate import Surrogate
from sciformer.errors import SciformerError

MODEL_CODE = Path(__file__).with_name("surrogate_pyfunc_model.py")
REQUIREMENTS = ["sciformer", "torch>=2.4", "numpy", "xarray", "safetensors"]
ARTIFACT = "surrogate"  # the checkpoint directory's key in the model's artifacts


class SurrogateModel(PythonModel):
    """``predict(u0, params)`` → ``steps`` frames after the history ``u0`` (steady models: the solution)."""

    def load_context(self, context) -> None:
        self.surrogate = Surrogate.load(context.artifacts[ARTIFACT])

    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        steps = int((params or {}).get("steps") or 1)
        try:
            if self.surrogate.steady:
                return self.surrogate.predict(np.asarray(model_input, dtype=np.float32))
            return self.surrogate.rollout(np.asarray(model_input, dtype=np.float32), steps).values
        except SciformerError as exc:
            raise MlflowException(" ".join(str(exc).split()), error_code=INVALID_PARAMETER_VALUE) from None


def input_shape(surrogate: Surrogate) -> tuple[int, ...]:
    """``(-1, initial_step, C, *grid)``, steady models ``(-1, C_in, *grid)``."""
    sizes = surrogate.config["model"]["data_sizes"]
    grid = tuple(surrogate.config["data"]["grid"])
    if surrogate.steady:
        return (-1, sizes["in_channels"], *grid)
    return (-1, surrogate.initial_step, sizes["out_channels"], *grid)


def log_surrogate(surrogate: Surrogate, name: str = "surrogate", **kwargs: Any):
    """Log a fitted surrogate to the active MLflow run (a new one named ``<model>-pyfunc`` if none is active);
    returns MLflow's ModelInfo."""
    shape = input_shape(surrogate)
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), shape)]), params=ParamSchema([ParamSpec("steps", "long", 1)]))
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = surrogate.save(Path(tmp) / "surrogate")
        started = None if mlflow.active_run() else mlflow.start_run(run_name=f"{surrogate.recipe.model.name}-pyfunc")
        try:
            return mlflow.pyfunc.log_model(
                name=name, python_model=str(MODEL_CODE), artifacts={ARTIFACT: str(checkpoint)}, signature=signature, pip_requirements=REQUIREMENTS, **kwargs
            )
        finally:
            if started is not None:
                mlflow.end_run()
