"""PDE generators: the numerical properties each scheme must have (convergence order, conservation,
discrete-equation residual, divergence-free velocity and viscous energy decay), seeding, and that a
generated file reads back through the reader with identical arrays."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from sciformer.data.generators import GENERATORS, generate, writer
from sciformer.data.generators.advection import advection_exact_cell_average, advection_fv
from sciformer.data.generators.burgers import burgers_fv
from sciformer.data.generators.common import init_multi
from sciformer.data.generators.darcy import darcy_coefficient, darcy_matrix, darcy_operator, darcy_solve
from sciformer.data.generators.diffusion_reaction import fhn_solve, neumann_laplacian
from sciformer.data.generators.navier_stokes import grf_vorticity, ns_energy, ns_enstrophy, ns_vorticity_solve, velocity_from_vorticity
from sciformer.data.pde import open_pdebench
from sciformer.errors import ConfigError, DataError, StorageError

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
    d = lambda f, kk: torch.fft.ifft2(1j * kk * torch.fft.fft2(f)).real
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
    with pytest.raises(ConfigError, match="single-file layout only"):
        generate("darcy2d", tmp_path / "d.h5", 2, 8, layout="group", progress=False)


def test_generate_rejects_unknown_names_and_parameters(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'burgers1d'"):
        generate("burger1d", tmp_path / "x.h5", 2, 16)
    with pytest.raises(ConfigError, match=r"has no parameter.*'viscosity'"):
        generate("burgers1d", tmp_path / "x.h5", 2, 16, viscosity=0.1)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ PDEBench's initial conditions
def test_init_multi_has_pdebench_offsets_and_doubled_wavenumbers():
    """PDEBench's init_multi: every mode not drawn adds a constant A sin φ, a mode drawn twice oscillates at
    twice its wavenumber, and at most num_k modes oscillate. x spans exactly one period (x[-1] − x[0] = 1)."""
    n_cells = 64
    x = torch.arange(n_cells + 1, dtype=F64) / n_cells
    u = init_multi(x, 400, torch.Generator().manual_seed(0), p_abs=0.0, p_window=0.0)[:, :-1]
    power = torch.fft.rfft(u).abs() / n_cells  # [400, 33]
    oscillating = (power[:, 1:] > 1e-9).sum(1)
    assert oscillating.max() <= 2 and oscillating.min() >= 1
    assert (power[:, 0] > 1e-9).float().mean() > 0.95  # the two modes not drawn: a constant offset
    doubled = (power[:, 6] > 1e-9) | (power[:, 8] > 1e-9)  # only 2n with n = 3, 4 drawn twice reaches 6, 8
    assert 0.06 < doubled.float().mean() < 0.2  # probability 2/16
    assert (power[:, 9:] < 1e-9).all()


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_float32_and_float64_files_hold_the_same_samples(tmp_path, name):
    kw = dict(SMALL[name])
    res = kw.pop("res")
    files = [generate(name, tmp_path / f"{dt}.h5", 2, res, seed=3, dtype=dt, progress=False, **kw) for dt in ("float32", "float64")]
    with h5py.File(files[0]) as a, h5py.File(files[1]) as b:
        for key in ("tensor", "u", "v", "nu"):
            if key in a:
                np.testing.assert_allclose(a[key][:, :1], b[key][:, :1], rtol=1e-6, atol=1e-6)  # the initial state
                np.testing.assert_allclose(a[key][:], b[key][:], rtol=1e-4, atol=1e-4)  # and a short simulation


# ------------------------------------------------------------------ parameter checks
@pytest.mark.parametrize("name, args, message", [
    ("burgers1d", dict(nu=-1), "burgers1d: nu must be a finite number >= 0, got -1"),
    ("burgers1d", dict(nu=float("nan")), "nu must be a finite number >= 0"),
    ("burgers1d", dict(cfl=0), r"cfl must be a number in \(0, 1\]"),
    ("burgers1d", dict(t_end=0.01, dt_save=0.1), "dt_save must be <= t_end"),
    ("burgers1d", dict(nu=1e4, res=4096), "needs at least .* time steps per sample"),
    ("advection1d", dict(ic="cosine"), "ic must be one of 'random', 'sine'"),
    ("advection1d", dict(x_left=1.0, x_right=0.0), "x_left must be < x_right"),
    ("ns2d", dict(nu=0), "ns2d: nu must be a finite number > 0"),
    ("ns2d", dict(forcing="wind"), "forcing must be one of"),
    ("ns2d", dict(kf=2.5), "kf must be an integer >= 1"),
    ("ns2d", dict(dt_max=-0.1), "dt_max must be a finite number > 0"),
    ("darcy2d", dict(a_low=0), "a_low must be a finite number > 0"),
    ("darcy2d", dict(n_gauss=0), "n_gauss must be an integer >= 1"),
    ("diffreact2d", dict(du=-1e-3), "du must be a finite number >= 0"),
    ("diffreact2d", dict(dt_save="0.1"), "dt_save must be a finite number > 0"),
    ("burgers1d", dict(n=0), r"n \(samples\) must be an integer >= 1, got 0"),
    ("burgers1d", dict(res=1), r"res \(cells per axis\) must be an integer >= 2, got 1"),
    ("burgers1d", dict(n=True), "must be an integer >= 1, got True"),
    ("burgers1d", dict(seed=-1), "seed must be an integer >= 0"),
    ("burgers1d", dict(batch_size=0), "batch_size must be an integer >= 1"),
    ("burgers1d", dict(compression="zstd"), "compression must be one of 'gzip', 'none'"),
    ("burgers1d", dict(dtype="float16"), "dtype must be 'float32' or 'float64'"),
])
def test_every_parameter_is_range_checked_before_any_work(tmp_path, name, args, message):
    args = {"n": 2, "res": 16, **args}
    with pytest.raises(ConfigError, match=message) as info:
        generate(name, tmp_path / "x.h5", progress=False, **args)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


def test_existing_output_is_never_overwritten(tmp_path):
    out = tmp_path / "mine.h5"
    out.write_bytes(b"user data")
    with pytest.raises(StorageError, match="already exists; generate never overwrites"):
        generate("burgers1d", out, 2, 16, progress=False)
    assert out.read_bytes() == b"user data"


# ------------------------------------------------------------------ chunked, compressed, resumable
def _contents(path) -> dict:
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
        out["attrs"] = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()}
        out["filters"] = {k: (f[k].compression, f[k].chunks) for k in f if isinstance(f[k], h5py.Dataset)}
    return out


@pytest.mark.parametrize("layout", ["single", "group"])
def test_interrupted_generation_resumes_to_the_uninterrupted_file(tmp_path, monkeypatch, layout):
    kw = dict(n=7, res=16, seed=5, batch_size=2, layout=layout, t_end=0.1, progress=False)
    whole = generate("diffreact2d", tmp_path / "whole.h5", **kw)
    real, calls = writer._write_batch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "_write_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate("diffreact2d", tmp_path / "cut.h5", **kw)
    partial = tmp_path / "cut.h5.partial"
    assert not (tmp_path / "cut.h5").exists()
    with h5py.File(partial) as f:
        assert f.attrs["batches_done"] == 2
    monkeypatch.setattr(writer, "_write_batch", real)
    with pytest.raises(DataError, match="unfinished generation with other settings"):
        generate("diffreact2d", tmp_path / "cut.h5", **{**kw, "seed": 6})
    resumed = generate("diffreact2d", tmp_path / "cut.h5", **kw)
    assert not partial.exists()
    a, b = _contents(whole), _contents(resumed)
    assert a.keys() == b.keys() and a["attrs"] == b["attrs"] and "batches_done" not in a["attrs"]
    for key in a:
        if key != "attrs":
            np.testing.assert_array_equal(a[key], b[key])
    assert whole.read_bytes() == resumed.read_bytes()  # byte for byte the same file
    if layout == "single":
        assert a["filters"]["u"][0] == "gzip" and a["filters"]["u"][1][0] == 1  # one sample per chunk


def test_interruption_before_the_first_batch_leaves_no_file(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_write_batch", broken)
    with pytest.raises(KeyboardInterrupt):
        generate("burgers1d", tmp_path / "b.h5", 2, 16, progress=False)
    assert not list(tmp_path.iterdir())

