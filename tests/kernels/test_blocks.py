"""The nn blocks reach the kernels through dispatch: with the triton backend (interpreter) each block gives the
output and parameter gradients it gives with the PyTorch reference."""

from __future__ import annotations

import warnings

import pytest
import torch

from kernel_checks import cuda, device, relative_error  # noqa: F401 (fixtures)
from sciformer.nn.autocorrelation import AutoCorrelation
from sciformer.nn.factorized_attention import FactorizedAttention
from sciformer.nn.linear_attention import SoftmaxFreeAttention
from sciformer.nn.spectral import SpectralConv


def run_both(monkeypatch, module, inputs, constants=()):
    """Output and gradients (inputs but ``constants``, and parameters) with SCIFORMER_BACKEND=torch and =triton;
    a fallback to the reference (a warning) fails the test."""
    results = []
    for backend in ("torch", "triton"):
        monkeypatch.setenv("SCIFORMER_BACKEND", backend)
        leaves = [x.detach().clone().requires_grad_(i not in constants) for i, x in enumerate(inputs)]
        module.zero_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = module(*leaves)
        out.backward(torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out))
        grads = [x.grad for x in leaves if x.requires_grad] + [p.grad for p in module.parameters()]
        results.append([out.detach(), *grads])
    return results


def assert_same(reference, fast, tol=1e-5):
    for i, (r, f) in enumerate(zip(reference, fast)):
        assert f is not None and r is not None, i
        assert relative_error(f, r) <= tol, (i, relative_error(f, r))


@pytest.mark.parametrize("n_dims, grid", [(2, (6, 5)), (3, (3, 4, 5))])
def test_factorized_attention_block(device, monkeypatch, n_dims, grid):
    torch.manual_seed(0)
    block = FactorizedAttention(dim=8, n_dims=n_dims, n_heads=2, dim_head=4)
    assert_same(*run_both(monkeypatch, block, [torch.randn(2, *grid, 8)]))


def test_galerkin_attention_block(device, monkeypatch):
    torch.manual_seed(0)
    block = SoftmaxFreeAttention(d_model=12, n_heads=3, pos_dim=2, attention="galerkin", xavier_init=1.0)
    assert_same(*run_both(monkeypatch, block, [torch.randn(2, 30, 12), torch.rand(1, 30, 2)], constants=(1,)))


@pytest.mark.parametrize("training", [True, False])
def test_autocorrelation_block(device, monkeypatch, training):
    torch.manual_seed(0)
    layer = AutoCorrelation(factor=1.0).train(training)
    q, k, v = (torch.randn(2, 24, 2, 3) for _ in range(3))
    assert_same(*run_both(monkeypatch, layer, [q, k, v]))


def test_spectral_conv_block(device, monkeypatch):
    torch.manual_seed(0)
    conv = SpectralConv(3, 4, (3, 4), n_dims=2)
    assert_same(*run_both(monkeypatch, conv, [torch.randn(2, 3, 10, 9)]))
