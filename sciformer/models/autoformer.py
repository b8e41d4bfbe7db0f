"""Autoformer (Wu et al., NeurIPS 2021, "Autoformer: Decomposition Transformers with Auto-Correlation for
Long-Term Series Forecasting", arXiv 2106.13008).

An encoder–decoder whose layers decompose their hidden series into seasonal and trend parts as they go
(progressive decomposition) and mix time steps with Auto-Correlation instead of self-attention:

* the encoder models the seasonal part of the lookback (each layer drops the trend it removes);
* the decoder starts from a seasonal init (the last ``label_len`` seasonal steps, then zeros) and a trend init
  (the last ``label_len`` trend steps, then the lookback mean); every decoder layer refines the seasonal part
  and adds the trends it removes, projected to the variables, to the running trend;
* forecast = projected seasonal part + accumulated trend, last ``horizon`` steps.

Embeddings carry values and time features but no positions (Auto-Correlation works on delays, not on
absolute positions).
"""

from __future__ import annotations

import torch
from torch import nn

from sciformer.nn.attention import AttentionLayer
from sciformer.nn.autocorrelation import AutoCorrelation, DecompDecoder, DecompDecoderLayer, DecompEncoderLayer
from sciformer.nn.decomposition import SeasonalLayerNorm, SeriesDecomposition
from sciformer.nn.embedding import DataEmbedding
from sciformer.nn.encoder import Encoder
from sciformer.registry import Activation, Dropout, PositiveFloat, PositiveInt, register_model


@register_model("autoformer")
class Autoformer(nn.Module):
    """``x [B, L, N]``, ``x_mark [B, L, F]``, ``y_mark [B, H, F]`` → forecast ``[B, H, N]``.

    ``factor`` sets the number of delays each Auto-Correlation keeps (``⌊factor · ln length⌋``);
    ``moving_avg`` is the kernel of every series decomposition.
    """

    def __init__(
        self,
        n_vars: int,
        n_marks: int,
        lookback: int,
        horizon: int,
        label_len: int,
        d_model: PositiveInt = 512,
        n_heads: PositiveInt = 8,
        d_ff: PositiveInt = 2048,
        e_layers: PositiveInt = 2,
        d_layers: PositiveInt = 1,
        factor: PositiveFloat = 3.0,
        moving_avg: PositiveInt = 25,
        dropout: Dropout = 0.1,
        activation: Activation = "gelu",
    ) -> None:
        super().__init__()
        if not 0 <= label_len <= lookback:
            raise ValueError(f"label_len must lie in [0, lookback={lookback}], got {label_len}")
        self.n_vars, self.lookback, self.horizon, self.label_len = n_vars, lookback, horizon, label_len
        self.decomp = SeriesDecomposition(moving_avg)
        self.enc_embedding = DataEmbedding(n_vars, n_marks, d_model, dropout, positional=False)
        self.dec_embedding = DataEmbedding(n_vars, n_marks, d_model, dropout, positional=False)

        def correlation() -> AttentionLayer:
            return AttentionLayer(AutoCorrelation(factor), d_model, n_heads)

        self.encoder = Encoder(
            [DecompEncoderLayer(correlation(), d_model, d_ff, moving_avg, dropout, activation) for _ in range(e_layers)], norm=SeasonalLayerNorm(d_model)
        )
        self.decoder = DecompDecoder(
            [DecompDecoderLayer(correlation(), correlation(), d_model, n_vars, d_ff, moving_avg, dropout, activation) for _ in range(d_layers)],
            norm=SeasonalLayerNorm(d_model),
            projection=nn.Linear(d_model, n_vars),
        )

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1:] != (self.lookback, self.n_vars):
            raise ValueError(f"expected x of shape [B, {self.lookback}, {self.n_vars}], got {tuple(x.shape)}")
        B = x.shape[0]
        start = self.lookback - self.label_len  # not x[:, -label_len:], which is the whole series for label_len 0

        # decoder init from the decomposed lookback
        seasonal, trend = self.decomp(x)  # [B, L, N] each
        mean = x.mean(dim=1, keepdim=True).expand(-1, self.horizon, -1)  # [B, H, N]
        trend_init = torch.cat([trend[:, start:], mean], dim=1)  # [B, label_len + H, N]
        seasonal_init = torch.cat([seasonal[:, start:], x.new_zeros(B, self.horizon, self.n_vars)], dim=1)
        dec_mark = None
        if x_mark is not None and y_mark is not None:
            dec_mark = torch.cat([x_mark[:, start:], y_mark], dim=1)  # [B, label_len + H, F]

        memory = self.encoder(self.enc_embedding(x, x_mark))  # [B, L, d_model]
        seasonal_out, trend_out = self.decoder(self.dec_embedding(seasonal_init, dec_mark), memory, trend_init)
        return (seasonal_out + trend_out)[:, -self.horizon :]  # [B, H, N]
