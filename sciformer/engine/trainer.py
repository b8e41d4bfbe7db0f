"""The training loop: plain PyTorch, readable in one sitting.

``Trainer.fit`` runs epochs of shuffled mini-batches with Adam, validates after each epoch, keeps the best
weights by validation loss (early stopping with patience), and restores them at the end. Data comes from any
object with ``batches(split, batch_size, shuffle, generator)`` and ``n_batches(split, batch_size)`` — the
time-series module keeps every window on the device, so no per-sample Python runs in the loop.
"""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from sciformer.config import TrainConfig
from sciformer.engine.callbacks import CallbackList
from sciformer.engine.losses import LOSSES, relative_l2


class BatchSource(Protocol):
    def batches(self, split: str, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None) -> Iterable[Any]: ...

    def n_batches(self, split: str, batch_size: int) -> int: ...


def forecast_step(model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and target of a forecasting batch (``x, x_mark, y, y_mark`` → ``[B, H, N]`` twice)."""
    return model(batch.x, batch.x_mark, batch.y_mark), batch.y


def operator_step(model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and target of an operator batch (``u [B, C_in, *grid]`` → ``[B, C_out, *grid]``).

    With ``batch.steps > 1`` the model is applied autoregressively (the newest prediction replaces the oldest
    history frame) and only the last application carries gradients: the pushforward trick.
    """
    u = batch.u
    if batch.steps > 1:
        with torch.no_grad():
            for _ in range(batch.steps - 1):
                u = torch.cat([u[:, batch.y.shape[1] :], model(u, batch.t).to(u.dtype)], dim=1)
    return model(u, batch.t), batch.y


STEPS = {"forecast": forecast_step, "operator": operator_step}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_factor(schedule: str, epoch: int, epochs: int, progress: float = 0.0) -> float:
    """Multiplier of the base learning rate during ``epoch`` (0-based), ``progress`` ∈ [0, 1) within it.

    ``halve`` is TSLib's ``type1``: the factor is applied after each epoch starting with the first, which
    leaves the first two epochs at the base rate (lr, lr, lr/2, lr/4, ...). ``cosine`` decays per step. ``type3`` is
    the official PatchTST schedule (lr/25, lr, lr, lr, 0.9 lr, 0.81 lr, ...).
    """
    if schedule == "halve":
        return 0.5 ** max(0, epoch - 1)
    if schedule == "type3":
        # PatchTST's official run: OneCycleLR's initial rate lr/25 in the first epoch (the scheduler is built but
        # never stepped), then TSLib's type3 adjustment: lr for epochs 1-3, then x0.9 per epoch.
        return 1 / 25 if epoch == 0 else 0.9 ** max(0, epoch - 3)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (epoch + progress) / epochs))
    return 1.0


@dataclass
class FitResult:
    best_epoch: int
    epochs: int
    train_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        return self.train_seconds / max(self.epochs, 1)


class Trainer:
    """Fit/validate/test a model on a :class:`BatchSource` with the settings of a recipe's ``train`` section."""

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        device: torch.device,
        seed: int = 2021,
        callbacks: CallbackList | None = None,
        step: Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        self.model = model.to(device)
        self.cfg = cfg
        self.device = device
        self.seed = seed
        self.callbacks = callbacks or CallbackList()
        self.step = step or STEPS[getattr(model, "task", "forecast")]
        self.loss_fn = LOSSES[cfg.loss]
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16")

    def fit(self, data: BatchSource) -> FitResult:
        cfg = self.cfg
        generator = torch.Generator().manual_seed(self.seed)
        n_batches = data.n_batches("train", cfg.batch_size)
        best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0
        history: list[dict[str, float]] = []
        started = time.perf_counter()
        for epoch in range(cfg.epochs):
            epoch_start = time.perf_counter()
            self.model.train()
            loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
            bar = _progress(n_batches, f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress)
            for i, batch in enumerate(data.batches("train", cfg.batch_size, shuffle=True, generator=generator)):
                lr = cfg.lr * lr_factor(cfg.lr_schedule, epoch, cfg.epochs, i / n_batches)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                with self._autocast():
                    pred, target = self.step(self.model, batch)
                    loss = self.loss_fn(pred.float(), target)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                loss_sum += loss.detach()
                if bar is not None:
                    bar.update(1)
                    if i % 20 == 0 or i == n_batches - 1:  # reading the loss synchronises the GPU: not every step
                        bar.set_postfix(loss=f"{loss_sum.item() / (i + 1):.4f}")
            if bar is not None:
                bar.close()
            val = self.evaluate(data, "val")
            logs = {
                "train_loss": loss_sum.item() / n_batches,
                "val_loss": val[cfg.loss],
                "val_mse": val["mse"],
                "val_mae": val["mae"],
                "val_rel_l2": val["rel_l2"],
                "lr": lr,
                "epoch_seconds": time.perf_counter() - epoch_start,
            }
            history.append({"epoch": epoch + 1, **logs})
            self.callbacks.on_epoch_end(epoch + 1, logs)
            print(
                f"epoch {epoch + 1:>3}/{cfg.epochs}  train_loss {logs['train_loss']:.4f}  val_mse {val['mse']:.4f}  "
                f"val_mae {val['mae']:.4f}  lr {lr:.2e}  {logs['epoch_seconds']:.1f}s",
                file=sys.stderr,
            )
            if logs["val_loss"] < best_loss:
                best_loss, best_epoch, stale = logs["val_loss"], epoch + 1, 0
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                stale += 1
                if cfg.patience and stale >= cfg.patience:
                    print(f"early stopping: validation loss has not improved for {stale} epochs", file=sys.stderr)
                    break
        train_seconds = time.perf_counter() - started
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return FitResult(best_epoch=best_epoch, epochs=len(history), train_seconds=train_seconds, history=history)

    @torch.no_grad()
    def evaluate(self, data: BatchSource, split: str) -> dict[str, float]:
        """MSE, MAE and mean relative L2 over every sample of ``split`` (float64 sums, one host sync at the end)."""
        self.model.eval()
        batch_size = self.cfg.eval_batch_size or self.cfg.batch_size
        sse = torch.zeros((), device=self.device, dtype=torch.float64)
        sae = torch.zeros((), device=self.device, dtype=torch.float64)
        rel = torch.zeros((), device=self.device, dtype=torch.float64)
        count = samples = 0
        for batch in data.batches(split, batch_size):
            with self._autocast():
                pred, target = self.step(self.model, batch)
            err = pred.float() - target
            sse += err.square().sum(dtype=torch.float64)
            sae += err.abs().sum(dtype=torch.float64)
            rel += relative_l2(pred.float(), target).sum(dtype=torch.float64)
            count += err.numel()
            samples += err.shape[0]
        return {"mse": sse.item() / count, "mae": sae.item() / count, "rel_l2": rel.item() / samples}


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)
