"""Backend choice: SCIFORMER_BACKEND, the automatic default, one warning per op and backend on fallback, the
reference path without triton, and equality of the forced torch backend with the reference."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from kernel_checks import HAS_TRITON, cuda, device  # noqa: F401 (fixtures)

from sciformer.errors import ConfigError
from sciformer.kernels import autocorrelation, dispatch, factorized_attention, linear_attention, reset_caches, spectral_multiply
from sciformer.kernels.autocorrelation import reference as ac_ref
from sciformer.kernels.factorized_attention import reference as fa_ref
from sciformer.kernels.linear_attention import reference as la_ref
from sciformer.kernels.spectral_multiply import reference as sm_ref

REPO = Path(__file__).resolve().parents[2]


def op_calls():
    """One small call of every dispatched function: ``(op, function, public function, reference function, args)``."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    qs, ks, v = [r(1, 2, 4, 3), r(1, 2, 5, 3)], [r(1, 2, 4, 3), r(1, 2, 5, 3)], r(1, 2, 4, 5, 6)
    q, k, vv = r(1, 2, 9, 4), r(1, 2, 9, 4), r(1, 2, 9, 4)
    norm = (torch.ones(2, 4), torch.zeros(2, 4))
    x_ft = torch.fft.rfft2(r(2, 3, 8, 8))
    w = torch.randn(2, 3, 4, 3, 3, dtype=torch.complex64, generator=g)
    delays, weights = torch.tensor([[0, 3], [5, 1]]), torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    return [
        ("factorized_attention", "factorized_attention", factorized_attention.factorized_attention, fa_ref.factorized_attention, (qs, ks, v)),
        ("linear_attention", "galerkin_attention", linear_attention.galerkin_attention, la_ref.galerkin_attention, (q, k, vv, None, norm, norm)),
        ("autocorrelation", "correlation", autocorrelation.correlation, ac_ref.correlation, (r(2, 12, 2, 3), r(2, 12, 2, 3))),
        ("autocorrelation", "aggregate", autocorrelation.aggregate, ac_ref.aggregate, (r(2, 12, 2, 3), delays, weights)),
        ("spectral_multiply", "spectral_multiply", spectral_multiply.spectral_multiply, sm_ref.spectral_multiply, (x_ft, w, (3, 3))),
    ]


@pytest.fixture(autouse=True)
def fresh_dispatch(monkeypatch):
    reset_caches()
    monkeypatch.delenv("SCIFORMER_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_forced_torch_backend_is_exactly_the_reference(monkeypatch):
    monkeypatch.setenv("SCIFORMER_BACKEND", "torch")
    assert dispatch.get_backend("factorized_attention") == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for op, function, public, ref, args in op_calls():
            assert dispatch.get_backend(op, function, *args) == "torch"
            assert torch.equal(public(*args), ref(*args)), function


def test_default_on_cpu_tensors_is_the_reference_silently(recwarn):
    for op, function, public, ref, args in op_calls():
        assert dispatch.get_backend(op, function, *args) == "torch"
        assert torch.equal(public(*args), ref(*args))
    assert not recwarn.list


def test_a_missing_backend_falls_back_with_one_warning_per_op(monkeypatch):
    monkeypatch.setenv("SCIFORMER_BACKEND", "triton")
    monkeypatch.setattr(dispatch, "_importable", {"triton": "triton cannot be imported (simulated)"})
    with pytest.warns(RuntimeWarning) as record:
        for _ in range(3):
            for op, function, public, ref, args in op_calls():
                assert torch.equal(public(*args), ref(*args))
    messages = [str(w.message) for w in record]
    assert len(messages) == 4  # one per op (autocorrelation has two functions), not per call
    assert all("triton cannot be imported (simulated)" in m and "falls back to the PyTorch reference" in m for m in messages)


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_cpu_inputs_without_the_interpreter_fall_back(monkeypatch):
    monkeypatch.setenv("SCIFORMER_BACKEND", "triton")
    monkeypatch.setattr(dispatch, "_importable", {"triton": None})  # installed; not imported here (see kernel_checks)
    op, function, public, ref, args = op_calls()[0]
    with pytest.warns(RuntimeWarning, match="the inputs are on cpu; triton kernels need CUDA tensors"):
        assert torch.equal(public(*args), ref(*args))


def test_no_phantom_backend_is_offered(monkeypatch):
    """Only backends that implement an op are accepted: there is no CuPy kernel, so there is no cupy backend."""
    monkeypatch.setenv("SCIFORMER_BACKEND", "cupy")
    with pytest.raises(ConfigError, match="SCIFORMER_BACKEND must be one of torch, triton or auto, got 'cupy'"):
        dispatch.get_backend("linear_attention")


def test_an_unknown_backend_is_an_error(monkeypatch):
    monkeypatch.setenv("SCIFORMER_BACKEND", "cuda")
    with pytest.raises(ConfigError, match="SCIFORMER_BACKEND must be one of torch, triton or auto, got 'cuda'"):
        dispatch.get_backend("linear_attention")


def test_the_interpreter_counts_as_triton_on_cpu(device):
    for op, function, public, ref, args in op_calls():
        assert dispatch.get_backend(op, function, *args) == "triton", function
    x_ft, w, modes = op_calls()[-1][-1]
    assert dispatch.get_backend("spectral_multiply", "spectral_multiply", x_ft.to(torch.complex128), w.to(torch.complex128), modes) == "torch"


@pytest.mark.parametrize("triton_importable", [False, True])
@pytest.mark.integration  # a fresh interpreter
def test_cpu_blocks_run_the_references_and_never_import_triton(triton_importable):
    # A fresh interpreter (in which `import triton` fails, or works): the blocks train on CPU through the
    # references, and triton is never imported.
    block = "" if triton_importable else 'sys.modules["triton"] = None  # makes `import triton` raise ImportError'
    code = f"""
import sys
{block}
import torch
from sciformer.kernels import dispatch
from sciformer.nn.factorized_attention import FactorizedAttention
from sciformer.nn.linear_attention import SoftmaxFreeAttention
from sciformer.nn.autocorrelation import AutoCorrelation
from sciformer.nn.spectral import SpectralConv
assert dispatch.get_backend("factorized_attention") == "torch"
FactorizedAttention(8, 2, n_heads=2, dim_head=4)(torch.randn(1, 5, 6, 8)).sum().backward()
SoftmaxFreeAttention(8, 2, 2)(torch.randn(1, 7, 8), torch.rand(1, 7, 2)).sum().backward()
AutoCorrelation()(*(torch.randn(2, 12, 2, 3, requires_grad=True) for _ in range(3))).sum().backward()
SpectralConv(2, 3, 3, n_dims=2)(torch.randn(1, 2, 8, 8)).sum().backward()
print(sys.modules.get("triton"), "cupy" in sys.modules)
"""
    env = {key: value for key, value in os.environ.items() if key not in ("SCIFORMER_BACKEND", "TRITON_INTERPRET")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU machine, even where the suite runs on a GPU host
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "False"]
