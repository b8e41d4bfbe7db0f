"""The MLflow "model from code" file of sciformer surrogates (see :mod:`sciformer.api.surrogate_pyfunc`): MLflow copies
and runs this file when it loads the model."""

import mlflow

from sciformer.api.surrogate_pyfunc import SurrogateModel

mlflow.models.set_model(SurrogateModel())
