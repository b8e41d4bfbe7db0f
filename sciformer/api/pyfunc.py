"""A forecaster checkpoint as an MLflow pyfunc model, with a signature that serving understands.

Logged as a "model from code" (``pyfunc_model.py`` beside this file): MLflow stores that source file and the
checkpoint directory as an artifact, and nothing is pickled, so loading the model executes no stored bytecode.

    model = mlflow.pyfunc.load_model(uri)
    model.predict(history_df)                                   # the next horizon steps after the last timestamp
    model.predict(history_df, params={"level": [80, 95]})       # plus <col>-lo-80 / <col>-hi-80 ... columns
    model.predict(history_df, params={"horizon": 12})           # only the first 12 steps

The signature declares the input columns (the time column and the training columns), the params ``level``
(interval levels in percent) and ``horizon`` (at most the model's), and an input example (the newest lookback rows
of the training data). Bad input (too few rows, other columns, a level outside (0, 100)) raises an
``MlflowException`` with ``INVALID_PARAMETER_VALUE``, which ``mlflow models serve`` answers with HTTP 400 and the
one-line message.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from sciformer.api.forecaster import Forecaster
from sciformer.data.frames import Layout, from_wide
from sciformer.engine.checkpoint import read_run_config
from sciformer.errors import SciformerError

MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
REQUIREMENTS = ["sciformer", "torch>=2.4", "pandas", "safetensors"]
ARTIFACT = "forecaster"  # the checkpoint directory's key in the model's artifacts


class InputError(MlflowException):
    """A request the model cannot answer, as one line (HTTP 400 under ``mlflow models serve``).

    MLflow's scoring server prepends the whole input frame to a failed prediction's message; the message
    here stays the one line that says what was wrong.
    """

    def __init__(self, message: str) -> None:
        self._line = " ".join(str(message).split())
        super().__init__(self._line, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._line

    @message.setter
    def message(self, value: str) -> None:  # the scoring server's "Failed to predict data '<frame>'" is dropped
        pass


class ForecasterModel(PythonModel):
    """``predict(history_df, params)`` → the forecast after the history's last timestamp (an empty frame: after
    the training data's end)."""

    def load_context(self, context) -> None:
        self.forecaster = Forecaster.load(context.artifacts[ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        horizon = _horizon(params.get("horizon"), self.forecaster.horizon)
        try:
            forecast = self.forecaster.predict(model_input if len(model_input) else None, level=list(params.get("level") or []) or None)
        except SciformerError as exc:
            raise InputError(str(exc)) from None
        if isinstance(forecast.index, pd.DatetimeIndex):  # wide: the timestamps become the first column
            return forecast.iloc[:horizon].reset_index()
        return forecast[forecast.groupby("unique_id").cumcount() < horizon].reset_index(drop=True)  # long


def _horizon(value: Any, limit: int) -> int:
    if value is None:
        return limit
    if not 1 <= int(value) <= limit:
        raise InputError(f"params horizon={value}: expected 1 to {limit}, the model's horizon")
    return int(value)


def input_example(forecaster: Forecaster) -> pd.DataFrame:
    """The newest lookback rows of the training data, shaped as the forecaster's users give data (wide or long)."""
    layout = forecaster.layout
    if layout.kind != "long":
        layout = Layout("wide", layout.time_name if layout.kind == "wide" else "date")
        return from_wide(forecaster.history, layout).reset_index()
    return from_wide(forecaster.history, layout)


def signature(forecaster: Forecaster, example: pd.DataFrame) -> ModelSignature:
    """Input columns of ``example`` (time column as datetime, values as double, a long frame's ids as string) and the
    ``level``/``horizon`` params."""
    inputs = Schema([ColSpec(_column_type(example[c]), c) for c in example.columns])
    params = ParamSchema([ParamSpec("level", "double", [], (-1,)), ParamSpec("horizon", "long", forecaster.horizon)])
    return ModelSignature(inputs=inputs, params=params)


def _column_type(column: pd.Series) -> str:
    if pd.api.types.is_datetime64_any_dtype(column):
        return "datetime"
    return "double" if pd.api.types.is_numeric_dtype(column) else "string"


def log_checkpoint(checkpoint: str | Path, name: str = "model", **kwargs: Any):
    """Log a checkpoint directory (a run's ``checkpoint/`` or a ``Forecaster.save`` folder) as a pyfunc model
    of the active MLflow run (MLflow ≥ 3: a LoggedModel linked to the run); returns MLflow's ModelInfo."""
    forecaster = Forecaster.load(checkpoint)
    example = input_example(forecaster)
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(MODEL_CODE),
        artifacts={ARTIFACT: str(checkpoint)},
        signature=signature(forecaster, example),
        input_example=example,
        pip_requirements=REQUIREMENTS,
        **kwargs,
    )


def log_run_model(checkpoint: str | Path, name: str = "model"):
    """A finished run's checkpoint as the run's pyfunc model (``sciformer fit`` logs it): the forecaster flavour
    above, or for an operator the :class:`~sciformer.api.surrogate.Surrogate` flavour."""
    if read_run_config(checkpoint)["data"].get("kind") == "operator":
        import numpy as np

        from sciformer.api.surrogate import Surrogate
        from sciformer.api.surrogate_pyfunc import input_shape, log_surrogate

        surrogate = Surrogate.load(checkpoint)
        example = np.zeros((1, *input_shape(surrogate)[1:]), dtype=np.float32)  # the shape a request has
        return log_surrogate(surrogate, name=name, input_example=example)
    return log_checkpoint(checkpoint, name)


def log_forecaster(forecaster: Forecaster, name: str = "forecaster", **kwargs: Any):
    """Log a fitted forecaster to the active MLflow run (a new one named ``<model>-pyfunc`` if none is active)."""
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = forecaster.save(Path(tmp) / "forecaster")
        started = None if mlflow.active_run() else mlflow.start_run(run_name=f"{forecaster.recipe.model.name}-pyfunc")
        try:
            return log_checkpoint(checkpoint, name, **kwargs)
        finally:
            if started is not None:
                mlflow.end_run()
