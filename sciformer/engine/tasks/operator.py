"""Operator learning on PDE fields: ``u [B, C_in, *grid]`` → ``[B, C_out, *grid]``, one step or rolled out.

Test metrics are PDEBench's on one-step predictions, plus the nRMSE of autoregressive rollouts at 10 and 50
steps where the test trajectories are long enough.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from sciformer.config import Recipe
from sciformer.data.mixture import load_mixture_data
from sciformer.data.operator import OperatorData, is_operator_dataset, load_operator_data
from sciformer.data.sources.mixture import MIXTURE
from sciformer.engine.metrics import PDEMetrics
from sciformer.engine.plots import field_figure, save_figure
from sciformer.engine.pretrained import PresenceMasked, masked_operator_step
from sciformer.engine.rollout import rollout, rollout_metrics
from sciformer.engine.tasks.base import Task
from sciformer.engine.trainer import operator_step
from sciformer.errors import ConfigError, DataError, user_path
from sciformer.nn.normalization import has_field_normalization, set_field_statistics
from sciformer.registry import NORMALIZE, RESIDUAL

ROLLOUT_STEPS = (10, 50)
SPLITS = ("train", "val", "test")


class OperatorTask(Task):
    name = "operator"
    data_kind = "PDE (operator) data"
    plot_file = "fields.png"

    def handles(self, data_name: str) -> bool:
        return is_operator_dataset(data_name) or data_name == MIXTURE

    def load_data(self, recipe: Recipe, *, allow_generate: bool, checkpoint: dict[str, Any] | None = None) -> OperatorData:
        if recipe.data.mixture is not None:
            return load_mixture_data(recipe.data, recipe.train, allow_generate=allow_generate)
        return load_operator_data(recipe.data, recipe.train, allow_generate=allow_generate)

    def training_step(self, data: OperatorData) -> Any:
        return step_of(data)

    def check_model(self, model_args: dict[str, Any], data: OperatorData, data_name: str) -> None:
        """``model.residual`` adds the latest input frame to the prediction: steady data (coefficient → solution) has
        none. ``model.normalize`` scales channels by their statistics: a mixture's presence channels and absent
        fields (zeros) are not fields to scale."""
        if model_args.get(RESIDUAL) and data.steady:
            raise ConfigError(
                f"model.residual adds the input frame to the prediction; data '{data_name}' is a steady problem (coefficient → solution) with no frames"
            )
        if model_args.get(NORMALIZE) and getattr(data, "masked_fields", None):
            raise ConfigError(f"model.normalize scales each channel by its training statistics; data '{data_name}' is a mixture with presence channels")

    def prepare_model(self, model: torch.nn.Module, data: OperatorData) -> None:
        """``model.normalize``: the training split's per-channel statistics into the model's buffers."""
        if has_field_normalization(model):
            set_field_statistics(model, *data.field_statistics())

    def data_sizes(self, data: OperatorData, recipe: Recipe) -> dict[str, Any]:
        return data.sizes()

    def fingerprint(self, data: OperatorData, recipe: Recipe) -> str:
        """The data object's own fingerprint where it has one; else the file's path, size and modification time
        with the sizes and sample counts of the splits (cheap: no pass over the values)."""
        own = getattr(data, "fingerprint", None)
        if isinstance(own, str) and own:
            return own
        facts: dict[str, Any] = {
            "name": recipe.data.name,
            "sizes": data.sizes(),
            "grid": list(data.grid_shape),
            "samples": {split: data.n_batches(split, 1) for split in SPLITS},
        }
        path = user_path(recipe.data.name)
        if path.is_file():
            stat = path.stat()
            facts |= {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()

    def checkpoint_config(self, recipe: Recipe, data: OperatorData) -> dict[str, Any]:
        return {
            "model": {"name": recipe.model.name, "args": recipe.model.args, "data_sizes": data.sizes()},
            "recipe": recipe.to_dict(),
            "data": {
                "name": recipe.data.name,
                "kind": "operator",
                "mode": data.mode,
                "initial_step": data.initial_step,
                "grid": list(data.grid_shape),
                "n_frames": data.n_frames,
                "fingerprint": self.fingerprint(data, recipe),
            },
        }

    def test_metrics(self, model: torch.nn.Module, data: OperatorData, recipe: Recipe, batch_size: int) -> dict[str, Any]:
        return operator_test_metrics(model, data, batch_size)

    @torch.no_grad()
    def plot(self, model: torch.nn.Module, data: OperatorData, recipe: Recipe, path: Path) -> Path:
        """Truth, prediction and error of the first test sample (one-step)."""
        batch = next(iter(data.batches("test", 1)))
        pred = step_of(data)(model.eval(), batch)[0].float()
        return save_figure(field_figure(batch.y[0].cpu(), pred[0].cpu()), path)

    def evaluate(self, model: torch.nn.Module, checkpoint: dict[str, Any], recipe: Recipe, device: torch.device, run_dir: Path) -> dict[str, Any]:
        data = self.load_data(recipe, allow_generate=False).to(device)
        self.check_model(checkpoint["model"].get("args", {}), data, recipe.data.name)
        expected = checkpoint["model"]["data_sizes"]
        if data.sizes() != expected:
            raise DataError(f"the data of run '{run_dir}' now has sizes {data.sizes()}; the checkpoint was trained on {expected}")
        return operator_test_metrics(model, data, recipe.train.eval_rows)


def operator_test_metrics(model: torch.nn.Module, data: OperatorData, batch_size: int) -> dict[str, float]:
    """PDEBench metrics of one-step test predictions, and rollout nRMSE at 10 and 50 steps where the test
    trajectories are long enough."""
    metrics, step = PDEMetrics(), step_of(data)
    with torch.no_grad():
        for batch in data.batches("test", batch_size):
            pred = step(model.eval(), batch)[0].float()
            metrics.update(pred.unsqueeze(1), batch.y.unsqueeze(1))
    out = {f"test_{k}": float(v) for k, v in metrics.compute().items()}
    if not data.steady:
        traj = data.test_trajectories()
        steps = traj.shape[1] - data.initial_step
        fields = getattr(data, "masked_fields", 0)
        stepper = PresenceMasked(model, fields) if fields else model  # mixture data: absent fields stay zero
        pred = rollout(stepper, traj, data.initial_step, steps, time_conditioned=data.mode == "all_to_all", batch_size=batch_size)
        per_step = rollout_metrics(pred, traj[:, data.initial_step :])["nrmse"]
        for k in ROLLOUT_STEPS:
            if k <= steps:
                out[f"rollout_nrmse_step{k}"] = per_step[k - 1]
        out["rollout_steps"] = steps
    return out


def step_of(data: OperatorData) -> Any:
    """The prediction step on ``data``: mixture data (``masked_fields``) ignores the fields a sample lacks."""
    fields = getattr(data, "masked_fields", 0)
    return masked_operator_step(fields) if fields else operator_step
