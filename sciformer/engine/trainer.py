"""The training loop: plain PyTorch, readable in one sitting.

``Trainer.fit`` runs epochs of shuffled mini-batches with Adam, validates after each epoch, keeps the best
weights by validation loss (early stopping with patience), and restores them at the end. Data comes from any
object with ``batches(split, batch_size, shuffle, generator)`` and ``n_batches(split, batch_size)`` — the
time-series and operator modules keep every sample on the device, so no per-sample Python runs in the loop.

What keeps a step fast on a GPU: no host synchronisation inside an epoch (the loss is summed on the device and
read once per epoch; the progress bar shows steps only), a fused Adam, and optionally one CUDA graph for the
whole fixed-shape step (``train.cuda_graphs``, see :mod:`sciformer.engine.cuda_graphs`) and ``torch.compile``
(``train.compile``).

What makes a run resumable: with a ``state_dir``, the complete training state (weights, best weights,
optimiser, the RNG states of every rank, the data-order generator, early-stopping counters, history) is
written at the end of every epoch and every ``train.checkpoint_every`` steps; ``fit(resume=True)`` continues
from it at the same step of the same epoch, so a resumed run ends with exactly the metrics of an uninterrupted
one (on a deterministic device). The learning-rate schedule is a pure function of (epoch, step), so it needs
no state of its own.

What stops a run early, keeping its last good state: a NaN or infinite training or validation loss
(:class:`~sciformer.errors.TrainingDivergedError`, checked where the loss is read anyway: at every saved state and
at the end of every epoch, so a diverged state is never saved nor taken as the best), and SIGTERM/SIGINT through
``interrupts`` (a state saved at the step in flight, then :class:`~sciformer.errors.RunInterrupted`).

Under ``torchrun`` (see :mod:`sciformer.engine.distributed`) the model is wrapped in DDP, each rank trains on
its share of every global batch, evaluation sums are all-reduced, and only rank 0 prints, calls the
``on_best`` hook and writes the training state.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Collection, Iterable
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from sciformer.config import TrainConfig
from sciformer.engine.background import BackgroundWriter, to_cpu
from sciformer.engine.callbacks import CallbackList
from sciformer.engine.checkpoint import load_training_state, save_training_state
from sciformer.engine.cuda_graphs import CudaGraphStep
from sciformer.engine.distributed import Distributed, local_share, pick_device
from sciformer.engine.interrupts import Interrupts
from sciformer.engine.losses import make_loss, relative_l2, sample_loss
from sciformer.engine.progress import FitResult, Progress, check_finite, check_position, checked_progress, progress_bar
from sciformer.engine.rng import rng_state, seed_everything, set_rng_state
from sciformer.engine.schedules import lr_factor
from sciformer.engine.steps import STEPS, forecast_step, operator_step
from sciformer.errors import CheckpointError, RunInterrupted, SciformerError

__all__ = ["FitResult", "Trainer", "forecast_step", "lr_factor", "operator_step", "pick_device", "seed_everything"]


class BatchSource(Protocol):
    def batches(
        self, split: str, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1
    ) -> Iterable[Any]: ...

    def n_batches(self, split: str, batch_size: int) -> int: ...


EVAL_METRICS = ("mse", "mae", "rel_l2")  # what evaluate() always reports


def real_parameters(model: nn.Module) -> bool:
    """Fused Adam takes real floating-point parameters only (FNO's spectral weights are complex)."""
    return all(p.is_floating_point() for p in model.parameters())


def fused_adam_possible(model: nn.Module, device: torch.device) -> bool:
    """The default choice of fused Adam: on CUDA, when every parameter is real."""
    return device.type == "cuda" and real_parameters(model)


class Trainer:
    """Fit/validate/test a model on a :class:`BatchSource` with the settings of a recipe's ``train`` section.

    ``dist`` describes the torchrun process group (default: one process); ``state_dir`` enables resumable
    training states; ``on_best(weights)`` is called on rank 0 with a CPU copy of the weights whenever the
    validation loss improves (the runner writes the run's model checkpoint there); ``interrupts`` (see
    :mod:`sciformer.engine.interrupts`) lets a SIGTERM/SIGINT end training at a step boundary, resumable.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        device: torch.device,
        seed: int = 2021,
        callbacks: CallbackList | None = None,
        step: Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
        dist: Distributed | None = None,
        state_dir: str | Path | None = None,
        on_best: Callable[[dict[str, torch.Tensor]], None] | None = None,
        interrupts: Interrupts | None = None,
        frozen: Collection[str] = (),
    ) -> None:
        self.model = model.to(device)
        # train.freeze_epochs: these parameters (a pretrained backbone) get no update in the first epochs
        self.frozen = [p for name, p in model.named_parameters() if name in set(frozen)]
        self._freezing = False
        self.cfg = cfg
        self.device = device
        self.seed = seed
        self.dist = dist or Distributed(device=device)
        self.callbacks = callbacks or CallbackList()
        self.step = step or STEPS[getattr(model, "task", "forecast")]
        self.loss_fn = make_loss(cfg)
        # validation scores the training loss: mse, mae and rel_l2 are always measured, another loss is added
        self._val_loss = sample_loss(cfg) if cfg.loss not in EVAL_METRICS else None
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.on_best = on_best
        self.interrupts = interrupts
        if cfg.precision == "tf32" and device.type == "cuda":  # torch's switches are process-wide; set before any capture
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self.use_graphs = self._graphs_possible()
        fused = fused_adam_possible(model, device) if cfg.fused_optimizer is None else cfg.fused_optimizer
        lr: float | torch.Tensor = cfg.lr
        if self.use_graphs:
            fused, lr = real_parameters(model), torch.tensor(cfg.lr, device=device)  # a graph reads the rate from device memory
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay, fused=True if fused else None)
        self.train_model, self.eval_model = self._wrap(self.model)
        eval_rows = cfg.eval_rows
        self._train_graph = CudaGraphStep(lambda batch: self._optimise(batch, 1.0), cfg.batch_size, device, self.optimizer) if self.use_graphs else None
        self._eval_graph = CudaGraphStep(self._error_sums, eval_rows, device) if self.use_graphs else None
        self._writer: BackgroundWriter | None = None

    # ------------------------------------------------------------------------------------- set-up
    def _graphs_possible(self) -> bool:
        # a GPU speed setting, on by default (None) on one GPU; a recipe runs unchanged, and silently eager, on a CPU
        wanted = self.cfg.cuda_graphs
        if wanted is False or self.device.type != "cuda" or self.cfg.freeze_epochs:
            return False  # (a captured step would keep the frozen set it was captured with)
        if wanted is None and getattr(self.model, "task", "forecast") != "forecast":
            return False  # operators: no faster per epoch on an H100 (their steps are GPU-bound), and the capture costs seconds
        if self.cfg.compile and self.cfg.compile_mode == "reduce-overhead":
            return False  # torch.compile captures graphs of its own
        if self.dist.enabled:
            if wanted:
                warnings.warn(
                    "train.cuda_graphs is ignored: DDP runs several processes (graphs are single-process here); training runs eagerly",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return False
        return True

    def _wrap(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        """(training module, evaluation module): DDP and torch.compile as configured."""
        train_model: Any = model  # a module, or what torch.compile makes of it
        eval_model: Any = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)
        if self.cfg.compile:
            compiled = torch.compile(train_model, mode=self.cfg.compile_mode)
            eval_model = compiled if train_model is model else torch.compile(model, mode=self.cfg.compile_mode)
            train_model = compiled
        return train_model, eval_model

    @property
    def cuda_graphs(self) -> str:
        """How the training steps ran: ``captured`` (replayed from a CUDA graph), ``failed`` (the capture failed and
        training ran eagerly) or ``off`` (eager by choice, on a CPU, or no full batch reached the capture)."""
        graph = self._train_graph
        if graph is None:
            return "off"
        return "failed" if graph.failed else "captured" if graph.graph is not None else "off"

    def _autocast(self):
        # autocast's weight cache must be off while a CUDA graph is captured
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16", cache_enabled=not self.use_graphs)

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)  # a device write, no synchronisation
            else:
                group["lr"] = lr

    # ------------------------------------------------------------------------------------ training
    def _optimise(self, batch: Any, weight: float) -> torch.Tensor:
        """Forward, backward and optimiser step on one batch; returns the (weighted) loss, detached."""
        with self._autocast():
            pred, target = self.step(self.train_model, batch)
            loss = self.loss_fn(pred.float(), target)
        if weight != 1.0:
            loss = loss * weight
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self._freezing:
            for p in self.frozen:
                p.grad = None  # Adam skips a parameter without a gradient: no step, no weight decay, no moments
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def train_step(self, batch: Any, lr: float) -> torch.Tensor:
        """One optimiser step on a global batch (this rank's share of it under DDP)."""
        batch, weight = local_share(batch, self.dist)
        self._set_lr(lr)
        if self._train_graph is not None:
            return self._train_graph(batch)
        return self._optimise(batch, weight)

    def fit(self, data: BatchSource, resume: bool = False) -> FitResult:
        """Train for ``train.epochs`` epochs (fewer with early stopping); ``resume`` continues from ``state_dir``.

        A NaN or infinite loss raises :class:`TrainingDivergedError` before anything of the diverged epoch is saved.
        """
        cfg, ctx = self.cfg, self.dist
        generator = torch.Generator().manual_seed(self.seed)  # the data order: identical on every rank
        progress, best_state = Progress(), None
        if resume:
            best_state = self._restore(progress, generator)
            check_position(progress, cfg.epochs, data.n_batches("train", cfg.batch_size), self.state_dir)
        self._writer = BackgroundWriter() if self.state_dir is not None and ctx.is_main else None
        self._started = time.perf_counter() - progress.seconds
        try:
            for epoch in range(progress.epoch, cfg.epochs):
                if progress.done:
                    break
                epoch_start = time.perf_counter()
                train_loss, lr = self._train_epoch(data, epoch, progress, best_state, generator)
                train_seconds = time.perf_counter() - epoch_start
                val = self.evaluate(data, "val")
                check_finite(val[cfg.loss], "validation loss", f"after epoch {epoch + 1}")
                logs = {
                    "train_loss": train_loss,
                    "val_loss": val[cfg.loss],
                    "val_mse": val["mse"],
                    "val_mae": val["mae"],
                    "val_rel_l2": val["rel_l2"],
                    "lr": lr,
                    "epoch_train_seconds": train_seconds,
                    "epoch_seconds": time.perf_counter() - epoch_start,
                }
                progress.history.append({"epoch": epoch + 1, **logs})
                self.callbacks.on_epoch_end(epoch + 1, logs)
                self._print(
                    f"epoch {epoch + 1:>3}/{cfg.epochs}  train_loss {train_loss:.4f}  val_mse {val['mse']:.4f}  "
                    f"val_mae {val['mae']:.4f}  lr {lr:.2e}  {logs['epoch_seconds']:.1f}s"
                )
                if logs["val_loss"] < progress.best_loss:
                    progress.best_loss, progress.best_epoch, progress.stale = logs["val_loss"], epoch + 1, 0
                    best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                    if self.on_best is not None and ctx.is_main:
                        self._background(self.on_best, to_cpu(best_state))
                else:
                    progress.stale += 1
                    if cfg.patience and progress.stale >= cfg.patience:
                        progress.done = True
                        self._print(f"early stopping: validation loss has not improved for {progress.stale} epochs")
                progress.epoch, progress.step, progress.loss_sum = epoch + 1, 0, 0.0
                progress.seconds = time.perf_counter() - self._started
                self._save(progress, best_state, generator.get_state())
        finally:
            if self._writer is not None:  # every checkpoint is on disk before fit returns (or raises)
                writer, self._writer = self._writer, None
                writer.close(quiet=sys.exc_info()[0] is not None)  # a failed write never hides the error in flight
        train_seconds = time.perf_counter() - self._started
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return FitResult(best_epoch=progress.best_epoch, epochs=len(progress.history), train_seconds=train_seconds, history=progress.history)

    def _train_epoch(
        self, data: BatchSource, epoch: int, progress: Progress, best_state: dict[str, torch.Tensor] | None, generator: torch.Generator
    ) -> tuple[float, float]:
        """The optimiser steps of ``epoch`` from ``progress.step`` on; returns the epoch's mean loss and the last rate.

        A SIGTERM/SIGINT that :attr:`interrupts` records here ends the epoch after the step in flight, with a
        training state saved at that step (single process; under DDP the signal ends the run at once).
        """
        cfg, ctx = self.cfg, self.dist
        n_batches = data.n_batches("train", cfg.batch_size)
        epoch_rng = generator.get_state()  # this epoch's shuffle, for a checkpoint taken mid-epoch
        self._freezing = bool(self.frozen) and epoch < cfg.freeze_epochs  # from the epoch number: a resumed run knows
        self.train_model.train()
        # each rank's step loss is weighted so that the ranks sum to world_size × the batch mean: rank 0
        # resumes with the saved sum in those units, which also holds when the world size changed
        resumed = progress.loss_sum * ctx.world_size if ctx.is_main else 0.0
        loss_sum = torch.full((), resumed, device=self.device, dtype=torch.float64)
        checked, lr = progress.step, cfg.lr  # the loss is known finite up to step `checked`

        def save_here() -> None:  # a mid-epoch state: the sum over ranks so far, per global batch
            nonlocal checked
            progress.loss_sum = ctx.all_reduce_sum(loss_sum.clone()).item() / ctx.world_size
            check_finite(progress.loss_sum, "training loss", f"in epoch {epoch + 1}, steps {checked + 1}-{progress.step}")
            progress.seconds = time.perf_counter() - self._started
            self._save(progress, best_state, epoch_rng)
            checked = progress.step

        bar = progress_bar(n_batches, f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress and ctx.is_main)
        deferred = self.interrupts.deferred() if self.interrupts is not None and not ctx.enabled else nullcontext()
        try:
            with deferred:
                for i, batch in enumerate(data.batches("train", cfg.batch_size, shuffle=True, generator=generator)):
                    if i < progress.step:
                        continue  # trained before the interruption; the same order is redrawn from epoch_rng
                    lr = cfg.lr * lr_factor(cfg.lr_schedule, epoch, cfg.epochs, i / n_batches)
                    loss_sum += self.train_step(batch, lr)
                    progress.step = i + 1
                    if bar is not None and (progress.step % 16 == 0 or progress.step == n_batches):
                        bar.update(progress.step - bar.n)
                    if self._interrupted() is not None or (cfg.checkpoint_every and progress.step % cfg.checkpoint_every == 0 and progress.step < n_batches):
                        save_here()
                    if (signal := self._interrupted()) is not None:
                        raise signal
            if (signal := self._interrupted()) is not None:  # the signal came after the last step's check
                save_here()
                raise signal
        except Exception as exc:
            if (signal := self._interrupted()) is not None and not isinstance(exc, SciformerError):  # e.g. Ctrl-C also ended the data workers
                raise signal from None
            raise
        finally:
            if bar is not None:
                bar.close()
        train_loss = ctx.all_reduce_sum(loss_sum).item() / ctx.world_size / n_batches
        check_finite(train_loss, "training loss", f"in epoch {epoch + 1}, steps {checked + 1}-{n_batches}")
        return train_loss, lr

    def _interrupted(self) -> RunInterrupted | None:
        """The SIGTERM/SIGINT recorded during this epoch's steps, if any."""
        return None if self.interrupts is None else self.interrupts.pending

    def _print(self, text: str) -> None:
        if self.dist.is_main:
            print(text, file=sys.stderr)

    # ---------------------------------------------------------------------------------- checkpoints
    def _background(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._writer is not None:
            self._writer.submit(fn, *args)
        else:
            fn(*args)

    def _save(self, progress: Progress, best_state: dict[str, torch.Tensor] | None, data_rng: torch.Tensor) -> None:
        """Write the training state (rank 0; every rank contributes its RNG states). Collective under DDP."""
        if self.state_dir is None:
            return
        rngs = self.dist.gather(rng_state(self.device))
        if not self.dist.is_main:
            return
        state = {
            "progress": asdict(progress),
            "world_size": self.dist.world_size,
            "rng": rngs,
            "data_rng": data_rng,
            "model": self.model.state_dict(),
            "best": best_state,
            "optimizer": self.optimizer.state_dict(),
        }
        name = f"epoch{progress.epoch:04d}-step{progress.step:06d}"
        self._background(save_training_state, self.state_dir, name, to_cpu(state))  # the copy is taken now

    def _restore(self, progress: Progress, generator: torch.Generator) -> dict[str, torch.Tensor] | None:
        """Load the latest training state into model, optimiser, RNGs and ``progress``; returns the best weights."""
        ctx = self.dist
        loaded: Any = None
        if ctx.is_main:
            try:
                loaded = load_training_state(self.state_dir) if self.state_dir is not None else None
            except CheckpointError as exc:
                loaded = exc
        loaded = ctx.broadcast(loaded)  # other ranks need not see rank 0's file system
        if isinstance(loaded, CheckpointError):
            raise loaded
        if loaded is None:
            warnings.warn(f"no complete training state in '{self.state_dir}' yet; training starts from the beginning", RuntimeWarning, stacklevel=3)
            return None
        # how this run steps (fused, graph-captured, its lr object) may differ from the checkpointed run's
        engine = [{k: group[k] for k in ("lr", "fused", "foreach", "capturable")} for group in self.optimizer.param_groups]
        try:
            self.model.load_state_dict(loaded["model"])
            self.optimizer.load_state_dict(loaded["optimizer"])
            progress.__dict__.update(checked_progress(loaded["progress"]))
            generator.set_state(loaded["data_rng"])
            rngs, best = loaded["rng"], loaded["best"]
            if len(rngs) == ctx.world_size:
                set_rng_state(rngs[ctx.rank], self.device)
            best = None if best is None else {k: v.to(self.device) for k, v in best.items()}
        except (KeyError, IndexError, AttributeError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"the training state in '{self.state_dir}' does not fit this recipe's model and optimiser: {exc}") from None
        for group, flags in zip(self.optimizer.param_groups, engine):
            group.update(flags)
            for p in group["params"]:
                state = self.optimizer.state.get(p, {})
                if "step" in state:  # fused Adam counts steps on the device, the default one on the host
                    state["step"] = state["step"].to(dtype=torch.float32, device=p.device if flags["fused"] else "cpu")
        if len(rngs) != ctx.world_size:
            warnings.warn(
                f"the run was checkpointed with {len(rngs)} process(es) and resumes with {ctx.world_size}: the data order is kept, "
                "but random streams (dropout) are reseeded, so the result will differ from an uninterrupted run",
                RuntimeWarning,
                stacklevel=3,
            )
            seed_everything(self.seed + 1000 * progress.epoch + progress.step + ctx.rank)
        return best

    # ----------------------------------------------------------------------------------- evaluation
    def _error_sums(self, batch: Any) -> tuple[torch.Tensor, int, int]:
        """Summed squared error, absolute error, per-sample relative L2 and, for a training loss outside these,
        its per-sample values (float64 ``[3]`` or ``[4]``); elements; samples."""
        with self._autocast():
            pred, target = self.step(self.eval_model, batch)
        pred = pred.float()
        err = pred - target
        sums = [err.square().sum(dtype=torch.float64), err.abs().sum(dtype=torch.float64), relative_l2(pred, target).sum(dtype=torch.float64)]
        if self._val_loss is not None:
            sums.append(self._val_loss(pred, target).sum(dtype=torch.float64))
        return torch.stack(sums), err.numel(), err.shape[0]

    @torch.no_grad()
    def evaluate(self, data: BatchSource, split: str) -> dict[str, float]:
        """MSE, MAE and mean relative L2 over every sample of ``split`` (float64 sums, one host sync at the end),
        plus the mean training loss under its ``train.loss`` name when it is none of these (``rel_l2_h1``).

        Under DDP each rank scores a disjoint share of the windows (none padded, none dropped) and the sums are
        all-reduced, so every window counts exactly once.
        """
        self.eval_model.eval()
        batch_size = self.cfg.eval_rows
        totals = torch.zeros(len(EVAL_METRICS) + (self._val_loss is not None), device=self.device, dtype=torch.float64)
        count = samples = 0
        for batch in data.batches(split, batch_size, rank=self.dist.rank, world_size=self.dist.world_size):
            sums, n_elements, n_samples = (self._eval_graph or self._error_sums)(batch)
            totals += sums
            count, samples = count + n_elements, samples + n_samples
        totals = torch.cat([totals, torch.tensor([count, samples], dtype=torch.float64).to(self.device)])
        sse, sae, rel, *loss, count, samples = self.dist.all_reduce_sum(totals).tolist()
        metrics = {"mse": sse / count, "mae": sae / count, "rel_l2": rel / samples}
        if loss:
            metrics[self.cfg.loss] = loss[0] / samples
        return metrics
