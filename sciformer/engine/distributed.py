"""Data-parallel training under ``torchrun``: process group, device, batch shares and metric reductions.

``torchrun --nproc_per_node N -m sciformer fit RECIPE`` starts N processes with ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` in their environment; :func:`setup` joins them into one process group (NCCL on GPUs, gloo on
CPUs) and gives each its device. Outside torchrun (or with one process) everything here is a no-op, so the
engine has one code path.

How a step is shared so that N processes make the same update as one (see :func:`local_share`): every rank
draws the same shuffled order and gathers the same *global* batch, then trains on its contiguous slice of it;
its loss is weighted by ``slice size × N / global size`` and DDP averages the gradients, which gives the
gradient of the global batch mean. Evaluation shards windows without padding and all-reduces sums.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from sciformer.errors import ConfigError


@dataclass
class Distributed:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its node) and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # None: single process, no process group

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, prints and writes files."""
        return self.rank == 0

    # ------------------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place (identity with one process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank (a picklable Python object; in memory only, never from disk)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    @contextmanager
    def rank_zero_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (downloads, generated data files), the others after it has finished."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


SINGLE = Distributed()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun); readable before :func:`setup`."""
    return int(os.environ.get("RANK", "0"))


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """The training device of ``train.device``; under torchrun, GPU runs use ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"recipe key 'train.device': {name!r} asks for a GPU, but torch {torch.__version__} sees none; use auto or cpu")
    if device.type == "cuda" and launched_by_torchrun():
        device = torch.device("cuda", local_rank)
    return device


@contextmanager
def setup(device_name: str = "auto", timeout_minutes: float = 30) -> Iterator[Distributed]:
    """Join torchrun's process group for the duration of the block (and leave it afterwards).

    Outside torchrun this yields a single-process :class:`Distributed` on ``train.device``'s device. A process
    group that the caller already initialised is used as is and left open.
    """
    if not launched_by_torchrun():
        yield Distributed(device=pick_device(device_name))
        return
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    owned = not dist.is_initialized()
    if owned:
        kwargs: dict[str, Any] = {"timeout": timedelta(minutes=timeout_minutes)}
        if device.type == "cuda":
            torch.cuda.set_device(device)
            kwargs["device_id"] = device  # binds NCCL to this GPU (eager init, no device guessing in barrier)
        dist.init_process_group(backend, **kwargs)
    try:
        yield Distributed(rank=rank, world_size=world, local_rank=local_rank, device=device, backend=dist.get_backend())
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------- batch shares
def batch_size_of(batch: Any) -> int:
    """Rows of a batch: the leading size of its first tensor field."""
    for value in batch:
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.shape[0]
    raise TypeError(f"a batch needs at least one tensor field with a batch axis, got {type(batch).__name__}")


def slice_batch(batch: Any, start: int, stop: int) -> Any:
    """Rows ``[start, stop)`` of every tensor field (views, no copies); other fields unchanged."""
    n = batch_size_of(batch)
    fields = [v[start:stop] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n else v for v in batch]
    return type(batch)(*fields)


def local_share(batch: Any, ctx: Distributed) -> tuple[Any, float]:
    """This rank's contiguous slice of a global batch and the weight of its mean loss.

    Slices differ in size by at most one row. DDP averages gradients over ranks, so weighting rank ``r``'s mean
    loss by ``n_r × world / n`` makes the update the gradient of the global mean, exactly what one process
    computes on the whole batch (up to the order of floating-point sums). A rank whose slice is empty (a last
    batch smaller than the world) trains on one row with weight 0: it still joins the gradient all-reduce.
    """
    if not ctx.enabled:
        return batch, 1.0
    n = batch_size_of(batch)
    start, stop = ctx.rank * n // ctx.world_size, (ctx.rank + 1) * n // ctx.world_size
    if stop == start:
        return slice_batch(batch, 0, 1), 0.0
    return slice_batch(batch, start, stop), (stop - start) * ctx.world_size / n
