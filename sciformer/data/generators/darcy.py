"""2D steady Darcy flow, −∇·(a(x)∇u) = β on (0, 1)² with u = 0 on the boundary, solved directly.

Coefficients as PDEBench (arXiv 2210.07182; ``data_gen_NLE/DarcyFlow``; PDE.md §1.7): a sum of 5
Gaussian bumps with random centres and widths σ = 0.5·L·U(0, 1), thresholded to a = 1 above the
field's mean and 0.1 below. PDEBench marches ∂t u = ∇·(a∇u) + β to T = 2 as a steady-state proxy;
here the steady problem itself is solved with a sparse direct solver (``scipy.sparse``, SuperLU), so
the saved solution satisfies the discrete equation to round-off. The solve runs on the CPU whatever
``device``: Jacobi-preconditioned conjugate gradients on an H100 through CuPy were measured at 1.1-1.2x
SuperLU's speed per sample at 256² and 512² (docs/pde.md), too little to keep a second solver.

Discretisation: cell-centred finite volumes on ``res × res`` cells of size h, face coefficient the
arithmetic mean of the two cells, boundary faces use the boundary cell's coefficient against a ghost
value u = 0 one cell outside (PDEBench's zero ghost cells). The batch is assembled as one
block-diagonal matrix (vectorised, no per-sample loop) and factorised once.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from sciformer.data.generators.common import FilePlan, PDEGenerator, Rule, finite, positive, rand64, whole

__all__ = ["Darcy2D", "darcy_coefficient", "darcy_matrix", "darcy_operator", "darcy_solve"]


def darcy_coefficient(
    b: int, res: int, gen: torch.Generator, device, dtype, *, n_gauss: int = 5, length: float = 1.0, a_high: float = 1.0, a_low: float = 0.1
) -> torch.Tensor:
    """PDEBench's binary coefficient fields ``[b, res, res]`` (values ``a_high`` / ``a_low``), drawn and
    thresholded in float64 whatever ``dtype`` (so float32 and float64 files hold the same fields)."""
    f64 = torch.float64
    h = length / res
    x = (torch.arange(res, device=device, dtype=f64) + 0.5) * h
    centres = length * rand64(gen, b, n_gauss, 2, device=device)
    sigma = 0.5 * length * rand64(gen, b, n_gauss, device=device)
    sigma = sigma.clamp_min(h)  # a bump narrower than a cell is invisible on the grid anyway
    dx2 = (x[None, None, :] - centres[..., 0:1]) ** 2  # [b, g, X]
    dy2 = (x[None, None, :] - centres[..., 1:2]) ** 2  # [b, g, Y]
    g = torch.exp(-(dx2[..., :, None] + dy2[..., None, :]) / (2 * sigma[..., None, None] ** 2)).sum(1)
    mean = g.mean(dim=(-2, -1), keepdim=True)
    hi, lo = (torch.tensor(v, device=device, dtype=f64) for v in (a_high, a_low))
    return torch.where(g > mean, hi, lo).to(dtype)


def darcy_matrix(a: np.ndarray, h: float):
    """Sparse SPD matrix ``[B·N², B·N²]`` (CSR) of −∇·(a∇·) for coefficients ``a [B, N, N]``."""
    import scipy.sparse as sp

    a = np.asarray(a, dtype=np.float64)
    b, n, m = a.shape
    idx = np.arange(b * n * m).reshape(b, n, m)
    ax = 0.5 * (a[:, :-1, :] + a[:, 1:, :])  # faces between (i, j) and (i+1, j): [B, N-1, M]
    ay = 0.5 * (a[:, :, :-1] + a[:, :, 1:])  # faces between (i, j) and (i, j+1): [B, N, M-1]
    diag = np.zeros_like(a)
    diag[:, :-1, :] += ax
    diag[:, 1:, :] += ax
    diag[:, :, :-1] += ay
    diag[:, :, 1:] += ay
    # Boundary faces: the cell's own coefficient, ghost u = 0 at distance h.
    diag[:, 0, :] += a[:, 0, :]
    diag[:, -1, :] += a[:, -1, :]
    diag[:, :, 0] += a[:, :, 0]
    diag[:, :, -1] += a[:, :, -1]
    rows = np.concatenate([idx.ravel(), idx[:, :-1].ravel(), idx[:, 1:].ravel(), idx[:, :, :-1].ravel(), idx[:, :, 1:].ravel()])
    cols = np.concatenate([idx.ravel(), idx[:, 1:].ravel(), idx[:, :-1].ravel(), idx[:, :, 1:].ravel(), idx[:, :, :-1].ravel()])
    vals = np.concatenate([diag.ravel(), -ax.ravel(), -ax.ravel(), -ay.ravel(), -ay.ravel()]) / (h * h)
    return sp.csr_matrix((vals, (rows, cols)), shape=(b * n * m, b * n * m))


def darcy_solve(a: torch.Tensor, beta: float, h: float) -> torch.Tensor:
    """Solve −∇·(a∇u) = β, u = 0 outside, for ``a [B, N, N]``; returns ``u [B, N, N]`` (float64 solve,
    returned in ``a``'s dtype and device). Direct sparse LU (SuperLU) of the block-diagonal system."""
    from scipy.sparse.linalg import spsolve

    a_np = a.detach().double().cpu().numpy()
    mat = darcy_matrix(a_np, h)
    rhs = np.full(mat.shape[0], float(beta))
    # The blocks are independent and symmetric: a symmetric fill-reducing ordering keeps LU sparse.
    u = spsolve(mat.tocsc(), rhs, permc_spec="MMD_AT_PLUS_A")
    return torch.as_tensor(u.reshape(a_np.shape), device=a.device).to(a.dtype)


def darcy_operator(a: torch.Tensor, u: torch.Tensor, h: float) -> torch.Tensor:
    """Apply the same discrete −∇·(a∇u) by stencil (independent of :func:`darcy_matrix`): ``[B, N, N]``.

    ``a`` is padded by replication (boundary face = the cell's coefficient), ``u`` by zeros (ghosts).
    """
    ap = F.pad(a[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    up = F.pad(u[:, None], (1, 1, 1, 1), mode="constant", value=0.0)[:, 0]
    c = (slice(1, -1), slice(1, -1))
    out = torch.zeros_like(u)
    for sx, sy in ((slice(0, -2), c[1]), (slice(2, None), c[1]), (c[0], slice(0, -2)), (c[0], slice(2, None))):
        a_nb, u_nb = ap[:, sx, sy], up[:, sx, sy]
        out = out + 0.5 * (a + a_nb) * (u - u_nb)
    return out / (h * h)


class Darcy2D(PDEGenerator):
    """``darcy2d``: ``nu [N, X, Y]`` (coefficient a, the operator input) and ``tensor [N, 1, X, Y]``
    (solution u), attribute ``beta`` (the constant forcing), PDEBench's Darcy layout."""

    name = "darcy2d"
    single_only = True
    defaults: ClassVar[dict[str, Any]] = dict(beta=1.0, n_gauss=5, a_high=1.0, a_low=0.1, length=1.0)
    rules: ClassVar[dict[str, Rule]] = dict(beta=finite, n_gauss=whole(1), a_high=positive, a_low=positive, length=positive)

    def plan(self, res: int, **p) -> FilePlan:
        h = p["length"] / res
        x = (np.arange(res) + 0.5) * h
        attrs = {
            "beta": float(p["beta"]),
            "a_high": float(p["a_high"]),
            "a_low": float(p["a_low"]),
            "solver": "cell-centred FV, scipy.sparse direct solve of the steady problem",
        }
        return FilePlan(["tensor"], 1, (res, res), {"x": x, "y": x.copy()}, attrs, static=["nu"])

    def simulate(self, b, res, gen, device, dtype, **p):
        a = darcy_coefficient(b, res, gen, device, torch.float64, n_gauss=p["n_gauss"], length=p["length"], a_high=p["a_high"], a_low=p["a_low"])
        u = darcy_solve(a, p["beta"], p["length"] / res)
        return {"nu": a.to(dtype)}, iter([{"tensor": u.to(dtype)}])
