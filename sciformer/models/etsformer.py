"""ETSformer (Woo et al., 2022, "ETSformer: Exponential Smoothing Transformers for Time-series Forecasting",
arXiv 2202.01381).

Exponential smoothing rebuilt from attention-like blocks. Each encoder stage splits its input into a
seasonal part (frequency attention: the top-k Fourier waves, extrapolated over the horizon), a growth part
(exponential-smoothing attention over first differences) and a residual passed on to the next stage, and
updates a per-variable level by exponential smoothing. The decoder damps each stage's last growth over the
horizon and takes each stage's extrapolated season; the forecast is

    last level + Linear(Σ damped growth) + Linear(Σ season).

No decoder input is needed: the forecast comes from the encoder's states alone (``y_mark`` is unused).
Hyperparameters and training-time augmentation follow TSLib's ``ETSformer`` (the code behind the L=96
benchmark numbers), which ports the authors' salesforce/ETSformer.
"""

from __future__ import annotations

import torch
from torch import nn

from sciformer.nn.embedding import DataEmbedding
from sciformer.nn.exponential_smoothing import ETSDecoderLayer, ETSEncoderLayer, FrequencyAttention
from sciformer.registry import Activation, Dropout, NonNegativeFloat, PositiveInt, register_model


@torch.no_grad()
def random_scale_shift_jitter(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """ETSformer's training augmentation of ``x [B, L, N]``: ``x · (1 + σ ε_N) + σ ε_N + σ ε_{B,L,N}``.

    One scale and one shift per variable (shared by the whole batch and all steps), then i.i.d. jitter.
    """
    n = x.shape[-1]
    scale = 1 + sigma * torch.randn(n, device=x.device, dtype=x.dtype)
    shift = sigma * torch.randn(n, device=x.device, dtype=x.dtype)
    return x * scale + shift + sigma * torch.randn_like(x)


@register_model("etsformer")
class ETSformer(nn.Module):
    """``x [B, L, N]``, ``x_mark [B, L, F]`` → forecast ``[B, H, N]``.

    ``top_k`` Fourier waves per stage; ``e_layers`` encoder and ``d_layers`` decoder stages, which must be
    equal (decoder stage ``i`` reads encoder stage ``i``). ``augment_sigma`` is the strength of the random
    scale/shift/jitter applied to ``x`` in training mode only (0 turns it off). ``activation`` is the
    bias-free feed-forward's; the authors use ``"sigmoid"`` (the ETTh1 recipe does), TSLib ``"gelu"``.
    """

    def __init__(
        self,
        n_vars: int,
        n_marks: int,
        lookback: int,
        horizon: int,
        d_model: PositiveInt = 512,
        n_heads: PositiveInt = 8,
        d_ff: PositiveInt = 2048,
        e_layers: PositiveInt = 2,
        d_layers: PositiveInt = 2,
        top_k: PositiveInt = 5,
        dropout: Dropout = 0.1,
        activation: Activation = "gelu",
        augment_sigma: NonNegativeFloat = 0.2,
    ) -> None:
        super().__init__()
        if e_layers != d_layers:
            raise ValueError(
                f"ETSformer pairs every encoder stage with one decoder stage: expected e_layers == d_layers, got e_layers={e_layers}, d_layers={d_layers}"
            )
        if e_layers < 1:
            raise ValueError(f"expected e_layers >= 1, got {e_layers}")
        if top_k > FrequencyAttention.n_frequencies(lookback):
            raise ValueError(f"top_k = {top_k} exceeds the {FrequencyAttention.n_frequencies(lookback)} non-constant frequencies of a lookback of {lookback}")
        self.n_vars, self.lookback, self.horizon = n_vars, lookback, horizon
        self.augment_sigma = augment_sigma
        self.embedding = DataEmbedding(n_vars, n_marks, d_model, dropout)
        self.encoder = nn.ModuleList(
            ETSEncoderLayer(
                d_model,
                n_heads,
                n_vars,
                horizon,
                top_k,
                d_ff,
                dropout,
                activation,
                update_residual=i < e_layers - 1,  # the last stage's residual is never read
            )
            for i in range(e_layers)
        )
        self.decoder = nn.ModuleList(ETSDecoderLayer(n_heads, horizon, dropout) for _ in range(d_layers))
        self.projection = nn.Linear(d_model, n_vars)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.n_vars:
            raise ValueError(f"expected x of shape [B, L, {self.n_vars}], got {tuple(x.shape)}")
        if self.training and self.augment_sigma > 0:
            x = random_scale_shift_jitter(x, self.augment_sigma)
        residual, level = self.embedding(x, x_mark), x  # [B, L, d_model], [B, L, N]
        growth_sum = season_sum = 0
        for encoder_layer, decoder_layer in zip(self.encoder, self.decoder):
            residual, level, growth, season = encoder_layer(residual, level)
            growth_h, season_h = decoder_layer(growth, season)  # [B, H, d_model] each
            growth_sum = growth_sum + growth_h
            season_sum = season_sum + season_h
        # The authors project growth and season separately with one shared Linear (its bias counts twice).
        return level[:, -1:] + self.projection(growth_sum) + self.projection(season_sum)  # [B, H, N]
