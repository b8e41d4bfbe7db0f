"""PDE-Transformer (Holzschuh, Liu, Kohl, Thuerey, ICML 2025, "PDE-Transformer: Efficient and Versatile
Transformers for Physics Simulations", arXiv 2505.24717), separate-channels (SC) variant.

A multiscale diffusion-transformer (DiT) backbone on patch tokens:

* **Separate channels.** Every physical channel is its own token stream: each channel is patch-embedded with the
  same ``Conv(1 → D, k = p, stride = p)``, the streams share all weights, and they differ only through a learned
  channel embedding in their conditioning. Streams interact only through an attention over the channel axis at
  every spatial token (skipped when there is a single channel).
* **U-shaped hierarchy.** ``depths = [d_0, …, d_n, …, d_0']`` (odd length ``2n + 1``): ``n`` encoder stages, a
  latent stage, ``n`` decoder stages. Token merging halves the grid and doubles the width
  (``Conv3×3(D → D/2) → PixelUnshuffle(2)``), token expansion does the reverse (``Conv3×3(D → 2D) →
  PixelShuffle(2)``), skip connections are concatenated and reduced by a ``1×1`` convolution. As in the official
  code, the last decoder stage and the output run at width ``2D``.
* **Blocks.** Each block is ``x += gate · WindowAttention(mod(norm(x)))``, ``x += gate · ChannelAttention(...)``,
  ``x += gate · MLP(...)`` with adaLN-Zero modulation; blocks alternate unshifted and shifted windows (shift
  ``w // 2``, masked unless ``periodic``). Windows use SwinV2 cosine attention with a continuous relative position
  bias, as in the official code.
* **Conditioning.** Lead time ``t`` (sinusoidal embedding of ``1000 · t`` + MLP; ``t=None`` means 0) plus the PDE
  type (an integer label from ``params[:, 0]``, an embedding table of ``n_pde_types`` entries; label 0 when
  ``params`` is ``None``) plus the channel embedding, one set of embedders per level width.
* **Output.** DiT final layer (adaLN shift/scale, zero-initialised linear) per stream, un-patchified. With
  ``C_out == C_in`` stream ``c`` predicts channel ``c`` (the paper's SC readout); otherwise each stream predicts all
  ``C_out`` channels and the streams are averaged.

Sizes from the paper / official configs (``PDE_S``, ``PDE_B``, ``PDE_L``), registered as the models
``pde_transformer_s`` (width 96, 4 heads), ``pde_transformer_b`` (width 192, 8 heads) and ``pde_transformer_l``
(width 384, 16 heads), all with ``depths = [2, 5, 8, 5, 2]`` and MLP ratio 4; patch 4 and window 8 by default.
``pde_transformer`` starts at size S and lets a recipe set every width and depth.

Differences from the official code (tum-pbs/pde-transformer ``core/separate_channels``), deliberate: the residual
branches are gated by ``gate`` (DiT's adaLN-Zero, identity at initialisation) where the official blocks multiply by
``1 + gate``; window and channel attention end in an output projection; the channel attention is plain softmax
attention; decoder stage depths follow the order of ``depths`` (the official code swaps the two decoder depths,
which run at the same width, so parameter counts agree); no carrier tokens, no label dropout, no per-channel
PDE-parameter/``dt`` embedders (only the lead time and one PDE label).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Literal

import torch
from torch import nn

from sciformer.nn.attention import AttentionLayer, FullAttention
from sciformer.nn.conditioning import AdaLNZero, TimestepEmbedding, modulate
from sciformer.nn.encoder import FeedForward
from sciformer.nn.windowed import WindowAttention
from sciformer.registry import PositiveFloat, PositiveInt, register_model, register_preset

TIME_SCALE = 1000.0  # PDE-Transformer/DiT stretch a time in [0, 1] by 1000 before the sinusoids


def _to_maps(x: torch.Tensor) -> torch.Tensor:
    """Token streams ``[B, C, H, W, D]`` → feature maps ``[B·C, D, H, W]`` for the convolutions."""
    B, C, H, W, D = x.shape
    return x.reshape(B * C, H, W, D).permute(0, 3, 1, 2)


def _to_tokens(x: torch.Tensor, B: int) -> torch.Tensor:
    """Feature maps ``[B·C, D, H, W]`` → token streams ``[B, C, H, W, D]``."""
    BC, D, H, W = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, BC // B, H, W, D)


class PDETransformerBlock(nn.Module):
    """``x [B, C, H, W, D]`` (C channel streams of H×W tokens), ``cond [B, C, D]`` → ``[B, C, H, W, D]``."""

    def __init__(self, dim: int, n_heads: int, window_size: int, mlp_ratio: float, n_channels: int, periodic: bool) -> None:
        super().__init__()
        self.periodic = periodic
        self.spatial = WindowAttention(dim, n_heads, window_size)
        # attention across the channel streams at each spatial token (pointless with one channel)
        self.channel = AttentionLayer(FullAttention(), dim, n_heads) if n_channels > 1 else None
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), dropout=0.0)
        self.adaln = AdaLNZero(dim, dim, n_branches=3 if self.channel is not None else 2)

    def _spatial(self, x: torch.Tensor, shift: int) -> torch.Tensor:
        B, C, H, W, D = x.shape
        return self.spatial(x.reshape(B * C, H, W, D), shift, self.periodic).view(B, C, H, W, D)

    def _channel(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel is None:
            raise RuntimeError("a block built for one channel has no channel attention")
        B, C, H, W, D = x.shape
        seq = x.permute(0, 2, 3, 1, 4).reshape(B * H * W, C, D)  # one sequence of C channel tokens per location
        out = self.channel(seq, seq, seq)
        return out.view(B, H, W, C, D).permute(0, 3, 1, 2, 4)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, shift: int = 0) -> torch.Tensor:
        mods = self.adaln(cond)
        x = self.adaln.branch(x, mods[0], lambda h: self._spatial(h, shift))
        if self.channel is not None:
            x = self.adaln.branch(x, mods[1], self._channel)
        return self.adaln.branch(x, mods[-1], self.mlp)


class PDEStage(nn.Module):
    """``depth`` blocks at one width, alternating unshifted and shifted (``window_size // 2``) windows."""

    def __init__(self, dim: int, depth: int, n_heads: int, window_size: int, mlp_ratio: float, n_channels: int, periodic: bool) -> None:
        super().__init__()
        self.shift = window_size // 2
        self.blocks = nn.ModuleList(PDETransformerBlock(dim, n_heads, window_size, mlp_ratio, n_channels, periodic) for _ in range(depth))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, cond, shift=self.shift if i % 2 else 0)
        return x


class TokenMerge(nn.Module):
    """Halve the token grid, double the width: ``[B·C, D, H, W]`` → ``[B·C, 2D, H/2, W/2]``."""

    def __init__(self, dim: int, periodic: bool) -> None:
        super().__init__()
        pad: Literal["circular", "zeros"] = "circular" if periodic else "zeros"
        self.body = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False, padding_mode=pad), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TokenExpand(nn.Module):
    """Double the token grid, halve the width: ``[B·C, D, H, W]`` → ``[B·C, D/2, 2H, 2W]``."""

    def __init__(self, dim: int, periodic: bool) -> None:
        super().__init__()
        pad: Literal["circular", "zeros"] = "circular" if periodic else "zeros"
        self.body = nn.Sequential(nn.Conv2d(dim, 2 * dim, 3, padding=1, bias=False, padding_mode=pad), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register_model("pde_transformer", task="operator")
class PDETransformer(nn.Module):
    """``u [B, C_in, H, W]``, lead time ``t [B]`` (optional), PDE label ``params[:, 0]`` (optional) → ``[B, C_out, H, W]``.

    ``H`` and ``W`` must be multiples of ``patch_size · 2^n`` (``n`` token merges), and the token grid at every
    level a multiple of its window (``min(window_size, grid)``): grids that are multiples of
    ``patch_size · window_size`` (and of ``patch_size · 2^n``) always work.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_dims: int,
        hidden_size: PositiveInt = 96,
        n_heads: PositiveInt = 4,
        depths: Sequence[PositiveInt] = (2, 5, 8, 5, 2),
        mlp_ratio: PositiveFloat = 4.0,
        patch_size: PositiveInt = 4,
        window_size: PositiveInt = 8,
        periodic: bool = False,
        n_pde_types: PositiveInt = 1,
    ) -> None:
        super().__init__()
        if n_dims != 2:
            raise ValueError(f"PDE-Transformer supports 2D grids only (n_dims=2), got n_dims={n_dims}")
        hidden, heads, depths = hidden_size, n_heads, list(depths)
        if len(depths) % 2 != 1 or len(depths) < 3 or min(depths) < 1:
            raise ValueError(f"depths must list 2n + 1 >= 3 positive stage depths (encoder, latent, decoder), got {depths}")
        if hidden % 2 or hidden % heads:
            raise ValueError(f"hidden_size ({hidden}) must be even and divisible by n_heads ({heads})")
        if n_pde_types < 1:
            raise ValueError(f"n_pde_types must be >= 1, got {n_pde_types}")
        self.in_channels, self.out_channels, self.n_dims = in_channels, out_channels, n_dims
        self.patch_size, self.window_size, self.n_pde_types = patch_size, window_size, n_pde_types
        self.n_levels = n = len(depths) // 2
        widths = [hidden * 2**i for i in range(n + 1)]  # width of level i; the last decoder stage runs at widths[1]
        stage = partial(PDEStage, n_heads=heads, window_size=window_size, mlp_ratio=mlp_ratio, n_channels=in_channels, periodic=periodic)

        self.patch_embed = nn.Conv2d(1, hidden, kernel_size=patch_size, stride=patch_size)  # shared by every channel
        self.time_embed = nn.ModuleList(TimestepEmbedding(w, scale=TIME_SCALE) for w in widths)
        self.type_embed = nn.ModuleList(nn.Embedding(n_pde_types, w) for w in widths)
        self.channel_embed = nn.ModuleList(nn.Embedding(in_channels, w) for w in widths)

        self.encoders = nn.ModuleList(stage(widths[i], depths[i]) for i in range(n))
        self.merges = nn.ModuleList(TokenMerge(widths[i], periodic) for i in range(n))
        self.latent = stage(widths[n], depths[n])
        self.expands = nn.ModuleList(TokenExpand(widths[i + 1], periodic) for i in range(n))  # level i+1 → i
        # after concatenating the skip: level i has 2·widths[i] channels, reduced to widths[i] (level 0: kept at 2·hidden)
        self.reduces = nn.ModuleList(nn.Conv2d(2 * widths[i], widths[max(i, 1)], kernel_size=1) for i in range(n))
        self.decoders = nn.ModuleList(stage(widths[max(i, 1)], depths[2 * n - i]) for i in range(n))

        out_dim = widths[1]
        self.output_conv = nn.Conv2d(out_dim, out_dim, 3, padding=1, padding_mode="circular" if periodic else "zeros")
        self.final_adaln = AdaLNZero(out_dim, out_dim, n_branches=1, gated=False)
        per_stream = 1 if out_channels == in_channels else out_channels
        self.final = nn.Linear(out_dim, patch_size * patch_size * per_stream)
        self._init_weights()

    def _init_weights(self) -> None:
        """DiT's initialisation: Xavier-uniform linear/conv weights, zero biases, N(0, 0.02) embedding tables,
        zero adaLN modulations (blocks start as the identity) and a zero output layer."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for table in [*self.type_embed, *self.channel_embed]:
            nn.init.normal_(table.weight, std=0.02)
        for module in self.modules():
            if isinstance(module, TimestepEmbedding):
                module.reset_weights()
            if isinstance(module, AdaLNZero):
                nn.init.zeros_(module.linear.weight)
                nn.init.zeros_(module.linear.bias)
        nn.init.zeros_(self.final.weight)
        nn.init.zeros_(self.final.bias)

    # -------------------------------------------------------------------------------------- inputs
    def _check(self, u: torch.Tensor, t: torch.Tensor | None, params: torch.Tensor | None) -> None:
        if u.ndim != 4 or u.shape[1] != self.in_channels:
            raise ValueError(f"expected u of shape [B, C_in, *grid] with C_in={self.in_channels} and 2 grid axes, got {tuple(u.shape)}")
        B, _, H, W = u.shape
        step = self.patch_size * 2**self.n_levels
        if H % step or W % step:
            raise ValueError(f"expected a grid divisible by patch_size · 2^levels = {self.patch_size} · {2**self.n_levels} = {step}, got {H}×{W}")
        h, w = H // self.patch_size, W // self.patch_size
        for level in range(self.n_levels + 1):
            window = min(self.window_size, h, w)
            if h % window or w % window:
                raise ValueError(
                    f"the {h}×{w} token grid of level {level} is not divisible by its attention window {window}; "
                    f"use a grid that is a multiple of patch_size · window_size = {self.patch_size * self.window_size}"
                )
            h, w = h // 2, w // 2
        if t is not None and tuple(t.shape) != (B,):
            raise ValueError(f"expected t of shape [B] = [{B}], got {tuple(t.shape)}")
        if params is not None and (params.ndim != 2 or params.shape[0] != B or params.shape[1] < 1):
            raise ValueError(f"expected params of shape [B, P] with B={B}, P >= 1 (PDE label in column 0), got {tuple(params.shape)}")

    def _labels(self, params: torch.Tensor | None, B: int, device: torch.device) -> torch.Tensor:
        if params is None:
            return torch.zeros(B, dtype=torch.long, device=device)
        labels = params[:, 0].round().long()
        if labels.min() < 0 or labels.max() >= self.n_pde_types:
            raise ValueError(
                f"expected PDE labels params[:, 0] in [0, {self.n_pde_types - 1}] (n_pde_types={self.n_pde_types}), "
                f"got values in [{labels.min().item()}, {labels.max().item()}]"
            )
        return labels

    def conditioning(self, t: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
        """Per level ``i``: ``[B, C_in, widths[i]]`` = time + PDE-type embedding (per sample) + channel embedding."""
        streams = torch.arange(self.in_channels, device=labels.device)  # one channel embedding per token stream
        return [
            (time(t) + kind(labels))[:, None, :] + channel(streams)[None] for time, kind, channel in zip(self.time_embed, self.type_embed, self.channel_embed)
        ]

    # -------------------------------------------------------------------------------------- forward
    def forward(self, u: torch.Tensor, t: torch.Tensor | None = None, params: torch.Tensor | None = None) -> torch.Tensor:
        self._check(u, t, params)
        B, C, H, W = u.shape
        p = self.patch_size
        if t is None:
            t = torch.zeros(B, device=u.device)
        conds = self.conditioning(t.to(u.dtype), self._labels(params, B, u.device))

        x = _to_tokens(self.patch_embed(u.reshape(B * C, 1, H, W)), B)  # [B, C, H/p, W/p, hidden]
        skips = []
        for level, (encoder, merge) in enumerate(zip(self.encoders, self.merges)):
            x = encoder(x, conds[level])
            skips.append(x)
            x = _to_tokens(merge(_to_maps(x)), B)
        x = self.latent(x, conds[self.n_levels])
        for level in reversed(range(self.n_levels)):
            x = torch.cat([self.expands[level](_to_maps(x)), _to_maps(skips[level])], dim=1)  # [B·C, 2·width, h, w]
            x = _to_tokens(self.reduces[level](x), B)
            x = self.decoders[level](x, conds[max(level, 1)])

        x = _to_tokens(self.output_conv(_to_maps(x)), B)  # [B, C, H/p, W/p, 2·hidden]
        (mod,) = self.final_adaln(conds[1])
        x = self.final(modulate(self.final_adaln.norm(x), mod.shift, mod.scale))  # [B, C, h, w, p·p·k]
        h, w = H // p, W // p
        x = x.view(B, C, h, w, p, p, -1).permute(0, 1, 6, 2, 4, 3, 5).reshape(B, C, -1, H, W)  # un-patchify
        if self.out_channels == self.in_channels:
            return x[:, :, 0]  # stream c → channel c
        return x.mean(dim=1)  # [B, C_out, H, W]


# The paper's sizes (official ``PDE_S``, ``PDE_B``, ``PDE_L``): width and heads grow, the stage depths stay.
_PAPER = dict(depths=(2, 5, 8, 5, 2), mlp_ratio=4.0)
register_preset("pde_transformer_s", PDETransformer, fixed=dict(hidden_size=96, n_heads=4, **_PAPER))
register_preset("pde_transformer_b", PDETransformer, fixed=dict(hidden_size=192, n_heads=8, **_PAPER))
register_preset("pde_transformer_l", PDETransformer, fixed=dict(hidden_size=384, n_heads=16, **_PAPER))
