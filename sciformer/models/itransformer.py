"""iTransformer (Liu et al., ICLR 2024, "iTransformer: Inverted Transformers Are Effective for Time Series
Forecasting", arXiv 2310.06625).

The roles of attention and feed-forward are inverted: every variate's whole lookback is embedded as one
token, attention mixes variates, and the feed-forward network learns each token's temporal representation.
Time features join as extra tokens; a linear head maps each variate token to the horizon.
"""

from __future__ import annotations

import torch
from torch import nn

from sciformer.nn.attention import AttentionLayer, FullAttention
from sciformer.nn.embedding import InvertedEmbedding
from sciformer.nn.encoder import Encoder, EncoderLayer
from sciformer.nn.normalization import RevIN
from sciformer.registry import Activation, Dropout, PositiveInt, register_model


@register_model("itransformer")
class ITransformer(nn.Module):
    """``x [B, L, N]``, ``x_mark [B, L, F]`` → forecast ``[B, H, N]``."""

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
        dropout: Dropout = 0.1,
        activation: Activation = "gelu",
        use_norm: bool = True,
    ) -> None:
        super().__init__()
        self.n_vars, self.horizon = n_vars, horizon
        self.norm = RevIN(n_vars) if use_norm else None
        self.embedding = InvertedEmbedding(lookback, d_model, dropout)
        self.encoder = Encoder(
            [EncoderLayer(AttentionLayer(FullAttention(dropout), d_model, n_heads), d_model, d_ff, dropout, activation) for _ in range(e_layers)],
            norm=nn.LayerNorm(d_model),
        )
        self.head = nn.Linear(d_model, horizon)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm is not None:
            x, stats = self.norm.normalize(x)
        tokens = self.encoder(self.embedding(x, x_mark))  # [B, N + F, d_model]
        out = self.head(tokens).transpose(1, 2)[:, :, : self.n_vars]  # [B, H, N]
        if self.norm is not None:
            out = self.norm.denormalize(out, stats)
        return out
