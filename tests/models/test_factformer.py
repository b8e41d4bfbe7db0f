"""FactFormer: the axial factorised kernel against a brute-force evaluation, rotary relativity, the operator contract
in 2D and 3D, resolution agnosticism, and a tiny learning test."""

import itertools
from pathlib import Path

import pytest
import torch
import yaml

from sciformer.config import recipe_from_dict
from sciformer.engine.checkpoint import load_model, save_checkpoint
from sciformer.models.factformer import FactFormer
from sciformer.nn.factorized_attention import apply_rotary, factorized_attention, rotary_angles
from sciformer.registry import build_model

REPO = Path(__file__).resolve().parents[2]
TINY = dict(dim=16, depth=2, n_heads=2, dim_head=8, kernel_multiplier=2)


def brute_force(q_axes, k_axes, v, scales):
    """out[b, h, i] = Σ_j Π_a scale_a · ⟨q_a[i_a], k_a[j_a]⟩ · v[b, h, j], looping over every pair of grid points."""
    grid = v.shape[2:-1]
    out = torch.zeros_like(v)
    points = list(itertools.product(*(range(n) for n in grid)))
    for i in points:
        for j in points:
            kappa = torch.ones(v.shape[:2], dtype=v.dtype)
            for a in range(len(grid)):
                kappa = kappa * scales[a] * (q_axes[a][:, :, i[a]] * k_axes[a][:, :, j[a]]).sum(-1)
            out[(slice(None), slice(None), *i)] += kappa[..., None] * v[(slice(None), slice(None), *j)]
    return out


@pytest.mark.parametrize("grid", [(3, 4), (2, 3, 4)])
def test_factorized_attention_equals_brute_force_kernel_integral(grid):
    torch.manual_seed(0)
    B, H, E, D = 2, 3, 5, 4
    qs = [torch.randn(B, H, n, E, dtype=torch.float64) for n in grid]
    ks = [torch.randn(B, H, n, E, dtype=torch.float64) for n in grid]
    v = torch.randn(B, H, *grid, D, dtype=torch.float64)
    expected = brute_force(qs, ks, v, [1.0 / n for n in grid])  # default: 1/n_i quadrature weights
    assert torch.allclose(factorized_attention(qs, ks, v), expected, atol=1e-12)
    custom = [0.5, 2.0, 3.0][: len(grid)]
    assert torch.allclose(factorized_attention(qs, ks, v, scale=custom), brute_force(qs, ks, v, custom), atol=1e-12)


def test_factorized_attention_gradients_match_brute_force():
    torch.manual_seed(1)
    grid = (3, 2)
    qs = [torch.randn(1, 2, n, 3, dtype=torch.float64, requires_grad=True) for n in grid]
    ks = [torch.randn(1, 2, n, 3, dtype=torch.float64, requires_grad=True) for n in grid]
    v = torch.randn(1, 2, *grid, 2, dtype=torch.float64, requires_grad=True)
    leaves = [*qs, *ks, v]
    fast = torch.autograd.grad(factorized_attention(qs, ks, v).square().sum(), leaves)
    slow = torch.autograd.grad(brute_force(qs, ks, v, [1 / 3, 1 / 2]).square().sum(), leaves)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b, atol=1e-10)


def test_factorized_attention_rejects_mismatched_axes():
    v = torch.randn(1, 2, 4, 5, 3)
    q = [torch.randn(1, 2, 4, 6), torch.randn(1, 2, 4, 6)]  # second axis has 5 points, not 4
    with pytest.raises(ValueError, match=r"axis 1: expected q and k of shape \[B, H, n_i, E\]"):
        factorized_attention(q, q, v)
    with pytest.raises(ValueError, match="one query and one key per grid axis"):
        factorized_attention(q[:1], q[:1], v)


def test_rotary_kernel_depends_only_on_relative_position():
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)
    coords = torch.tensor([0.1, 0.3, 0.5, 0.7])
    angles = rotary_angles(coords, 8)
    rq, rk = apply_rotary(q.expand(4, 8), angles), apply_rotary(k.expand(4, 8), angles)
    # equal offsets 0.2 → equal kernel values; the rotation keeps norms
    assert torch.allclose(rq[1] @ rk[0], rq[2] @ rk[1], atol=1e-5)
    assert torch.allclose(rq[3] @ rk[2], rq[2] @ rk[1], atol=1e-5)
    assert torch.allclose(rq.norm(dim=-1), q.norm().expand(4), atol=1e-5)


@pytest.mark.parametrize("n_dims, grid", [(2, (12, 10)), (3, (6, 5, 4))])
def test_output_shape_finite_and_every_parameter_gets_a_gradient(n_dims, grid):
    torch.manual_seed(0)
    model = FactFormer(2, 3, n_dims, **TINY)
    u = torch.randn(2, 2, *grid)
    out = model(u)
    assert out.shape == (2, 3, *grid)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"parameters without gradient: {dead}"


def test_time_and_params_are_ignored():
    torch.manual_seed(0)
    model = FactFormer(1, 1, 2, **TINY).eval()
    u = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(u), model(u, torch.rand(2), torch.rand(2, 3)))


def test_checkpoint_round_trip_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    recipe = recipe_from_dict(yaml.safe_load((REPO / "recipes/smoke/factformer.yaml").read_text()), check_data=False)
    sizes = {"in_channels": 1, "out_channels": 1, "n_dims": 2}
    model = build_model("factformer", recipe.model.args, **sizes).eval()
    save_checkpoint(tmp_path / "ckpt", model, {"model": {"name": "factformer", "args": recipe.model.args, "data_sizes": sizes}})
    torch.manual_seed(1)  # a different draw for the random Fourier features: the buffer must come from the checkpoint
    loaded, _ = load_model(tmp_path / "ckpt")
    u = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(u), loaded(u))


def test_same_weights_run_at_two_resolutions_and_agree_on_shared_points():
    torch.manual_seed(0)
    model = FactFormer(1, 1, 2, **TINY).eval()

    def field(n):
        x = torch.linspace(0, 1, n)
        X, Y = torch.meshgrid(x, x, indexing="ij")
        return (torch.sin(2 * torch.pi * X) * torch.cos(torch.pi * Y))[None, None]

    with torch.no_grad():
        coarse, fine = model(field(33)), model(field(65))
    assert coarse.shape == (1, 1, 33, 33) and fine.shape == (1, 1, 65, 65)
    # every other fine point is a coarse point: a discretisation-consistent operator gives (nearly) the same values
    rel = (coarse - fine[..., ::2, ::2]).norm() / fine.norm()
    assert rel < 1e-2, f"outputs at 33² and 65² differ by {rel:.3g} on the shared points"


def test_wrong_inputs_are_rejected_with_shapes():
    with pytest.raises(ValueError, match="n_dims 2 or 3.*got n_dims=1"):
        FactFormer(1, 1, 1)
    model = FactFormer(3, 1, 2, **TINY)
    with pytest.raises(ValueError, match=r"expected u of shape \[B, C_in, \*grid\] with C_in=3 and 2 grid axes, got \(4, 3, 64\)"):
        model(torch.randn(4, 3, 64))


def test_loss_drops_on_a_smoothing_operator():
    torch.manual_seed(0)
    u = torch.randn(16, 1, 12, 12)
    target = torch.nn.functional.avg_pool2d(u, 3, stride=1, padding=1, count_include_pad=False)  # local smoothing
    model = FactFormer(1, 1, 2, **{**TINY, "depth": 1})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = (model(u) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], f"loss went from {losses[0]:.3g} to {losses[-1]:.3g}"
