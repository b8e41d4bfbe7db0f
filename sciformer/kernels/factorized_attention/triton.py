"""Triton FactFormer axial attention: same signature and result as :mod:`.reference`, forward and backward.

These kernels do all the work on the field ``v [B, H, n_1, ..., n_d, D]`` (d = 1, 2, 3), read and written in place
with its own strides (the channels-last ``[B, *grid, H, D]`` layout of ``to_v``'s output), so no axis is ever
permuted into a contiguous copy:

The kernels are in :mod:`._kernels`, their tile configurations in :mod:`._fits`, and their launches (tuned once
per shape, then replayed) in :mod:`._launch`; this module holds the autograd function.

The axial products are ``n_a × n_a``, ``n_a / (N·D)`` of the field's size (at most 1/64 here), so each is formed
once and read from L2: recomputing them inside every column tile, flash-attention style, would double the FLOPs,
because unlike softmax attention the same kernel serves all ``N / n_a`` positions of the other axes. (Where
``_apply_rows_kernel`` forms ``P``, each program forms its rows once for its whole range of strips.)

Memory: the op never holds more than the fields it needs at one time. By default the forward keeps its ``d - 1``
intermediate fields ``t_a = K_{a-1} ×_{a-1} … K_1 ×_1 v`` for the backward, which releases each as soon as its
kernel gradient is formed. With ``recompute=True`` the forward keeps only its inputs and overwrites each
intermediate with the next, and the backward recomputes them: one more pass over the field per intermediate, for
``d - 1`` fewer fields held between forward and backward (what decides the largest grid a whole model trains on).
Either way the op's own peak inside one forward + backward is the same, because the backward's peak (its output,
one intermediate, the incoming gradient's image) comes while the other intermediates are already released.
An application to a temporary of the op's own overwrites it in place where one program can own whole columns of
the axis (axes of up to 256 points, with up to 128 channels per head): each program then reads its column strip
completely before it writes it, and no other program touches that strip.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sciformer.kernels._triton import FLOAT_DTYPES
from sciformer.kernels.factorized_attention._launch import _apply, _apply_product, _contract, _contract_apply, _matmul, _sum_partials, fuses
from sciformer.kernels.factorized_attention.reference import check_inputs, scales_for

__all__ = ["factorized_attention", "unsupported"]


_V = 3  # v's position among the arguments of _FactorizedAttention.forward


class _FactorizedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scales: tuple[float, ...], recompute: bool, first: tuple[torch.Tensor, torch.Tensor], v: torch.Tensor, *qk: torch.Tensor) -> torch.Tensor:
        d = len(scales)
        # Every product and field pass is a triton kernel, so autocast (which only changes PyTorch ops) has nothing
        # to act on here: the op runs in the inputs' common dtype either way.
        fields, products = [v, first[0]], [first[1]]  # fields[a]: the field axis a's kernel is applied to
        for axis in range(1, d):
            # recomputing: the intermediates are not kept, so each later axis may overwrite the one before
            field, product = _apply_product(qk[axis], qk[d + axis], fields[-1], axis, overwrite=recompute, scale=scales[axis])
            fields.append(field)
            products.append(product)
        ctx.scales = scales
        # The intermediates are a plain attribute, not saved tensors: the backward drops each one as soon as its
        # kernel gradient is formed, which keeps its peak at that of recomputing them (saved tensors live to the end).
        ctx.intermediates = None if recompute else fields[1:-1]
        ctx.save_for_backward(v, *qk, *products)
        return fields[-1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        v, *rest = ctx.saved_tensors
        scales = ctx.scales
        d = len(scales)
        qs, ks, products = rest[:d], rest[d : 2 * d], rest[2 * d :]
        inputs = [v]  # inputs[a]: the field axis a's kernel was applied to
        if ctx.intermediates is not None:
            inputs += ctx.intermediates
            ctx.intermediates = None  # ours now, freed one by one below; a second backward recomputes them
        for axis in range(len(inputs) - 1, d - 1):
            inputs.append(_apply(products[axis], inputs[-1], axis, scale=scales[axis]))
        g = grad.to(v.dtype)  # gradient w.r.t. the output of axis a's application
        grads_q: list[torch.Tensor] = [None] * d  # type: ignore[list-item]
        grads_k: list[torch.Tensor] = [None] * d  # type: ignore[list-item]
        for axis in reversed(range(d)):
            t, s, product_t = inputs.pop(), scales[axis], products[axis].transpose(-1, -2)
            into = t if t is not v else (g if g is not grad else None)  # whichever input is ours
            if (axis > 0 or ctx.needs_input_grad[_V]) and fuses(g, axis, into_x=into is g):
                # one pass for the kernel gradient and the next g
                partials, g = _contract_apply(g, t, product_t, axis, into, scale=s)
            else:
                partials = _contract(g, t, axis, scale=s)
                del t, into  # released before the next field is allocated
                if axis > 0 or ctx.needs_input_grad[_V]:
                    g = _apply(product_t, g, axis, overwrite=g is not grad, scale=s)
            # the product's gradient, rounded to the field's dtype as the reference's autograd rounds it
            dproduct = _sum_partials(partials)
            del partials  # not held through the next axis's passes
            grads_q[axis] = _matmul(dproduct, ks[axis], v.dtype)
            grads_k[axis] = _matmul(dproduct.transpose(-1, -2), qs[axis], v.dtype)
        del inputs
        dv = g if ctx.needs_input_grad[_V] else None
        return None, None, None, dv, *grads_q, *grads_k


def unsupported(function: str, q_axes, k_axes, v, scale=None, recompute=False) -> str | None:
    """Why these inputs need the reference, or ``None``."""
    if v.dtype not in FLOAT_DTYPES:
        return f"the triton kernels take float32, bfloat16 or float16, got {v.dtype}"
    if any(t.dtype != v.dtype for t in (*q_axes, *k_axes)):
        return f"q, k and v must share one dtype, got {sorted({str(t.dtype) for t in (v, *q_axes, *k_axes)})}"
    if not 1 <= v.ndim - 3 <= 3:
        return f"the triton kernels take 1 to 3 grid axes, got {v.ndim - 3}"
    return None


def factorized_attention(
    q_axes: Sequence[torch.Tensor], k_axes: Sequence[torch.Tensor], v: torch.Tensor, scale: float | Sequence[float] | None = None, recompute: bool = False
) -> torch.Tensor:
    """Triton version of :func:`sciformer.kernels.factorized_attention.reference.factorized_attention`."""
    check_inputs(q_axes, k_axes, v)
    scales = tuple(scales_for(v, scale))
    # The first axis's application (which forms its product) is launched before autograd's bookkeeping, which the GPU
    # would otherwise wait for at the start of a step: 0.04 ms on the H100 machine. No autograd is
    # involved in a kernel launch, so the function's forward takes it over as it is.
    first = _apply_product(q_axes[0], k_axes[0], v, 0, scale=scales[0])
    return _FactorizedAttention.apply(scales, bool(recompute), first, v, *q_axes, *k_axes)
