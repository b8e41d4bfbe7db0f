"""Checkpoints: a directory holding ``weights.safetensors`` and ``config.json``.

``config.json`` carries everything needed to rebuild the model without the recipe file: registry name and
full constructor arguments, the resolved recipe, sciformer's version, the scaler statistics and a
fingerprint of the training data. Writing is atomic (a temporary sibling directory renamed into place), and
loading never unpickles: a damaged file raises :class:`~sciformer.errors.CheckpointError`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sciformer import __version__
from sciformer.errors import CheckpointError

WEIGHTS = "weights.safetensors"
EXTRAS = "extras.safetensors"  # tensors beside the weights: conformal calibration scores, the last lookback rows
CONFIG = "config.json"
FORMAT_VERSION = 1


def save_checkpoint(directory: str | Path, model: nn.Module, config: dict[str, Any], extras: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``model``'s weights, ``config`` and optional ``extras`` tensors to ``directory`` atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp"))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        if extras:
            save_file({k: v.detach().contiguous().cpu() for k, v in extras.items()}, str(tmp / EXTRAS))
        payload = {"format": FORMAT_VERSION, "sciformer_version": __version__, **config}
        (tmp / CONFIG).write_text(json.dumps(payload, indent=2, default=str))
        for path in tmp.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / CONFIG
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{directory}' has no {CONFIG}; expected a directory written by sciformer (weights.safetensors + config.json)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint file '{path}' is corrupt: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"checkpoint file '{path}' has no 'model' entry; it was not written by sciformer")
    if config.get("format", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint '{directory}' has format {config['format']}, newer than this sciformer ({__version__}) reads; upgrade sciformer"
        )
    return config


def read_weights(directory: str | Path, name: str = WEIGHTS) -> dict[str, torch.Tensor]:
    """The tensors of ``weights.safetensors`` (or of another safetensors file of the checkpoint)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / name
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{directory}' has no {name}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint file '{path}' is corrupt or truncated ({exc})") from None


def read_extras(directory: str | Path) -> dict[str, torch.Tensor]:
    """The extra tensors saved beside the weights (empty when there are none)."""
    return read_weights(directory, EXTRAS) if (Path(directory) / EXTRAS).is_file() else {}


def load_model(directory: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model recorded in a checkpoint and load its weights; returns ``(model, config)``."""
    from sciformer.registry import build_model

    config = read_config(directory)
    spec = config["model"]
    model = build_model(spec["name"], spec.get("args", {}), **spec.get("data_sizes", {}))
    try:
        model.load_state_dict(read_weights(directory), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint '{directory}' does not match model '{spec['name']}': {exc}") from None
    return model.to(device).eval(), config
