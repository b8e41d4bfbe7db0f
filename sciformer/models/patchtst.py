"""PatchTST (Nie et al., ICLR 2023, "A Time Series is Worth 64 Words: Long-term Forecasting with Transformers",
arXiv 2211.14730).

Two ideas: *patching* — each series' lookback is cut into overlapping patches (16 steps every 8) that become
the tokens, so attention sees L/8 tokens with local semantics instead of L single steps — and *channel
independence* — every variable is forecast as its own univariate series with weights shared across
variables (the batch becomes ``B·N`` sequences). RevIN removes each series' lookback mean and scale before,
and restores them after, a flatten-linear head.

Two encoder layouts, both post-norm:

=====================  ======================================  ========================================
``encoder``            ``"official"`` (yuqinie98/PatchTST)     ``"tslib"`` (Time-Series-Library)
=====================  ======================================  ========================================
norm in each layer     ``norm`` (BatchNorm by default)         LayerNorm (shared ``EncoderLayer``)
after the stack        nothing                                 ``norm`` (BatchNorm by default)
attention              residual scores (RealFormer), dropout   plain; dropout on the attention weights
                       on the output projection
usual embedding        ``positional="learned"``,               ``positional="sincos"``,
                       ``patch_bias=True``                     ``patch_bias=False``
usual head dropout     ``head_dropout=0``                      ``head_dropout=dropout``
=====================  ======================================  ========================================

The defaults are the paper's PatchTST/42 (official code, large-dataset widths: 3 layers, 16 heads,
d_model 128, d_ff 256); small datasets such as ETTh1 use 4 heads, d_model 16, d_ff 128 (see the recipes).
"""

from __future__ import annotations

import typing
from typing import Literal

import torch
from torch import nn

from sciformer.nn.attention import AttentionLayer, FullAttention
from sciformer.nn.encoder import Encoder, EncoderLayer
from sciformer.nn.normalization import RevIN
from sciformer.nn.patching import FlattenHead, Norm, PatchEmbedding, Positional, TSTEncoder, TSTEncoderLayer, token_norm
from sciformer.registry import Activation, Dropout, PositiveInt, register_model

EncoderKind = Literal["official", "tslib"]
ENCODERS = typing.get_args(EncoderKind)


@register_model("patchtst")
class PatchTST(nn.Module):
    """``x [B, L, N]`` → forecast ``[B, H, N]`` (time features are not used: PatchTST sees values only).

    ``affine`` adds RevIN's learned per-variable scale and shift (off in both reference codes);
    ``revin=False`` feeds the scaled series unnormalised. ``head_dropout=None`` means ``dropout``.
    """

    def __init__(
        self,
        n_vars: int,
        lookback: int,
        horizon: int,
        patch_len: PositiveInt = 16,
        stride: PositiveInt = 8,
        d_model: PositiveInt = 128,
        n_heads: PositiveInt = 16,
        d_ff: PositiveInt = 256,
        e_layers: PositiveInt = 3,
        dropout: Dropout = 0.2,
        head_dropout: Dropout | None = 0.0,
        activation: Activation = "gelu",
        encoder: EncoderKind = "official",
        norm: Norm = "batch",
        positional: Positional = "learned",
        patch_bias: bool = True,
        revin: bool = True,
        affine: bool = False,
    ) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        self.n_vars, self.lookback, self.horizon = n_vars, lookback, horizon
        self.revin = RevIN(n_vars, affine=affine) if revin else None
        self.embedding = PatchEmbedding(lookback, patch_len, stride, d_model, dropout, positional, bias=patch_bias)
        self.n_patches = self.embedding.n_patches
        self.encoder: TSTEncoder | Encoder
        if encoder == "official":
            self.encoder = TSTEncoder(
                [TSTEncoderLayer(d_model, n_heads, d_ff, dropout, attn_dropout=0.0, act=activation, norm=norm) for _ in range(e_layers)],
                residual_attention=True,
            )
        else:
            self.encoder = Encoder(
                [EncoderLayer(AttentionLayer(FullAttention(dropout), d_model, n_heads), d_model, d_ff, dropout, activation) for _ in range(e_layers)],
                norm=token_norm(norm, d_model),
            )
        self.head = FlattenHead(d_model * self.n_patches, horizon, dropout if head_dropout is None else head_dropout)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.lookback or x.shape[2] != self.n_vars:
            raise ValueError(f"expected x of shape [B, L, N] = [B, {self.lookback}, {self.n_vars}], got {tuple(x.shape)}")
        B = x.shape[0]
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        tokens = self.encoder(self.embedding(x.transpose(1, 2)))  # [B, N, L] -> [B·N, P, d_model]
        features = tokens.reshape(B, self.n_vars, self.n_patches, -1).transpose(2, 3)  # [B, N, d_model, P]
        out = self.head(features).transpose(1, 2)  # [B, N, H] -> [B, H, N]
        if self.revin is not None:
            out = self.revin.denormalize(out, stats)
        return out
