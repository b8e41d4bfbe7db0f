"""What a task adapter provides: everything in a run that differs between forecasting and operator learning.

The runner (:mod:`sciformer.engine.runner`) owns the lifecycle of a run (run directory, lock, resume, training,
callbacks) and asks the recipe's :class:`Task` for the rest: how to load the data, which model sizes it fixes,
what the checkpoint records, which test metrics and which plot the run adds, and how a checkpoint is re-tested.
A new kind of task is one new module with a subclass, listed in :data:`sciformer.engine.tasks.TASKS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from sciformer.config import Recipe


class Task(ABC):
    """One kind of learning problem; instances hold no state, so one of each serves every run."""

    name: str  #: the ``task`` a model registers with (:func:`sciformer.registry.register_model`)
    data_kind: str  #: what this task's data is, for messages ("a time series")
    plot_file: str  #: the figure a finished run leaves in its directory

    @abstractmethod
    def handles(self, data_name: str) -> bool:
        """Whether ``data.name`` (a named dataset or a file) is this task's kind of data."""

    @abstractmethod
    def load_data(self, recipe: Recipe, *, allow_generate: bool, checkpoint: dict[str, Any] | None = None) -> Any:
        """The recipe's data as a batch source (see :class:`sciformer.engine.trainer.BatchSource`).

        ``allow_generate``: whether a missing data file may be simulated (only ``fit`` may); ``checkpoint``: the
        config of a trained model whose statistics (e.g. the scaler) the data must reuse.
        """

    def check_model(self, model_args: dict[str, Any], data: Any, data_name: str) -> None:
        """Refuse model settings that cannot work on ``data`` (raises :class:`~sciformer.errors.ConfigError`);
        every setting works unless the task says otherwise."""
        return None

    def prepare_model(self, model: torch.nn.Module, data: Any) -> None:
        """Set what a freshly built model takes from the training data (statistics it keeps as buffers) before it
        trains; nothing unless the task says otherwise."""
        return None

    @abstractmethod
    def data_sizes(self, data: Any, recipe: Recipe) -> dict[str, Any]:
        """Model constructor sizes that come from the data, never from YAML."""

    @abstractmethod
    def fingerprint(self, data: Any, recipe: Recipe) -> str:
        """A digest that changes when the data changes: a resumed run must train on the data it started with."""

    @abstractmethod
    def checkpoint_config(self, recipe: Recipe, data: Any) -> dict[str, Any]:
        """What ``config.json`` of the run's checkpoint records besides the weights (model, recipe, data)."""

    def training_step(self, data: Any) -> Any:
        """The trainer's step ``(model, batch) → (prediction, target)`` for ``data``; None: the model's task default."""
        return None

    def interim_extras(self, data: Any) -> dict[str, torch.Tensor] | None:
        """Tensors saved beside the best-so-far weights while training (cheap: no model evaluation)."""
        return None

    def final_extras(self, model: torch.nn.Module, data: Any, batch_size: int) -> dict[str, torch.Tensor] | None:
        """Tensors saved beside the final weights."""
        return self.interim_extras(data)

    def test_metrics(self, model: torch.nn.Module, data: Any, recipe: Recipe, batch_size: int) -> dict[str, Any]:
        """Test metrics beyond the trainer's mse/mae/rel_l2 (keys start with ``test_`` or name what they are)."""
        return {}

    @abstractmethod
    def plot(self, model: torch.nn.Module, data: Any, recipe: Recipe, path: Path) -> Path:
        """Draw the run's figure into ``path``."""

    @abstractmethod
    def evaluate(self, model: torch.nn.Module, checkpoint: dict[str, Any], recipe: Recipe, device: torch.device, run_dir: Path) -> dict[str, Any]:
        """Re-test a trained model on the test split of the data its checkpoint names (never generating data)."""
