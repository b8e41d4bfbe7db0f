"""Fixtures and checks of the kernel tests: a fast path is compared with its PyTorch reference, forward and backward.

The test modules import the fixtures from here: a ``conftest.py`` in this folder would shadow ``tests/conftest.py``
for the ``from conftest import ...`` of other test modules.

Default suite (CPU): triton kernels run in triton's interpreter (``TRITON_INTERPRET=1``, set per test: triton reads
it when a kernel module is first imported, which happens inside these tests) on small odd shapes. ``-m gpu``: the
same comparisons on CUDA tensors at real sizes. Tests skip cleanly when triton (or a GPU) is missing.

Tolerance. Both the fast path and the reference, run in the test dtype, are compared with the reference run in
float64 on the same values; with ``err(x) = max|x − exact| / max|exact|`` the fast path must satisfy
``err(fast) <= 2 · err(reference) + floor``, ``floor = 1e-5`` (float32, complex64) or ``1e-2`` (bfloat16): it may
round differently, never much worse than PyTorch does.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import pytest
import torch

FLOORS = {torch.float32: 1e-5, torch.complex64: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-3}
HAS_TRITON = importlib.util.find_spec("triton") is not None


def interpreter_usable() -> bool:
    """Whether triton kernels can run in the interpreter in this process. Triton decorates its own library (``tl.zeros``,
    ``tl.sum``, …) when it is first imported, in the mode ``TRITON_INTERPRET`` then says; once something else (e.g.
    ``torch._dynamo``) has imported it for compilation, the interpreter cannot run here, and
    ``test_interpreter_process.py`` runs these tests in a fresh process instead."""
    if "triton" not in sys.modules:
        return True
    from triton.language import standard
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(standard.zeros, InterpretedFunction)


@pytest.fixture(params=["cpu"])
def device(request, monkeypatch) -> torch.device:
    """Where the fast path runs: the triton interpreter on CPU (default suite)."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed (pip install -e '.[dev]' installs it)")
    if not interpreter_usable():
        pytest.skip("triton was imported for compilation earlier in this session: test_interpreter_process runs this test")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("SCIFORMER_BACKEND", raising=False)
    monkeypatch.setenv("SCIFORMER_KERNEL_TUNING", "0")  # correctness, not speed: compile one configuration per kernel
    import sciformer.kernels._triton as common

    if not common.INTERPRETED:
        pytest.skip("the triton kernels were already compiled for the GPU in this session; run the interpreter tests apart")
    return torch.device("cpu")


@pytest.fixture
def cuda(monkeypatch) -> torch.device:
    """A CUDA device for the ``gpu`` tests, with the kernels compiled for it (not interpreted)."""
    if not HAS_TRITON or not torch.cuda.is_available():
        pytest.skip("needs triton and a CUDA GPU")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("SCIFORMER_BACKEND", raising=False)
    monkeypatch.setenv("SCIFORMER_KERNEL_TUNING", "0")  # correctness, not speed: compile one configuration per kernel
    import sciformer.kernels._triton as common

    if common.INTERPRETED:
        pytest.skip("the triton kernels were imported in interpreter mode in this session; run `pytest -m gpu` alone")
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference's default: full float32 products
    return torch.device("cuda")


def fast(op: str):
    """The triton module of ``op`` (imported inside a test, after the fixture chose interpreter or GPU)."""
    return importlib.import_module(f"sciformer.kernels.{op}.triton")


def reference(op: str):
    return importlib.import_module(f"sciformer.kernels.{op}.reference")


def relative_error(x: torch.Tensor, exact: torch.Tensor) -> float:
    exact = exact.to(torch.complex128 if exact.is_complex() else torch.float64)
    scale = exact.abs().max().item() or 1.0
    return (x.to(exact.dtype) - exact).abs().max().item() / scale


def run(fn, inputs: list, leaves: list[int], grad_seed: int = 0):
    """``fn(*inputs)`` and the gradients of ``⟨out, g⟩`` (``g`` random, fixed) w.r.t. ``inputs[i]`` for ``i`` in
    ``leaves`` (tuples of tensors allowed as inputs: ``(i, j)`` picks ``inputs[i][j]``)."""
    out = fn(*inputs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.complex128 if out.is_complex() else torch.float64)
    g = g.to(device=out.device, dtype=out.dtype)
    targets = [inputs[i] if isinstance(i, int) else inputs[i[0]][i[1]] for i in leaves]
    grads = torch.autograd.grad(out, targets, g)
    return [out.detach(), *grads]


def as_leaves(inputs: list, dtype_map) -> list:
    """Copies of ``inputs`` (tensors or tuples of tensors) converted by ``dtype_map(t)`` and requiring gradients
    where they are floating point."""

    def convert(t):
        if not isinstance(t, torch.Tensor):
            return t
        t = dtype_map(t).detach()
        return t.requires_grad_(t.is_floating_point() or t.is_complex())

    return [tuple(convert(t) for t in x) if isinstance(x, (list, tuple)) else convert(x) for x in inputs]


def check_against_reference(op: str, function: str, inputs: list, leaves: list, dtype: torch.dtype, exact_kwargs=None):
    """Compare ``fast(op).function`` and ``reference(op).function`` with the float64 reference: output and the
    gradients w.r.t. ``leaves``. ``inputs`` hold float64 (or complex128) tensors; floating ones are cast to
    ``dtype`` (complex ones to complex64) for the two runs under test."""

    def to_test(t):
        if t.is_complex():
            return t.to(torch.complex64)
        return t.to(dtype) if t.is_floating_point() else t

    def to_exact(t):  # the values under test, in float64
        t = to_test(t)
        return t.to(torch.complex128 if t.is_complex() else torch.float64) if t.is_floating_point() or t.is_complex() else t

    exact = run(getattr(reference(op), function), as_leaves(inputs, to_exact), leaves)
    fast_result = run(getattr(fast(op), function), as_leaves(inputs, to_test), leaves)
    ref_result = run(getattr(reference(op), function), as_leaves(inputs, to_test), leaves)
    floor = FLOORS[torch.complex64 if exact[0].is_complex() else dtype]
    names = ["output"] + [f"grad[{i}]" for i in leaves]
    for name, f, r, e in zip(names, fast_result, ref_result, exact):
        assert f.shape == e.shape and f.dtype == r.dtype, f"{name}: {f.shape}/{f.dtype} vs {e.shape}/{r.dtype}"
        assert torch.isfinite(f).all(), f"{name}: not finite"
        err_fast, err_ref = relative_error(f, e), relative_error(r, e)
        assert err_fast <= 2 * err_ref + floor, f"{name}: fast error {err_fast:.2e}, reference error {err_ref:.2e}"
    return fast_result
