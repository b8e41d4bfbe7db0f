"""Fused kernels for large grids, each beside its PyTorch reference.

``sciformer/kernels/<op>/`` holds ``reference.py`` (pure PyTorch: the specification), ``triton.py`` (the fast
version, same signature) and a package ``__init__`` whose functions run the backend that
:mod:`sciformer.kernels.dispatch` picks (``SCIFORMER_BACKEND=torch|triton``, automatic by default).
Ops: ``factorized_attention`` (FactFormer), ``linear_attention`` (Galerkin), ``autocorrelation`` (Autoformer),
``spectral_multiply`` (FNO-style spectral layers). Models reach them through :mod:`sciformer.nn` blocks.
Nothing here imports triton until a fast path is chosen.
"""

from __future__ import annotations

from collections.abc import Callable

_CACHES: list[Callable[[], None]] = []


def register_cache(clear: Callable[[], None]) -> Callable[[], None]:
    """Register a kernel module's cache (tuned configurations, replayable launches, warnings) with :func:`reset_caches`."""
    _CACHES.append(clear)
    return clear


def reset_caches() -> None:
    """Forget every tuned configuration, replayable launch, device fact and backend warning of the kernels: what a
    test that changes backends or devices starts from."""
    for clear in _CACHES:
        clear()
