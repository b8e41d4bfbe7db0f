"""Patching blocks of PatchTST (Nie et al., ICLR 2023, "A Time Series is Worth 64 Words: Long-term Forecasting
with Transformers", arXiv 2211.14730).

A univariate lookback is cut into overlapping patches that become the transformer's tokens (§3.1):

* :func:`patch_count` and :class:`Patching`: pad the end by repeating the last value ``stride`` times, then
  take windows of ``patch_len`` every ``stride`` steps: ``int((L − patch_len)/stride + 2)`` patches
  (12 / 42 / 64 for L = 96 / 336 / 512 with patch 16, stride 8).
* :class:`PatchEmbedding`: ``Linear(patch_len → d_model)`` plus a positional term (the authors' learnable
  table or TSLib's fixed sinusoid), then dropout.
* :class:`TSTEncoderLayer` / :class:`TSTEncoder`: the authors' encoder layer: post-norm with BatchNorm over
  the model width and RealFormer-style residual attention (each layer adds the previous layer's
  pre-softmax scores to its own).
* :class:`FlattenHead`: flatten ``d_model × patches`` per series and map linearly to the horizon.
* :class:`TokenBatchNorm`: ``BatchNorm1d`` over the feature axis of ``[B, L, d_model]`` tokens.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

from sciformer.nn.embedding import PositionalEmbedding
from sciformer.nn.encoder import FeedForward

Positional = Literal["learned", "sincos"]
Norm = Literal["batch", "layer"]
POSITIONAL: tuple[str, ...] = get_args(Positional)
NORMS: tuple[str, ...] = get_args(Norm)


def patch_count(lookback: int, patch_len: int, stride: int, pad_end: bool = True) -> int:
    """Number of patches :class:`Patching` cuts from a lookback of ``lookback`` steps.

    With end padding this is ``(L + stride − patch_len) // stride + 1``, which equals the paper's and TSLib's
    ``int((L − patch_len)/stride + 2)`` whenever ``L >= patch_len``.
    """
    if patch_len < 1 or stride < 1:
        raise ValueError(f"expected patch_len >= 1 and stride >= 1, got patch_len={patch_len}, stride={stride}")
    padded = lookback + (stride if pad_end else 0)
    if padded < patch_len:
        raise ValueError(
            f"lookback {lookback} (+ {stride if pad_end else 0} padding) is shorter than one patch of {patch_len} steps; "
            f"expected lookback >= {patch_len - (stride if pad_end else 0)}"
        )
    return (padded - patch_len) // stride + 1


class Patching(nn.Module):
    """Cut every series into overlapping patches; ``[B, N, L]`` → ``[B, N, P, patch_len]``.

    ``pad_end`` repeats the last value ``stride`` times first (``ReplicationPad1d((0, stride))``), so the final
    steps — the most informative for forecasting — also start a patch of their own.
    """

    def __init__(self, patch_len: int, stride: int, pad_end: bool = True) -> None:
        super().__init__()
        if patch_len < 1 or stride < 1:
            raise ValueError(f"expected patch_len >= 1 and stride >= 1, got patch_len={patch_len}, stride={stride}")
        self.patch_len, self.stride = patch_len, stride
        self.pad = nn.ReplicationPad1d((0, stride)) if pad_end else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected series of shape [B, N, L], got {tuple(x.shape)}")
        if self.pad is not None:
            x = self.pad(x)  # [B, N, L + stride]
        if x.shape[-1] < self.patch_len:
            raise ValueError(f"expected at least {self.patch_len} steps after padding to cut one patch, got {x.shape[-1]}")
        return x.unfold(-1, self.patch_len, self.stride)  # [B, N, P, patch_len]


class PatchEmbedding(nn.Module):
    """Patch tokens of each series, channel-independently; ``x [B, N, L]`` → ``[B·N, P, d_model]``.

    Every series becomes its own sequence (the batch grows to ``B·N``) and all series share the weights.
    ``positional="learned"`` is the authors' table (``pe='zeros', learn_pe=True``: uniform in ±0.02, trained);
    ``"sincos"`` is TSLib's fixed sinusoid. ``bias`` is on in the authors' projection, off in TSLib's.
    """

    def __init__(self, lookback: int, patch_len: int, stride: int, d_model: int, dropout: float = 0.0, positional: str = "learned", bias: bool = True) -> None:
        super().__init__()
        if positional not in POSITIONAL:
            raise ValueError(f"positional must be one of {POSITIONAL}, got {positional!r}")
        self.n_patches = patch_count(lookback, patch_len, stride)
        self.patching = Patching(patch_len, stride)
        self.proj = nn.Linear(patch_len, d_model, bias=bias)
        self.learned_position = positional == "learned"
        self.position: nn.Parameter | PositionalEmbedding
        if self.learned_position:
            self.position = nn.Parameter(torch.empty(self.n_patches, d_model).uniform_(-0.02, 0.02))
        else:
            self.position = PositionalEmbedding(d_model, max_len=self.n_patches)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patching(x)  # [B, N, P, patch_len]
        if patches.shape[2] != self.n_patches:
            raise ValueError(f"expected a lookback giving {self.n_patches} patches, got {patches.shape[2]} patches from input {tuple(x.shape)}")
        tokens = self.proj(patches.flatten(0, 1))  # [B·N, P, d_model]
        position = self.position if isinstance(self.position, nn.Parameter) else self.position(tokens)  # [P, d_model] or [1, P, d_model]
        return self.dropout(tokens + position)


class TokenBatchNorm(nn.Module):
    """``BatchNorm1d(d_model)`` for tokens ``[B, L, d_model]``: statistics over batch and sequence per feature.

    PatchTST (§3.1, appendix) prefers it to LayerNorm because it copes with outlier values in time series.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)  # BatchNorm1d wants [B, d_model, L]


def token_norm(kind: str, d_model: int) -> nn.Module:
    """``"batch"`` → :class:`TokenBatchNorm`, ``"layer"`` → ``LayerNorm``."""
    if kind == "batch":
        return TokenBatchNorm(d_model)
    if kind == "layer":
        return nn.LayerNorm(d_model)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class ResidualAttention(nn.Module):
    """Multi-head self-attention that also returns its pre-softmax scores, to which the previous layer's are
    added (He et al., 2020, "RealFormer: Transformer Likes Residual Attention", arXiv 2012.11747).

    ``x [B, L, d_model]``, ``prev [B, H, L, L]`` or None → ``(out [B, L, d_model], scores [B, H, L, L])``.
    Dropout acts on the output projection (``proj_dropout``) and optionally on the weights (``attn_dropout``),
    as in the PatchTST authors' ``_MultiheadAttention``. The scores are formed explicitly because fused
    attention kernels do not return them.
    """

    def __init__(self, d_model: int, n_heads: int, attn_dropout: float = 0.0, proj_dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.scale = 1.0 / math.sqrt(d_model // n_heads)
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.proj_dropout = nn.Dropout(proj_dropout)

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        B, L, _ = x.shape
        H = self.n_heads
        q = self.query(x).view(B, L, H, -1).transpose(1, 2)  # [B, H, L, E]
        k = self.key(x).view(B, L, H, -1).transpose(1, 2)  # [B, H, L, E]
        v = self.value(x).view(B, L, H, -1).transpose(1, 2)  # [B, H, L, E]
        scores = (q @ k.transpose(-2, -1)) * self.scale  # [B, H, L, L]
        if prev is not None:
            scores = scores + prev
        weights = self.attn_dropout(torch.softmax(scores, dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(B, L, -1)  # [B, L, H·E]
        return self.proj_dropout(self.out(out)), scores


class TSTEncoderLayer(nn.Module):
    """The PatchTST authors' post-norm encoder layer; ``[B, L, d_model]`` (+ previous scores) in and out.

    ``x = norm1(x + drop(attn(x, prev)))``, ``x = norm2(x + drop(ffn(x)))`` with ``norm`` BatchNorm (default)
    or LayerNorm. The attention output passes two dropouts (the projection's and the residual's), as in the
    official code.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, attn_dropout: float = 0.0, act: str = "gelu", norm: str = "batch") -> None:
        super().__init__()
        self.attention = ResidualAttention(d_model, n_heads, attn_dropout, proj_dropout=dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout, act)
        self.dropout = nn.Dropout(dropout)
        self.norm1 = token_norm(norm, d_model)
        self.norm2 = token_norm(norm, d_model)

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        attended, scores = self.attention(x, prev)
        x = self.norm1(x + self.dropout(attended))
        return self.norm2(x + self.ffn(x)), scores


class TSTEncoder(nn.Module):
    """A stack of :class:`TSTEncoderLayer` threading the attention scores from layer to layer (no final norm).

    ``[B, L, d_model]`` → ``[B, L, d_model]``. ``residual_attention=False`` gives every layer fresh scores.
    """

    def __init__(self, layers: list[TSTEncoderLayer], residual_attention: bool = True) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.residual_attention = residual_attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = None
        for layer in self.layers:
            x, scores = layer(x, scores if self.residual_attention else None)
        return x


class FlattenHead(nn.Module):
    """Per-series linear head; ``[B, N, d_model, P]`` → ``[B, N, horizon]``.

    All ``d_model × P`` features of a series (flattened feature-major, as in the official code) feed one
    ``Linear`` shared by every series, followed by dropout.
    """

    def __init__(self, n_features: int, horizon: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.proj = nn.Linear(n_features, horizon)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] * x.shape[-1] != self.proj.in_features:
            raise ValueError(f"expected [B, N, d_model, P] with d_model·P = {self.proj.in_features}, got {tuple(x.shape)}")
        return self.dropout(self.proj(x.flatten(-2)))  # [B, N, d_model·P] -> [B, N, horizon]
