"""Poseidon/scOT: the time-conditioned LayerNorm (plain LayerNorm at initialisation, affine in t), patch merging and
expansion against hand-written references, the shift pattern of the Swin stages, the operator contract at two grid
sizes, the paper's T size, clear errors, and a tiny learning test of a lead-time-dependent shift."""

import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from sciformer.config import recipe_from_dict
from sciformer.engine.checkpoint import load_model, save_checkpoint
from sciformer.models.poseidon import Poseidon
from sciformer.nn.multiscale import ConvNeXtBlock, PatchExpanding, PatchMerging, SwinStage, TimeConditionedLayerNorm
from sciformer.registry import build_model, get_model

REPO = Path(__file__).resolve().parents[2]
TINY = dict(embed_dim=16, depths=[1, 2], n_heads=[2, 4], skip_blocks=[1, 1], patch_size=2, window_size=4)


def perturb_norms(model: torch.nn.Module, std: float = 0.3) -> None:
    """Move the zero-initialised time-conditioned norms off their plain-LayerNorm start, as training would."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, TimeConditionedLayerNorm):
                for p in module.parameters():
                    p.normal_(0.0, std)


# --------------------------------------------------------------------------- time-conditioned LayerNorm
def test_time_conditioned_norm_starts_as_a_plain_layer_norm_for_every_t():
    torch.manual_seed(0)
    norm, plain = TimeConditionedLayerNorm(6), torch.nn.LayerNorm(6)
    x = torch.randn(3, 4, 5, 6)
    for t in (torch.zeros(3), torch.tensor([0.0, 0.3, 1.0]), torch.full((3,), 7.0)):
        assert torch.allclose(norm(x, t), plain(x), atol=1e-6)


def test_time_conditioned_norm_is_affine_in_t_per_sample():
    torch.manual_seed(0)
    norm = TimeConditionedLayerNorm(6).double()
    perturb_norms(norm)
    x, t = torch.randn(3, 4, 5, 6, dtype=torch.float64), torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64)
    a, c = norm.scale.weight[:, 0], norm.scale.bias  # scale(t) = a·t + c
    b, d = norm.shift.weight[:, 0], norm.shift.bias  # shift(t) = b·t + d
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    normalised = (x - mean) / torch.sqrt(var + 1e-5)
    tt = t.view(3, 1, 1, 1)
    expected = normalised * (1 + a * tt + c) + (b * tt + d)
    assert torch.allclose(norm(x, t), expected, atol=1e-12)
    same_x = x[:1].expand(3, -1, -1, -1)  # one input, three lead times → three different outputs
    out = norm(same_x, t)
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    with pytest.raises(ValueError, match=r"expected t of shape \[B\] = \[3\], got \(3, 1\)"):
        norm(x, t[:, None])


# ------------------------------------------------------------------------------ merging and expansion
def test_patch_merging_matches_the_2x2_neighbourhood_reference():
    torch.manual_seed(0)
    merge = PatchMerging(3).double()
    perturb_norms(merge)
    x, t = torch.randn(2, 4, 6, 3, dtype=torch.float64), torch.tensor([0.2, 0.9], dtype=torch.float64)
    out = merge(x, t)
    assert out.shape == (2, 2, 3, 6)
    expected = torch.empty_like(out)
    for i in range(2):
        for j in range(3):  # Swin's neighbour order: (0,0), (1,0), (0,1), (1,1)
            cat = torch.cat([x[:, 2 * i, 2 * j], x[:, 2 * i + 1, 2 * j], x[:, 2 * i, 2 * j + 1], x[:, 2 * i + 1, 2 * j + 1]], -1)
            expected[:, i, j] = merge.norm(merge.reduction(cat)[:, None], t)[:, 0]
    assert torch.allclose(out, expected, atol=1e-12)


def test_patch_expanding_places_the_four_children_of_each_token():
    torch.manual_seed(0)
    expand = PatchExpanding(8).double()
    perturb_norms(expand)
    x, t = torch.randn(2, 3, 2, 8, dtype=torch.float64), torch.tensor([0.2, 0.9], dtype=torch.float64)
    out = expand(x, t)
    assert out.shape == (2, 6, 4, 4)
    children = expand.upsample(x).view(2, 3, 2, 4, 4)  # [B, H, W, child a·2+b, D/2]
    for i in range(3):
        for j in range(2):
            for a in range(2):
                for b in range(2):
                    ref = expand.mixup(expand.norm(children[:, i, j, 2 * a + b][:, None], t))[:, 0]
                    assert torch.allclose(out[:, 2 * i + a, 2 * j + b], ref, atol=1e-12)


def test_patch_merge_then_expand_round_trips_shapes():
    x, t = torch.randn(2, 8, 12, 16), torch.rand(2)
    merged = PatchMerging(16)(x, t)
    assert merged.shape == (2, 4, 6, 32)
    assert PatchExpanding(32)(merged, t).shape == x.shape
    with pytest.raises(ValueError, match="even H, W"):
        PatchMerging(16)(torch.randn(2, 5, 12, 16), t)


def test_swin_stages_alternate_shifts_and_the_decoder_mirrors_them():
    encoder = SwinStage(8, depth=4, n_heads=2, window_size=4)
    decoder = SwinStage(8, depth=4, n_heads=2, window_size=4, mirrored=True)
    assert [b.shift for b in encoder.blocks] == [0, 2, 0, 2]
    assert [b.shift for b in decoder.blocks] == [2, 0, 2, 0]  # scOT builds decoder blocks in reverse order
    assert [b.shift for b in SwinStage(8, 3, 2, 4, mirrored=True).blocks] == [0, 2, 0]


def test_convnext_block_keeps_shape_and_starts_near_identity():
    torch.manual_seed(0)
    block = ConvNeXtBlock(8, periodic=True)
    x = torch.randn(2, 6, 4, 8)
    out = block(x, torch.rand(2))
    assert out.shape == x.shape
    assert (out - x).abs().max() < 1e-4  # layer scale 1e-6


# ---------------------------------------------------------------------------------------- the model
def test_size_presets_follow_the_official_model_map():
    paper = dict(n_heads=(3, 6, 12, 24), skip_blocks=(2, 2, 2, 0), mlp_ratio=4.0)
    assert get_model("poseidon_t").preset == dict(embed_dim=48, depths=(4, 4, 4, 4), **paper)
    assert get_model("poseidon_b").preset == dict(embed_dim=96, depths=(8, 8, 8, 8), **paper)
    assert get_model("poseidon_l").preset == dict(embed_dim=192, depths=(8, 8, 8, 8), **paper)
    defaults = inspect.signature(get_model("poseidon_b").__init__).parameters
    assert (defaults["patch_size"].default, defaults["window_size"].default) == (4, 16)  # the paper's, still settable


def test_size_t_has_the_papers_parameter_count_and_runs_at_128():
    torch.manual_seed(0)
    model = get_model("poseidon_t")(4, 4, 2)
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 20.8e6) / 20.8e6 < 0.01, n_params  # Poseidon-T model card: 20.8M
    with torch.no_grad():  # 32×32 tokens → windows 16, 16 (one window), 8, 4: Swin's shrinking windows
        assert model(torch.randn(1, 4, 128, 128), torch.rand(1)).shape == (1, 4, 128, 128)


@pytest.mark.parametrize("grids", [((16, 16), (32, 32)), ((32, 16), (16, 48))])
def test_same_weights_run_at_two_grid_sizes(grids):
    torch.manual_seed(0)
    model = Poseidon(2, 3, 2, **TINY).eval()
    perturb_norms(model)
    for grid in grids:
        with torch.no_grad():
            out = model(torch.randn(2, 2, *grid), torch.rand(2))
        assert out.shape == (2, 3, *grid)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("channels", [(1, 1), (3, 2)])
def test_every_parameter_gets_a_gradient(channels):
    torch.manual_seed(0)
    c_in, c_out = channels
    model = Poseidon(c_in, c_out, 2, **TINY).train()
    model(torch.randn(2, c_in, 16, 16), torch.rand(2) + 0.1).square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"parameters without gradient: {dead}"


def test_default_configuration_runs_at_64x64():
    model = Poseidon(1, 1, 2)
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 2e6
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 1, 64, 64)


def test_lead_time_conditions_the_output_and_none_means_zero():
    torch.manual_seed(0)
    model = Poseidon(1, 1, 2, **TINY).eval()
    u = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(u, torch.full((2,), 0.7)), model(u))  # plain LayerNorms at initialisation
        perturb_norms(model)
        assert torch.equal(model(u), model(u, torch.zeros(2)))
        assert not torch.allclose(model(u, torch.full((2,), 0.5)), model(u), atol=1e-4)
        assert torch.equal(model(u, None, torch.randn(2, 3)), model(u))  # PDE parameters are not used, as in scOT


def test_checkpoint_round_trip_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    recipe = recipe_from_dict(yaml.safe_load((REPO / "recipes/smoke/poseidon.yaml").read_text()), check_data=False)
    sizes = {"in_channels": 1, "out_channels": 1, "n_dims": 2}
    model = build_model("poseidon", recipe.model.args, **sizes).eval()
    perturb_norms(model)
    save_checkpoint(tmp_path / "ckpt", model, {"model": {"name": "poseidon", "args": recipe.model.args, "data_sizes": sizes}})
    loaded, _ = load_model(tmp_path / "ckpt")
    u, t = torch.randn(3, 1, 16, 16), torch.rand(3)
    with torch.no_grad():
        assert torch.equal(model(u, t), loaded(u, t))
        assert loaded(torch.randn(1, 1, 32, 32)).shape == (1, 1, 32, 32)  # darcy_small's 32×32 test grid
    assert model.state_dict().keys() == loaded.state_dict().keys()


def test_wrong_inputs_are_rejected_with_sizes():
    with pytest.raises(ValueError, match="2D grids only"):
        Poseidon(1, 1, 3)
    with pytest.raises(ValueError, match="depths, embed_dim fixed by preset 'poseidon_t'; use model 'poseidon'"):
        get_model("poseidon_t")(1, 1, 2, embed_dim=32, depths=[1, 1])
    with pytest.raises(ValueError, match="one entry per stage"):
        Poseidon(1, 1, 2, depths=[1, 1], n_heads=[2])
    with pytest.raises(ValueError, match=r"stage 1 width 32 .* divisible by n_heads\[1\] = 3"):
        Poseidon(1, 1, 2, embed_dim=16, depths=[1, 1], n_heads=[2, 3], skip_blocks=[0, 0])
    model = Poseidon(3, 1, 2, **TINY)
    with pytest.raises(ValueError, match=r"expected u of shape \[B, C_in, \*grid\] with C_in=3 and 2 grid axes, got \(4, 3, 64\)"):
        model(torch.randn(4, 3, 64))
    with pytest.raises(ValueError, match=r"multiples of patch_size · 2\^\(n_stages − 1\) = 2 · 2 = 4 .* got 18×16"):
        model(torch.randn(1, 3, 18, 16))
    with pytest.raises(ValueError, match=r"6×8 token grid of stage 1 is not divisible by its attention window 4.* = 2 · 4 · 2 = 16"):
        model(torch.randn(1, 3, 24, 32))  # 12×16 tokens, then 6×8
    with pytest.raises(ValueError, match=r"expected t of shape \[B\] = \[2\]"):
        model(torch.randn(2, 3, 16, 16), torch.rand(2, 1))


def test_learns_a_lead_time_dependent_shift():
    """u ↦ roll(u, 2t pixels) for t ∈ {0, ½, 1}: a t-blind model cannot beat predicting the mean over the three shifts;
    the trained model must get well below that floor."""
    torch.manual_seed(0)
    n, g = 16, 16
    k = torch.fft.fftfreq(g, 1 / g)
    low = (k.abs()[:, None] <= 3) & (k.abs()[None, :] <= 3)
    u = torch.fft.ifft2(torch.randn(n, g, g, dtype=torch.complex64) * low).real
    u = (u / u.std(dim=(1, 2), keepdim=True))[:, None]  # smooth periodic fields [n, 1, g, g]
    leads, shifts = torch.tensor([0.0, 0.5, 1.0]), [0, 1, 2]
    targets = torch.stack([torch.roll(u, s, dims=-1) for s in shifts])  # [3, n, 1, g, g]
    blind_floor = (targets - targets.mean(0)).square().mean().item()

    model = Poseidon(1, 1, 2, embed_dim=16, depths=[1, 1], n_heads=[2, 4], skip_blocks=[0, 0], patch_size=2, window_size=4, periodic=True)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        which = torch.randint(0, 3, (n,), generator=gen)
        loss = (model(u, leads[which]) - targets[which, torch.arange(n)]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        error = sum((model(u, leads[i].expand(n)) - targets[i]).square().mean().item() for i in range(3)) / 3
    assert error < 0.4 * blind_floor, f"error {error:.3g} against the t-blind floor {blind_floor:.3g}"


def test_grid_coordinates_let_the_model_tell_positions_apart():
    torch.manual_seed(0)
    kwargs = dict(in_channels=1, out_channels=1, n_dims=2, embed_dim=16, depths=(1, 1), n_heads=(2, 4), skip_blocks=(1, 0), periodic=True)
    plain, located = Poseidon(**kwargs).eval(), Poseidon(**kwargs, coords=True).eval()
    assert located.patch_embed.in_channels == 3  # the field and x, y
    u = torch.randn(2, 1, 64, 64)
    # a shift of whole windows at every stage (8 tokens of 4² patches, then 4 merged ones): the periodic model commutes
    shifted = torch.roll(u, shifts=(32, 32), dims=(2, 3))
    with torch.no_grad():
        torch.testing.assert_close(plain(shifted), torch.roll(plain(u), shifts=(32, 32), dims=(2, 3)), atol=1e-5, rtol=1e-4)
        moved = located(shifted) - torch.roll(located(u), shifts=(32, 32), dims=(2, 3))
    assert moved.abs().max() > 1e-3  # with coordinates the same field elsewhere gives another answer
