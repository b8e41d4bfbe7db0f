"""Normalisation blocks."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al., ICLR 2022, "Reversible Instance Normalization for
    Accurate Time-Series Forecasting against Distribution Shift").

    Each series of a sample is normalised by its own lookback mean and standard deviation
    (``std = sqrt(var + eps)``, biased variance), optionally followed by a learned per-variable affine map;
    :meth:`denormalize` undoes both on the forecast. With ``affine=False`` this is the "non-stationary"
    normalisation iTransformer and TSLib's PatchTST use. Statistics are returned, not stored, so one module
    can serve concurrent calls.

    ``x [B, L, N]`` → ``(x_norm [B, L, N], stats)``; ``y [B, H, N]`` + stats → ``[B, H, N]``.
    """

    def __init__(self, n_vars: int, affine: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(n_vars))
            self.bias = nn.Parameter(torch.zeros(n_vars))

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        x = (x - mean) / std
        if self.affine:
            x = x * self.weight + self.bias
        return x, (mean, std)

    def denormalize(self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, std = stats
        if self.affine:
            y = (y - self.bias) / (self.weight + self.eps * self.eps)
        return y * std + mean


# ------------------------------------------------------------------------------ fields of an operator model
FIELD_STATISTICS = ("field_in_shift", "field_in_scale", "field_out_shift", "field_out_scale")


def attach_field_normalization(model: nn.Module, in_channels: int, out_channels: int, field: str) -> None:
    """Let ``model`` see its input field per channel as ``(u − in_shift) / in_scale`` (a forward pre-hook on its
    argument ``field``). The statistics are buffers, saved with the weights and identity until
    :func:`set_field_statistics`; :func:`attach_field_denormalization` maps the output back."""
    model.register_buffer("field_in_shift", torch.zeros(in_channels))
    model.register_buffer("field_in_scale", torch.ones(in_channels))
    model.register_buffer("field_out_shift", torch.zeros(out_channels))
    model.register_buffer("field_out_scale", torch.ones(out_channels))
    model.register_forward_pre_hook(functools.partial(_normalize_input, field=field), with_kwargs=True)


def attach_field_denormalization(model: nn.Module) -> None:
    """``y → y · out_scale + out_shift`` on the output (registered after any hook that works in normalised units,
    such as the residual's latest input frame)."""
    model.register_forward_hook(_denormalize_output)


def has_field_normalization(model: nn.Module) -> bool:
    return all(hasattr(model, name) for name in FIELD_STATISTICS)


@torch.no_grad()
def set_field_statistics(model: nn.Module, in_shift: torch.Tensor, in_scale: torch.Tensor, out_shift: torch.Tensor, out_scale: torch.Tensor) -> None:
    for name, value in zip(FIELD_STATISTICS, (in_shift, in_scale, out_shift, out_scale)):
        buffer = getattr(model, name)
        if value.shape != buffer.shape:
            raise ValueError(f"{name} needs shape {tuple(buffer.shape)}, got {tuple(value.shape)}")
        buffer.copy_(value)


def _per_channel(statistic: Any, like: torch.Tensor) -> torch.Tensor:  # a buffer: [C]
    return statistic.to(like.dtype).view(1, -1, *([1] * (like.ndim - 2)))


def _normalize_input(model: nn.Module, args: tuple, kwargs: dict, *, field: str):
    def scaled(u: torch.Tensor) -> torch.Tensor:
        return (u - _per_channel(model.field_in_shift, u)) / _per_channel(model.field_in_scale, u)

    if args:
        return (scaled(args[0]), *args[1:]), kwargs
    return args, {**kwargs, field: scaled(kwargs[field])}


def _denormalize_output(model: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output * _per_channel(model.field_out_scale, output) + _per_channel(model.field_out_shift, output)
