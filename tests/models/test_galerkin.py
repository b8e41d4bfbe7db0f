"""Galerkin Transformer: the two softmax-free kernels against brute force, the per-head layer norms, the
truncated spectral multiply, the operator-model contract, resolution independence and a tiny learning run."""

import copy
import math
from pathlib import Path

import pytest
import torch
import yaml

from sciformer.config import recipe_from_dict
from sciformer.engine.checkpoint import load_model, save_checkpoint
from sciformer.errors import ConfigError
from sciformer.models.galerkin import GalerkinTransformer
from sciformer.nn.embedding import grid_coordinates
from sciformer.nn.linear_attention import SoftmaxFreeAttention, fourier_attention, galerkin_attention
from sciformer.nn.spectral import SpectralConv, kept_modes, spectral_multiply
from sciformer.registry import build_model

REPO = Path(__file__).resolve().parents[2]
TINY = dict(d_model=16, n_heads=2, n_layers=2, d_ff=32, modes=4, freq_dim=8, n_regressor_layers=1)


def tiny(n_dims=2, in_channels=2, out_channels=3, **kwargs):
    return build_model("galerkin", {**TINY, **kwargs}, in_channels=in_channels, out_channels=out_channels, n_dims=n_dims)


# ------------------------------------------------------------------------------------------- kernels
def brute_force(q, k, v):
    """out[b, h, i] = Σ_j (q_i · k_j) v_j / n, one point pair at a time."""
    B, H, n_q, _ = q.shape
    n = k.shape[2]
    out = torch.zeros(B, H, n_q, v.shape[-1], dtype=q.dtype)
    for i in range(n_q):
        for j in range(n):
            out[:, :, i] += (q[:, :, i] * k[:, :, j]).sum(-1, keepdim=True) * v[:, :, j]
    return out / n


@pytest.mark.parametrize("kernel", [galerkin_attention, fourier_attention])
def test_kernels_match_the_double_sum(kernel):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64)  # n_q = 5 queries
    k = torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64)  # n = 7 keys, E = 4
    v = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)  # D = 6
    out = kernel(q, k, v)
    assert out.shape == (2, 3, 5, 6)
    torch.testing.assert_close(out, brute_force(q, k, v), rtol=1e-12, atol=1e-12)


def test_galerkin_and_fourier_kernels_agree_by_associativity():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 9, 3, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(galerkin_attention(q, k, v), fourier_attention(q, k, v))


def test_kernel_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected q \[B, H, n_q, E\]"):
        galerkin_attention(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 5), torch.zeros(1, 2, 3, 4))


def rescaled(module, name, factor):
    """A copy of ``module`` whose ``name`` projection is multiplied by ``factor`` and shifted by a constant."""
    module = copy.deepcopy(module)
    layer = getattr(module, name)
    with torch.no_grad():
        layer.weight *= factor
        layer.bias.mul_(factor).add_(0.3)  # a per-point constant shift: a layer norm removes it too
    return module


@pytest.mark.parametrize(
    "attention, normalised, raw",
    [("galerkin", ("key", "value"), "query"), ("fourier", ("query", "key"), "value")],
)
def test_layer_norm_acts_on_the_papers_two_inputs(attention, normalised, raw):
    # A layer-normalised projection can be rescaled and shifted without changing the output; the raw one cannot.
    torch.manual_seed(0)
    attn = SoftmaxFreeAttention(8, 2, 1, attention, eps=1e-12, xavier_init=1.0).double()  # eps ≪ var: exact invariance
    x = torch.randn(3, 10, 8, dtype=torch.float64)
    pos = torch.linspace(0, 1, 10, dtype=torch.float64).view(1, 10, 1)
    reference = attn(x, pos)
    for name in normalised:
        torch.testing.assert_close(rescaled(attn, name, 5.0)(x, pos), reference)
    assert not torch.allclose(rescaled(attn, raw, 5.0)(x, pos), reference)


def test_coordinates_are_concatenated_in_every_head_and_points_are_permutation_equivariant():
    torch.manual_seed(0)
    attn = SoftmaxFreeAttention(d_model=8, n_heads=2, pos_dim=2, attention="galerkin").double()
    assert attn.out.in_features == 2 * (4 + 2)  # H (E + pos_dim)
    x = torch.randn(2, 12, 8, dtype=torch.float64)
    pos = torch.rand(2, 12, 2, dtype=torch.float64)
    perm = torch.randperm(12)
    torch.testing.assert_close(attn(x[:, perm], pos[:, perm]), attn(x, pos)[:, perm])
    # the coordinates matter: the same features at other positions give another output
    assert not torch.allclose(attn(x, pos.flip(1)), attn(x, pos))
    with pytest.raises(ValueError, match="expected pos of shape"):
        attn(x, None)


def test_galerkin_attention_is_a_quadrature_consistent_across_resolutions():
    # The 1/n makes Q (KᵀV)/n a Riemann sum: a smooth input sampled on 65 or 129 points gives the same
    # function (up to O(1/n)) on the shared points; without 1/n the outputs would differ by a factor ~2.
    torch.manual_seed(0)
    attn = SoftmaxFreeAttention(d_model=8, n_heads=2, pos_dim=1, attention="galerkin", xavier_init=1.0).double()
    lift = torch.nn.Linear(1, 8).double()

    def run(n):
        pos = torch.linspace(0, 1, n, dtype=torch.float64).view(1, n, 1)
        return attn(lift(torch.sin(2 * math.pi * pos)), pos)

    coarse, fine = run(65), run(129)[:, ::2]
    assert (coarse - fine).norm() / fine.norm() < 0.02


# ------------------------------------------------------------------------------------ spectral multiply
def test_kept_modes_clamps_to_the_grid():
    assert kept_modes((16, 16), (12, 12)) == (8, 9)
    assert kept_modes((64,), (12,)) == (12,)
    with pytest.raises(ValueError, match="do not fit the spectrum"):
        spectral_multiply(torch.zeros(1, 1, 8, 5, dtype=torch.complex64), torch.zeros(2, 1, 1, 6, 6, dtype=torch.complex64), (6, 5))


def test_identity_weights_keep_exactly_the_low_modes():
    n = 32
    x = torch.arange(n, dtype=torch.float64) / n
    conv1 = SpectralConv(1, 1, 4, n_dims=1).double()
    with torch.no_grad():
        conv1.weight.zero_()
        conv1.weight[..., 0] = 1.0  # W = 1 + 0i on every kept mode
    low, high = torch.cos(2 * math.pi * 3 * x), torch.sin(2 * math.pi * 7 * x)
    torch.testing.assert_close(conv1((low + high).view(1, 1, n)), low.view(1, 1, n))

    X, Y = torch.meshgrid(x, x, indexing="ij")
    conv2 = SpectralConv(1, 1, 4, n_dims=2).double()
    with torch.no_grad():
        conv2.weight.zero_()
        conv2.weight[..., 0] = 1.0  # both corners: positive and negative frequencies on axis 0
    low = torch.cos(2 * math.pi * (2 * X - 3 * Y)) + torch.cos(2 * math.pi * (3 * X + Y))
    high = torch.cos(2 * math.pi * (5 * X + Y)) + torch.cos(2 * math.pi * (X - 6 * Y))
    torch.testing.assert_close(conv2((low + high).view(1, 1, n, n)), low.view(1, 1, n, n))


@pytest.mark.parametrize("n", [16, 8])
def test_negative_frequency_corner_and_truncated_weights(n):
    # Weight i at frequency (-2, 3) only: cos θ, θ = 2π(-2x + 3y), has its stored half-spectrum coefficient
    # at (-2, 3), so the output is Re(i e^{iθ}) = -sin θ. The weights hold 6 modes; on an 8-grid only 4 fit
    # on axis 0 and frequency -2 must still be read from entry 6 - 2 = 4 of the negative block.
    x = torch.arange(n, dtype=torch.float64) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    theta = 2 * math.pi * (-2 * X + 3 * Y)
    conv = SpectralConv(1, 1, 6, n_dims=2).double()
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[1, 0, 0, 6 - 2, 3, 1] = 1.0  # block 1 = negative rows, imaginary part
    torch.testing.assert_close(conv(torch.cos(theta).view(1, 1, n, n)), -torch.sin(theta).view(1, 1, n, n))


def test_spectral_multiply_matches_a_loop_over_modes():
    g = torch.Generator().manual_seed(0)
    x_ft = torch.randn(2, 3, 10, 6, 2, generator=g, dtype=torch.float64)
    x_ft = torch.view_as_complex(x_ft)  # [B=2, C_in=3, 10, 6]: the rfft2 of a 10x10 grid
    w = torch.view_as_complex(torch.randn(2, 3, 4, 5, 5, 2, generator=g, dtype=torch.float64))  # C_out = 4
    modes = (4, 5)
    out = spectral_multiply(x_ft, w, modes)
    expected = torch.zeros(2, 4, 10, 6, dtype=torch.complex128)
    for k1 in range(-4, 4):
        for k2 in range(5):
            block, row = (1, 5 + k1) if k1 < 0 else (0, k1)
            expected[:, :, k1, k2] = x_ft[:, :, k1, k2] @ w[block, :, :, row, k2]
    torch.testing.assert_close(out, expected)


def test_spectral_conv_is_resolution_consistent():
    # orthonormal FFTs: a band-limited input gives the same output function at 16 and 32 points per axis
    torch.manual_seed(0)
    conv = SpectralConv(2, 3, 5, n_dims=2).double()

    def field(n):
        x = torch.arange(n, dtype=torch.float64) / n
        X, Y = torch.meshgrid(x, x, indexing="ij")
        return torch.stack([torch.sin(2 * math.pi * (X + 2 * Y)), torch.cos(2 * math.pi * (3 * X - Y))]).unsqueeze(0)

    torch.testing.assert_close(conv(field(32))[..., ::2, ::2], conv(field(16)))


# -------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("n_dims, grid", [(1, (24,)), (2, (12, 10))])
@pytest.mark.parametrize("attention, decoder", [("galerkin", "spectral"), ("fourier", "pointwise")])
def test_output_shape_finite_and_every_parameter_gets_a_gradient(n_dims, grid, attention, decoder):
    torch.manual_seed(0)
    model = tiny(n_dims, attention=attention, decoder=decoder).train()
    out = model(torch.randn(3, 2, *grid))
    assert out.shape == (3, 3, *grid)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"parameters without gradient: {dead}"


def test_three_dimensional_grids_are_refused_clearly():
    with pytest.raises(ConfigError, match="1D and 2D grids .* got n_dims=3"):
        tiny(n_dims=3)


def test_wrong_input_shape_names_what_was_expected():
    model = tiny(n_dims=2, in_channels=3)
    with pytest.raises(ValueError, match=r"expected u of shape \[B, C_in, \*grid\] with C_in=3 and 2 grid axes, got \(4, 3, 64\)"):
        model(torch.zeros(4, 3, 64))


def test_lead_time_and_params_are_ignored():
    torch.manual_seed(0)
    model = tiny().eval()
    u = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(u), model(u, t=torch.ones(2), params=torch.ones(2, 4)))


def test_same_weights_run_at_16_and_32_and_agree_on_a_smooth_input():
    torch.manual_seed(0)
    model = tiny(n_dims=2, in_channels=1, out_channels=1, zero_boundary=True).eval()

    def smooth(n, k=1):
        x = torch.linspace(0, 1, n)
        X, Y = torch.meshgrid(x, x, indexing="ij")
        return (torch.sin(k * math.pi * X) * torch.sin(math.pi * Y)).view(1, 1, n, n)

    def response(u):  # the input-dependent part of the output (at random init the biases dominate the rest)
        return model(u) - model(torch.zeros_like(u))

    with torch.no_grad():
        coarse, fine, other = response(smooth(16)), response(smooth(32)), response(smooth(16, k=3))
        assert model(smooth(16)).shape == (1, 1, 16, 16) and model(smooth(32)).shape == (1, 1, 32, 32)
        for out in (model(smooth(16)), model(smooth(32))):  # the Dirichlet option zeroes the boundary ring
            assert out[..., 0, :].abs().max() == 0 and out[..., :, -1].abs().max() == 0
    # both resolutions sample about the same function (another input gives a clearly different one)
    fine_on_coarse = torch.nn.functional.interpolate(fine, size=(16, 16), mode="bilinear", align_corners=True)
    assert (fine_on_coarse - coarse).norm() / coarse.norm() < 0.25
    assert (other - coarse).norm() / coarse.norm() > 0.5


def test_checkpoint_round_trip_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    model = tiny().eval()
    sizes = {"in_channels": 2, "out_channels": 3, "n_dims": 2}
    save_checkpoint(tmp_path / "ckpt", model, {"model": {"name": "galerkin", "args": TINY, "data_sizes": sizes}})
    loaded, _ = load_model(tmp_path / "ckpt")
    u = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(u), loaded(u))
    assert isinstance(loaded, GalerkinTransformer)
    assert model.state_dict().keys() == loaded.state_dict().keys()


def test_smoke_recipe_validates_against_the_constructor():
    raw = yaml.safe_load((REPO / "recipes" / "smoke" / "galerkin.yaml").read_text())
    recipe = recipe_from_dict(raw, check_data=False)
    assert recipe.model.name == "galerkin"
    model = build_model("galerkin", recipe.model.args, in_channels=1, out_channels=1, n_dims=2)
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 1, 16, 16)


def test_default_configuration_is_the_papers_darcy_model():
    model = GalerkinTransformer(1, 1, 2)
    assert len(model.layers) == 6
    attn = model.layers[0].attention
    assert (attn.n_heads, attn.head_dim, attn.attention) == (4, 32, "galerkin")
    assert model.layers[0].ffn.fc1.out_features == 256
    assert attn.norms["key"].eps == 1e-7
    assert model.regressor.spectral[0].modes == (12, 12)
    assert grid_coordinates((3,)).tolist() == [[0.0, 0.5, 1.0]]


# ------------------------------------------------------------------------------------------- learning
def test_learns_a_smoothing_operator():
    # u -> periodic three-point average of u, on random low-mode fields: loss must drop 20-fold within 100 steps
    torch.manual_seed(0)
    n, B = 32, 32
    x = torch.arange(n) / n
    k = torch.arange(1, 6).view(1, 5, 1)
    u = (torch.randn(B, 5, 1) * torch.sin(2 * math.pi * k * x + 6.28 * torch.rand(B, 5, 1)) / k).sum(1, keepdim=True)
    target = (u.roll(1, -1) + u + u.roll(-1, -1)) / 3
    model = build_model("galerkin", {**TINY, "dropout": 0.0}, in_channels=1, out_channels=1, n_dims=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        optimiser.zero_grad()
        loss = (model(u) - target).square().mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], f"loss went from {losses[0]:.4f} to {losses[-1]:.4f}"
