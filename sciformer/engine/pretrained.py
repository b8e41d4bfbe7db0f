"""Fine-tuning from pretrained weights (``model.init``), a frozen backbone for the first epochs, and the loss of
mixture data.

Poseidon (Herde et al., "Poseidon: Efficient Foundation Models for PDEs", arXiv 2405.19101) pretrains scOT on a
mixture of PDEs and fine-tunes it on an unseen one; the layers that depend on the channels of the data (the patch
embedding, the recovery head) are trained afresh, every other weight starts from the pretrained model. Here:

* ``model.init`` names a run directory, a checkpoint directory (``weights.safetensors`` + ``config.json``, read
  through :mod:`sciformer.engine.checkpoint`, never unpickled), or a local copy of an MLflow registered model that
  ``sciformer fit`` downloaded for ``models:/name/version``. Tensors whose name and shape match are copied; those
  whose shape differs keep their fresh initialisation and are named in one log line; zero matches is an error.
* :func:`resolve_init` records the lineage (the folder, the MLflow run id and model URI where the folder records
  them, the weights' sha256), which the runner writes into the new checkpoint's ``config.json`` and hands to the
  trackers.
* ``train.freeze_epochs``: the copied parameters get no update for that many epochs (the trainer drops their
  gradients), so only the re-initialised layers adapt first; the epoch number decides, so a resumed run knows.
* Mixture data (:mod:`sciformer.data.sources.mixture`) carries presence channels; :class:`PresenceMasked` (in the
  training step, validation, test and rollouts) makes the loss ignore the fields a member lacks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sciformer.engine.checkpoint import CONFIG, WEIGHTS, find_checkpoint, read_config, read_weights
from sciformer.engine.rundir import RUN_FILE
from sciformer.engine.steps import operator_step
from sciformer.errors import CheckpointError, ConfigError, describe_kind, user_path

MODEL_URI = "models:/"
LISTED = 6  # layers named in the log line before "... and N more"


@dataclass
class Init:
    """A resolved ``model.init``: the checkpoint folder, its config, and the lineage recorded with the new run."""

    checkpoint: Path
    config: dict[str, Any]
    lineage: dict[str, str] = field(default_factory=dict)


def resolve_init(spec: str, model_name: str) -> Init:
    """The checkpoint ``model.init`` names (a run or checkpoint folder), checked to be one of ``model_name``'s family.

    A ``models:/name/version`` URI must have been downloaded by the tracking layer first (``sciformer fit`` does);
    a missing folder, a folder that is no sciformer checkpoint, or a checkpoint of another model raise one line.
    """
    if spec.startswith(MODEL_URI):
        raise ConfigError(f"model.init '{spec}' is an MLflow registered model; `sciformer fit` downloads it, in Python pass the downloaded folder")
    path = user_path(spec)
    kind = describe_kind(path)
    if kind == "missing":
        raise ConfigError(f"model.init '{spec}': no such folder; expected a run directory or a checkpoint folder of sciformer's")
    if kind != "a directory":
        raise ConfigError(f"model.init '{spec}' is {kind or 'a file'}; expected a run directory or a checkpoint folder of sciformer's")
    ckpt = find_checkpoint(path)
    if not (ckpt / CONFIG).is_file() or not (ckpt / WEIGHTS).is_file():
        raise CheckpointError(f"model.init '{spec}' holds no sciformer checkpoint ({CONFIG} + {WEIGHTS}, or a run's checkpoint/ folder)")
    config = read_config(ckpt)
    pretrained = config["model"]["name"]
    if _family(pretrained) != _family(model_name):
        raise CheckpointError(f"model.init '{spec}' is a checkpoint of model '{pretrained}'; this recipe trains '{model_name}'")
    return Init(ckpt, config, _lineage(spec, ckpt, config))


def _family(name: str) -> str:
    """A registered model's base name: size presets (``pde_transformer_s``) belong to their base model."""
    from sciformer.registry import get_model

    try:
        cls = get_model(name)
    except ConfigError:
        return name  # a model this installation does not know: only the same name matches
    return getattr(cls, "preset_of", None) or cls.registry_name


def _lineage(spec: str, ckpt: Path, config: dict[str, Any]) -> dict[str, str]:
    digests = config.get("sha256")
    recorded = digests.get(WEIGHTS) if isinstance(digests, dict) else None
    lineage = {
        "init": spec,
        "checkpoint": str(ckpt.resolve()),
        "model": config["model"]["name"],
        "weights_sha256": recorded or hashlib.sha256((ckpt / WEIGHTS).read_bytes()).hexdigest(),
    }
    try:  # a run directory (or a downloaded registered model) records its MLflow run beside the checkpoint
        run = json.loads((ckpt.parent / RUN_FILE).read_text())
    except (OSError, ValueError):
        run = None
    if isinstance(run, dict):
        lineage |= {f"mlflow_{k}": str(v) for k, v in run.items() if k in ("run_id", "model_uri") and v}
    return lineage


@dataclass
class InitReport:
    """What :func:`apply_init` did: tensors copied, re-initialised (shapes differ), new (absent from the checkpoint)."""

    copied: list[str]
    reinitialised: list[str]
    new: list[str]

    def line(self, init: Init) -> str:
        """The one log line of a fine-tuning start."""
        text = f"model.init: {len(self.copied)} tensors from '{init.checkpoint}'"
        for what, names in (("re-initialised (shapes differ)", self.reinitialised), ("new", self.new)):
            if names:
                shown = ", ".join(names[:LISTED]) + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")
                text += f"; {what}: {shown}"
        return text


def apply_init(model: nn.Module, init: Init) -> InitReport:
    """Copy the checkpoint's tensors into ``model`` where name and shape match; the others keep their fresh values."""
    weights = read_weights(init.checkpoint, WEIGHTS, (init.config.get("sha256") or {}).get(WEIGHTS))
    state = model.state_dict()
    copied = [k for k in state if k in weights and weights[k].shape == state[k].shape]
    if not copied:
        raise CheckpointError(f"model.init '{init.lineage['init']}': none of its {len(weights)} tensors matches this model's names and shapes")
    reinitialised = [k for k in state if k in weights and k not in copied]
    with torch.no_grad():
        for name in copied:
            state[name].copy_(weights[name])  # state_dict tensors share storage with the parameters and buffers
    return InitReport(copied, reinitialised, [k for k in state if k not in weights])


def frozen_parameters(model: nn.Module, report: InitReport) -> list[str]:
    """The parameters (not buffers) copied from the checkpoint: the backbone ``train.freeze_epochs`` holds fixed."""
    copied = set(report.copied)
    frozen = [name for name, _ in model.named_parameters() if name in copied]
    if len(frozen) == len(list(model.parameters())):
        raise ConfigError("train.freeze_epochs would freeze every parameter: model.init matched them all (no layer was re-initialised); set it to 0")
    return frozen


class PresenceMasked(nn.Module):
    """``model`` on mixture data laid out as ``F`` fields + ``F`` presence channels (``[B, 2F, *grid]`` per frame):
    a field the sample lacks (presence 0 in the newest input frame) is predicted as zero, the presence channels as
    they are. Those are exactly the target's values, so they add nothing to a loss, no gradient, and no drift to a
    rollout that feeds predictions back."""

    def __init__(self, model: nn.Module, fields: int) -> None:
        super().__init__()
        self.model, self.fields = model, fields

    def forward(self, u: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        pred = self.model(u, t)
        present = u[:, -self.fields :].to(pred.dtype)  # [B, F, *grid]: the newest frame's presence channels
        return torch.cat([pred[:, : self.fields] * present, present], dim=1)


def masked_operator_step(fields: int) -> Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]]:
    """The operator step for mixture data: :class:`PresenceMasked` predictions (also the intermediate ones of
    ``train.mode: unroll``), so the loss ignores the fields a sample lacks."""

    def step(model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return operator_step(PresenceMasked(model, fields), batch)

    return step
