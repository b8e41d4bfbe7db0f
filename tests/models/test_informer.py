"""Informer: ProbSparse attention against full attention, the distilling layer's length, the model's wiring."""

import math

import pytest
import torch

from sciformer.errors import ConfigError
from sciformer.nn.attention import AttentionLayer, FullAttention
from sciformer.nn.probsparse import EVAL_SAMPLING_SEED, DistillingLayer, ProbSparseAttention, sampled_scores
from sciformer.registry import build_model

ATOL = 1e-5


def qkv(B=2, L=12, S=12, H=3, E=8, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, L, H, E, generator=g), torch.randn(B, S, H, E, generator=g), torch.randn(B, S, H, D, generator=g)


# ----------------------------------------------------------------------------------- ProbSparse attention
@pytest.mark.parametrize("causal", [False, True], ids=["unmasked", "causal"])
def test_probsparse_equals_full_attention_when_every_query_is_selected(causal):
    q, k, v = qkv()
    # factor 100: u = U_part = 100·ceil(ln 12) is clipped to L = 12, so every query attends to every key
    sparse = ProbSparseAttention(factor=100, causal=causal)
    full = FullAttention(dropout=0.0, causal=causal)
    for mode in (sparse.train, sparse.eval):  # the random key sample of training must not matter either
        mode()
        torch.testing.assert_close(sparse(q, k, v), full(q, k, v), atol=ATOL, rtol=ATOL)


def test_probsparse_cross_attention_equals_full_when_every_query_is_selected():
    q, k, v = qkv(L=7, S=20, D=5)
    torch.testing.assert_close(ProbSparseAttention(factor=100)(q, k, v), FullAttention()(q, k, v), atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("causal", [False, True], ids=["unmasked", "causal"])
def test_only_top_u_queries_attend_and_lazy_ones_get_mean_or_cumsum_of_values(causal):
    L, factor = 96, 3
    q, k, v = qkv(B=2, L=L, S=L, H=2, E=4, D=4, seed=1)
    # at position 0 the causal row and cumsum(V) are both v_0; a zero query has the lowest sparsity score
    # (M = 0, random queries score max − sum/S > 0), so it stays lazy and the count below is exact
    q[:, 0] = 0.0
    out = ProbSparseAttention(factor=factor, causal=causal).eval()(q, k, v)  # [B, L, H, D]
    full = FullAttention(causal=causal)(q, k, v)
    lazy = v.cumsum(dim=1) if causal else v.mean(dim=1, keepdim=True).expand_as(v)
    is_full = torch.isclose(out, full, atol=ATOL).all(-1)  # [B, L, H]
    is_lazy = torch.isclose(out, lazy, atol=ATOL).all(-1)
    assert (is_full | is_lazy).all(), "every query outputs either its exact attention row or the lazy default"
    u = factor * math.ceil(math.log(L))  # 3 · ceil(ln 96) = 15 active queries per sample and head
    assert u == 15
    assert (is_full & ~is_lazy).sum(dim=1).eq(u).all(), f"expected exactly {u} active queries per sample and head"


def test_sampled_scores_are_the_same_from_all_scores_as_from_gathered_keys():
    q, k = torch.randn(2, 3, 40, 8, dtype=torch.float64), torch.randn(2, 3, 50, 8, dtype=torch.float64)
    sample = torch.randint(50, (40, 7))
    from_all = sampled_scores(q, k, sample, gather_keys=False)
    torch.testing.assert_close(from_all, sampled_scores(q, k, sample, gather_keys=True))
    torch.testing.assert_close(from_all[1, 2, 5, 3], q[1, 2, 5] @ k[1, 2, sample[5, 3]])


def test_probsparse_is_reproducible_in_eval_and_resampled_in_training():
    q, k, v = qkv(L=64, S=64, seed=2)
    attn = ProbSparseAttention(factor=1).eval()
    assert torch.equal(attn(q, k, v), attn(q, k, v))
    attn.train()
    torch.manual_seed(0)
    first = attn(q, k, v)
    assert any(not torch.equal(first, attn(q, k, v)) for _ in range(5)), "training should redraw the key sample"


def test_probsparse_gradients_reach_queries_keys_and_values():
    q, k, v = (t.requires_grad_() for t in qkv(L=32, S=32, seed=3))
    ProbSparseAttention(factor=2, causal=True)(q, k, v).square().sum().backward()
    for name, t in (("q", q), ("k", k), ("v", v)):
        assert t.grad is not None and t.grad.abs().sum() > 0, f"no gradient reached {name}"


def test_causal_probsparse_rejects_cross_attention_shapes():
    q, k, v = qkv(L=5, S=9)
    with pytest.raises(ValueError, match="L == S"):
        ProbSparseAttention(causal=True)(q, k, v)


# ------------------------------------------------------------------------------------- distilling layer
def test_distilling_layer_rejects_sequences_shorter_than_its_padding():
    with pytest.raises(ValueError, match=r"at least 2 steps, got \(1, 1, 4\)"):
        DistillingLayer(4)(torch.randn(1, 1, 4))


def test_distilling_layer_maps_96_steps_to_49():
    # circular conv with padding 2 grows 96 → 98, max-pool (k=3, s=2, p=1) halves it to 49 (TSLib's ConvLayer)
    x = torch.randn(2, 96, 16)
    assert DistillingLayer(16)(x).shape == (2, 49, 16)


@pytest.mark.parametrize("length", [2, 3, 5, 24, 48, 49, 97])
def test_distilling_output_length_formula_matches_the_layer(length):
    layer = DistillingLayer(4).eval()
    assert layer(torch.randn(1, length, 4)).shape[1] == DistillingLayer.output_length(length)


def test_mix_merges_heads_in_the_head_major_layout_of_informers_code():
    # mixed: the inner output [B, L, H, D] is laid out [B, H, L, D] and read back as [B, L, H·D]
    torch.manual_seed(0)
    plain = AttentionLayer(FullAttention(), d_model=8, n_heads=2)
    mixed = AttentionLayer(FullAttention(), d_model=8, n_heads=2, mix=True)
    mixed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 8)
    captured = {}
    plain.out.register_forward_hook(lambda m, inp, out: captured.setdefault("plain", inp[0]))
    mixed.out.register_forward_hook(lambda m, inp, out: captured.setdefault("mixed", inp[0]))
    plain(x, x, x), mixed(x, x, x)
    heads = captured["plain"].view(2, 6, 2, 4)  # [B, L, H, D]
    expected = heads.permute(0, 2, 1, 3).reshape(2, 6, 8)
    torch.testing.assert_close(captured["mixed"], expected)
    assert not torch.allclose(captured["mixed"], captured["plain"])


# -------------------------------------------------------------------------------------------- the model
def build(**args):
    torch.manual_seed(0)
    defaults = dict(d_model=16, d_ff=32, n_heads=2, e_layers=2, d_layers=1, factor=3)
    return build_model("informer", {**defaults, **args}, n_vars=3, n_marks=4, lookback=96, horizon=24, label_len=48)


def batch(B=2, L=96, H=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, L, 3, generator=g), torch.rand(B, L, 4, generator=g) - 0.5, torch.rand(B, H, 4, generator=g) - 0.5


@pytest.mark.parametrize("e_layers, distil, expected", [(2, True, 49), (3, True, 26), (2, False, 96)])
def test_encoder_memory_length_follows_distilling(e_layers, distil, expected):
    model = build(e_layers=e_layers, distil=distil).eval()
    x, x_mark, _ = batch()
    with torch.no_grad():
        memory = model.encoder(model.enc_embedding(x, x_mark))
    assert memory.shape == (2, expected, 16)


@pytest.mark.parametrize("cross", ["full", "probsparse"])
@pytest.mark.parametrize("mixing", ["none", "decoder", "probsparse"])
def test_forecast_shape_and_finite(cross, mixing):
    model = build(cross_attention=cross, head_mixing=mixing).eval()
    with torch.no_grad():
        out = model(*batch())
    assert out.shape == (2, 24, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "cross, mixing, expected",
    [
        # (encoder self, decoder self, decoder cross): which attention layers merge heads the "mix" way
        ("full", "none", (False, False, False)),
        ("full", "decoder", (False, True, False)),  # the authors' repository, and so the recipe
        ("probsparse", "decoder", (False, True, False)),
        ("full", "probsparse", (True, True, False)),  # full cross-attention never mixes
        ("probsparse", "probsparse", (True, True, True)),  # Time-Series-Library's script
    ],
)
def test_head_mixing_reaches_exactly_the_attention_layers_it_names(cross, mixing, expected):
    model = build(cross_attention=cross, head_mixing=mixing)
    encoder_mix = {layer.attention.mix for layer in model.encoder.layers}
    decoder = model.decoder.layers[0]
    assert len(encoder_mix) == 1
    assert (encoder_mix.pop(), decoder.self_attention.mix, decoder.cross_attention.mix) == expected


def test_decoder_is_causal_over_the_horizon():
    # with every query active (large factor) the only path from a later step to an earlier one would be a
    # missing mask in the decoder's self-attention; the placeholders are zeros so only marks carry step info
    model = build(factor=100).eval()
    x, x_mark, y_mark = batch()
    changed = y_mark.clone()
    changed[:, -1] += 1.0
    with torch.no_grad():
        a, b = model(x, x_mark, y_mark), model(x, x_mark, changed)
    torch.testing.assert_close(a[:, :-1], b[:, :-1], atol=ATOL, rtol=ATOL)
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_forecast_uses_the_last_label_len_steps_as_decoder_start():
    # a change to the most recent observed step must reach the forecast even with the encoder bypassed
    model = build().eval()
    x, x_mark, y_mark = batch()
    memory = torch.zeros(2, 49, 16)
    model.encoder.forward = lambda h: memory  # isolate the decoder path
    x2 = x.clone()
    x2[:, -1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(x, x_mark, y_mark), model(x2, x_mark, y_mark))
        x3 = x.clone()
        x3[:, : 96 - 48] += 1.0  # steps older than label_len reach the decoder only through the encoder
        torch.testing.assert_close(model(x, x_mark, y_mark), model(x3, x_mark, y_mark))


def test_model_errors_name_what_was_received():
    model = build()
    x, x_mark, y_mark = batch()
    with pytest.raises(ValueError, match=r"expected x of shape \[B, L, N=3\], got \(2, 96, 5\)"):
        model(torch.randn(2, 96, 5), x_mark, y_mark)
    with pytest.raises(ValueError, match=r"expected y_mark of shape \[B, H=24, F\]"):
        model(x, x_mark, y_mark[:, :10])
    # built from a recipe, a constructor's argument check is a recipe error
    with pytest.raises(ConfigError, match="cross_attention must be one of"):
        build(cross_attention="sparse")
    with pytest.raises(ConfigError, match="head_mixing must be one of"):
        build(head_mixing="all")


# ------------------------------------------------------------------------------ graph-safe key sampling
def _reference_sample_keys(self, n_queries, n_keys, n_sample, device):
    """The key sample as the reference code draws it: on the CPU, by torch's global generator in training and
    by a generator seeded with EVAL_SAMPLING_SEED in eval, then copied to the device at every call."""
    generator = None if self.training else torch.Generator().manual_seed(EVAL_SAMPLING_SEED)
    return torch.randint(n_keys, (n_queries, n_sample), generator=generator).to(device)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_device_side_key_sampling_gives_the_outputs_and_gradients_of_the_cpu_draw(monkeypatch, training):
    # on a CPU the device's generator is torch's global one, so the same seed draws the same keys (and the
    # same dropout masks, interleaved in the same order) as the reference's CPU draw
    model = build(dropout=0.2, head_mixing="probsparse", cross_attention="probsparse").train(training)
    inputs = batch()

    def run():
        model.zero_grad()
        torch.manual_seed(7)
        out = model(*inputs)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    out, grads = run()
    monkeypatch.setattr(ProbSparseAttention, "_sample_keys", _reference_sample_keys)
    expected, expected_grads = run()
    assert torch.equal(out, expected)
    assert all(torch.equal(g, e) for g, e in zip(grads, expected_grads))


def test_eval_key_sample_is_made_once_per_shape_and_kept():
    # a replayed CUDA graph reads the sample from device memory: it must be the same tensor at every call
    attn = ProbSparseAttention(factor=2).eval()
    first = attn._sample_keys(12, 12, 6, torch.device("cpu"))
    assert attn._sample_keys(12, 12, 6, torch.device("cpu")) is first
    assert torch.equal(first, torch.randint(12, (12, 6), generator=torch.Generator().manual_seed(EVAL_SAMPLING_SEED)))
    assert attn._sample_keys(10, 12, 6, torch.device("cpu")).shape == (10, 6)
