"""Fused kernels for large grids, each beside its PyTorch reference.

``sciformer/kernels/<op>/`` holds ``reference.py`` (pure PyTorch: the specification), ``triton.py`` (the fast
version, same signature) and a package ``__init__`` whose functions run the backend that
:mod:`sciformer.kernels.dispatch` picks (``SCIFORMER_BACKEND=torch|triton|cupy``, automatic by default).
Ops: ``factorized_attention`` (FactFormer), ``linear_attention`` (Galerkin), ``autocorrelation`` (Autoformer),
``spectral_multiply`` (FNO-style spectral layers). Models reach them through :mod:`sciformer.nn` blocks.
Nothing here imports triton or cupy until a fast path is chosen.
"""
