"""PDE generators: the numerical properties each scheme must have (convergence order, conservation,
discrete-equation residual, divergence-free velocity and viscous energy decay), seeding, and that a
generated file reads back through the reader with identical arrays."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from sciformer.data.generators import GENERATORS, generate
from sciformer.data.generators.advection import advection_exact_cell_average, advection_fv
from sciformer.data.generators.burgers import burgers_fv
from sciformer.data.generators.common import init_multi
from sciformer.data.generators.darcy import darcy_coefficient, darcy_matrix, darcy_operator, darcy_solve
from sciformer.data.generators.diffusion_reaction import fhn_solve, neumann_laplacian
from sciformer.data.generators.navier_stokes import (grf_vorticity, ns_energy, ns_enstrophy,
                                                     ns_vorticity_solve, velocity_from_vorticity)
from sciformer.data.pde import open_pdebench
from sciformer.errors import ConfigError, DataError

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: a second OpenMP/MKL thread only adds barrier stalls (seconds per
    test on a busy 2-core CI box). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# Small but non-trivial settings per generator, for round trips.
SMALL = {
    "advection1d": dict(res=64, t_end=0.2, beta=0.4),
    "burgers1d": dict(res=64, t_end=0.1, nu=0.1),
    "darcy2d": dict(res=16, beta=2.0),
    "ns2d": dict(res=32, t_end=0.5, dt_save=0.25, dt_max=0.05),
    "diffreact2d": dict(res=16, t_end=0.2),
}


def _cells(nx: int) -> tuple[torch.Tensor, float]:
    dx = 1.0 / nx
    return (torch.arange(nx, dtype=F64) + 0.5) * dx, dx


@pytest.mark.parametrize("beta", [1.0, -0.7])
def test_advection_converges_at_second_order(beta):
    """MUSCL-MC + RK2 predictor-corrector: L1 error vs the exact solution falls as dx² (the limiter's
    clipping at the two extrema costs only O(dx³) in L1)."""
    errs = []
    for nx in (64, 128, 256, 512):
        x, dx = _cells(nx)
        u0 = advection_exact_cell_average(x, dx, 0.0, beta)[None]
        *_, u = advection_fv(u0, beta, dx, np.array([0.0, 0.5, 1.0]))
        errs.append((u[0] - advection_exact_cell_average(x, dx, 1.0, beta)).abs().mean().item())
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(orders > 1.8), orders
    assert errs[-1] < 3e-4


def test_advection_generated_sine_file_matches_exact_solution(tmp_path):
    p = generate("advection1d", tmp_path / "adv.h5", 2, 256, ic="sine", beta=0.4, t_end=1.0, dt_save=0.25,
                 progress=False)
    with h5py.File(p) as f:
        u, x, t = f["tensor"][:], f["x-coordinate"][:], f["t-coordinate"][:]
        assert f.attrs["beta"] == 0.4
    exact = np.sin(2 * np.pi * (x[None, :] - 0.4 * t[:, None]))
    assert u.shape == (2, 5, 256)
    err = np.abs(u[0] - exact)
    assert err.mean() < 5e-4 and err.max() < 5e-3  # max: the limiter clips the extrema


def test_burgers_conserves_mean_to_roundoff():
    x, dx = _cells(128)
    g = torch.Generator().manual_seed(3)
    u0 = init_multi(x, 6, g) + 0.3  # non-zero mean, shocks form at nu = 0.01
    frames = list(burgers_fv(u0, 0.01, dx, np.linspace(0, 0.3, 7)))
    assert len(frames) == 7
    m0 = u0.mean(-1)
    drift = max((u.mean(-1) - m0).abs().max().item() for u in frames)
    assert drift < 1e-13
    assert (frames[-1] - u0).abs().max() > 0.05  # it did evolve
    assert frames[-1].abs().max() <= u0.abs().max() + 1e-12  # no new extrema (max principle, TVD)


def test_darcy_solution_satisfies_discrete_equation():
    g = torch.Generator().manual_seed(0)
    a = darcy_coefficient(6, 32, g, "cpu", F64)
    assert set(torch.unique(a).tolist()) == {0.1, 1.0}
    u = darcy_solve(a, 3.0, 1 / 32)
    # residual with an independent stencil implementation of the same discretisation
    res = darcy_operator(a, u, 1 / 32) - 3.0
    assert res.abs().max().item() < 1e-9 * 3.0
    mat = darcy_matrix(a.numpy(), 1 / 32)
    assert abs(mat - mat.T).max() == 0  # symmetric (SPD) operator
    assert (u > 0).all()  # positive forcing, zero boundary: maximum principle


def test_darcy_generated_file_satisfies_equation_in_float32(tmp_path):
    p = generate("darcy2d", tmp_path / "d.h5", 4, 24, beta=2.0, progress=False)
    ds = open_pdebench(p, "all")
    a = torch.stack([ds[i][0][0] for i in range(4)]).double()
    u = torch.stack([ds[i][1][0] for i in range(4)]).double()
    res = darcy_operator(a, u, 1 / 24) - 2.0
    assert res.abs().max().item() < 1e-3 * 2.0 * (24**2 * u.abs().max().item())  # float32 rounding of u


def test_ns_velocity_divergence_free_and_curl_is_vorticity(tmp_path):
    p = generate("ns2d", tmp_path / "ns.h5", 3, 32, t_end=1.0, dt_save=0.5, dt_max=0.05, progress=False)
    with h5py.File(p) as f:
        w = torch.from_numpy(f["tensor"][:]).double()  # [N, T, X, Y]
    u, v = velocity_from_vorticity(w)
    k = 2 * math.pi * torch.fft.fftfreq(32, 1 / 32, dtype=F64)
    k[16] = 0.0  # odd derivatives of the Nyquist mode are dropped (as in velocity_from_vorticity)
    kx, ky = k[:, None], k[None, :]
    d = lambda f, kk: torch.fft.ifft2(1j * kk * torch.fft.fft2(f)).real  # noqa: E731
    div = d(u, kx) + d(v, ky)
    curl = d(v, kx) - d(u, ky)
    scale = d(u, kx).abs().max()
    assert div.abs().max() < 1e-12 * scale
    torch.testing.assert_close(curl, w - w.mean(dim=(-2, -1), keepdim=True), rtol=0, atol=1e-6)


def test_ns_single_mode_decays_at_viscous_rate():
    """A single Fourier shell is an exact solution without forcing: E(t) = E0·exp(−2ν|k|²t)."""
    res, nu, m = 32, 0.01, 2
    x = torch.arange(res, dtype=F64) / res
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    w0 = (torch.cos(2 * math.pi * m * xx) * torch.cos(2 * math.pi * m * yy))[None]
    t = np.linspace(0, 0.2, 5)
    e = torch.stack([ns_energy(w)[0] for w in ns_vorticity_solve(w0, t, nu=nu, dt_max=0.005)])
    k2 = 2 * (2 * math.pi * m) ** 2
    np.testing.assert_allclose((e / e[0]).numpy(), np.exp(-2 * nu * k2 * t), rtol=1e-4)


def test_ns_energy_budget_without_forcing():
    """Turbulent field, no forcing: advection conserves energy, so E(T) − E(0) = −2ν ∫ Z dt."""
    g = torch.Generator().manual_seed(1)
    w0 = grf_vorticity(3, 64, g, "cpu", F64)
    t = np.linspace(0, 1.0, 41)
    frames = list(ns_vorticity_solve(w0, t, nu=1e-3))
    e = torch.stack([ns_energy(w) for w in frames])
    z = torch.stack([ns_enstrophy(w) for w in frames])
    loss = e[0] - e[-1]
    predicted = 2e-3 * torch.trapezoid(z, torch.as_tensor(t), dim=0)
    assert (loss > 0.05 * e[0]).all()  # a real decay, not a no-op
    torch.testing.assert_close(loss, predicted, rtol=2e-3, atol=0)
    # the nonlinear term changes the field a lot while the budget holds
    assert ((frames[-1] - frames[0]).abs().max(-1).values.max(-1).values > 0.1 * w0.abs().amax((-2, -1))).all()


def test_diffreact_uniform_state_follows_the_reaction_ode():
    from scipy.integrate import solve_ivp

    z0 = torch.tensor([0.8, -0.3], dtype=F64)[None, :, None, None].expand(1, 2, 8, 8).clone()
    t = np.linspace(0, 2, 11)
    *_, z = fhn_solve(z0, t, 2 / 8, 1e-3, 5e-3, 5e-3)
    ode = solve_ivp(lambda _, y: [y[0] - y[0] ** 3 - 5e-3 - y[1], y[0] - y[1]], (0, 2), [0.8, -0.3],
                    rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(z[0, :, 3, 3].numpy(), ode.y[:, -1], rtol=1e-7)
    assert (z - z[..., :1, :1]).abs().max() < 1e-12  # stays uniform: no-flux walls add nothing


def test_neumann_laplacian_conserves_mass():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 2, 16, 16, generator=g, dtype=F64)
    assert neumann_laplacian(z, 0.1).sum(dim=(-2, -1)).abs().max() < 1e-9


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generated_file_reads_back_identically(tmp_path, name):
    kw = dict(SMALL[name])
    res = kw.pop("res")
    p = generate(name, tmp_path / f"{name}.h5", 5, res, seed=7, batch_size=3, progress=False, **kw)
    assert not (tmp_path / f"{name}.h5.partial").exists()
    ds = open_pdebench(p, "all", mode="trajectory")
    got = torch.cat(list(ds.iter_trajectories(chunk_size=2))).numpy()  # [N, T, C, *grid]
    with h5py.File(p) as f:
        assert f.attrs["generator"] == name and f.attrs["seed"] == 7
        if name == "darcy2d":
            raw = np.stack([f["nu"][:][:, None], f["tensor"][:]], axis=1)
        else:
            fields = ["u", "v"] if name == "diffreact2d" else ["tensor"]
            raw = np.stack([f[k][:] for k in fields], axis=2)
        x = f["x-coordinate"][:]
    np.testing.assert_array_equal(got, raw)
    assert np.isfinite(raw).all() and raw.std() > 0
    np.testing.assert_array_equal(ds.grid["x"].numpy(), x)
    # same seed and batch size → same file; another seed → different data
    p2 = generate(name, tmp_path / "again.h5", 5, res, seed=7, batch_size=3, progress=False, **kw)
    p3 = generate(name, tmp_path / "other.h5", 5, res, seed=8, batch_size=3, progress=False, **kw)
    with h5py.File(p) as a, h5py.File(p2) as b, h5py.File(p3) as c:
        np.testing.assert_array_equal(a["tensor" if "tensor" in a else "u"][:], b["tensor" if "tensor" in b else "u"][:])
        assert not np.array_equal(a["tensor" if "tensor" in a else "u"][:], c["tensor" if "tensor" in c else "u"][:])


def test_group_layout_generation_reads_back(tmp_path):
    p = generate("diffreact2d", tmp_path / "dr.h5", 4, 16, t_end=0.1, layout="group", progress=False)
    ds = open_pdebench(p, "all", mode="trajectory")
    assert ds.layout == "group" and ds.channels == ["u", "v"] and ds[0].shape == (3, 2, 16, 16)
    with h5py.File(p) as f:
        np.testing.assert_array_equal(ds[2].numpy(), np.moveaxis(f["0002/data"][:], -1, 1))
    with pytest.raises(DataError, match="single-file layout only"):
        generate("darcy2d", tmp_path / "d.h5", 2, 8, layout="group", progress=False)
    with pytest.raises(DataError, match=r"need n >= 1 and res >= 2, got n=0"):  # the CLI prints DataErrors in one line
        generate("burgers1d", tmp_path / "b.h5", 0, 16, progress=False)


def test_generate_rejects_unknown_names_and_parameters(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'burgers1d'"):
        generate("burger1d", tmp_path / "x.h5", 2, 16)
    with pytest.raises(ConfigError, match="has no parameter.*'viscosity'"):
        generate("burgers1d", tmp_path / "x.h5", 2, 16, viscosity=0.1)
    assert not list(tmp_path.iterdir())
