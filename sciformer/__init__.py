"""sciformer: transformer surrogates for time series and PDEs.

Importing the package stays light: torch is imported by the submodules that need it, and mlflow,
triton and cupy only where they are used.
"""

import os
import sys
import time

__version__ = "0.1.0"

__all__ = ["Forecaster", "Surrogate", "__version__"]


def cpu_thread_defaults(environ: dict[str, str], cores: int, busy: float) -> dict[str, str]:
    """OpenMP settings for torch on a CPU that are never slower than one thread, given the usable ``cores`` and how
    many threads of other processes are running or ready to run (``busy``); the user's own variables win.

    OpenMP's workers spin while they wait for work. On a quiet machine that is the fastest choice, but beside
    other work every small operation waits for a worker the scheduler has put aside: a small step ran 1.3-14 times
    slower than one thread (benchmarks/cpu_threads.py). So, when other work is running at the start: one thread
    per idle core (at least one) and workers that sleep while they wait; on a quiet machine, torch's own settings."""
    if busy < 1 or cores < 2:
        return {}  # a quiet machine, or one core (one thread: no worker ever waits)
    defaults = {}
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        defaults["OMP_WAIT_POLICY"] = "PASSIVE"
    if "OMP_NUM_THREADS" not in environ:
        defaults["OMP_NUM_THREADS"] = str(max(1, cores - round(busy)))
    return defaults


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _busy_cores() -> float:
    """Threads of other processes running or ready to run now: the median of five looks at Linux's
    /proc/loadavg (this process not counted); elsewhere the 1-minute load average; 0 where neither exists."""
    try:
        looks = []
        for _ in range(5):
            with open("/proc/loadavg") as f:
                looks.append(int(f.read().split()[3].split("/")[0]) - 1)
            time.sleep(0.002)
        return sorted(looks)[2]
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0


# Set before torch is imported (OpenMP reads its environment once, when torch loads); a torch already loaded keeps
# its settings.
if "torch" not in sys.modules:
    os.environ.update(cpu_thread_defaults(dict(os.environ), _usable_cores(), _busy_cores()))


def __getattr__(name: str):
    # Lazy, so that ``import sciformer`` does not import torch, pandas or the models.
    if name == "Forecaster":
        from sciformer.api.forecaster import Forecaster

        return Forecaster
    if name == "Surrogate":
        from sciformer.api.surrogate import Surrogate

        return Surrogate
    raise AttributeError(f"module 'sciformer' has no attribute {name!r}")
