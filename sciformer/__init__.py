"""sciformer: transformer surrogates for time series and PDEs.

Importing the package stays light: torch is imported by the submodules that need it, and mlflow,
triton and cupy only where they are used.
"""

__version__ = "0.1.0"

__all__ = ["Forecaster", "Surrogate", "__version__"]


def __getattr__(name: str):
    # Lazy, so that ``import sciformer`` does not import torch, pandas or the models.
    if name == "Forecaster":
        from sciformer.api.forecaster import Forecaster

        return Forecaster
    if name == "Surrogate":
        from sciformer.api.surrogate import Surrogate

        return Surrogate
    raise AttributeError(f"module 'sciformer' has no attribute {name!r}")
