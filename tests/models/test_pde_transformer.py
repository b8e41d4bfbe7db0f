"""PDE-Transformer: window partitioning, shifted-window attention against brute-force masked attention, adaLN-Zero
identity at initialisation, conditioning on t and the PDE label, the operator contract at two grid sizes, and a tiny
learning test."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from sciformer.config import recipe_from_dict
from sciformer.engine.checkpoint import load_model, save_checkpoint
from sciformer.models.pde_transformer import PDETransformer, PDETransformerBlock
from sciformer.nn.conditioning import AdaLNZero, TimestepEmbedding, modulate, timestep_embedding
from sciformer.nn.windowed import WindowAttention, shifted_window_mask, window_partition, window_reverse
from sciformer.registry import build_model, get_model

REPO = Path(__file__).resolve().parents[2]
TINY = dict(hidden_size=16, n_heads=2, depths=[1, 2, 1], patch_size=2, window_size=4)


def perturb_zero_parameters(model: torch.nn.Module, std: float = 0.05) -> None:
    """Move the adaLN-Zero modulations and the zero output layer off zero, as the first optimiser steps would."""
    with torch.no_grad():
        for p in model.parameters():
            if not torch.any(p != 0):
                p.normal_(0.0, std)


# ------------------------------------------------------------------------------------------ windows
def test_window_partition_layout_and_round_trip():
    x = torch.arange(2 * 4 * 6 * 3, dtype=torch.float32).view(2, 4, 6, 3)
    windows = window_partition(x, 2)
    assert windows.shape == (2 * 2 * 3, 4, 3)
    # window 1 of sample 0 is rows 0-1, columns 2-3, tokens row-major
    assert torch.equal(windows[1], x[0, 0:2, 2:4].reshape(4, 3))
    assert torch.equal(windows[6 + 4], x[1, 2:4, 2:4].reshape(4, 3))  # sample 1, window (1, 1)
    assert torch.equal(window_reverse(windows, 2, 4, 6), x)
    with pytest.raises(ValueError, match="divisible by the window 4"):
        window_partition(x, 4)


def test_shifted_window_mask_matches_region_rule():
    H, W, w, s = 6, 4, 2, 1
    mask = shifted_window_mask(H, W, w, s)
    assert mask.shape == ((H // w) * (W // w), w * w, w * w)

    def region(r, n):  # Swin's slices in rolled coordinates
        return 0 if r < n - w else (1 if r < n - s else 2)

    for win in range(mask.shape[0]):
        wr, wc = divmod(win, W // w)
        for i in range(w * w):
            for j in range(w * w):
                (ri, ci), (rj, cj) = divmod(i, w), divmod(j, w)
                a = (region(wr * w + ri, H), region(wc * w + ci, W))
                b = (region(wr * w + rj, H), region(wc * w + cj, W))
                assert mask[win, i, j].item() == (a == b)
    assert shifted_window_mask(H, W, w, 0).all()


def brute_force_window_attention(attn: WindowAttention, x: torch.Tensor, window: int, shift: int, periodic: bool) -> torch.Tensor:
    """Full attention over all H·W tokens with an explicit allowed-pair rule, one query at a time."""
    B, H, W, D = x.shape
    heads, hd = attn.n_heads, attn.head_dim
    q, k, v = attn.qkv(x).view(B, H, W, 3, heads, hd).unbind(3)  # each [B, H, W, heads, hd]
    bias = attn.relative_position_bias(window)  # [heads, w², w²] by local index
    out = torch.zeros(B, H, W, heads, hd, dtype=x.dtype)

    def rolled(y, c):  # position after torch.roll(..., -shift)
        return (y - shift) % H, (c - shift) % W

    def region(r, n):
        return 0 if r < n - window else (1 if r < n - shift else 2)

    for y in range(H):
        for c in range(W):
            ry, rc = rolled(y, c)
            keys, local_k = [], []
            for y2 in range(H):
                for c2 in range(W):
                    sy, sc = rolled(y2, c2)
                    if (sy // window, sc // window) != (ry // window, rc // window):
                        continue  # another window
                    if shift and not periodic and (region(sy, H), region(sc, W)) != (region(ry, H), region(rc, W)):
                        continue  # wrapped around a non-periodic border
                    keys.append((y2, c2))
                    local_k.append((sy % window) * window + sc % window)
            local_q = (ry % window) * window + rc % window
            kk = torch.stack([k[:, a, b] for a, b in keys], dim=2)  # [B, heads, n_keys, hd]
            vv = torch.stack([v[:, a, b] for a, b in keys], dim=2)
            qq = q[:, y, c]  # [B, heads, hd]
            if attn.cosine:
                logits = torch.einsum("bhd,bhnd->bhn", torch.nn.functional.normalize(qq, dim=-1), torch.nn.functional.normalize(kk, dim=-1))
                logits = logits * attn.logit_scale.clamp(max=math.log(100.0)).exp().view(1, heads, 1)
            else:
                logits = torch.einsum("bhd,bhnd->bhn", qq, kk) / math.sqrt(hd)
            logits = logits + bias[:, local_q, local_k][None]
            out[:, y, c] = torch.einsum("bhn,bhnd->bhd", logits.softmax(-1), vv)
    return attn.proj(out.reshape(B, H, W, D))


@pytest.mark.parametrize("shift, periodic, cosine", [(0, False, True), (1, False, True), (1, True, True), (1, False, False)])
def test_shifted_window_attention_equals_brute_force_masked_attention(shift, periodic, cosine):
    torch.manual_seed(0)
    attn = WindowAttention(dim=8, n_heads=2, window_size=2, qkv_bias=True, cosine=cosine).double()
    x = torch.randn(2, 4, 6, 8, dtype=torch.float64)
    with torch.no_grad():
        fast = attn(x, shift=shift, periodic=periodic)
        slow = brute_force_window_attention(attn, x, window=2, shift=shift, periodic=periodic)
    assert torch.allclose(fast, slow, atol=1e-10)


def test_window_shrinks_to_small_grids_and_drops_the_shift():
    torch.manual_seed(0)
    attn = WindowAttention(dim=8, n_heads=2, window_size=8).double()
    x = torch.randn(1, 4, 4, 8, dtype=torch.float64)
    with torch.no_grad():  # a 4×4 grid is one 4×4 window; the shift is dropped (Swin's rule)
        assert torch.allclose(attn(x, shift=4), brute_force_window_attention(attn, x, window=4, shift=0, periodic=False), atol=1e-10)


# ------------------------------------------------------------------------------------- conditioning
def test_adaln_zero_starts_as_identity_and_modulation_broadcasts():
    torch.manual_seed(0)
    adaln = AdaLNZero(dim=6, cond_dim=5, n_branches=2)
    x, c = torch.randn(3, 7, 6), torch.randn(3, 5)
    mods = adaln(c)
    assert len(mods) == 2 and all(m.shift.shape == (3, 6) for m in mods)
    assert torch.equal(adaln.branch(x, mods[0], lambda h: 10 * h + 1), x)  # zero gate: x + 0 · f(...)
    ungated = AdaLNZero(dim=6, cond_dim=5, n_branches=1, gated=False)(c)[0]
    assert ungated.gate is None
    # modulate: x · (1 + scale) + shift, broadcast over token dims after the leading [B, C]
    shift, scale = torch.randn(3, 2, 6), torch.randn(3, 2, 6)
    tokens = torch.randn(3, 2, 4, 5, 6)
    assert torch.allclose(modulate(tokens, shift, scale), tokens * (1 + scale[:, :, None, None]) + shift[:, :, None, None])
    with pytest.raises(ValueError, match="matching the leading dims"):
        modulate(tokens, torch.randn(4, 6), torch.randn(4, 6))  # batch 4 against tokens of batch 3


def test_pde_transformer_block_is_identity_at_initialisation():
    torch.manual_seed(0)
    block = PDETransformerBlock(dim=8, n_heads=2, window_size=2, mlp_ratio=4.0, n_channels=3, periodic=False)
    x, cond = torch.randn(2, 3, 4, 4, 8), torch.randn(2, 3, 8)
    assert torch.equal(block(x, cond, shift=1), x)
    perturb_zero_parameters(block)
    assert not torch.allclose(block(x, cond, shift=1), x)


def test_timestep_embedding_is_the_dit_sinusoid():
    t = torch.tensor([0.0, 2.5])
    emb = timestep_embedding(t, 8)
    freqs = torch.exp(-math.log(10000.0) * torch.arange(4) / 4)
    assert torch.allclose(emb, torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=-1))
    assert TimestepEmbedding(16)(t).shape == (2, 16)


# ---------------------------------------------------------------------------------------- the model
def test_size_presets_follow_the_paper():
    paper = dict(depths=(2, 5, 8, 5, 2), mlp_ratio=4.0)
    assert get_model("pde_transformer_s").preset == dict(hidden_size=96, n_heads=4, **paper)
    assert get_model("pde_transformer_b").preset == dict(hidden_size=192, n_heads=8, **paper)
    assert get_model("pde_transformer_l").preset == dict(hidden_size=384, n_heads=16, **paper)
    assert isinstance(get_model("pde_transformer_s")(1, 1, 2, patch_size=8), PDETransformer)


@pytest.mark.parametrize("grid", [(16, 16), (32, 32), (16, 32)])
def test_accepts_grids_that_are_multiples_of_patch_times_window(grid):
    torch.manual_seed(0)
    model = PDETransformer(2, 3, 2, **TINY)
    perturb_zero_parameters(model)
    out = model(torch.randn(2, 2, *grid), torch.rand(2))
    assert out.shape == (2, 3, *grid)
    assert torch.isfinite(out).all()


def test_output_is_zero_at_initialisation_like_dit():
    model = PDETransformer(1, 1, 2, **TINY)
    assert torch.equal(model(torch.randn(2, 1, 16, 16)), torch.zeros(2, 1, 16, 16))


@pytest.mark.parametrize("channels", [(1, 1), (3, 3), (2, 4)])
def test_every_parameter_gets_a_gradient(channels):
    torch.manual_seed(0)
    c_in, c_out = channels
    model = PDETransformer(c_in, c_out, 2, n_pde_types=2, **TINY).train()
    perturb_zero_parameters(model)  # adaLN-Zero gates and the output layer start at 0 by design
    params = torch.tensor([[0.0], [1.0]])
    model(torch.randn(2, c_in, 16, 16), torch.rand(2), params).square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"parameters without gradient: {dead}"
    if c_in == 1:  # one channel stream: no channel attention to build
        assert all(block.channel is None for block in model.latent.blocks)


def test_conditioning_on_lead_time_and_pde_label():
    torch.manual_seed(0)
    model = PDETransformer(1, 1, 2, n_pde_types=3, **TINY).eval()
    perturb_zero_parameters(model)
    u = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(u), model(u, torch.zeros(2)))  # t=None means lead time 0
        assert torch.equal(model(u), model(u, None, torch.zeros(2, 1)))  # no params means label 0
        assert not torch.allclose(model(u, torch.full((2,), 0.5)), model(u))
        assert not torch.allclose(model(u, None, torch.tensor([[2.0], [1.0]])), model(u))
    with pytest.raises(ValueError, match=r"PDE labels params\[:, 0\] in \[0, 2\].*got values in \[0, 3\]"):
        model(u, None, torch.tensor([[0.0], [3.0]]))


def test_checkpoint_round_trip_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    recipe = recipe_from_dict(yaml.safe_load((REPO / "recipes/smoke/pde_transformer.yaml").read_text()), check_data=False)
    sizes = {"in_channels": 1, "out_channels": 1, "n_dims": 2}
    model = build_model("pde_transformer", recipe.model.args, **sizes).eval()
    perturb_zero_parameters(model)
    save_checkpoint(tmp_path / "ckpt", model, {"model": {"name": "pde_transformer", "args": recipe.model.args, "data_sizes": sizes}})
    loaded, _ = load_model(tmp_path / "ckpt")
    u, t = torch.randn(3, 1, 16, 16), torch.rand(3)
    with torch.no_grad():
        assert torch.equal(model(u, t), loaded(u, t))


def test_wrong_inputs_are_rejected_with_shapes():
    with pytest.raises(ValueError, match="2D grids only"):
        PDETransformer(1, 1, 3)
    with pytest.raises(ValueError, match="hidden_size fixed by preset 'pde_transformer_s'; use model 'pde_transformer'"):
        get_model("pde_transformer_s")(1, 1, 2, hidden_size=32)
    model = PDETransformer(3, 1, 2, **TINY)
    with pytest.raises(ValueError, match=r"expected u of shape \[B, C_in, \*grid\] with C_in=3 and 2 grid axes, got \(4, 3, 64\)"):
        model(torch.randn(4, 3, 64))
    with pytest.raises(ValueError, match="divisible by patch_size"):
        model(torch.randn(1, 3, 18, 16))
    with pytest.raises(ValueError, match="not divisible by its attention window"):
        model(torch.randn(1, 3, 24, 16))  # 12×8 tokens, then 6×4: window 4 does not divide 6
    with pytest.raises(ValueError, match=r"expected t of shape \[B\]"):
        model(torch.randn(2, 3, 16, 16), torch.rand(2, 1))


def test_loss_drops_on_a_smoothing_operator():
    torch.manual_seed(0)
    u = torch.randn(16, 1, 16, 16)
    target = torch.nn.functional.avg_pool2d(u, 3, stride=1, padding=1, count_include_pad=False)
    model = PDETransformer(1, 1, 2, **{**TINY, "depths": [1, 1, 1]})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = (model(u) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], f"loss went from {losses[0]:.3g} to {losses[-1]:.3g}"
