"""(Shifted-)window self-attention on 2D token grids (Liu et al., ICCV 2021, "Swin Transformer", arXiv 2103.14030;
SwinV2, arXiv 2111.09883), as used by PDE-Transformer (arXiv 2505.24717) and Poseidon/scOT (arXiv 2405.19101).

Tokens ``[B, H, W, D]`` are cut into non-overlapping ``w × w`` windows and attend only inside their window. Every
other layer shifts the grid by ``w // 2`` (a cyclic roll by ``−shift``) so information crosses window borders. On a
non-periodic domain the roll makes some windows hold tokens that are not neighbours (they wrapped around the
border); :func:`shifted_window_mask` forbids attention between the pieces. On a periodic domain the wrapped tokens
*are* neighbours, and no mask is used.

Layout conventions: windows are ordered row-major over the ``(H / w, W / w)`` window grid, batch-major; the tokens
of a window are ordered row-major, local index ``l = r · w + c``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WindowAttention", "shifted_window_mask", "window_partition", "window_reverse"]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``x [B, H, W, D]`` → ``[B · (H/w) · (W/w), w · w, D]`` (``H`` and ``W`` multiples of ``w``)."""
    B, H, W, D = x.shape
    if H % window or W % window:
        raise ValueError(f"expected a token grid divisible by the window {window}, got H={H}, W={W}")
    x = x.view(B, H // window, window, W // window, window, D)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, D)  # [B, nH, nW, w, w, D] → windows


def window_reverse(windows: torch.Tensor, window: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B · (H/w) · (W/w), w · w, D]`` → ``[B, H, W, D]``."""
    D = windows.shape[-1]
    x = windows.view(-1, H // window, W // window, window, window, D)  # [B, nH, nW, w, w, D]
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, D)


def shifted_window_mask(H: int, W: int, window: int, shift: int, device: torch.device | None = None) -> torch.Tensor:
    """Which token pairs of each window may attend after a cyclic shift by ``shift`` on a non-periodic grid.

    Returns a bool tensor ``[(H/w) · (W/w), w · w, w · w]``, ``True`` where query ``i`` may attend key ``j``
    (both lie in the same region of the un-rolled grid). Regions per axis, in rolled coordinates (Swin's slices):
    ``[0, n − w)``, ``[n − w, n − shift)``, ``[n − shift, n)``. With ``shift = 0`` everything is allowed.
    """
    labels = torch.zeros(1, H, W, 1, device=device)
    count = 0
    for rows in (slice(0, -window), slice(-window, -shift if shift else None), slice(-shift if shift else H, None)):
        for cols in (slice(0, -window), slice(-window, -shift if shift else None), slice(-shift if shift else W, None)):
            labels[:, rows, cols, :] = count
            count += 1
    windows = window_partition(labels, window).squeeze(-1)  # [nW, w·w] region label of every token
    return windows[:, :, None] == windows[:, None, :]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (shifted) windows of a 2D token grid, SwinV2-style.

    * ``cosine=True``: SwinV2 scaled cosine attention, ``cos(q, k) · exp(min(τ_h, log 100))`` with a learned
      per-head ``τ_h`` (init ``log 10``); ``False``: ``q·k / √d_head``.
    * ``position_bias=True``: SwinV2 continuous relative position bias, ``16 · sigmoid(MLP(log-spaced offset))``
      (``MLP: 2 → 512 → n_heads``), offsets normalised by ``window_size − 1``, so windows smaller than
      ``window_size`` (coarse levels of a U-net) reuse the same function.

    ``forward(x [B, H, W, D], shift=0, periodic=False)`` → ``[B, H, W, D]``: rolls by ``−shift``, partitions, attends
    (with :func:`shifted_window_mask` unless ``periodic``), merges and rolls back. The window is
    ``min(window_size, H, W)``, and the shift is dropped when one window covers the grid's smaller side (Swin's
    rule). :meth:`attend` is the raw per-window attention on ``[B · nW, N, D]``.
    """

    def __init__(
        self, dim: int, n_heads: int, window_size: int, qkv_bias: bool = False, cosine: bool = True, position_bias: bool = True, attn_dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.dim, self.n_heads, self.window_size = dim, n_heads, window_size
        self.head_dim = dim // n_heads
        self.cosine, self.attn_dropout = cosine, attn_dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if cosine:
            self.logit_scale = nn.Parameter(torch.full((n_heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(), nn.Linear(512, n_heads, bias=False)) if position_bias else None

    def relative_position_bias(self, window: int) -> torch.Tensor:
        """``[n_heads, w · w, w · w]``: bias between the local positions of a ``window × window`` window."""
        if self.cpb_mlp is None:
            raise RuntimeError("this WindowAttention was built with position_bias=False")
        device, dtype = self.qkv.weight.device, self.qkv.weight.dtype
        offsets = torch.arange(-(window - 1), window, device=device, dtype=dtype)
        table = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)  # [2w-1, 2w-1, 2] (dy, dx)
        table = table / max(self.window_size - 1, 1) * 8  # offsets in [-8, 8] at the configured window
        table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)
        bias_table = 16 * torch.sigmoid(self.cpb_mlp(table))  # [2w-1, 2w-1, n_heads]
        pos = torch.arange(window, device=device)
        rows, cols = torch.meshgrid(pos, pos, indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()  # local index l = r·w + c
        dy = rows[:, None] - rows[None, :] + window - 1
        dx = cols[:, None] - cols[None, :] + window - 1
        return bias_table[dy, dx].permute(2, 0, 1)  # [n_heads, N, N]

    def attend(self, windows: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention inside each window: ``windows [B · nW, N, D]``, ``mask [nW, N, N]`` (bool, ``True`` = allowed)
        or ``None`` → ``[B · nW, N, D]``. ``N`` must be a square ``w · w``."""
        Bw, N, D = windows.shape
        window = math.isqrt(N)
        nW = mask.shape[0] if mask is not None else 1
        if window * window != N or Bw % nW:
            raise ValueError(f"expected windows [B·nW, w·w, D] with nW={nW}, got {tuple(windows.shape)}")
        qkv = self.qkv(windows).view(Bw // nW, nW, N, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each [B, nW, heads, N, head_dim]
        if self.cosine:
            logit_scale = torch.clamp(self.logit_scale, max=math.log(100.0)).exp()  # [heads, 1, 1]
            q = F.normalize(q, dim=-1) * logit_scale
            k = F.normalize(k, dim=-1)
            scale = 1.0
        else:
            scale = self.head_dim**-0.5
        bias = None
        if self.cpb_mlp is not None:
            bias = self.relative_position_bias(window).to(q.dtype)  # [heads, N, N]
        if mask is not None:
            blocked = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
            blocked = blocked[:, None]  # [nW, 1, N, N], broadcast over heads
            bias = blocked if bias is None else bias + blocked
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.attn_dropout if self.training else 0.0, scale=scale
        )  # [B, nW, heads, N, head_dim]
        out = out.permute(0, 1, 3, 2, 4).reshape(Bw, N, D)
        return self.proj(out)

    def forward(self, x: torch.Tensor, shift: int = 0, periodic: bool = False) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x of shape [B, H, W, D] with D={self.dim}, got {tuple(x.shape)}")
        B, H, W, D = x.shape
        window = min(self.window_size, H, W)
        if H % window or W % window:
            raise ValueError(f"token grid {H}×{W} is not divisible by the attention window {window}")
        if window >= min(H, W):
            shift = 0
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        mask = None
        if shift and not periodic:
            mask = shifted_window_mask(H, W, window, shift, device=x.device)
        out = window_reverse(self.attend(window_partition(x, window), mask), window, H, W)
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        return out
