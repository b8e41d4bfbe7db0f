"""sciformer: transformer surrogates for time series and PDEs.

Importing the package stays light: torch is imported by the submodules that need it, and mlflow,
triton and cupy only where they are used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
