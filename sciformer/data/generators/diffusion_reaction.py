"""2D diffusion–reaction (FitzHugh–Nagumo activator u / inhibitor v), as PDEBench's ``2D_diff-react``.

    ∂t u = D_u Δu + u − u³ − k − v,   ∂t v = D_v Δv + u − v   on [−1, 1]², no-flux boundaries

PDEBench (arXiv 2210.07182; ``sim_diff_react.py``; PDE.md §1.7): D_u = 1e-3, D_v = 5e-3, k = 5e-3,
128² cells, initial u, v i.i.d. N(0, 1), 101 frames to t = 5. PDEBench integrates the
finite-volume semi-discretisation with ``scipy.integrate.solve_ivp`` (RK45); here the same
semi-discretisation (cell-centred 5-point Laplacian, zero-flux ghost cells) is integrated with
classical RK4 at a fixed step below the explicit stability limit, vectorised over samples in torch.
Written as two fields ``u`` and ``v`` (channels in that order) of shape ``[N, T, X, Y]``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch

from sciformer.data.generators.common import FilePlan, PDEGenerator, Rule, cell_centers, finite, nonnegative, positive, randn64, save_times

__all__ = ["DiffusionReaction2D", "fhn_rhs", "fhn_solve", "neumann_laplacian"]


def neumann_laplacian(z: torch.Tensor, h: float) -> torch.Tensor:
    """5-point Laplacian of cell averages ``[B, C, X, Y]`` with zero-flux walls (replicated ghosts)."""
    # Neighbours with the wall cell as its own ghost; built by concatenation, which is much cheaper
    # than F.pad(mode="replicate") for the small per-step tensors of this loop.
    xm = torch.cat([z[..., :1, :], z[..., :-1, :]], dim=-2)
    xp = torch.cat([z[..., 1:, :], z[..., -1:, :]], dim=-2)
    ym = torch.cat([z[..., :1], z[..., :-1]], dim=-1)
    yp = torch.cat([z[..., 1:], z[..., -1:]], dim=-1)
    return (xm + xp + ym + yp - 4 * z) / (h * h)


def fhn_rhs(z: torch.Tensor, h: float, du: float, dv: float, k: float) -> torch.Tensor:
    """Right-hand side for ``z = [u, v]`` of shape ``[B, 2, X, Y]``."""
    u, v = z[:, 0], z[:, 1]
    lap = neumann_laplacian(z, h)
    return torch.stack([du * lap[:, 0] + u - u**3 - k - v, dv * lap[:, 1] + u - v], dim=1)


def fhn_solve(
    z0: torch.Tensor, t_save: np.ndarray, h: float, du: float, dv: float, k: float, safety: float = 0.8, dt_max: float = 0.01
) -> Iterator[torch.Tensor]:
    """Yield ``[B, 2, X, Y]`` at each time of ``t_save`` (``t_save[0]`` = 0 → ``z0``), RK4.

    Step per save interval: ``min(dt_max, safety × 2.78 / (8 D_max/h² + 3 max u² + 1))`` (RK4's real-axis
    stability bound over the diffusion and the reaction Jacobian's largest eigenvalue magnitude;
    ``dt_max`` keeps coarse grids accurate, RK4's error at 0.01 is far below PDEBench's RK45 rtol 1e-3).
    """
    z = z0
    yield z
    for t0, t1 in itertools.pairwise(t_save):
        umax2 = float((z[:, 0] ** 2).max())
        dt = min(dt_max, safety * 2.78 / (8 * max(du, dv) / (h * h) + 3 * umax2 + 1))
        m = max(1, math.ceil((t1 - t0) / dt - 1e-9))
        dt = (t1 - t0) / m
        for _ in range(m):
            k1 = fhn_rhs(z, h, du, dv, k)
            k2 = fhn_rhs(z + 0.5 * dt * k1, h, du, dv, k)
            k3 = fhn_rhs(z + 0.5 * dt * k2, h, du, dv, k)
            k4 = fhn_rhs(z + dt * k3, h, du, dv, k)
            z = z + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        yield z


class DiffusionReaction2D(PDEGenerator):
    """``diffreact2d``: fields ``u``, ``v`` ``[N, T, X, Y]``; attributes ``Du``, ``Dv``, ``k``."""

    name = "diffreact2d"
    defaults: ClassVar[dict[str, Any]] = dict(du=1e-3, dv=5e-3, k=5e-3, t_end=5.0, dt_save=0.05, x_left=-1.0, x_right=1.0, dt_max=0.01)
    rules: ClassVar[dict[str, Rule]] = dict(
        du=nonnegative, dv=nonnegative, k=finite, t_end=positive, dt_save=positive, x_left=finite, x_right=finite, dt_max=positive
    )

    def min_steps(self, res, p):  # RK4's diffusive stability bound (see fhn_solve), and dt_max
        h = (p["x_right"] - p["x_left"]) / res
        return p["t_end"] * max(1 / p["dt_max"], (8 * max(p["du"], p["dv"]) / (h * h) + 1) / (0.8 * 2.78))

    def plan(self, res: int, **p) -> FilePlan:
        x, _ = cell_centers(res, p)
        t = save_times(p["t_end"], p["dt_save"])
        attrs = {
            "Du": float(p["du"]),
            "Dv": float(p["dv"]),
            "k": float(p["k"]),
            "dt_save": float(p["dt_save"]),
            "t_end": float(p["t_end"]),
            "scheme": "cell-centred FV Laplacian, no-flux walls, classical RK4 (PDEBench uses RK45)",
        }
        return FilePlan(["u", "v"], len(t), (res, res), {"x": x, "y": x.copy(), "t": t}, attrs)

    def simulate(self, b, res, gen, device, dtype, **p):
        _, h = cell_centers(res, p)
        z0 = randn64(gen, b, 2, res, res, device=device).to(dtype)
        frames = fhn_solve(z0, save_times(p["t_end"], p["dt_save"]), h, p["du"], p["dv"], p["k"], dt_max=p["dt_max"])
        return {}, ({"u": z[:, 0], "v": z[:, 1]} for z in frames)
