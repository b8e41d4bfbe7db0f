"""Post-norm Transformer encoder and decoder stacks (the layout of Informer/TSLib ``Transformer_EncDec``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "sigmoid": torch.sigmoid}  # sigmoid: ETSformer's official FFN


def activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


class FeedForward(nn.Module):
    """Position-wise ``Linear(d_model → d_ff) → act → dropout → Linear(d_ff → d_model) → dropout``.

    TSLib writes these as 1×1 convolutions; a ``Linear`` is the same map with the same default init.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1, act: str = "gelu", bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(self.act(self.fc1(x)))))


class EncoderLayer(nn.Module):
    """``x = norm1(x + drop(attn(x)))``, then ``norm2(x + ffn(x))``; ``[B, L, d_model]`` in and out."""

    def __init__(self, attention: nn.Module, d_model: int, d_ff: int | None = None, dropout: float = 0.1, act: str = "gelu") -> None:
        super().__init__()
        self.attention = attention
        self.ffn = FeedForward(d_model, d_ff or 4 * d_model, dropout, act)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, x)))
        return self.norm2(x + self.ffn(x))


class Encoder(nn.Module):
    """A stack of encoder layers, optional layers between them (Informer's distilling convolutions),
    and an optional final norm. ``[B, L, d_model]`` → ``[B, L', d_model]``."""

    def __init__(self, layers: list[nn.Module], between: list[nn.Module] | None = None, norm: nn.Module | None = None) -> None:
        super().__init__()
        if between is not None and len(between) != len(layers) - 1:
            raise ValueError(f"expected {len(layers) - 1} in-between layers for {len(layers)} encoder layers, got {len(between)}")
        self.layers = nn.ModuleList(layers)
        self.between = nn.ModuleList(between) if between is not None else None
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if self.between is not None and i < len(self.between):
                x = self.between[i](x)
        return self.norm(x) if self.norm is not None else x


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention to the encoder output, feed-forward; each post-norm.

    ``x [B, L, d_model]``, ``memory [B, S, d_model]`` → ``[B, L, d_model]``.
    """

    def __init__(
        self, self_attention: nn.Module, cross_attention: nn.Module, d_model: int, d_ff: int | None = None, dropout: float = 0.1, act: str = "gelu"
    ) -> None:
        super().__init__()
        self.self_attention = self_attention
        self.cross_attention = cross_attention
        self.ffn = FeedForward(d_model, d_ff or 4 * d_model, dropout, act)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attention(x, x, x)))
        x = self.norm2(x + self.dropout(self.cross_attention(x, memory, memory)))
        return self.norm3(x + self.ffn(x))


class Decoder(nn.Module):
    """A stack of decoder layers, an optional final norm and an optional output projection."""

    def __init__(self, layers: list[nn.Module], norm: nn.Module | None = None, projection: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.projection = projection

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, memory)
        if self.norm is not None:
            x = self.norm(x)
        return self.projection(x) if self.projection is not None else x
