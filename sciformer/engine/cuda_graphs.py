"""One CUDA graph for a whole fixed-shape step: forward, backward, clipping and the optimiser step replayed with
one launch (``train.cuda_graphs``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from sciformer.engine.distributed import batch_size_of


def _signature(batch: Any) -> tuple:
    return tuple((tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else v for v in batch)


def steps_to_device(optimizer: torch.optim.Optimizer) -> None:
    """Move Adam's step counts onto their parameters' devices: the foreach Adam (complex parameters, which the fused
    one does not take) keeps them on the host after eager steps, and a captured step must find them on the GPU."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            step = state.get("step")
            if isinstance(step, torch.Tensor) and step.device != p.device:
                state["step"] = step.to(device=p.device, dtype=torch.float32)


class CudaGraphStep:
    """``fn(batch)`` replayed from one CUDA graph for every full batch (``rows`` rows, shaped like the first).

    Warm-up calls run eagerly on a side stream (as CUDA-graph capture requires), then one call is captured;
    later batches of the same shapes are copied into the captured input tensors and the graph is replayed:
    one launch instead of hundreds, and no Python per kernel. Batches of other shapes (the smaller last batch
    of an epoch) run eagerly. Outputs are the graph's static tensors: read them before the next call. If the
    capture fails (an operation that cannot be captured), a warning is given and every call runs eagerly.
    """

    WARMUP = 3

    def __init__(self, fn: Callable[[Any], Any], rows: int, device: torch.device, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.fn, self.rows, self.device, self.optimizer = fn, rows, device, optimizer
        self.signature: tuple | None = None
        self.graph: Any = None
        self.static_batch: Any = None
        self.static_out: Any = None
        self.warmup_left = self.WARMUP
        self.failed = False
        self._stream: Any = None

    def __call__(self, batch: Any) -> Any:
        if self.failed or batch_size_of(batch) != self.rows:
            return self.fn(batch)
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):  # streams and graphs of the training GPU, whichever is current
                return self._graphed(batch)
        return self._graphed(batch)

    def _graphed(self, batch: Any) -> Any:
        signature = _signature(batch)
        if self.signature is None:
            self.signature = signature
        if signature != self.signature:
            return self.fn(batch)
        if self.graph is None:
            if self.warmup_left > 0:
                self.warmup_left -= 1
                return self._on_side_stream(batch)
            if not self._capture(batch):
                return self.fn(batch)
        for static, value in zip(self.static_batch, batch):
            if isinstance(static, torch.Tensor):
                static.copy_(value, non_blocking=True)
        self.graph.replay()
        return self.static_out

    def _on_side_stream(self, batch: Any) -> Any:
        main = torch.cuda.current_stream()
        if self._stream is None:
            self._stream = torch.cuda.Stream()
        self._stream.wait_stream(main)
        with torch.cuda.stream(self._stream):
            out = self.fn(batch)
        main.wait_stream(self._stream)
        return out

    def _capture(self, batch: Any) -> bool:
        groups = self.optimizer.param_groups if self.optimizer is not None else []
        for group in groups:
            group["capturable"] = True  # lets Adam.step be recorded (fused Adam keeps its step count on the device)
        if self.optimizer is not None:
            steps_to_device(self.optimizer)
        try:
            self.static_batch = type(batch)(*[v.clone() if isinstance(v, torch.Tensor) else v for v in batch])
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.static_out = self.fn(self.static_batch)
            self.graph = graph
            return True
        except Exception as exc:  # any capture failure means: run eagerly
            self.failed, self.graph, self.static_batch, self.static_out = True, None, None, None
            warnings.warn(f"CUDA graph capture failed ({type(exc).__name__}: {exc}); training continues eagerly", RuntimeWarning, stacklevel=3)
            return False
        finally:
            for group in groups:
                group["capturable"] = False
