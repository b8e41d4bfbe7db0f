"""Informer (Zhou et al., AAAI 2021, "Informer: Beyond Efficient Transformer for Long Sequence Time-Series
Forecasting", arXiv 2012.07436).

Encoder: ProbSparse self-attention layers with self-attention distilling (conv → BatchNorm → ELU → max-pool,
halving the sequence) between them, then a LayerNorm. Generative-style decoder: its input is the last
``label_len`` known steps followed by ``horizon`` zeros (with the time features of both), it runs masked
ProbSparse self-attention and cross-attention to the encoder output, and the whole horizon comes out of one
forward pass — no step-by-step decoding. A linear head maps ``d_model`` to the variables and the last
``horizon`` steps are returned.
"""

from __future__ import annotations

import typing
from typing import Literal

import torch
from torch import nn

from sciformer.nn.attention import AttentionLayer, FullAttention
from sciformer.nn.embedding import DataEmbedding
from sciformer.nn.encoder import Decoder, DecoderLayer, Encoder, EncoderLayer
from sciformer.nn.probsparse import DistillingLayer, ProbSparseAttention
from sciformer.registry import Activation, Dropout, PositiveInt, register_model

CrossAttention = Literal["full", "probsparse"]
HeadMixing = Literal["none", "decoder", "probsparse"]
CROSS_ATTENTIONS, HEAD_MIXING = typing.get_args(CrossAttention), typing.get_args(HeadMixing)


@register_model("informer")
class Informer(nn.Module):
    """``x [B, L, N]``, ``x_mark [B, L, F]``, ``y_mark [B, H, F]`` → forecast ``[B, H, N]``.

    ``factor`` is the ProbSparse sampling factor c (``u = c · ceil(ln L)``). ``cross_attention`` picks the
    decoder's attention to the encoder: ``"full"`` as in the paper and the authors' repository, or
    ``"probsparse"`` as in Time-Series-Library's ``models/Informer.py``. ``head_mixing`` picks which attention
    layers merge heads Informer's "mix" way (see :class:`~sciformer.nn.attention.AttentionLayer`): ``"none"``;
    ``"decoder"``, the decoder self-attention as in the authors' repository; ``"probsparse"``, every ProbSparse
    layer, as in the Autoformer and Time-Series-Library code that produced the published ETT numbers.
    """

    def __init__(
        self,
        n_vars: int,
        n_marks: int,
        horizon: int,
        label_len: int,
        d_model: PositiveInt = 512,
        n_heads: PositiveInt = 8,
        d_ff: PositiveInt = 2048,
        e_layers: PositiveInt = 2,
        d_layers: PositiveInt = 1,
        factor: PositiveInt = 5,
        dropout: Dropout = 0.1,
        activation: Activation = "gelu",
        distil: bool = True,
        cross_attention: CrossAttention = "full",
        head_mixing: HeadMixing = "none",
    ) -> None:
        super().__init__()
        if label_len < 0:
            raise ValueError(f"label_len must be >= 0, got {label_len}")
        if e_layers < 1 or d_layers < 1:
            raise ValueError(f"expected at least one encoder and one decoder layer, got e_layers={e_layers}, d_layers={d_layers}")
        if cross_attention not in CROSS_ATTENTIONS:
            raise ValueError(f"cross_attention must be one of {CROSS_ATTENTIONS}, got {cross_attention!r}")
        if head_mixing not in HEAD_MIXING:
            raise ValueError(f"head_mixing must be one of {HEAD_MIXING}, got {head_mixing!r}")
        self.n_vars, self.horizon, self.label_len = n_vars, horizon, label_len

        self.enc_embedding = DataEmbedding(n_vars, n_marks, d_model, dropout)
        self.dec_embedding = DataEmbedding(n_vars, n_marks, d_model, dropout)

        mix_all = head_mixing == "probsparse"

        def prob(causal: bool) -> AttentionLayer:
            mix = mix_all or (causal and head_mixing == "decoder")
            return AttentionLayer(ProbSparseAttention(factor, causal=causal), d_model, n_heads, mix=mix)

        def cross() -> AttentionLayer:
            if cross_attention == "full":
                return AttentionLayer(FullAttention(dropout), d_model, n_heads)
            return AttentionLayer(ProbSparseAttention(factor), d_model, n_heads, mix=mix_all)

        self.encoder = Encoder(
            [EncoderLayer(prob(causal=False), d_model, d_ff, dropout, activation) for _ in range(e_layers)],
            between=[DistillingLayer(d_model) for _ in range(e_layers - 1)] if distil else None,
            norm=nn.LayerNorm(d_model),
        )
        self.decoder = Decoder(
            [DecoderLayer(prob(causal=True), cross(), d_model, d_ff, dropout, activation) for _ in range(d_layers)],
            norm=nn.LayerNorm(d_model),
            projection=nn.Linear(d_model, n_vars),
        )

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.n_vars:
            raise ValueError(f"expected x of shape [B, L, N={self.n_vars}], got {tuple(x.shape)}")
        B, L, N = x.shape
        if self.label_len > L:
            raise ValueError(f"label_len ({self.label_len}) cannot exceed the lookback of x ({L})")
        if (x_mark is None) != (y_mark is None):
            raise ValueError("expected x_mark and y_mark both given or both None")
        if y_mark is not None and y_mark.shape[1] != self.horizon:
            raise ValueError(f"expected y_mark of shape [B, H={self.horizon}, F], got {tuple(y_mark.shape)}")

        # decoder input: known "start token" steps, then placeholders for the horizon
        start = L - self.label_len
        dec_x = torch.cat([x[:, start:], x.new_zeros(B, self.horizon, N)], dim=1)  # [B, label_len + H, N]
        dec_mark = torch.cat([x_mark[:, start:], y_mark], dim=1) if x_mark is not None and y_mark is not None else None  # [B, label_len + H, F]

        memory = self.encoder(self.enc_embedding(x, x_mark))  # [B, L', d_model], L' ≈ L / 2^(e_layers-1)
        out = self.decoder(self.dec_embedding(dec_x, dec_mark), memory)  # [B, label_len + H, N]
        return out[:, -self.horizon :]  # [B, H, N]
