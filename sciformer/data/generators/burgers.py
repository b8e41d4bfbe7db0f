"""1D viscous Burgers, ∂t u + ∂x(u²/2) = (ν/π) ∂xx u on a periodic interval, as PDEBench generates it.

Scheme (PDEBench, arXiv 2210.07182; ``data_gen_NLE/BurgersEq``; PDE.md §1.7): finite volume with
MUSCL-MC reconstruction, Rusanov-type flux ``½(f_L + f_R) − ¼|u_L + u_R|(u_R − u_L)`` with f = u²/2,
central viscous flux ``−(ν/π)(u_{i+1} − u_i)/dx``, two-stage predictor–corrector, per-sample
``dt = CFL·min(dx/max|u|, ½dx²/(ν/π))`` with CFL 0.25. The attribute ``Nu`` is ν; the effective
viscosity is ν/π (PDEBench's convention). Domain [0, 1] (PDEBench since Oct 2023). Being a
conservative scheme on a periodic grid, the mean of u is conserved to round-off.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch

from sciformer.data.generators.common import (
    FilePlan,
    PDEGenerator,
    Rule,
    cell_centers,
    courant,
    finite,
    init_multi,
    mc_slope,
    nonnegative,
    positive,
    save_times,
)

__all__ = ["Burgers1D", "burgers_fv"]


def _rhs(u: torch.Tensor, visc: float, dx: float) -> torch.Tensor:
    s = mc_slope(u)
    u_l = u + 0.5 * s
    u_r = torch.roll(u - 0.5 * s, -1, -1)
    flux = 0.25 * (u_l * u_l + u_r * u_r) - 0.25 * (u_l + u_r).abs() * (u_r - u_l)
    flux = flux - visc * (torch.roll(u, -1, -1) - u) / dx
    return -(flux - torch.roll(flux, 1, -1)) / dx


def burgers_fv(u0: torch.Tensor, nu: float, dx: float, t_save: np.ndarray, cfl: float = 0.25) -> Iterator[torch.Tensor]:
    """Yield ``[B, X]`` at every time of ``t_save`` (``t_save[0]`` = 0 → ``u0``); ``nu`` is PDEBench's
    ``Nu`` (effective viscosity ν/π).

    Each sample has its own CFL step, as PDEBench's vmapped solver: the batch steps together, and a
    sample that has reached the save time takes ``dt = 0`` until the others catch up.
    """
    visc = nu / math.pi
    dt_visc = 0.5 * dx * dx / visc if visc > 0 else math.inf
    u = u0
    yield u
    t = torch.zeros(u.shape[0], device=u.device, dtype=torch.float64)
    for ts in t_save[1:]:
        tol = 1e-12 * max(1.0, float(ts))
        while True:
            rem = float(ts) - t
            if not bool((rem > tol).any()):
                break
            umax = u.abs().amax(-1).double()
            dt_cfl = cfl * torch.minimum(dx / umax, torch.full_like(umax, dt_visc))
            dt = torch.minimum(dt_cfl, rem).clamp_min(0.0) * (rem > tol)
            dtc = dt.to(u.dtype)[:, None]
            u_half = u + 0.5 * dtc * _rhs(u, visc, dx)
            u = u + dtc * _rhs(u_half, visc, dx)
            t = t + dt
        t = torch.full_like(t, float(ts))
        yield u


class Burgers1D(PDEGenerator):
    """``burgers1d``: ``tensor [N, T, X]``, attribute ``Nu``; PDEBench's ``init_multi`` initial data."""

    name = "burgers1d"
    defaults: ClassVar[dict[str, Any]] = dict(nu=0.01, t_end=2.0, dt_save=0.01, cfl=0.25, x_left=0.0, x_right=1.0)
    rules: ClassVar[dict[str, Rule]] = dict(nu=nonnegative, t_end=positive, dt_save=positive, cfl=courant, x_left=finite, x_right=finite)

    def min_steps(self, res, p):  # the viscous bound dt <= cfl·dx²/(2ν/π); the CFL bound depends on the data
        dx = (p["x_right"] - p["x_left"]) / res
        return p["t_end"] * 2 * p["nu"] / math.pi / (p["cfl"] * dx * dx)

    def plan(self, res: int, **p) -> FilePlan:
        x, _ = cell_centers(res, p)
        t = save_times(p["t_end"], p["dt_save"])
        attrs = {
            "Nu": float(p["nu"]),
            "cfl": float(p["cfl"]),
            "dt_save": float(p["dt_save"]),
            "t_end": float(p["t_end"]),
            "scheme": "FV MUSCL-MC, Rusanov-type flux + central viscous flux (nu/pi), 2-stage predictor-corrector (PDEBench)",
        }
        return FilePlan(["tensor"], len(t), (res,), {"x": x, "t": t}, attrs)

    def simulate(self, b, res, gen, device, dtype, **p):
        x_np, dx = cell_centers(res, p)
        x = torch.as_tensor(x_np, device=device, dtype=torch.float64)
        u0 = init_multi(x, b, gen).to(dtype)
        frames = burgers_fv(u0, p["nu"], dx, save_times(p["t_end"], p["dt_save"]), p["cfl"])
        return {}, ({"tensor": u} for u in frames)
