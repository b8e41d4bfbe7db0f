"""sciformer: transformer surrogates for time series and PDEs.

Importing the package stays light: torch is imported by the submodules that need it, and mlflow,
triton and cupy only where they are used.
"""

import os
import sys

__version__ = "0.1.0"

__all__ = ["Forecaster", "Surrogate", "__version__"]

# CPU threads: OpenMP's workers spin while they wait for work, which on a busy machine (more runnable threads
# than cores) makes every small op wait for a descheduled spinner; with passive waiting torch's threads are never
# slower than one thread (benchmarks/cpu_threads.py). Set before torch is imported, and only as a default: the
# user's environment wins.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def __getattr__(name: str):
    # Lazy, so that ``import sciformer`` does not import torch, pandas or the models.
    if name == "Forecaster":
        from sciformer.api.forecaster import Forecaster

        return Forecaster
    if name == "Surrogate":
        from sciformer.api.surrogate import Surrogate

        return Surrogate
    raise AttributeError(f"module 'sciformer' has no attribute {name!r}")
