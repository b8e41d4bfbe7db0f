"""ETSformer's blocks (Woo et al., 2022, "ETSformer: Exponential Smoothing Transformers for Time-series
Forecasting", arXiv 2202.01381).

* :func:`causal_fft_conv` — ``out[t] = Σ_{j≤t} kernel[j] · x[t−j]`` along time, computed with FFTs.
* :class:`ExponentialSmoothingAttention` (ESA) — attention whose weights are fixed by one learnable
  smoothing parameter per head: ``out[t] = α^{t+1} v0 + Σ_{j=0..t} (1−α) α^j v[t−j]`` (0-based ``t``).
* :class:`FrequencyAttention` (FA) — keeps the top-k Fourier components of the lookback and extrapolates
  them over lookback + horizon steps.
* :class:`GrowthLayer`, :class:`LevelLayer`, :class:`DampingLayer` — the growth, level and damped-trend
  parts of the exponential-smoothing decomposition.
* :class:`ETSEncoderLayer`, :class:`ETSDecoderLayer` — one encoder / decoder stage built from the above.

Conventions follow the authors' code (salesforce/ETSformer) and TSLib's port of it: the smoothing weight
``α = sigmoid(θ)`` multiplies the *previous state* and ``1 − α`` the new value, parameters are drawn from a
standard normal, and all dropouts sit where the authors placed them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sciformer.nn.encoder import FeedForward


def causal_fft_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Causal convolution along dim 1 via FFT: ``out[:, t] = Σ_{j=0..t} kernel[j] · x[:, t − j]``.

    ``x [B, T, H, D]``, ``kernel [T, H]`` (one kernel per head) → ``[B, T, H, D]``. Zero-padding both to
    ``2T`` turns the FFT's circular convolution into a linear one, so nothing wraps around.
    """
    t = x.shape[1]
    if x.dtype in (torch.float16, torch.bfloat16):  # FFTs of arbitrary length need float32
        x, kernel = x.float(), kernel.float()
    if kernel.shape[0] != t:
        raise ValueError(f"expected a kernel of length T = {t} along dim 0, got shape {tuple(kernel.shape)}")
    n = 2 * t
    x_f = torch.fft.rfft(x, n=n, dim=1)  # [B, n//2+1, H, D]
    k_f = torch.fft.rfft(kernel, n=n, dim=0)[None, :, :, None]  # [1, n//2+1, H, 1]
    return torch.fft.irfft(x_f * k_f, n=n, dim=1)[:, :t]


class ExponentialSmoothingAttention(nn.Module):
    """Exponential-smoothing attention (ETSformer §3.2, "ESA"), one smoothing parameter per head.

    ``values [B, T, H, D]`` → ``[B, T, H, D]`` with ``out[t] = α^{t+1} v0 + Σ_{j=0..t} (1−α) α^j v[t−j]``:
    the recursion ``s[t] = α s[t−1] + (1−α) v[t]`` started from the learned state ``s[−1] = v0``, written
    as a fixed attention matrix and evaluated as an FFT convolution. ``α = sigmoid(θ_h)``.

    With ``aux=True`` (the level update) a second input ``aux [B, T, H, D]`` enters the recursion as
    ``s[t] = α (s[t−1] + aux[t]) + (1−α) v[t]``, which adds ``Σ_{j=0..t} α^{j+1} aux[t−j]``. (The authors'
    code convolves this term along the wrong axis, a size-1 one, so it degenerates to ``α^{T−t} aux[t]``;
    here it follows the paper's level equation.) Dropout acts on the inputs, as in the authors' code.
    """

    def __init__(self, n_heads: int, head_dim: int, dropout: float = 0.1, aux: bool = False) -> None:
        super().__init__()
        self.smoothing_logit = nn.Parameter(torch.randn(n_heads))  # θ: α = sigmoid(θ)
        self.v0 = nn.Parameter(torch.randn(n_heads, head_dim))  # initial state s[−1]
        self.dropout = nn.Dropout(dropout)
        self.aux_dropout = nn.Dropout(dropout) if aux else None

    @property
    def alpha(self) -> torch.Tensor:
        """Smoothing weights ``[H]`` in (0, 1)."""
        return torch.sigmoid(self.smoothing_logit)

    def forward(self, values: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        _, t, h, d = values.shape
        if (h, d) != tuple(self.v0.shape):
            raise ValueError(f"expected values [B, T, {self.v0.shape[0]}, {self.v0.shape[1]}], got {tuple(values.shape)}")
        alpha = self.alpha  # [H]
        powers = torch.arange(t + 1, device=values.device, dtype=values.dtype)[:, None]  # [T+1, 1]
        alpha_pow = alpha[None] ** powers  # [T+1, H]: α^0 .. α^T
        out = causal_fft_conv(self.dropout(values), (1 - alpha) * alpha_pow[:-1])
        out = out + alpha_pow[1:, :, None] * self.v0  # α^{t+1} v0, [T, H, D]
        if aux is not None:
            if self.aux_dropout is None:
                raise ValueError("this ExponentialSmoothingAttention was built with aux=False but got aux values")
            out = out + causal_fft_conv(self.aux_dropout(aux), alpha_pow[1:])
        return out


class FrequencyAttention(nn.Module):
    """Frequency attention (ETSformer §3.2, "FA"): the seasonal part as the top-k Fourier components.

    ``x [B, T, D]`` → ``[B, T + horizon, D]``. Per sample and channel: rfft over time, drop the DC term
    (and the Nyquist term for even ``T``, whose phase is not identifiable), keep the ``top_k`` largest
    amplitudes and sum their cosines ``2|X_k|/T · cos(2π f_k t + arg X_k)`` for ``t = 0 .. T + horizon − 1``,
    so the same waves continue into the forecast window.
    """

    def __init__(self, horizon: int, top_k: int = 5) -> None:
        super().__init__()
        if top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k}")
        self.horizon = horizon
        self.top_k = top_k

    @staticmethod
    def n_frequencies(length: int) -> int:
        """How many frequencies FA can choose from for a lookback of ``length`` (no DC, no Nyquist)."""
        return (length - 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        if x.dtype in (torch.float16, torch.bfloat16):  # FFTs of arbitrary length need float32
            x = x.float()
        n_freq = self.n_frequencies(t)
        if self.top_k > n_freq:
            raise ValueError(f"top_k = {self.top_k} exceeds the {n_freq} non-constant frequencies of a length-{t} input")
        spectrum = torch.fft.rfft(x, dim=1)[:, 1 : 1 + n_freq]  # [B, n_freq, D], DC (and Nyquist) dropped
        # Built on x's device: TSLib issue #529 indexed a CPU frequency grid with GPU indices.
        freqs = torch.fft.rfftfreq(t, device=x.device, dtype=x.dtype)[1 : 1 + n_freq]  # [n_freq]
        index = spectrum.detach().abs().topk(self.top_k, dim=1).indices  # [B, k, D]; the choice carries no gradient
        coeff = spectrum.gather(1, index)  # [B, k, D] complex
        f = freqs[index]  # [B, k, D]
        steps = torch.arange(t + self.horizon, device=x.device, dtype=x.dtype)  # [T + H]
        angle = 2 * math.pi * f[:, :, None, :] * steps[None, None, :, None]  # [B, k, T + H, D]
        # 2|X| cos(ωt + φ) = 2 (Re X cos ωt − Im X sin ωt): the same waves, without angle()'s kink at |X| = 0.
        waves = coeff.real[:, :, None] * torch.cos(angle) - coeff.imag[:, :, None] * torch.sin(angle)
        return waves.sum(dim=1) * (2.0 / t)  # [B, T + H, D]


class GrowthLayer(nn.Module):
    """Growth representations (ETSformer eq. for ``B``): ESA over first differences of a per-head projection.

    ``x [B, T, d_model]`` → ``[B, T + 1, d_model]``; step 0 is the smoothing's initial state ``v0`` (the
    growth "before" the lookback), step ``t + 1`` the smoothed growth after seeing ``x[t]``. The first
    difference uses a learned ``z0`` as the value before ``x[0]``.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.z0 = nn.Parameter(torch.randn(n_heads, self.head_dim))
        self.in_proj = nn.Linear(d_model, d_model)
        self.smoothing = ExponentialSmoothingAttention(n_heads, self.head_dim, dropout)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        values = self.in_proj(x).view(b, t, self.n_heads, self.head_dim)  # [B, T, H, Dh]
        values = torch.cat([self.z0.expand(b, 1, -1, -1), values], dim=1)  # [B, T + 1, H, Dh]
        growth = self.smoothing(values[:, 1:] - values[:, :-1])  # [B, T, H, Dh]
        growth = torch.cat([self.smoothing.v0.expand(b, 1, -1, -1), growth], dim=1)  # [B, T + 1, H, Dh]
        return self.out_proj(growth.reshape(b, t + 1, -1))  # [B, T + 1, d_model]


class LevelLayer(nn.Module):
    """Level update (ETSformer eq. for ``E``), one smoothing parameter per variable:
    ``E[t] = α (E[t−1] + Linear(B[t−1])) + (1−α) (E_prev[t] − Linear(S[t]))``.

    ``level [B, T, N]`` (the previous layer's level, or the input series), ``growth [B, T, d_model]``
    (``B[t−1]`` at step ``t``), ``season [B, T, d_model]`` → new level ``[B, T, N]``.
    """

    def __init__(self, d_model: int, n_vars: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_vars = n_vars
        self.growth_proj = nn.Linear(d_model, n_vars)
        self.season_proj = nn.Linear(d_model, n_vars)
        self.smoothing = ExponentialSmoothingAttention(n_vars, 1, dropout, aux=True)

    def forward(self, level: torch.Tensor, growth: torch.Tensor, season: torch.Tensor) -> torch.Tensor:
        b, t, n = level.shape
        if n != self.n_vars:
            raise ValueError(f"expected level [B, T, {self.n_vars}], got {tuple(level.shape)}")
        # One ESA "head" per variable, of width 1: [B, T, N] → [B, T, N, 1].
        values = (level - self.season_proj(season)).unsqueeze(-1)
        growth = self.growth_proj(growth).unsqueeze(-1)
        return self.smoothing(values, aux=growth).squeeze(-1)  # [B, T, N]


class DampingLayer(nn.Module):
    """Damped trend (ETSformer §3.3): the last growth ``[B, 1, d_model]`` → ``[B, horizon, d_model]``,
    step ``h`` (1-based) scaled by ``Σ_{i=1..h} φ^i`` with ``φ = sigmoid(learned)`` per head."""

    def __init__(self, horizon: int, n_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.horizon, self.n_heads = horizon, n_heads
        self.damping_logit = nn.Parameter(torch.randn(n_heads))
        self.dropout = nn.Dropout(dropout)

    @property
    def phi(self) -> torch.Tensor:
        """Damping factors ``[H]`` in (0, 1)."""
        return torch.sigmoid(self.damping_logit)

    def forward(self, growth_last: torch.Tensor) -> torch.Tensor:
        b, _, d = growth_last.shape
        powers = torch.arange(1, self.horizon + 1, device=growth_last.device, dtype=growth_last.dtype)[:, None]
        factors = (self.phi[None] ** powers).cumsum(dim=0)  # [horizon, H]
        x = growth_last.expand(b, self.horizon, d).reshape(b, self.horizon, self.n_heads, -1)  # [B, horizon, H, Dh]
        return (self.dropout(x) * factors[:, :, None]).reshape(b, self.horizon, d)


class ETSEncoderLayer(nn.Module):
    """One ETSformer encoder stage: peel off season (FA), then growth (ESA), then update the level.

    ``residual [B, T, d_model]``, ``level [B, T, N]`` → ``(residual', level', growth [B, T + 1, d_model],
    season [B, T + horizon, d_model])``. The residual left after removing season and growth goes through
    ``LayerNorm → +FFN (no bias) → LayerNorm`` to feed the next stage. The last stage's residual is read by
    nothing, so ``update_residual=False`` leaves out its FFN and norms (they would never get a gradient)
    and returns ``None`` for it.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_vars: int,
        horizon: int,
        top_k: int = 5,
        d_ff: int | None = None,
        dropout: float = 0.1,
        activation: str = "gelu",
        update_residual: bool = True,
    ) -> None:
        super().__init__()
        self.horizon = horizon
        self.season = FrequencyAttention(horizon, top_k)
        self.growth = GrowthLayer(d_model, n_heads, dropout)
        self.level = LevelLayer(d_model, n_vars, dropout)
        self.season_dropout = nn.Dropout(dropout)
        self.growth_dropout = nn.Dropout(dropout)
        self.ffn: FeedForward | None = None
        if update_residual:
            self.ffn = FeedForward(d_model, d_ff or 4 * d_model, dropout, activation, bias=False)
            self.norm1 = nn.LayerNorm(d_model)
            self.norm2 = nn.LayerNorm(d_model)

    def forward(self, residual: torch.Tensor, level: torch.Tensor):
        t = residual.shape[1]
        season = self.season_dropout(self.season(residual))  # [B, T + horizon, d_model]
        residual = residual - season[:, :t]
        growth = self.growth_dropout(self.growth(residual))  # [B, T + 1, d_model]
        level = self.level(level, growth[:, :-1], season[:, :t])  # growth[:, t] is B[t−1]
        if self.ffn is None:
            return None, level, growth, season
        residual = self.norm1(residual - growth[:, 1:])
        residual = self.norm2(residual + self.ffn(residual))
        return residual, level, growth, season


class ETSDecoderLayer(nn.Module):
    """One ETSformer decoder stage: ``growth [B, T + 1, d_model]``, ``season [B, T + horizon, d_model]`` →
    damped growth and extrapolated season over the horizon, both ``[B, horizon, d_model]``."""

    def __init__(self, n_heads: int, horizon: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.horizon = horizon
        self.damping = DampingLayer(horizon, n_heads, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, growth: torch.Tensor, season: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dropout(self.damping(growth[:, -1:])), season[:, -self.horizon :]
