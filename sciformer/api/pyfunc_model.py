"""The MLflow "model from code" file of sciformer forecasters (see :mod:`sciformer.api.pyfunc`): MLflow copies and
runs this file when it loads the model."""

import mlflow

from sciformer.api.pyfunc import ForecasterModel

mlflow.models.set_model(ForecasterModel())
