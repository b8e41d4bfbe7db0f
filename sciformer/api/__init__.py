"""The programmatic face over the engine: ``Forecaster`` (time series) and ``Surrogate`` (PDE fields)."""

__all__ = ["Forecaster", "Surrogate"]


def __getattr__(name: str):
    # Lazy, so that importing sciformer.api (e.g. for pyfunc) does not import every model.
    if name == "Forecaster":
        from sciformer.api.forecaster import Forecaster

        return Forecaster
    if name == "Surrogate":
        from sciformer.api.surrogate import Surrogate

        return Surrogate
    raise AttributeError(f"module 'sciformer.api' has no attribute {name!r}")
