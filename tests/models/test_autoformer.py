"""Autoformer: series decomposition, Auto-Correlation and the decoder initialisation (arXiv 2106.13008)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sciformer.config import load_recipe
from sciformer.models.autoformer import Autoformer
from sciformer.nn.autocorrelation import AutoCorrelation
from sciformer.nn.decomposition import MovingAverage, SeasonalLayerNorm, SeriesDecomposition

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ decomposition
def test_decomposition_is_moving_average_plus_remainder_with_edge_padding():
    x = torch.tensor([1.0, 2.0, 6.0, 4.0]).view(1, 4, 1)  # [B, L, N]
    seasonal, trend = SeriesDecomposition(kernel_size=3)(x)
    # padded by repeating the ends: [1 | 1, 2, 6, 4 | 4]
    expected_trend = torch.tensor([4 / 3, 3.0, 4.0, 14 / 3]).view(1, 4, 1)
    torch.testing.assert_close(trend, expected_trend)
    torch.testing.assert_close(seasonal, torch.tensor([-1 / 3, -1.0, 2.0, -2 / 3]).view(1, 4, 1))
    torch.testing.assert_close(seasonal + trend, x)


def test_moving_average_pads_several_steps_per_side_and_channels_stay_separate():
    x = torch.tensor([[3.0, 10.0], [0.0, 10.0], [0.0, 10.0], [6.0, 10.0]]).view(1, 4, 2)
    trend = MovingAverage(kernel_size=5)(x)
    # channel 0 padded to [3, 3 | 3, 0, 0, 6 | 6, 6]; channel 1 is constant and must stay so
    torch.testing.assert_close(trend[0, :, 0], torch.tensor([9 / 5, 12 / 5, 3.0, 18 / 5]))
    torch.testing.assert_close(trend[0, :, 1], torch.full((4,), 10.0))


def test_moving_average_keeps_the_length_for_even_kernels():
    x = torch.arange(10.0).view(1, 10, 1)
    trend = MovingAverage(kernel_size=4)(x)  # one more step of padding in front than at the end
    assert trend.shape == x.shape
    # a straight line away from the edges is preserved up to the half-step lag of an even window
    torch.testing.assert_close(trend[0, 2:-1, 0], x[0, 2:-1, 0] - 0.5)


@pytest.mark.parametrize("kernel_size", [1, 4, 25])
def test_moving_average_equals_a_pooling_of_the_padded_series_values_and_gradients(kernel_size):
    x = torch.randn(3, 96, 5, dtype=torch.float64, requires_grad=True)
    front, end = kernel_size - 1 - (kernel_size - 1) // 2, (kernel_size - 1) // 2
    padded = torch.cat([x[:, :1].expand(-1, front, -1), x, x[:, -1:].expand(-1, end, -1)], dim=1)
    expected = torch.nn.functional.avg_pool1d(padded.transpose(1, 2), kernel_size, stride=1).transpose(1, 2)
    trend = MovingAverage(kernel_size)(x)
    torch.testing.assert_close(trend, expected)
    weights = torch.randn_like(trend)
    (grad,) = torch.autograd.grad((trend * weights).sum(), x)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), x)
    torch.testing.assert_close(grad, expected_grad)


def test_moving_average_rejects_a_non_series_input():
    with pytest.raises(ValueError, match=r"\[B, L, N\]"):
        MovingAverage(3)(torch.zeros(4, 5))


def test_seasonal_layer_norm_has_zero_time_mean_and_matches_layernorm_minus_its_mean():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 8)
    norm = SeasonalLayerNorm(8)
    with torch.no_grad():
        norm.norm.weight.uniform_(0.5, 1.5)
    out = norm(x)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(2, 8), atol=1e-6, rtol=0)
    # a LayerNorm with any bias gives the same output: the bias cancels in the subtraction
    reference = torch.nn.LayerNorm(8)
    with torch.no_grad():
        reference.weight.copy_(norm.norm.weight)
        reference.bias.normal_()
    ref = reference(x)
    torch.testing.assert_close(out, ref - ref.mean(dim=1, keepdim=True))


# -------------------------------------------------------------------------------------- auto-correlation
def periodic(period: int, length: int = 96, batch: int = 2, heads: int = 2, channels: int = 3, noise: float = 0.0, seed: int = 0):
    """Sines of one period with a random phase per (sample, head, channel): ``[B, L, H, E]``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32).view(1, length, 1, 1)
    phase = 2 * math.pi * torch.rand(batch, 1, heads, channels, generator=g)
    x = torch.sin(2 * math.pi * t / period + phase)
    return x + noise * torch.randn(x.shape, generator=g)


def test_autocorrelation_peaks_at_multiples_of_the_period():
    q = periodic(period=24, noise=0.1)
    corr = AutoCorrelation.correlation(q, q)  # [B, L]
    assert corr.shape == (2, 96)
    for b in range(2):
        top = set(torch.topk(corr[b], 4).indices.tolist())
        assert top == {0, 24, 48, 72}, f"sample {b}: top delays {sorted(top)}, expected multiples of 24"
        assert int(corr[b, 1:].argmax()) + 1 in (24, 48, 72)
    # a different period moves the peaks
    corr32 = AutoCorrelation.correlation(periodic(period=32), periodic(period=32))
    assert set(torch.topk(corr32[0], 3).indices.tolist()) == {0, 32, 64}


def test_correlation_is_the_circular_cross_correlation():
    torch.manual_seed(0)
    q, k = torch.randn(1, 11, 1, 1), torch.randn(1, 11, 1, 1)  # odd length on purpose
    corr = AutoCorrelation.correlation(q, k)[0]
    direct = torch.stack([(torch.roll(q[0, :, 0, 0], -tau) * k[0, :, 0, 0]).sum() for tau in range(11)])
    torch.testing.assert_close(corr, direct, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_periodic_values_are_reproduced_when_only_period_delays_are_kept(training):
    # factor 0.9 keeps int(0.9 ln 96) = 4 delays: exactly 0, 24, 48, 72; rolling a 24-periodic series by any
    # of them leaves it unchanged, and the softmax weights sum to one
    corr_layer = AutoCorrelation(factor=0.9).train(training)
    assert corr_layer.top_k(96) == 4
    q = periodic(period=24)
    v = periodic(period=24, seed=1)
    torch.testing.assert_close(corr_layer(q, q, v), v, atol=1e-5, rtol=1e-5)


def test_aggregation_rolls_values_backwards_by_each_delay():
    torch.manual_seed(0)
    v = torch.randn(2, 10, 2, 3)
    delays = torch.tensor([[0, 3], [7, 1]])
    weights = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    out = AutoCorrelation.aggregate(v, delays, weights)
    for b in range(2):
        expected = sum(weights[b, i] * torch.roll(v[b], -int(delays[b, i]), dims=0) for i in range(2))
        torch.testing.assert_close(out[b], expected)


def test_delays_are_per_sample_in_eval_and_shared_in_training():
    # sample 0 has period 24, sample 1 period 32: in evaluation each picks its own delays, so a sample's
    # output does not depend on the rest of the batch; in training the batch shares one set of delays
    q = torch.cat([periodic(24, batch=1), periodic(32, batch=1, seed=3)])
    v = torch.randn(2, 96, 2, 3, generator=torch.Generator().manual_seed(5))
    layer = AutoCorrelation(factor=1.0)
    layer.eval()
    batched = layer(q, q, v)
    alone = layer(q[:1], q[:1], v[:1])
    torch.testing.assert_close(batched[:1], alone)
    layer.train()
    assert not torch.allclose(layer(q, q, v)[:1], layer(q[:1], q[:1], v[:1]), atol=1e-4)


def test_keys_and_values_are_padded_or_cut_to_the_query_length():
    layer = AutoCorrelation(factor=1.0).eval()
    q = torch.randn(2, 12, 2, 4)
    longer = layer(q, torch.randn(2, 20, 2, 4), torch.randn(2, 20, 2, 5))
    shorter = layer(q, torch.randn(2, 8, 2, 4), torch.randn(2, 8, 2, 5))
    assert longer.shape == shorter.shape == (2, 12, 2, 5)
    # zero padding: with all-zero keys/values beyond the first 8 steps, cutting and padding agree
    k, v = torch.randn(2, 8, 2, 4), torch.randn(2, 8, 2, 5)
    padded_k = torch.cat([k, torch.zeros(2, 4, 2, 4)], dim=1)
    padded_v = torch.cat([v, torch.zeros(2, 4, 2, 5)], dim=1)
    torch.testing.assert_close(layer(q, k, v), layer(q, padded_k, padded_v))


# ----------------------------------------------------------------------------------------------- model
def small_model(label_len: int = 8, **kwargs) -> Autoformer:
    args = dict(d_model=16, n_heads=2, d_ff=16, e_layers=1, d_layers=1, factor=1.0, moving_avg=5)
    args.update(kwargs)
    return Autoformer(n_vars=3, n_marks=4, lookback=16, horizon=6, label_len=label_len, **args)


def test_decoder_starts_from_the_decomposed_lookback():
    torch.manual_seed(0)
    model = small_model().eval()
    captured = {}
    model.decoder.register_forward_pre_hook(lambda mod, args: captured.update(trend=args[2]))
    model.dec_embedding.register_forward_pre_hook(lambda mod, args: captured.update(seasonal=args[0], mark=args[1]))
    x, x_mark, y_mark = torch.randn(2, 16, 3), torch.rand(2, 16, 4), torch.rand(2, 6, 4)
    out = model(x, x_mark, y_mark)
    assert out.shape == (2, 6, 3)
    seasonal, trend = SeriesDecomposition(5)(x)
    assert captured["trend"].shape == captured["seasonal"].shape == (2, 8 + 6, 3)
    torch.testing.assert_close(captured["trend"][:, :8], trend[:, -8:])
    torch.testing.assert_close(captured["trend"][:, 8:], x.mean(dim=1, keepdim=True).expand(-1, 6, -1))
    torch.testing.assert_close(captured["seasonal"][:, :8], seasonal[:, -8:])
    assert torch.equal(captured["seasonal"][:, 8:], torch.zeros(2, 6, 3))
    torch.testing.assert_close(captured["mark"], torch.cat([x_mark[:, -8:], y_mark], dim=1))


def test_label_len_zero_means_no_known_steps_in_the_decoder():
    model = small_model(label_len=0).eval()
    captured = {}
    model.decoder.register_forward_pre_hook(lambda mod, args: captured.update(trend=args[2]))
    out = model(torch.randn(2, 16, 3), torch.rand(2, 16, 4), torch.rand(2, 6, 4))
    assert out.shape == (2, 6, 3)
    assert captured["trend"].shape == (2, 6, 3)


def test_model_rejects_a_wrong_input_shape_and_label_len():
    with pytest.raises(ValueError, match=r"expected x of shape \[B, 16, 3\], got \(2, 12, 3\)"):
        small_model()(torch.randn(2, 12, 3))
    with pytest.raises(ValueError, match="label_len"):
        small_model(label_len=20)


def test_works_without_time_features():
    model = Autoformer(n_vars=3, n_marks=0, lookback=16, horizon=6, label_len=8, d_model=16, n_heads=2, d_ff=16, moving_avg=5)
    out = model(torch.randn(2, 16, 3))
    assert out.shape == (2, 6, 3) and torch.isfinite(out).all()


def test_official_recipe_validates_with_the_ett_h1_script_settings():
    recipe = load_recipe(REPO / "recipes" / "ett_autoformer.yaml")
    assert recipe.model.name == "autoformer"
    expected = dict(d_model=512, n_heads=8, d_ff=2048, e_layers=2, d_layers=1, factor=3.0, moving_avg=25, dropout=0.1, activation="gelu")
    assert {k: recipe.model.args[k] for k in expected} == expected
    assert (recipe.train.epochs, recipe.train.batch_size, recipe.train.lr, recipe.train.lr_schedule, recipe.train.patience) == (10, 32, 1e-4, "halve", 3)
    assert (recipe.data.lookback, recipe.data.label_len, recipe.data.horizon, recipe.seed) == (96, 48, 96, 2021)


# ------------------------------------------------------------- graph-safe delays against the official code
def official_auto_correlation(q, k, v, factor, training):
    """Autoformer's official ``AutoCorrelation.forward`` (thuml/Autoformer ``layers/AutoCorrelation.py``) for
    ``L == S``: training rolls the values once per shared delay, read back to the host with ``int(index[i])``;
    inference gathers each sample's delays from the doubled series."""
    L = q.shape[1]
    corr = torch.fft.irfft(torch.fft.rfft(q.permute(0, 2, 3, 1), dim=-1) * torch.conj(torch.fft.rfft(k.permute(0, 2, 3, 1), dim=-1)), n=L, dim=-1)
    values = v.permute(0, 2, 3, 1)  # [B, H, D, L]
    top_k = int(factor * math.log(L))
    mean_value = corr.mean(dim=1).mean(dim=1)  # [B, L]
    out = torch.zeros_like(values)
    if training:
        index = torch.topk(mean_value.mean(dim=0), top_k, dim=-1)[1]
        weights = torch.softmax(torch.stack([mean_value[:, index[i]] for i in range(top_k)], dim=-1), dim=-1)
        for i in range(top_k):
            out = out + torch.roll(values, -int(index[i]), -1) * weights[:, i, None, None, None]
    else:
        weights, delay = torch.topk(mean_value, top_k, dim=-1)
        weights = torch.softmax(weights, dim=-1)
        doubled = values.repeat(1, 1, 1, 2)
        steps = torch.arange(L).expand_as(values)
        for i in range(top_k):
            out = out + torch.gather(doubled, -1, steps + delay[:, i, None, None, None]) * weights[:, i, None, None, None]
    return out.permute(0, 3, 1, 2)  # [B, L, H, D]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_device_side_delay_aggregation_gives_the_official_outputs_and_gradients(training):
    # the official training path reads every delay back to the host; ours keeps them on the device (graph-safe)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(3, 96, 2, 8, generator=g, requires_grad=True) for _ in range(3))  # float32: the correlation's dtype
    ours = AutoCorrelation(factor=3).train(training)(q, k, v)
    expected = official_auto_correlation(q, k, v, 3, training)
    torch.testing.assert_close(ours, expected)
    cotangent = torch.randn(ours.shape, generator=g)
    grads = torch.autograd.grad(ours, (q, k, v), cotangent)
    expected_grads = torch.autograd.grad(expected, (q, k, v), cotangent)
    for name, a, b in zip("qkv", grads, expected_grads):
        torch.testing.assert_close(a, b, msg=lambda m, name=name: f"gradient of {name}: {m}")
