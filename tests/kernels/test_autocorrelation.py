"""Auto-Correlation: the triton cross-spectrum and rolled aggregation against the PyTorch reference, forward and
gradients, odd lengths, per-sample and shared (expanded) delays, float32 and bfloat16."""

from __future__ import annotations

import pytest
import torch

from kernel_checks import check_against_reference, cuda, device  # noqa: F401 (fixtures)

OP = "autocorrelation"


def series(B, L, H, E, device, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, L, H, E, generator=g, dtype=torch.float64).to(device)


def delays_and_weights(B, L, k, shared, device, seed=3):
    g = torch.Generator().manual_seed(seed)
    delays = torch.randint(0, L, (1 if shared else B, k), generator=g).to(device)
    delays = delays.expand(B, k) if shared else delays  # training mode: one set of delays for the batch
    weights = torch.softmax(torch.randn(B, k, generator=g, dtype=torch.float64), -1).to(device)
    return delays, weights


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_correlation_matches_reference(device, dtype):
    inputs = [series(3, 37, 2, 5, device, 0), series(3, 37, 2, 5, device, 1)]
    check_against_reference(OP, "correlation", inputs, [0, 1], dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shared", [False, True])
def test_aggregate_matches_reference(device, shared, dtype):
    delays, weights = delays_and_weights(3, 45, 4, shared, device)
    check_against_reference(OP, "aggregate", [series(3, 45, 3, 7, device, 2), delays, weights], [0, 2], dtype)


# ------------------------------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B, L, H, E", [(32, 720, 8, 64), (4, 65536, 4, 64), (3, 1001, 5, 24)])
def test_matches_reference_on_gpu(cuda, B, L, H, E, dtype):
    check_against_reference(OP, "correlation", [series(B, L, H, E, cuda, 0), series(B, L, H, E, cuda, 1)], [0, 1], dtype)
    for shared in (False, True):
        delays, weights = delays_and_weights(B, L, 7, shared, cuda)
        check_against_reference(OP, "aggregate", [series(B, L, H, E, cuda, 2), delays, weights], [0, 2], dtype)
