"""2D incompressible Navier–Stokes in vorticity form, pseudo-spectral, periodic: FNO-style forced
turbulence and Kolmogorov flow.

    ∂t ω + u·∇ω = ν Δω − α ω + f,   u = (∂y ψ, −∂x ψ),   −Δψ = ω

Scheme as the FNO data generator (Li et al., "Fourier Neural Operator for Parametric PDEs",
arXiv 2010.08895, ``ns_2d.py``): Fourier pseudo-spectral on ``res × res``, 2/3-rule dealiasing of
the advection term, Crank–Nicolson for the linear terms (viscosity, drag) and Heun (RK2) for the
advection and forcing. Initial vorticity: the FNO Gaussian random field with covariance
``τ^{2α−2}(4π²|k|² + τ²)^{−α}`` (α = 2.5, τ = 7), dealiased. The velocity comes from the stream
function, so it is divergence-free to round-off, and without forcing the energy decays as
dE/dt = −2ν Z − 2αE (Z the enstrophy): a single Fourier shell decays exactly as exp(−2ν|k|²t).

Forcing: ``"fno"`` f = 0.1(sin 2π(x+y) + cos 2π(x+y)) on [0, 1]² (ν = 1e-3 in FNO);
``"kolmogorov"`` f = −k_f cos(k_f y) (the vorticity of the body force sin(k_f y) x̂) on [0, 2π]² with
linear drag α = 0.1 (Kochkov et al. 2021 setup); ``"none"`` for decaying turbulence.
PDEBench's own incompressible-NS set (PhiFlow, velocity + smoke) is a different generator; this one
writes the single-file layout with the vorticity as ``tensor [N, T, X, Y]``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch

from sciformer.data.generators.common import FilePlan, PDEGenerator, Rule, choice, courant, nonnegative, optional, positive, randn64, save_times, whole

__all__ = ["NavierStokes2D", "grf_vorticity", "ns_energy", "ns_enstrophy", "ns_vorticity_solve", "spectral_grid", "velocity_from_vorticity"]


def spectral_grid(res: int, length: float, device, dtype):
    """Angular wavenumbers for ``rfft2`` over [X, Y]: ``kx [res, 1]``, ``ky [1, res//2+1]``, ``|k|²``,
    and the 2/3-rule mask (integer wavenumbers ≤ res/3)."""
    n = torch.fft.fftfreq(res, 1.0 / res, device=device, dtype=dtype)
    m = torch.fft.rfftfreq(res, 1.0 / res, device=device, dtype=dtype)
    kx, ky = (2 * math.pi / length) * n[:, None], (2 * math.pi / length) * m[None, :]
    k2 = kx * kx + ky * ky
    dealias = (n.abs()[:, None] <= res / 3) & (m[None, :] <= res / 3)
    return kx, ky, k2, dealias


def velocity_from_vorticity(w: torch.Tensor, length: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, v)``, each ``[..., X, Y]``, from vorticity ``w [..., X, Y]`` via ψ̂ = ω̂/|k|²."""
    res = w.shape[-1]
    real = w.dtype if w.dtype in (torch.float32, torch.float64) else torch.float32
    kx, ky, k2, _ = spectral_grid(res, length, w.device, real)
    # First derivatives of the Nyquist modes are not real-representable: drop them (standard practice).
    kx = torch.where(kx.abs() >= math.pi * res / length, 0.0, kx)
    ky = torch.where(ky.abs() >= math.pi * res / length, 0.0, ky)
    w_h = torch.fft.rfft2(w)
    psi_h = w_h / torch.where(k2 == 0, 1.0, k2)
    psi_h = torch.where(k2 == 0, 0.0, psi_h)
    u = torch.fft.irfft2(1j * ky * psi_h, s=w.shape[-2:])
    v = torch.fft.irfft2(-1j * kx * psi_h, s=w.shape[-2:])
    return u, v


def ns_energy(w: torch.Tensor, length: float = 1.0) -> torch.Tensor:
    """Kinetic energy per unit area ½⟨u² + v²⟩ of vorticity ``w [..., X, Y]`` → ``[...]``."""
    u, v = velocity_from_vorticity(w, length)
    return 0.5 * (u * u + v * v).mean(dim=(-2, -1))


def ns_enstrophy(w: torch.Tensor) -> torch.Tensor:
    """Enstrophy per unit area ½⟨ω²⟩ → ``[...]``."""
    return 0.5 * (w * w).mean(dim=(-2, -1))


def grf_vorticity(b: int, res: int, gen: torch.Generator, device, dtype, alpha: float = 2.5, tau: float = 7.0) -> torch.Tensor:
    """FNO's periodic Gaussian random field ``[b, res, res]`` (zero mean), 2/3-dealiased; drawn and
    transformed in float64, returned in ``dtype``."""
    n = torch.fft.fftfreq(res, 1.0 / res, device=device, dtype=torch.float64)
    k2 = n[:, None] ** 2 + n[None, :] ** 2
    sigma = tau ** (0.5 * (2 * alpha - 2))
    sqrt_eig = res * res * math.sqrt(2.0) * sigma * (4 * math.pi**2 * k2 + tau**2) ** (-alpha / 2)
    sqrt_eig[0, 0] = 0.0
    sqrt_eig = sqrt_eig * ((n.abs()[:, None] <= res / 3) & (n.abs()[None, :] <= res / 3))
    noise = torch.complex(randn64(gen, b, res, res, device=device), randn64(gen, b, res, res, device=device))
    return torch.fft.ifft2(sqrt_eig * noise).real.to(dtype)


def ns_vorticity_solve(
    w0: torch.Tensor,
    t_save: np.ndarray,
    *,
    nu: float,
    length: float = 1.0,
    forcing: torch.Tensor | None = None,
    drag: float = 0.0,
    cfl: float = 0.5,
    dt_max: float | None = None,
) -> Iterator[torch.Tensor]:
    """Yield vorticity ``[B, X, Y]`` at each time of ``t_save`` (``t_save[0]`` = 0 → ``w0``).

    ``forcing [X, Y]`` (or None). The step is ``min(dt_max, cfl·dx/max|u|)``, set once per save
    interval from the batch's current velocity and shortened to land on the save time.
    """
    _b, res, _ = w0.shape
    kx, ky, k2, dealias = spectral_grid(res, length, w0.device, w0.dtype)
    k2_safe = torch.where(k2 == 0, 1.0, k2)
    lin = -nu * k2 - drag  # linear operator (diagonal in Fourier space)
    f_h = torch.fft.rfft2(forcing) if forcing is not None else 0.0
    s = (res, res)

    def advection(w_h: torch.Tensor) -> torch.Tensor:
        psi_h = torch.where(k2 == 0, 0.0, w_h / k2_safe)
        u = torch.fft.irfft2(1j * ky * psi_h, s=s)
        v = torch.fft.irfft2(-1j * kx * psi_h, s=s)
        wx = torch.fft.irfft2(1j * kx * w_h, s=s)
        wy = torch.fft.irfft2(1j * ky * w_h, s=s)
        return -torch.fft.rfft2(u * wx + v * wy) * dealias

    w_h = torch.fft.rfft2(w0)
    yield w0
    dx = length / res
    for t0, t1 in itertools.pairwise(t_save):
        u, v = velocity_from_vorticity(torch.fft.irfft2(w_h, s=s), length)
        umax = float(torch.sqrt(u * u + v * v).max())
        dt = min(dt_max or (t1 - t0), cfl * dx / max(umax, 1e-12))
        m = max(1, math.ceil((t1 - t0) / dt - 1e-9))
        dt = (t1 - t0) / m
        plus, minus = 1 + 0.5 * dt * lin, 1 - 0.5 * dt * lin
        for _ in range(m):
            f1 = advection(w_h) + f_h
            w_tilde = (plus * w_h + dt * f1) / minus  # Heun predictor with CN linear part
            f2 = advection(w_tilde) + f_h
            w_h = (plus * w_h + 0.5 * dt * (f1 + f2)) / minus
        yield torch.fft.irfft2(w_h, s=s)


class NavierStokes2D(PDEGenerator):
    """``ns2d``: vorticity ``tensor [N, T, X, Y]``; attributes ``nu``, ``forcing``, ``drag``, ``length``."""

    name = "ns2d"
    defaults: ClassVar[dict[str, Any]] = dict(
        nu=1e-3, forcing="fno", t_end=20.0, dt_save=1.0, drag=None, length=None, kf=4, cfl=0.5, dt_max=0.01, ic_alpha=2.5, ic_tau=7.0
    )
    rules: ClassVar[dict[str, Rule]] = dict(
        nu=positive,
        forcing=choice("fno", "kolmogorov", "none"),
        t_end=positive,
        dt_save=positive,
        drag=optional(nonnegative),
        length=optional(positive),
        kf=whole(1),
        cfl=courant,
        dt_max=optional(positive),
        ic_alpha=positive,
        ic_tau=positive,
    )
    # dt_max: the CFL bound alone allows dt ≈ dt_save while the flow is still weak (|u| ~ 0.05 at
    # t = 0); 0.01 keeps Heun's time error small at every stage of the spin-up.

    def min_steps(self, res, p):
        return p["t_end"] / p["dt_max"] if p["dt_max"] else 0.0

    @staticmethod
    def _resolve(p):
        kol = p["forcing"] == "kolmogorov"
        length = p["length"] if p["length"] is not None else (2 * math.pi if kol else 1.0)
        drag = p["drag"] if p["drag"] is not None else (0.1 if kol else 0.0)
        return length, drag

    def plan(self, res: int, **p) -> FilePlan:
        length, drag = self._resolve(p)
        x = np.arange(res) * (length / res)  # collocation points of the periodic grid
        t = save_times(p["t_end"], p["dt_save"])
        attrs = {
            "nu": float(p["nu"]),
            "forcing": p["forcing"],
            "drag": float(drag),
            "length": float(length),
            "kf": int(p["kf"]),
            "dt_save": float(p["dt_save"]),
            "t_end": float(p["t_end"]),
            "dt_max": float(p["dt_max"] or p["dt_save"]),
            "cfl": float(p["cfl"]),
            "field": "vorticity",
            "scheme": "pseudo-spectral vorticity, 2/3 dealiasing, Crank-Nicolson + Heun (FNO)",
        }
        return FilePlan(["tensor"], len(t), (res, res), {"x": x, "y": x.copy(), "t": t}, attrs)

    def forcing_field(self, res: int, length: float, kind: str, kf: int, device, dtype):
        x = torch.arange(res, device=device, dtype=dtype) * (length / res)
        xx, yy = torch.meshgrid(x, x, indexing="ij")
        if kind == "fno":
            return 0.1 * (torch.sin(2 * math.pi * (xx + yy) / length) + torch.cos(2 * math.pi * (xx + yy) / length))
        if kind == "kolmogorov":
            return -kf * torch.cos(kf * yy * (2 * math.pi / length))
        return None

    def simulate(self, b, res, gen, device, dtype, **p):
        length, drag = self._resolve(p)
        w0 = grf_vorticity(b, res, gen, device, dtype, p["ic_alpha"], p["ic_tau"])
        f = self.forcing_field(res, length, p["forcing"], p["kf"], device, dtype)
        frames = ns_vorticity_solve(w0, save_times(p["t_end"], p["dt_save"]), nu=p["nu"], length=length, forcing=f, drag=drag, cfl=p["cfl"], dt_max=p["dt_max"])
        return {}, ({"tensor": w} for w in frames)
