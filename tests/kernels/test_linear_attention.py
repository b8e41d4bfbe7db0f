"""Galerkin linear attention: the triton kernels (K/V layer norms and coordinates fused) against the PyTorch
reference, forward and gradients (inputs and layer-norm affine parameters), float32 and bfloat16."""

from __future__ import annotations

import pytest
import torch

from kernel_checks import check_against_reference, cuda, device  # noqa: F401 (fixtures)

OP = "linear_attention"


def make_inputs(B=2, H=3, n=77, E=6, D=5, P=0, norm=True, n_q=None, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    n_q = n_q or n

    def heads(rows, width):  # [B, n, H, width] memory seen as [B, H, n, width]: the linear layer's output
        return torch.randn(B, rows, H, width, generator=g, dtype=torch.float64).transpose(1, 2).to(device)

    q, k, v = heads(n_q, E), heads(n, E), heads(n, D)
    pos = torch.rand(1, n, P, generator=g, dtype=torch.float64).to(device) if P else None
    affine = lambda w: (1 + 0.3 * torch.randn(H, w, generator=g, dtype=torch.float64).to(device), 0.3 * torch.randn(H, w, generator=g, dtype=torch.float64).to(device))  # noqa: E731
    k_norm, v_norm = (affine(E), affine(D)) if norm else (None, None)
    return [q, k, v, pos, k_norm, v_norm, 1e-5]


def leaves(norm):
    return [0, 1, 2] + ([(4, 0), (4, 1), (5, 0), (5, 1)] if norm else [])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("P, norm", [(0, False), (2, True), (3, False)])
def test_matches_reference(device, P, norm, dtype):
    inputs = make_inputs(P=P, norm=norm, device=device)
    out = check_against_reference(OP, "galerkin_attention", inputs, leaves(norm), dtype)[0]
    assert out.shape[-1] == P + 5
    assert out.transpose(1, 2).is_contiguous()  # heads merge by a free view


def test_cross_attention_with_fewer_queries_and_wide_heads(device):
    inputs = make_inputs(B=1, H=2, n=70, n_q=19, E=33, D=20, norm=True, device=device)
    check_against_reference(OP, "galerkin_attention", inputs, leaves(True), torch.float32)


# ------------------------------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n, E, P", [(256 * 256, 64, 2), (129 * 255, 128, 3), (64**3, 32, 0)])
def test_matches_reference_on_gpu(cuda, n, E, P, dtype):
    inputs = make_inputs(B=2, H=4, n=n, E=E, D=E, P=P, norm=True, device=cuda)
    check_against_reference(OP, "galerkin_attention", inputs, leaves(True), dtype)
