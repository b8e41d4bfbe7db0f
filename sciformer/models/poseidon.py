"""Poseidon's scalable operator transformer, scOT (Herde et al., NeurIPS 2024, "Poseidon: Efficient Foundation Models
for PDEs", arXiv 2405.19101).

A U-Net-shaped SwinV2 transformer on patch tokens whose every layer norm is conditioned on the lead time ``t``, so
one model maps ``u(t_i)`` to ``u(t_i + t)`` for any lead time (trained on all (tᵢ → tⱼ) pairs of a trajectory):

* **Embedding.** ``Conv(C_in → D, k = p, stride = p)`` patches, then a time-conditioned LayerNorm.
* **Encoder.** ``n`` stages at widths ``D · 2^i``: ``depths[i]`` SwinV2 blocks (res-post-norm, scaled cosine window
  attention with a continuous relative position bias, shifted every other block), then patch merging (2×2 tokens →
  one, width doubled) applied to the stage output *plus the stage input* (scOT's stage residual).
* **Skips.** The output of encoder stage ``i`` passes through ``skip_blocks[i]`` ConvNeXt blocks (the paper's
  residual blocks on the skip connections; 0 = identity) and is *added* to the decoder's tokens at level ``i``.
* **Decoder.** Mirrors the encoder: from the (skip-processed) coarsest level, ``depths[i]`` SwinV2 blocks, then
  patch expansion (one token → 2×2, width halved) to level ``i − 1``, where the skip is added.
* **Head.** Patch recovery ``ConvTranspose(D → C_out, k = p, stride = p)`` and a ``5×5`` mixing convolution.
* **Time conditioning.** Every LayerNorm (embedding, blocks, merging, expansion, ConvNeXt) is
  ``LN(x) · (1 + a(t)) + b(t)`` with ``a, b`` affine in the scalar lead time (``Linear(1 → D)``); ``t=None`` means
  lead time 0. PDE parameters (``params``) are not used, as in scOT.
* **Grid coordinates** (``coords``, off as in scOT): the unit-box coordinates join the input channels, as FNO,
  Galerkin and FactFormer take them. Without them the model's only cue to where a patch lies is the boundary
  (padding, and the window masks unless ``periodic``): a position-dependent forcing cannot be learnt on a periodic grid.

Sizes (``scOT/train.py``'s ``MODEL_MAP``), registered as models: ``poseidon_t`` = width 48, depths [4, 4, 4, 4]
(20.78M parameters here with 4 → 4 channels; the Poseidon-T card says 20.8M); ``poseidon_b`` = width 96, depths
[8, 8, 8, 8] (157.8M; paper ≈ 158M); ``poseidon_l`` = width 192, depths [8, 8, 8, 8]; all with heads [3, 6, 12, 24],
MLP ratio 4, skip blocks [2, 2, 2, 0], patch 4 and window 16. ``poseidon`` itself defaults to a small 3-stage model
(1.23M parameters with 1 → 1 channels) that trains on 64×64 grids in minutes on a CPU.

Differences from the official code (camlab-ethz/poseidon ``scOT/model.py``), deliberate: the conditioned norms
start as plain LayerNorms (official: all their linears drawn from N(0, 0.02), so the scale starts near 0); the
grid is not resampled to a fixed training resolution by FFT (any grid that satisfies the divisibility rule runs
with the same weights); one ``qkv`` projection with bias for queries, keys and values (SwinV2 has no key bias);
no drop path (the official training uses rate 0); ``learn_residual`` is close to the recipe key ``model.residual``
that every operator model has (it adds the latest input frame where scOT adds the first: the same for one input
frame), and the relative-L1 loss lives in the engine, not the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from sciformer.nn.embedding import grid_coordinates
from sciformer.nn.multiscale import ConvNeXtBlock, PatchExpanding, PatchMerging, PatchRecovery, SwinStage, TimeConditionedLayerNorm
from sciformer.registry import NonNegativeInt, PositiveFloat, PositiveInt, register_model, register_preset


@register_model("poseidon", task="operator")
class Poseidon(nn.Module):
    """scOT: ``u [B, C_in, H, W]``, lead time ``t [B]`` (optional, ``None`` = 0) → ``[B, C_out, H, W]``.

    ``H`` and ``W`` must be multiples of ``patch_size · 2^(n_stages − 1)``, and the token grid of every stage a
    multiple of its attention window (``min(window_size, grid)``, Swin's rule for small grids); grids that are
    multiples of ``patch_size · window_size · 2^(n_stages − 1)`` always work (64 for the default, 64×64 → 16×16, 8×8,
    4×4 tokens). The same weights run on any such grid.

    The defaults are a small 3-stage model; the paper's sizes are the models ``poseidon_t``, ``poseidon_b`` and
    ``poseidon_l``, which fix ``embed_dim``, ``depths``, ``n_heads``, ``skip_blocks`` and ``mlp_ratio`` and start
    ``patch_size`` and ``window_size`` at the paper's 4 and 16.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_dims: int,
        embed_dim: PositiveInt = 32,
        depths: Sequence[PositiveInt] = (2, 2, 2),
        n_heads: Sequence[PositiveInt] = (2, 4, 8),
        skip_blocks: Sequence[NonNegativeInt] = (1, 1, 0),
        mlp_ratio: PositiveFloat = 4.0,
        patch_size: PositiveInt = 4,
        window_size: PositiveInt = 4,
        periodic: bool = False,
        coords: bool = False,
    ) -> None:
        super().__init__()
        if n_dims != 2:
            raise ValueError(f"Poseidon (scOT) supports 2D grids only (n_dims=2), got n_dims={n_dims}")
        depths, n_heads, skip_blocks = list(depths), list(n_heads), list(skip_blocks)

        n = len(depths)
        if n < 1 or min(depths) < 1:
            raise ValueError(f"depths must list at least one positive stage depth, got {depths}")
        if len(n_heads) != n or len(skip_blocks) != n:
            raise ValueError(
                f"depths, n_heads and skip_blocks must have one entry per stage; got {len(depths)}, {len(n_heads)}, "
                f"{len(skip_blocks)} entries ({depths}, {n_heads}, {skip_blocks})"
            )
        if min(skip_blocks) < 0:
            raise ValueError(f"skip_blocks must be >= 0, got {skip_blocks}")
        widths = [embed_dim * 2**i for i in range(n)]
        for i, (w, h) in enumerate(zip(widths, n_heads)):
            if h < 1 or w % h:
                raise ValueError(f"stage {i} width {w} (embed_dim · 2^{i}) must be divisible by n_heads[{i}] = {h}")
        if patch_size < 1 or window_size < 1:
            raise ValueError(f"patch_size and window_size must be >= 1, got {patch_size} and {window_size}")

        self.in_channels, self.out_channels, self.n_dims = in_channels, out_channels, n_dims
        self.patch_size, self.window_size, self.n_stages = patch_size, window_size, n

        self.coords = coords
        self.patch_embed = nn.Conv2d(in_channels + (n_dims if coords else 0), embed_dim, kernel_size=patch_size, stride=patch_size)
        self.embed_norm = TimeConditionedLayerNorm(embed_dim)
        stage = partial(SwinStage, window_size=window_size, mlp_ratio=mlp_ratio, periodic=periodic)
        self.encoders = nn.ModuleList(stage(widths[i], depths[i], n_heads[i]) for i in range(n))
        self.merges = nn.ModuleList(PatchMerging(widths[i]) for i in range(n - 1))  # level i → i + 1
        self.skips = nn.ModuleList(nn.ModuleList(ConvNeXtBlock(widths[i], periodic) for _ in range(skip_blocks[i])) for i in range(n))
        self.decoders = nn.ModuleList(stage(widths[i], depths[i], n_heads[i], mirrored=True) for i in range(n))
        self.expands = nn.ModuleList(PatchExpanding(widths[i + 1]) for i in range(n - 1))  # level i + 1 → i
        self.recovery = PatchRecovery(embed_dim, out_channels, patch_size, periodic)
        self._init_weights()

    def _init_weights(self) -> None:
        """SwinV2's initialisation (HF ``Swinv2PreTrainedModel``): N(0, 0.02) linear and convolution weights, zero
        biases; the time-conditioned norms keep their zero (= plain LayerNorm) start."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, TimeConditionedLayerNorm):
                module.reset_parameters()

    # -------------------------------------------------------------------------------------- inputs
    def _check(self, u: torch.Tensor, t: torch.Tensor | None) -> None:
        if u.ndim != 4 or u.shape[1] != self.in_channels:
            raise ValueError(f"expected u of shape [B, C_in, *grid] with C_in={self.in_channels} and 2 grid axes, got {tuple(u.shape)}")
        B, _, H, W = u.shape
        p, w, levels = self.patch_size, self.window_size, 2 ** (self.n_stages - 1)
        always = f"grids that are multiples of patch_size · window_size · 2^(n_stages − 1) = {p} · {w} · {levels} = {p * w * levels} always work"
        if H % (p * levels) or W % (p * levels):
            raise ValueError(
                f"expected a grid whose sides are multiples of patch_size · 2^(n_stages − 1) = {p} · {levels} = "
                f"{p * levels} (patch_size={p}, n_stages={self.n_stages}), got {H}×{W}; {always}"
            )
        h, wd = H // p, W // p
        for stage in range(self.n_stages):
            window = min(w, h, wd)
            if h % window or wd % window:
                raise ValueError(
                    f"grid {H}×{W}: the {h}×{wd} token grid of stage {stage} is not divisible by its attention window {window} (window_size={w}); {always}"
                )
            h, wd = h // 2, wd // 2
        if t is not None and tuple(t.shape) != (B,):
            raise ValueError(f"expected t of shape [B] = [{B}], got {tuple(t.shape)}")

    # -------------------------------------------------------------------------------------- forward
    def forward(self, u: torch.Tensor, t: torch.Tensor | None = None, params: torch.Tensor | None = None) -> torch.Tensor:
        self._check(u, t)
        t = torch.zeros(u.shape[0], device=u.device, dtype=u.dtype) if t is None else t.to(u.dtype)
        if self.coords:  # the unit-box coordinates as two more input channels, as FNO and FactFormer take them
            u = torch.cat([u, grid_coordinates(u.shape[2:], u.device, u.dtype).expand(u.shape[0], -1, -1, -1)], dim=1)
        x = self.embed_norm(self.patch_embed(u).permute(0, 2, 3, 1), t)  # [B, H/p, W/p, D]

        skips = []
        for level, encoder in enumerate(self.encoders):
            y = encoder(x, t)  # [B, h_l, w_l, D·2^l]
            skips.append(y)
            if level < self.n_stages - 1:
                x = self.merges[level](y + x, t)  # stage residual, then [B, h_l/2, w_l/2, D·2^(l+1)]
        for level, blocks in enumerate(self.skips):
            for block in blocks.children():
                skips[level] = block(skips[level], t)

        x = skips[-1]
        for level in reversed(range(self.n_stages)):
            if level < self.n_stages - 1:
                x = x + skips[level]
            x = self.decoders[level](x, t)
            if level > 0:
                x = self.expands[level - 1](x, t)  # [B, 2·h_l, 2·w_l, D·2^(l−1)]
        return self.recovery(x)  # [B, C_out, H, W]


# The paper's sizes (scOT ``MODEL_MAP``): patch 4 and window 16 are where the paper starts, not part of the size.
_PAPER = dict(n_heads=(3, 6, 12, 24), skip_blocks=(2, 2, 2, 0), mlp_ratio=4.0)
_PATCHES = dict(patch_size=4, window_size=16)
register_preset("poseidon_t", Poseidon, fixed=dict(embed_dim=48, depths=(4, 4, 4, 4), **_PAPER), defaults=_PATCHES)
register_preset("poseidon_b", Poseidon, fixed=dict(embed_dim=96, depths=(8, 8, 8, 8), **_PAPER), defaults=_PATCHES)
register_preset("poseidon_l", Poseidon, fixed=dict(embed_dim=192, depths=(8, 8, 8, 8), **_PAPER), defaults=_PATCHES)
