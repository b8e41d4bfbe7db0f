"""PatchTST: patching arithmetic and contents, RevIN round trip, channel independence, the two encoder layouts."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sciformer.config import load_recipe
from sciformer.models.patchtst import PatchTST
from sciformer.nn.normalization import RevIN
from sciformer.nn.patching import (
    FlattenHead,
    PatchEmbedding,
    Patching,
    ResidualAttention,
    TSTEncoder,
    TSTEncoderLayer,
    patch_count,
)
from sciformer.registry import build_model

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("lookback, expected", [(96, 12), (336, 42), (512, 64)])
def test_patch_count_matches_the_paper(lookback, expected):
    assert patch_count(lookback, 16, 8) == expected
    assert patch_count(lookback, 16, 8) == int((lookback - 16) / 8 + 2)  # TSLib's head_nf formula
    series = torch.zeros(2, 3, lookback)
    assert Patching(16, 8)(series).shape == (2, 3, expected, 16)
    assert PatchEmbedding(lookback, 16, 8, d_model=4).n_patches == expected


def test_patch_contents_on_arange_with_replicated_end():
    series = torch.arange(96, dtype=torch.float32).view(1, 1, 96)
    patches = Patching(16, 8)(series)[0, 0]  # [12, 16]
    assert torch.equal(patches[0], torch.arange(16, dtype=torch.float32))
    assert torch.equal(patches[5], torch.arange(40, 56, dtype=torch.float32))
    assert torch.equal(patches[10], torch.arange(80, 96, dtype=torch.float32))
    # the last patch is the final 8 steps followed by the last value repeated stride = 8 times
    assert torch.equal(patches[11], torch.cat([torch.arange(88, 96, dtype=torch.float32), torch.full((8,), 95.0)]))


def test_patching_without_padding_drops_the_extra_patch():
    assert patch_count(96, 16, 8, pad_end=False) == 11
    assert Patching(16, 8, pad_end=False)(torch.zeros(1, 1, 96)).shape == (1, 1, 11, 16)


def test_lookback_shorter_than_a_patch_is_rejected():
    with pytest.raises(ValueError, match="shorter than one patch"):
        patch_count(4, 16, 8)


@pytest.mark.parametrize("affine", [False, True])
def test_revin_denormalize_inverts_normalize(affine):
    torch.manual_seed(0)
    x = 3.0 * torch.randn(4, 96, 7) + torch.linspace(-5, 5, 7)
    revin = RevIN(7, affine=affine)
    if affine:  # move the learned map away from identity so the inverse is really exercised
        with torch.no_grad():
            revin.weight.uniform_(0.5, 2.0)
            revin.bias.uniform_(-1.0, 1.0)
    normed, stats = revin.normalize(x)
    if not affine:
        assert torch.allclose(normed.mean(1), torch.zeros(4, 7), atol=1e-5)
        assert torch.allclose(normed.std(1, unbiased=False), torch.ones(4, 7), atol=1e-4)
    assert torch.allclose(revin.denormalize(normed, stats), x, atol=1e-4)


@pytest.mark.parametrize("encoder", ["official", "tslib"])
def test_channel_independence_permuting_variables_permutes_outputs(encoder):
    torch.manual_seed(0)
    model = PatchTST(n_vars=5, lookback=96, horizon=24, d_model=16, n_heads=2, d_ff=32, e_layers=2, encoder=encoder).eval()
    x = torch.randn(3, 96, 5)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        out = model(x)
        out_perm = model(x[:, :, perm])
    assert out.shape == (3, 24, 5)
    assert torch.allclose(out_perm, out[:, :, perm], atol=1e-5)


def test_one_variable_does_not_influence_another():
    torch.manual_seed(0)
    model = PatchTST(n_vars=3, lookback=96, horizon=24, d_model=16, n_heads=2, d_ff=32).eval()
    x = torch.randn(2, 96, 3)
    x_changed = x.clone()
    x_changed[:, :, 2] = 10 * torch.randn(2, 96)
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :, :2], model(x_changed)[:, :, :2], atol=1e-5)


def test_forecast_follows_the_lookback_level_and_scale():
    """RevIN makes the model equivariant to a per-series affine change of the input (affine off)."""
    torch.manual_seed(0)
    model = PatchTST(n_vars=2, lookback=96, horizon=24, d_model=16, n_heads=2, d_ff=32).eval()
    x = torch.randn(2, 96, 2)
    with torch.no_grad():
        assert torch.allclose(model(5.0 * x + 3.0), 5.0 * model(x) + 3.0, atol=1e-3)


def test_residual_attention_passes_scores_between_layers():
    torch.manual_seed(0)
    layers = [TSTEncoderLayer(8, 2, 16) for _ in range(2)]
    x = torch.randn(4, 12, 8)
    with_scores = TSTEncoder(layers, residual_attention=True).eval()
    without = TSTEncoder(layers, residual_attention=False).eval()
    with torch.no_grad():
        _, first_scores = layers[0](x)
        assert first_scores.shape == (4, 2, 12, 12)
        assert not torch.allclose(with_scores(x), without(x))


def test_residual_attention_matches_fused_attention_with_the_scores_as_additive_mask():
    torch.manual_seed(0)
    attention = ResidualAttention(8, 2).eval()
    x, prev = torch.randn(3, 12, 8), torch.randn(3, 2, 12, 12)

    def heads(linear):
        return linear(x).view(3, 12, 2, 4).transpose(1, 2)  # [B, H, L, E]

    with torch.no_grad():
        for mask in (None, prev):
            expected = F.scaled_dot_product_attention(heads(attention.query), heads(attention.key), heads(attention.value), attn_mask=mask)
            expected = attention.out(expected.transpose(1, 2).reshape(3, 12, 8))
            out, scores = attention(x, mask)
            assert torch.allclose(out, expected, atol=1e-5)
        assert torch.allclose(scores - prev, heads(attention.query) @ heads(attention.key).transpose(-2, -1) / 2.0, atol=1e-5)


@pytest.mark.parametrize("encoder, positional", [("official", "learned"), ("tslib", "sincos")])
def test_every_parameter_gets_a_gradient_in_both_layouts(encoder, positional):
    torch.manual_seed(0)
    model = PatchTST(n_vars=3, lookback=96, horizon=24, d_model=16, n_heads=2, d_ff=32, encoder=encoder, positional=positional, affine=True)
    model(torch.randn(4, 96, 3)).square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"parameters without gradient: {dead}"


def test_official_and_tslib_layouts_differ_where_documented():
    official = PatchTST(n_vars=2, lookback=96, horizon=24, d_model=16, n_heads=2, d_ff=32, encoder="official")
    tslib = PatchTST(n_vars=2, lookback=96, horizon=24, d_model=16, n_heads=2, d_ff=32, encoder="tslib", positional="sincos", patch_bias=False)
    assert isinstance(official.embedding.position, torch.nn.Parameter) and official.embedding.proj.bias is not None
    assert not isinstance(tslib.embedding.position, torch.nn.Parameter) and tslib.embedding.proj.bias is None
    batch_norms = lambda m: sum(isinstance(x, torch.nn.BatchNorm1d) for x in m.modules())  # noqa: E731
    layer_norms = lambda m: sum(isinstance(x, torch.nn.LayerNorm) for x in m.modules())  # noqa: E731
    assert (batch_norms(official.encoder), layer_norms(official.encoder)) == (2 * 3, 0)  # two per layer, none after
    assert (batch_norms(tslib.encoder), layer_norms(tslib.encoder)) == (1, 2 * 3)  # LayerNorm inside, BatchNorm after


def test_flatten_head_maps_every_series_with_one_linear():
    head = FlattenHead(16 * 12, 24)
    features = torch.randn(3, 7, 16, 12)
    out = head(features)
    assert out.shape == (3, 7, 24)
    assert torch.allclose(out[:, 4], head.proj(features[:, 4].reshape(3, -1)), atol=1e-5)
    with pytest.raises(ValueError, match="d_model·P = 192"):
        head(torch.randn(3, 7, 16, 11))


def test_wrong_input_shape_is_named():
    model = PatchTST(n_vars=3, lookback=96, horizon=24, d_model=16, n_heads=2, d_ff=32)
    with pytest.raises(ValueError, match=r"\[B, 96, 3\], got \(2, 96, 4\)"):
        model(torch.randn(2, 96, 4))


@pytest.mark.parametrize("recipe, lookback, patches", [("ett_patchtst", 96, 12), ("ett_patchtst_336", 336, 42)])
def test_recipes_build_the_published_sizes(recipe, lookback, patches):
    cfg = load_recipe(REPO / "recipes" / f"{recipe}.yaml")
    assert cfg.data.lookback == lookback
    model = build_model("patchtst", cfg.model.args, n_vars=7, n_marks=4, lookback=lookback, horizon=96, label_len=48)
    assert model.n_patches == patches
    with torch.no_grad():
        assert model.eval()(torch.randn(2, lookback, 7)).shape == (2, 96, 7)
