"""1D linear advection, ∂t u + β ∂x u = 0 on a periodic interval, as PDEBench generates it.

Scheme (PDEBench, arXiv 2210.07182; ``data_gen_NLE/AdvectionEq``; PDE.md §1.7): finite volume on cell
centres, MUSCL reconstruction with the monotonised-central limiter, upwind flux
``F = ½(β u_L + β u_R) − ½|β|(u_R − u_L)``, two-stage predictor–corrector (half step, then full step
with the midpoint fluxes), ``dt = CFL·dx/|β|`` with CFL 0.4, frames every ``dt_save``. Second order in
space and time for smooth solutions (the limiter clips at extrema). PDEBench writes the flux with its
L/R labels swapped; the upwind side is what matters and is kept.
The exact solution of the PDEBench test set, ``sin(2π(x − βt))``, is :func:`advection_exact`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch

from sciformer.data.generators.common import FilePlan, PDEGenerator, Rule, cell_centers, choice, courant, finite, init_multi, mc_slope, positive, save_times

__all__ = ["Advection1D", "advection_exact", "advection_exact_cell_average", "advection_fv"]


def _rhs(u: torch.Tensor, beta: float, dx: float) -> torch.Tensor:
    s = mc_slope(u)
    u_l = u + 0.5 * s  # left state at face i+½ (from cell i)
    u_r = torch.roll(u - 0.5 * s, -1, -1)  # right state at face i+½ (from cell i+1)
    flux = 0.5 * beta * (u_l + u_r) - 0.5 * abs(beta) * (u_r - u_l)
    return -(flux - torch.roll(flux, 1, -1)) / dx


def advection_fv(u0: torch.Tensor, beta: float, dx: float, t_save: np.ndarray, cfl: float = 0.4) -> Iterator[torch.Tensor]:
    """Yield the cell averages ``[B, X]`` at every time in ``t_save`` (``t_save[0]`` = 0 → ``u0``).

    ``u0 [B, X]`` periodic cell averages. Time steps are shortened uniformly so each save time is hit
    exactly (``dt ≤ CFL·dx/|β|``).
    """
    u = u0
    yield u
    dt_max = cfl * dx / max(abs(beta), 1e-12)
    for t0, t1 in itertools.pairwise(t_save):
        m = max(1, math.ceil((t1 - t0) / dt_max - 1e-9))
        dt = (t1 - t0) / m
        for _ in range(m):
            u_half = u + 0.5 * dt * _rhs(u, beta, dx)  # predictor: fluxes at t + dt/2
            u = u + dt * _rhs(u_half, beta, dx)  # corrector
        yield u


def advection_exact(x: torch.Tensor, t: float, beta: float, length: float = 1.0) -> torch.Tensor:
    """PDEBench's exact test solution ``sin(2π(x − βt)/L)`` at points ``x``."""
    return torch.sin(2 * math.pi * (x - beta * t) / length)


def advection_exact_cell_average(x: torch.Tensor, dx: float, t: float, beta: float, length: float = 1.0) -> torch.Tensor:
    """Cell averages of :func:`advection_exact` over ``[x − dx/2, x + dx/2]`` (cell centres ``x``)."""
    k = 2 * math.pi / length
    a, b = x - 0.5 * dx - beta * t, x + 0.5 * dx - beta * t
    return (torch.cos(k * a) - torch.cos(k * b)) / (k * dx)


class Advection1D(PDEGenerator):
    """``advection1d``: ``tensor [N, T, X]``, attribute ``beta``. ``ic="random"`` (PDEBench's
    ``init_multi``) or ``"sine"`` (the exact-solution test set)."""

    name = "advection1d"
    defaults: ClassVar[dict[str, Any]] = dict(beta=1.0, t_end=2.0, dt_save=0.01, cfl=0.4, x_left=0.0, x_right=1.0, ic="random")
    rules: ClassVar[dict[str, Rule]] = dict(
        beta=finite, t_end=positive, dt_save=positive, cfl=courant, x_left=finite, x_right=finite, ic=choice("random", "sine")
    )

    def min_steps(self, res, p):
        dx = (p["x_right"] - p["x_left"]) / res
        return p["t_end"] * abs(p["beta"]) / (p["cfl"] * dx)

    def plan(self, res: int, **p) -> FilePlan:
        x, _ = cell_centers(res, p)
        t = save_times(p["t_end"], p["dt_save"])
        attrs = {
            "beta": float(p["beta"]),
            "cfl": float(p["cfl"]),
            "dt_save": float(p["dt_save"]),
            "t_end": float(p["t_end"]),
            "ic": p["ic"],
            "scheme": "FV MUSCL-MC, upwind flux, 2-stage predictor-corrector (PDEBench)",
        }
        return FilePlan(["tensor"], len(t), (res,), {"x": x, "t": t}, attrs)

    def simulate(self, b, res, gen, device, dtype, **p):
        x_np, dx = cell_centers(res, p)
        x = torch.as_tensor(x_np, device=device, dtype=torch.float64)
        length = p["x_right"] - p["x_left"]
        if p["ic"] == "sine":
            u0 = advection_exact_cell_average(x, dx, 0.0, p["beta"], length).expand(b, res).to(dtype)
        else:
            u0 = init_multi(x, b, gen).to(dtype)
        frames = advection_fv(u0, p["beta"], dx, save_times(p["t_end"], p["dt_save"]), p["cfl"])
        return {}, ({"tensor": u} for u in frames)
