"""Multiscale (U-Net-shaped) shifted-window transformer blocks with time-conditioned layer norms, as in scOT/Poseidon
(Herde et al., NeurIPS 2024, "Poseidon: Efficient Foundation Models for PDEs", arXiv 2405.19101), built on SwinV2
(Liu et al., CVPR 2022, "Swin Transformer V2", arXiv 2111.09883).

Every block works on channels-last token grids ``x [B, H, W, D]`` and takes the lead time ``t [B]`` (float) for its
norms:

* :class:`TimeConditionedLayerNorm`: ``LN(x) · (1 + a(t)) + b(t)`` with ``a, b`` affine in ``t`` (``Linear(1 → D)``),
  zero-initialised, so it starts as a plain ``nn.LayerNorm`` for every ``t`` (scOT's ``ConditionalLayerNorm``).
* :class:`SwinV2Block` / :class:`SwinStage`: SwinV2 res-post-norm blocks ``x + norm(attn(x))``, ``x + norm(mlp(x))``
  with (shifted-)window cosine attention (:class:`~sciformer.nn.windowed.WindowAttention`).
* :class:`PatchMerging`: ``[B, H, W, D]`` → ``[B, H/2, W/2, 2D]``; :class:`PatchExpanding`: ``[B, H, W, D]`` →
  ``[B, 2H, 2W, D/2]`` (each 2×2 neighbourhood ↔ one coarse token).
* :class:`ConvNeXtBlock`: the residual block on scOT's skip connections.
* :class:`PatchRecovery`: patch tokens ``[B, H/p, W/p, D]`` → field ``[B, C_out, H, W]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sciformer.nn.conditioning import modulate
from sciformer.nn.encoder import FeedForward
from sciformer.nn.windowed import WindowAttention

__all__ = ["ConvNeXtBlock", "PatchExpanding", "PatchMerging", "PatchRecovery", "SwinStage", "SwinV2Block", "TimeConditionedLayerNorm"]


class TimeConditionedLayerNorm(nn.Module):
    """LayerNorm over the last axis whose scale and shift are affine functions of the lead time.

    ``y = LN(x) · (1 + scale(t)) + shift(t)`` with ``scale, shift = Linear(1 → dim)`` of the scalar ``t``;
    ``x [B, *tokens, dim]``, ``t [B]`` → ``[B, *tokens, dim]``. scOT's ``ConditionalLayerNorm`` computes
    ``LN(x) · W(t) + b(t)``; this is the same family of functions, written so that zero weights (the initialisation)
    give exactly a plain ``nn.LayerNorm(dim)`` (weight 1, bias 0) whatever ``t`` is.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.scale = nn.Linear(1, dim)
        self.shift = nn.Linear(1, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in (self.scale, self.shift):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"expected t of shape [B] = [{x.shape[0]}], got {tuple(t.shape)}")
        time = t.to(x.dtype)[:, None]  # [B, 1]
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        return modulate(x, self.shift(time), self.scale(time))  # [B, D] modulations broadcast over tokens


class SwinV2Block(nn.Module):
    """One SwinV2 block with res-post-norm: ``x = x + norm1(attn(x), t)``, ``x = x + norm2(mlp(x), t)``.

    ``x [B, H, W, dim]``, ``t [B]`` → ``[B, H, W, dim]``. ``attn`` is (shifted-)window cosine attention with a
    continuous relative position bias; ``shift`` rolls the grid by ``shift`` tokens (masked unless ``periodic``);
    ``mlp`` is ``Linear(dim → mlp_ratio · dim) → GELU → Linear``.
    """

    def __init__(self, dim: int, n_heads: int, window_size: int, mlp_ratio: float = 4.0, shift: int = 0, periodic: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.shift, self.periodic = shift, periodic
        self.attention = WindowAttention(dim, n_heads, window_size, qkv_bias=True)
        self.norm1 = TimeConditionedLayerNorm(dim, eps)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), dropout=0.0)
        self.norm2 = TimeConditionedLayerNorm(dim, eps)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = x + self.norm1(self.attention(x, self.shift, self.periodic), t)
        return x + self.norm2(self.mlp(x), t)


class SwinStage(nn.Module):
    """``depth`` :class:`SwinV2Block` at one width, alternating unshifted and shifted (``window_size // 2``) windows.

    ``mirrored=True`` runs the alternation backwards (scOT's decoder stages build their blocks in reverse order, so
    an even-depth decoder stage starts with a shifted block). ``x [B, H, W, dim]``, ``t [B]`` → ``[B, H, W, dim]``.
    """

    def __init__(self, dim: int, depth: int, n_heads: int, window_size: int, mlp_ratio: float = 4.0, periodic: bool = False, mirrored: bool = False) -> None:
        super().__init__()
        shifted = [((depth - 1 - k) if mirrored else k) % 2 == 1 for k in range(depth)]
        self.blocks = nn.ModuleList(SwinV2Block(dim, n_heads, window_size, mlp_ratio, window_size // 2 if s else 0, periodic) for s in shifted)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, t)
        return x


class PatchMerging(nn.Module):
    """Halve the token grid, double the width: ``x [B, H, W, dim]`` (``H, W`` even), ``t [B]`` → ``[B, H/2, W/2, 2·dim]``.

    Coarse token ``(i, j)`` is ``norm(Linear(4·dim → 2·dim)([x[2i, 2j], x[2i+1, 2j], x[2i, 2j+1], x[2i+1, 2j+1]]))``
    (Swin's order of the four neighbours, no bias), with a time-conditioned norm.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = TimeConditionedLayerNorm(2 * dim, eps)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B, H, W, D = x.shape
        if H % 2 or W % 2 or D != self.dim:
            raise ValueError(f"expected x of shape [B, H, W, D] with even H, W and D={self.dim}, got {tuple(x.shape)}")
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)  # [B, H/2, W/2, 4D]
        return self.norm(self.reduction(x), t)


class PatchExpanding(nn.Module):
    """Double the token grid, halve the width: ``x [B, H, W, dim]``, ``t [B]`` → ``[B, 2H, 2W, dim/2]``.

    ``Linear(dim → 2·dim)`` gives each coarse token four children of width ``dim/2``, placed at ``(2i + a, 2j + b)``
    for the ``a, b ∈ {0, 1}``-th chunk; then a time-conditioned norm and a ``Linear(dim/2 → dim/2)`` mix-up (both
    linears without bias, as in scOT's ``ScOTPatchUnmerging``).
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"PatchExpanding needs an even width, got dim={dim}")
        self.dim = dim
        self.upsample = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = TimeConditionedLayerNorm(dim // 2, eps)
        self.mixup = nn.Linear(dim // 2, dim // 2, bias=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B, H, W, D = x.shape
        if D != self.dim:
            raise ValueError(f"expected x of shape [B, H, W, D] with D={self.dim}, got {tuple(x.shape)}")
        x = self.upsample(x).view(B, H, W, 2, 2, D // 2)  # [B, H, W, a, b, D/2]
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, 2 * H, 2 * W, D // 2)  # child (a, b) of (i, j) → (2i + a, 2j + b)
        return self.mixup(self.norm(x, t))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Liu et al., CVPR 2022, arXiv 2201.03545) with a time-conditioned norm, as on scOT's skips.

    ``x + γ · Linear(4·dim → dim)(GELU(Linear(dim → 4·dim)(norm(DWConv7×7(x), t))))`` with a learned per-channel
    layer scale ``γ`` (init 1e-6). ``x [B, H, W, dim]``, ``t [B]`` → ``[B, H, W, dim]``; the depthwise convolution pads
    circularly when ``periodic``, with zeros otherwise.
    """

    def __init__(self, dim: int, periodic: bool = False, layer_scale_init: float = 1e-6, eps: float = 1e-5) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, padding_mode="circular" if periodic else "zeros")
        self.norm = TimeConditionedLayerNorm(dim, eps)
        self.mlp = FeedForward(dim, 4 * dim, dropout=0.0)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # [B, H, W, D] → [B, D, H, W] → back
        return x + self.gamma * self.mlp(self.norm(h, t))


class PatchRecovery(nn.Module):
    """Patch tokens ``x [B, H/p, W/p, dim]`` → field ``[B, out_channels, H, W]``: ``ConvTranspose(k = p, stride = p)``
    then a ``5×5`` convolution without bias that mixes neighbouring patches (scOT's ``ScOTPatchRecovery``)."""

    def __init__(self, dim: int, out_channels: int, patch_size: int, periodic: bool = False) -> None:
        super().__init__()
        self.projection = nn.ConvTranspose2d(dim, out_channels, kernel_size=patch_size, stride=patch_size)
        self.mixup = nn.Conv2d(out_channels, out_channels, kernel_size=5, padding=2, bias=False, padding_mode="circular" if periodic else "zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixup(self.projection(x.permute(0, 3, 1, 2)))  # [B, D, h, w] → [B, C_out, h·p, w·p]
