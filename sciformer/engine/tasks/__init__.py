"""Task adapters: one per kind of learning problem (see :class:`~sciformer.engine.tasks.base.Task`).

A model's task is the one it registered with; the recipe's data must be that task's kind of data.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sciformer.config import Recipe
from sciformer.engine.callbacks import CallbackList
from sciformer.engine.distributed import Distributed
from sciformer.engine.interrupts import Interrupts
from sciformer.engine.pretrained import Init, apply_init, frozen_parameters
from sciformer.engine.tasks.base import Task
from sciformer.engine.tasks.forecast import ForecastTask
from sciformer.engine.tasks.operator import OperatorTask
from sciformer.engine.trainer import FitResult, Trainer
from sciformer.errors import ConfigError
from sciformer.registry import build_model, get_model

TASKS: dict[str, Task] = {task.name: task for task in (ForecastTask(), OperatorTask())}

__all__ = ["TASKS", "Task", "data_sizes", "task_for", "task_of", "train"]


def task_of(model_name: str) -> Task:
    """The adapter of the task model ``model_name`` was registered for."""
    return TASKS[get_model(model_name).task]


def task_for(recipe: Recipe) -> Task:
    """The recipe's task; refuses data of another kind than the model's task takes."""
    task = task_of(recipe.model.name)
    if not task.handles(recipe.data.name):
        kind = next((t.data_kind for t in TASKS.values() if t.handles(recipe.data.name)), "data of another kind")
        raise ConfigError(f"model '{recipe.model.name}' is a {task.name} model, but data '{recipe.data.name}' is {kind}")
    return task


def data_sizes(data: Any, recipe: Recipe) -> dict[str, Any]:
    """Constructor sizes of the recipe's model that come from ``data``."""
    return task_of(recipe.model.name).data_sizes(data, recipe)


def train(
    recipe: Recipe,
    data: Any,
    device: torch.device,
    hooks: CallbackList,
    dist: Distributed | None = None,
    state_dir: Path | None = None,
    resume: bool = False,
    on_best: Callable[[dict[str, torch.Tensor]], None] | None = None,
    interrupts: Interrupts | None = None,
    init: Init | None = None,
) -> tuple[torch.nn.Module, Trainer, FitResult]:
    """Build the recipe's model for ``data`` and fit it (best validation weights restored); ``init``: pretrained
    weights to start from (see :mod:`sciformer.engine.pretrained`)."""
    dist = dist or Distributed(device=device)
    task = task_of(recipe.model.name)
    task.check_model(recipe.model.args, data, recipe.data.name)
    model = build_model(recipe.model.name, recipe.model.args, **task.data_sizes(data, recipe))  # identical on every rank
    task.prepare_model(model, data)
    frozen: list[str] = []
    if init is not None:
        report = apply_init(model, init)
        if dist.is_main:
            print(report.line(init), file=sys.stderr)
        frozen = frozen_parameters(model, report) if recipe.train.freeze_epochs else []
    if dist.rank > 0:
        torch.manual_seed(recipe.seed + dist.rank)  # ranks draw different dropout masks; rank 0 keeps the 1-process stream
    trainer = Trainer(
        model,
        recipe.train,
        device,
        seed=recipe.seed,
        callbacks=hooks,
        dist=dist,
        state_dir=state_dir,
        on_best=on_best,
        interrupts=interrupts,
        step=task.training_step(data),
        frozen=frozen,
    )
    return model, trainer, trainer.fit(data, resume=resume)
