"""MLflow "model from code" for sciformer forecasters (see :mod:`sciformer.tracking.pyfunc`)."""

from __future__ import annotations

import mlflow
import pandas as pd


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """``predict(history_df)`` → the next ``horizon`` steps after the history's last timestamp."""

    def load_context(self, context) -> None:
        from sciformer.api.forecaster import Forecaster

        self.forecaster = Forecaster.load(context.artifacts["forecaster"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        level = (params or {}).get("level")
        forecast = self.forecaster.predict(model_input if len(model_input) else None, level=level)
        return forecast.reset_index() if isinstance(forecast.index, pd.DatetimeIndex) else forecast


mlflow.models.set_model(ForecasterModel())
