"""Truncated spectral multiply of Fourier layers (arXiv 2010.08895): ``reference.py`` (PyTorch, the spec) and
``triton.py`` (per-mode complex channel mixing on the kept modes only), chosen by
:mod:`sciformer.kernels.dispatch`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sciformer.kernels import dispatch
from sciformer.kernels.spectral_multiply.reference import check_inputs, kept_modes

__all__ = ["kept_modes", "spectral_multiply"]


def spectral_multiply(x_ft: torch.Tensor, weights: torch.Tensor, modes: Sequence[int]) -> torch.Tensor:
    """``out[b, o, k] = Σ_i x_ft[b, i, k] · W[corner(k), i, o, k]`` on the kept modes ``k``, 0 elsewhere: complex
    ``x_ft [B, C_in, n_1, ..., n_d // 2 + 1]``, ``weights [2^(d-1), C_in, C_out, M_1, ..., M_d]`` →
    ``[B, C_out, n_1, ..., n_d // 2 + 1]``. See
    :func:`sciformer.kernels.spectral_multiply.reference.spectral_multiply` for the mode layout."""
    modes = check_inputs(x_ft, weights, modes)
    return dispatch.call("spectral_multiply", "spectral_multiply", x_ft, weights, modes)
