"""Truncated spectral multiply: the triton per-mode complex channel mixing against the PyTorch reference, forward
and gradients (spectrum and weights), 1D/2D/3D, odd grids and channel counts, truncated weights (coarse grids)."""

from __future__ import annotations

import pytest
import torch

from sciformer.kernels.spectral_multiply.reference import kept_modes
from kernel_checks import check_against_reference, cuda, device  # noqa: F401 (fixtures)

OP = "spectral_multiply"


def make_inputs(grid, weight_modes, B=3, C_in=5, C_out=7, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    d = len(grid)
    x = torch.randn(B, C_in, *grid, generator=g, dtype=torch.float64)
    x_ft = torch.fft.rfftn(x, dim=tuple(range(-d, 0)))
    w = torch.randn(2 ** (d - 1), C_in, C_out, *weight_modes, 2, generator=g, dtype=torch.float64)
    return [x_ft.to(device), torch.view_as_complex(w).to(device), kept_modes(grid, weight_modes)]


@pytest.mark.parametrize(
    "grid, weight_modes",
    [((20,), (6,)), ((9, 10), (4, 3)), ((6, 10), (5, 8)), ((5, 6, 7), (2, 2, 3))],  # (6, 10) keeps fewer modes than W holds
)
def test_matches_reference(device, grid, weight_modes):
    check_against_reference(OP, "spectral_multiply", make_inputs(grid, weight_modes, device=device), [0, 1], torch.float32)


def test_complex128_runs_the_reference(device, recwarn):
    from sciformer.kernels import dispatch

    x_ft, w, modes = make_inputs((8, 8), (3, 3), device=device)
    assert dispatch.get_backend(OP, "spectral_multiply", x_ft, w, modes) == "torch"  # automatic choice: silent
    assert not recwarn.list


# ------------------------------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.parametrize("grid, modes, C", [((256, 256), (32, 32), 64), ((255, 129), (16, 12), 33), ((64, 64, 64), (16, 16, 16), 32)])
def test_matches_reference_on_gpu(cuda, grid, modes, C):
    check_against_reference(OP, "spectral_multiply", make_inputs(grid, modes, B=4, C_in=C, C_out=C, device=cuda), [0, 1], torch.float32)
