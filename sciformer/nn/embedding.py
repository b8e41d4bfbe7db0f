"""Input embeddings of the forecasters (Informer/TSLib ``layers/Embed.py`` conventions)."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionalEmbedding(nn.Module):
    """Fixed sinusoidal positions ("Attention Is All You Need"); ``[B, L, *]`` → ``[1, L, d_model]``."""

    pe: torch.Tensor  # buffer [1, max_len, d_model]

    def __init__(self, d_model: int, max_len: int = 5000) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div[: d_model // 2])
        self.register_buffer("pe", pe[None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pe[:, : x.shape[1]]


class TokenEmbedding(nn.Module):
    """Value embedding: circular ``Conv1d(c_in → d_model, k=3)`` over time; ``[B, L, c_in]`` → ``[B, L, d_model]``."""

    def __init__(self, c_in: int, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="leaky_relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


class DataEmbedding(nn.Module):
    """value + time-feature (``Linear(F → d_model)``, no bias) [+ sinusoidal position], then dropout.

    ``x [B, L, c_in]``, ``x_mark [B, L, F]`` → ``[B, L, d_model]``. ``positional=False`` is TSLib's
    ``DataEmbedding_wo_pos`` (Autoformer).
    """

    def __init__(self, c_in: int, n_marks: int, d_model: int, dropout: float = 0.1, positional: bool = True) -> None:
        super().__init__()
        self.value = TokenEmbedding(c_in, d_model)
        self.temporal = nn.Linear(n_marks, d_model, bias=False) if n_marks > 0 else None
        self.position = PositionalEmbedding(d_model) if positional else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None) -> torch.Tensor:
        out = self.value(x)
        if self.temporal is not None and x_mark is not None:
            out = out + self.temporal(x_mark)
        if self.position is not None:
            out = out + self.position(x)
        return self.dropout(out)


class InvertedEmbedding(nn.Module):
    """iTransformer's variate tokens: each variate's whole lookback → one ``d_model`` token.

    ``x [B, L, N]`` and ``x_mark [B, L, F]`` → ``[B, N + F, d_model]`` (time features become extra tokens).
    """

    def __init__(self, lookback: int, d_model: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.proj = nn.Linear(lookback, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None) -> torch.Tensor:
        tokens = x.transpose(1, 2)  # [B, N, L]
        if x_mark is not None and x_mark.shape[-1] > 0:
            tokens = torch.cat([tokens, x_mark.transpose(1, 2)], dim=1)  # [B, N + F, L]
        return self.dropout(self.proj(tokens))


def grid_coordinates(shape: tuple[int, ...] | torch.Size, device=None, dtype=None) -> torch.Tensor:
    """Node coordinates of a regular grid on the unit box ``[0, 1]^d``, end points included.

    ``shape = (n_1, ..., n_d)`` → ``[d, n_1, ..., n_d]`` (channels first, like a field), axis ``i`` holding
    ``linspace(0, 1, n_i)``.
    """
    axes = [torch.linspace(0.0, 1.0, n, device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)
