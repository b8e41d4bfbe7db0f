"""One place that picks the implementation of every kernel op.

Each op lives in ``sciformer/kernels/<op>/`` as ``reference.py`` (pure PyTorch: the specification) plus fast
versions with the same function names and signatures (``triton.py``).
:func:`call` runs one function of an op with the backend chosen here:

* ``SCIFORMER_BACKEND`` unset (or ``auto``): ``triton`` when triton is installed and the inputs are CUDA
  tensors (or ``TRITON_INTERPRET=1``, which runs triton kernels on CPU tensors), else ``torch``. Silent.
* ``SCIFORMER_BACKEND=torch|triton``: that backend. When it cannot run here (module not installed, no
  implementation of this op, CPU inputs without the interpreter, an unsupported dtype) the reference runs
  instead and one warning per op and backend says why.

``triton`` is imported only here, inside these checks, and in the backend modules, so
``import sciformer`` stays light.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from types import ModuleType
from typing import Any

from sciformer.errors import ConfigError
from sciformer.kernels import register_cache

BACKENDS = ("torch", "triton")  # a backend is listed once an op has an implementation in it
_PACKAGES = {"triton": "triton"}
_EXTRAS = {"triton": "sciformer[triton]"}
_warned: set[tuple[str, str]] = set()
_importable: dict[str, str | None] = {}
_found: dict[str, bool] = {}
register_cache(_warned.clear)  # what a backend can import is a fact of the environment, kept


def requested_backend() -> str | None:
    """The backend forced by ``SCIFORMER_BACKEND``, or ``None`` for automatic choice."""
    value = os.environ.get("SCIFORMER_BACKEND", "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in BACKENDS:
        raise ConfigError(f"SCIFORMER_BACKEND must be one of {', '.join(BACKENDS)} or auto, got {value!r}")
    return value


def interpreting() -> bool:
    """``TRITON_INTERPRET=1``: triton kernels run in triton's CPU interpreter (tests, debugging)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _import_error(backend: str) -> str | None:
    """Why ``backend``'s package cannot be imported, or ``None`` when it can (cached: one import attempt)."""
    if backend not in _importable:
        try:
            importlib.import_module(_PACKAGES[backend])
            _importable[backend] = None
        except Exception as error:  # ImportError, or a broken install (missing CUDA libraries)
            _importable[backend] = f"{_PACKAGES[backend]} cannot be imported ({error}); install {_EXTRAS[backend]}"
    return _importable[backend]


def _tensors(values: Any):
    import torch

    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _tensors(value)


def _has_module(name: str) -> bool:
    if name not in _found:
        _found[name] = importlib.util.find_spec(name) is not None
    return _found[name]


def _unavailable(op: str, function: str, backend: str, args: tuple, kwargs: dict) -> tuple[str | None, ModuleType | None]:
    """``(reason, None)`` when ``backend`` cannot run ``op.function`` on these inputs, else ``(None, module)``."""
    if backend == "torch":
        return None, importlib.import_module(f"sciformer.kernels.{op}.reference")
    if not _has_module(f"sciformer.kernels.{op}.{backend}"):
        return f"sciformer has no {backend} implementation of {op}", None
    reason = _import_error(backend)
    if reason:
        return reason, None
    tensors = list(_tensors((*args, *kwargs.values())))
    if backend == "triton" and interpreting():
        pass  # the interpreter runs on any device
    elif not all(t.is_cuda for t in tensors):
        devices = sorted({str(t.device) for t in tensors})
        return f"the inputs are on {', '.join(devices)}; {backend} kernels need CUDA tensors", None
    module = importlib.import_module(f"sciformer.kernels.{op}.{backend}")
    if not hasattr(module, function):
        return f"sciformer has no {backend} implementation of {op}.{function}", None
    unsupported = getattr(module, "unsupported", None)
    reason = unsupported(function, *args, **kwargs) if unsupported is not None else None
    return reason, (None if reason else module)


def implementation(op: str, function: str, *args: Any, **kwargs: Any) -> ModuleType:
    """The module (reference or fast) that runs ``function`` of ``op`` on these arguments."""
    requested = requested_backend()
    if requested is None:
        # Automatic: the fast path where it can run, silently the reference elsewhere (CPU inputs never import triton).
        on_gpu = any(t.is_cuda for t in _tensors((*args, *kwargs.values())))
        if (on_gpu or interpreting()) and _import_error("triton") is None:
            reason, module = _unavailable(op, function, "triton", args, kwargs)
            if module is not None:
                return module
        return importlib.import_module(f"sciformer.kernels.{op}.reference")
    reason, module = _unavailable(op, function, requested, args, kwargs)
    if module is not None:
        return module
    if (op, requested) not in _warned:
        _warned.add((op, requested))
        warnings.warn(f"SCIFORMER_BACKEND={requested}: {reason}; {op} falls back to the PyTorch reference", RuntimeWarning, stacklevel=3)
    return importlib.import_module(f"sciformer.kernels.{op}.reference")


def get_backend(op: str, function: str | None = None, *args: Any, **kwargs: Any) -> str:
    """The backend, ``torch`` or ``triton``, that runs ``op``.

    With ``function`` and its arguments: the one :func:`call` would use for them (after every fallback). Without:
    the one asked for: ``SCIFORMER_BACKEND``, or automatically ``triton`` when it is installed and a GPU (or the
    interpreter) is there, else ``torch``.
    """
    if function is None:
        requested = requested_backend()
        if requested is not None:
            return requested
        return "triton" if (interpreting() or _cuda_available()) and _import_error("triton") is None else "torch"
    name = implementation(op, function, *args, **kwargs).__name__.rsplit(".", 1)[-1]
    return "torch" if name == "reference" else name


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def call(op: str, function: str, *args: Any, **kwargs: Any) -> Any:
    """Run ``function`` of ``op`` (e.g. ``call("linear_attention", "galerkin_attention", q, k, v)``) with the
    backend :func:`implementation` picks."""
    return getattr(implementation(op, function, *args, **kwargs), function)(*args, **kwargs)
