"""ETSformer (arXiv 2202.01381): its smoothing, frequency and damping blocks against hand-computed values."""

import math

import pytest
import torch

from sciformer.models.etsformer import ETSformer, random_scale_shift_jitter
from sciformer.nn.exponential_smoothing import (
    DampingLayer,
    ExponentialSmoothingAttention,
    FrequencyAttention,
    GrowthLayer,
    causal_fft_conv,
)


def esa(n_heads, head_dim, alphas, v0, aux=False):
    layer = ExponentialSmoothingAttention(n_heads, head_dim, dropout=0.0, aux=aux)
    with torch.no_grad():
        layer.smoothing_logit.copy_(torch.logit(torch.tensor(alphas, dtype=torch.float64)))
        layer.v0.copy_(torch.as_tensor(v0, dtype=torch.float64))
    return layer.double()


def test_causal_fft_conv_equals_direct_sum():
    g = torch.Generator().manual_seed(0)
    x, kernel = torch.randn(2, 7, 3, 4, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    direct = torch.zeros_like(x)
    for t in range(7):
        for j in range(t + 1):
            direct[:, t] += kernel[j][None, :, None] * x[:, t - j]
    torch.testing.assert_close(causal_fft_conv(x, kernel), direct)


def test_esa_by_hand_alpha_half_impulse():
    # α = 0.5, v0 = 1, v = [1, 0, 0]:
    # t=0: α·v0 + (1−α)·v0 = 1;  t=1: α²·v0 + (1−α)α·1 = 0.5;  t=2: α³·v0 + (1−α)α²·1 = 0.25.
    layer = esa(1, 1, [0.5], [[1.0]])
    values = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(layer(values).flatten(), torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))


def test_esa_equals_explicit_weighted_sum_with_initial_state():
    alphas = [0.3, 0.8]
    v0 = [[0.5, -1.0], [2.0, 0.25]]
    layer = esa(2, 2, alphas, v0)
    values = torch.randn(2, 6, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = torch.zeros_like(values)
    for h, a in enumerate(alphas):
        for t in range(6):
            expected[:, t, h] = a ** (t + 1) * torch.tensor(v0[h], dtype=torch.float64)
            for j in range(t + 1):
                expected[:, t, h] += (1 - a) * a**j * values[:, t - j, h]
    torch.testing.assert_close(layer(values), expected)


def test_esa_aux_term_follows_the_level_recursion():
    # s[t] = α (s[t−1] + aux[t]) + (1−α) v[t], s[−1] = v0 (the paper's level equation, α ↔ 1−α convention).
    alphas, v0 = [0.6, 0.2, 0.9], [[1.0], [-0.5], [0.3]]
    layer = esa(3, 1, alphas, v0, aux=True)
    g = torch.Generator().manual_seed(2)
    values = torch.randn(2, 5, 3, 1, generator=g, dtype=torch.float64)
    aux = torch.randn(2, 5, 3, 1, generator=g, dtype=torch.float64)
    alpha = torch.tensor(alphas, dtype=torch.float64)[None, :, None]
    state = torch.tensor(v0, dtype=torch.float64).expand(2, 3, 1)
    expected = []
    for t in range(5):
        state = alpha * (state + aux[:, t]) + (1 - alpha) * values[:, t]
        expected.append(state)
    torch.testing.assert_close(layer(values, aux), torch.stack(expected, dim=1))


@pytest.mark.parametrize("length, cycles", [(32, 4), (33, 5)])
def test_frequency_attention_reconstructs_and_extrapolates_a_sinusoid(length, cycles):
    horizon = 20
    t = torch.arange(length + horizon, dtype=torch.float64)
    wave = 3.0 * torch.cos(2 * math.pi * cycles / length * t + 0.7)
    x = (wave[:length] + 5.0).view(1, length, 1)  # the constant offset sits in the dropped DC term
    out = FrequencyAttention(horizon, top_k=1)(x)
    assert out.shape == (1, length + horizon, 1)
    torch.testing.assert_close(out.flatten(), wave)


def test_frequency_attention_keeps_the_largest_component_per_channel():
    length, t = 48, torch.arange(48, dtype=torch.float64)
    big, small = torch.sin(2 * math.pi * 3 * t / length), 0.2 * torch.cos(2 * math.pi * 7 * t / length)
    x = torch.stack([big + small, 0.1 * big + small], dim=-1)[None]  # channel 0: 3 cycles win, channel 1: 7 cycles
    out = FrequencyAttention(0, top_k=1)(x)[0]
    torch.testing.assert_close(out[:, 0], big)
    torch.testing.assert_close(out[:, 1], small)


def test_frequency_attention_never_selects_nyquist_or_dc():
    x = torch.tensor([1.0, -1.0] * 8, dtype=torch.float64).view(1, 16, 1) + 4.0  # pure Nyquist + DC
    out = FrequencyAttention(4, top_k=1)(x)
    torch.testing.assert_close(out, torch.zeros(1, 20, 1, dtype=torch.float64))


def test_frequency_attention_rejects_top_k_beyond_available_frequencies():
    with pytest.raises(ValueError, match="top_k = 8 exceeds the 7"):
        FrequencyAttention(4, top_k=8)(torch.randn(1, 16, 2))


def test_damping_scales_last_growth_by_cumulative_powers():
    layer = DampingLayer(horizon=3, n_heads=2, dropout=0.0)
    with torch.no_grad():
        layer.damping_logit.copy_(torch.tensor([0.0, math.log(3.0)]))  # φ = 0.5 and 0.75
    out = layer(torch.ones(1, 1, 4))  # two heads of width 2
    expected_head0 = torch.tensor([0.5, 0.75, 0.875])
    expected_head1 = torch.tensor([0.75, 0.75 + 0.75**2, 0.75 + 0.75**2 + 0.75**3])
    torch.testing.assert_close(out[0, :, :2], expected_head0[:, None].expand(3, 2))
    torch.testing.assert_close(out[0, :, 2:], expected_head1[:, None].expand(3, 2))


def test_growth_layer_prepends_the_initial_state():
    layer = GrowthLayer(d_model=8, n_heads=2, dropout=0.0)
    out = layer(torch.randn(3, 10, 8))
    assert out.shape == (3, 11, 8)
    torch.testing.assert_close(out[:, 0], layer.out_proj(layer.smoothing.v0.reshape(1, 8)).expand(3, 8))


def model(**kwargs):
    args = dict(n_vars=3, n_marks=4, lookback=24, horizon=8, d_model=16, n_heads=2, d_ff=16, e_layers=2, d_layers=2, top_k=2)
    return ETSformer(**{**args, **kwargs})


def test_unequal_encoder_and_decoder_depth_is_rejected():
    with pytest.raises(ValueError, match="e_layers == d_layers, got e_layers=2, d_layers=1"):
        model(e_layers=2, d_layers=1)


def test_top_k_larger_than_the_lookback_spectrum_is_rejected():
    with pytest.raises(ValueError, match="top_k = 12 exceeds the 11"):
        model(top_k=12)


def test_augmentation_only_in_training_mode():
    torch.manual_seed(0)
    x, x_mark = torch.randn(2, 24, 3), torch.rand(2, 24, 4) - 0.5
    net = model(dropout=0.0)
    net.eval()
    reference = net(x, x_mark)
    torch.testing.assert_close(net(x, x_mark), reference)  # eval: deterministic
    net.train()
    assert not torch.allclose(net(x, x_mark), reference)  # training: scale/shift/jitter change the input
    net.augment_sigma = 0.0
    torch.testing.assert_close(net(x, x_mark), reference)  # nothing else differs between the modes


def test_augmentation_scale_and_shift_are_shared_per_variable():
    x = torch.zeros(4, 50, 3)
    torch.manual_seed(0)
    shifted = random_scale_shift_jitter(x, 0.2)
    torch.manual_seed(0)
    scaled = random_scale_shift_jitter(torch.ones(4, 50, 3), 0.2)
    # Same draws: ones·scale + shift + jitter minus (zeros + shift + jitter) leaves the per-variable scale.
    diff = scaled - shifted
    torch.testing.assert_close(diff, diff[:1, :1].expand_as(diff))
    assert not torch.allclose(diff[0, 0], torch.ones(3))


def test_forecast_is_last_level_plus_growth_plus_season():
    # With the projection zeroed, only the last smoothed level remains, repeated over the horizon.
    torch.manual_seed(0)
    net = model().eval()
    with torch.no_grad():
        net.projection.weight.zero_()
        net.projection.bias.zero_()
    out = net(torch.randn(2, 24, 3), torch.rand(2, 24, 4))
    assert out.shape == (2, 8, 3)
    torch.testing.assert_close(out, out[:, :1].expand_as(out))


def test_wrong_input_shape_names_expected_shape():
    with pytest.raises(ValueError, match=r"expected x of shape \[B, L, 3\], got \(2, 24, 5\)"):
        model()(torch.randn(2, 24, 5), torch.rand(2, 24, 4))


# ----------------------------------------------------- graph-safe frequency selection against the official code
def official_fourier_layer(x, horizon, k):
    """The authors' ``FourierLayer`` (salesforce/ETSformer, TSLib ``ETSformer_EncDec.py``): its frequency grid and
    index meshes are made on the CPU and copied to the input's device at every call, and the waves are summed
    over each kept frequency and its conjugate in amplitude/phase form."""
    b, t, d = x.shape
    x_freq = torch.fft.rfft(x, dim=1)
    x_freq, f = (x_freq[:, 1:-1], torch.fft.rfftfreq(t)[1:-1]) if t % 2 == 0 else (x_freq[:, 1:], torch.fft.rfftfreq(t)[1:])
    indices = torch.topk(x_freq.abs(), k, dim=1, largest=True, sorted=True).indices
    mesh_a, mesh_b = torch.meshgrid(torch.arange(b), torch.arange(d), indexing="ij")
    index = (mesh_a.unsqueeze(1), indices, mesh_b.unsqueeze(1))
    x_freq = x_freq[index]
    f = f[None, :, None].expand(b, -1, d).to(x.device)[index][:, :, None]  # [b, k, 1, d]
    x_freq = torch.cat([x_freq, x_freq.conj()], dim=1)
    f = torch.cat([f, -f], dim=1)
    steps = torch.arange(t + horizon, dtype=torch.float)[None, None, :, None].to(x.device)
    amp, phase = (x_freq.abs() / t)[:, :, None], x_freq.angle()[:, :, None]
    return (amp * torch.cos(2 * math.pi * f * steps + phase)).sum(dim=1)


@pytest.mark.parametrize("length", [96, 95], ids=["even", "odd"])
def test_device_side_frequency_selection_gives_the_official_outputs_and_gradients(length):
    # the same waves from a frequency grid built on the input's device: nothing copied from the host per call
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, length, 8, generator=g, requires_grad=True)
    ours, expected = FrequencyAttention(horizon=24, top_k=5)(x), official_fourier_layer(x, 24, 5)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    cotangent = torch.randn(ours.shape, generator=g)
    (grad,), (expected_grad,) = torch.autograd.grad(ours, x, cotangent), torch.autograd.grad(expected, x, cotangent)
    torch.testing.assert_close(grad, expected_grad, atol=1e-4, rtol=1e-4)
