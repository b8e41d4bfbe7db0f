"""Fourier Neural Operator baseline (Li et al., ICLR 2021, "Fourier Neural Operator for Parametric Partial
Differential Equations", arXiv 2010.08895), from the ``neuraloperator`` package (an optional extra:
``pip install 'sciformer[fno]'``).

The unit-box grid coordinates are appended to the input channels, as the paper does, so the wrapped
``neuralop.models.FNO`` sees ``C_in + n_dims`` channels (its own positional embedding is switched off so the
coordinates are not appended twice). The FNO is resolution-agnostic: one set of weights runs on any grid.
"""

from __future__ import annotations

import torch
from torch import nn

from sciformer.nn.embedding import grid_coordinates
from sciformer.registry import PositiveInt, register_model


@register_model("fno", task="operator")
class FNO(nn.Module):
    """``u [B, C_in, *grid]`` (1, 2 or 3 grid axes) → ``[B, C_out, *grid]``; ``t`` and ``params`` are ignored.

    ``neuralop.models.FNO(n_modes=(modes,) * n_dims, hidden_channels=width, in_channels=C_in + n_dims,
    out_channels=C_out, n_layers=n_layers)`` with neuraloperator's other defaults (channel-MLP lifting and
    projection of ratio 2, GELU, linear FNO skips, soft-gated channel MLPs). Defaults: the FNO paper's 2D
    Darcy model (12 modes, width 32, 4 layers).
    """

    def __init__(self, in_channels: int, out_channels: int, n_dims: int, modes: PositiveInt = 12, width: PositiveInt = 32, n_layers: PositiveInt = 4) -> None:
        super().__init__()
        try:
            from neuralop.models import FNO as NeuralopFNO
        except ImportError as error:
            raise ImportError("the FNO baseline needs neuraloperator: pip install 'sciformer[fno]'") from error
        if n_dims not in (1, 2, 3):
            raise ValueError(f"the FNO supports 1, 2 or 3 grid axes, got n_dims={n_dims}")
        self.in_channels, self.out_channels, self.n_dims = in_channels, out_channels, n_dims
        self.fno = NeuralopFNO(
            n_modes=(modes,) * n_dims,
            hidden_channels=width,
            in_channels=in_channels + n_dims,
            out_channels=out_channels,
            n_layers=n_layers,
            positional_embedding=None,
        )

    def forward(self, u: torch.Tensor, t: torch.Tensor | None = None, params: torch.Tensor | None = None) -> torch.Tensor:
        if u.ndim != self.n_dims + 2 or u.shape[1] != self.in_channels:
            raise ValueError(f"expected u of shape [B, C_in, *grid] with C_in={self.in_channels} and {self.n_dims} grid axes, got {tuple(u.shape)}")
        coords = grid_coordinates(u.shape[2:], u.device, u.dtype)  # [n_dims, *grid]
        x = torch.cat([u, coords.expand(u.shape[0], *coords.shape)], dim=1)  # [B, C_in + n_dims, *grid]
        return self.fno(x)  # [B, C_out, *grid]

    def state_dict(self, *args, **kwargs):
        # neuralop models add a non-tensor "_metadata" entry (their init kwargs) to any state dict they are
        # part of; sciformer checkpoints hold tensors only (safetensors) and rebuild the model from the recipe.
        state = super().state_dict(*args, **kwargs)
        state.pop("_metadata", None)
        return state
