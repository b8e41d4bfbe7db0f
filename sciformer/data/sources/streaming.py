"""Streamed splits: trajectories read chunk by chunk in DataLoader workers, windows drawn on the fly.

A :class:`StreamSplit` is a contiguous range of samples of a lazy :class:`~sciformer.data.pde.PDEDataset`
view, cut into chunks of about ``CHUNK_BYTES`` (16 MB). One epoch (:func:`plan`) orders the chunks (shuffled) and
the windows inside each chunk (shuffled: the shuffle buffer is the chunk), all drawn from the caller's
``torch.Generator``, so the order is a function of (seed, epoch) and a resumed run redraws it exactly. With
one chunk the order is ``torch.randperm(windows)``: the in-memory order, batch for batch.

Sharding (:func:`rank_range`): the epoch's window stream is cut into one contiguous range per rank, so a
rank reads only the chunks of its range. For training each global batch is shared as
:func:`sciformer.engine.distributed.local_share` slices it (rank ``r`` owns rows ``r·n/W .. (r+1)·n/W``);
evaluation gives each rank ``1/W`` of the windows, each counted once.

Workers (:class:`ChunkReader`) read whole chunks (one hyperslab each) and hand back float32 tensors
(pinned when a GPU trains); the caller gathers the windows on the device. A worker never raises a
:class:`~sciformer.errors.SciformerError` through the DataLoader (that would wrap it in a multi-line
traceback): it returns it, and :func:`read_chunks` raises it in the main process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sciformer.data.sources.memory import fill
from sciformer.errors import SciformerError

CHUNK_BYTES = 16 * 2**20  # default chunk: ~16 MB of float32 trajectories per read (the first arrives soon)


@dataclass
class StreamSplit:
    """Samples ``start .. stop-1`` of ``view`` (a trajectory-mode PDEDataset), read ``chunk`` samples at a time."""

    view: Any
    start: int
    stop: int
    chunk: int = 0  # samples per chunk; 0: about CHUNK_BYTES worth
    workers: int = -1  # DataLoader workers; -1: one per spare CPU core, at most 4

    def __post_init__(self) -> None:
        self._loader: tuple[torch.utils.data.DataLoader, PassOrder] | None = None
        if self.chunk <= 0:
            self.chunk = max(1, CHUNK_BYTES // max(self.view.sample_bytes, 1))
        if self.workers < 0:
            self.workers = min(4, max(1, (os.cpu_count() or 2) - 1))
        self.stamp = self.view.source.fingerprint()  # what check_unchanged compares against

    def check_unchanged(self) -> None:
        """DataError when the file was rewritten, appended to or replaced since the split was opened."""
        self.view.source.check_unchanged(self.stamp)

    @property
    def trajectories(self) -> torch.Tensor:
        """The whole split in memory ``[n, T', C, *grid]`` (refused when it cannot fit)."""
        view = self.view
        shape = (self.n_samples, view.n_frames, view.n_channels, *view.spatial_shape)
        return fill(shape, (self.read(a, b) for a, b in self.chunks()), f"{view.source.path} ({self.n_samples} samples)")

    def loader(self, reader: ChunkReader, pin: bool) -> tuple[torch.utils.data.DataLoader, PassOrder]:
        """The split's DataLoader and its pass order, created once: its workers (each with its own file handle)
        stay up from pass to pass, so an epoch does not wait for new processes."""
        if self._loader is None:
            order = PassOrder()
            loader = torch.utils.data.DataLoader(
                reader, batch_size=None, sampler=order, num_workers=self.workers, pin_memory=pin, prefetch_factor=2, persistent_workers=True
            )
            self._loader = (loader, order)
        return self._loader

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_loader": None}  # worker processes stay with the process that started them

    @property
    def n_samples(self) -> int:
        return self.stop - self.start

    @property
    def nbytes(self) -> int:
        return self.n_samples * self.view.sample_bytes

    def chunks(self) -> list[tuple[int, int]]:
        """Sample ranges ``[a, b)`` of the chunks, relative to ``start``."""
        return [(a, min(a + self.chunk, self.n_samples)) for a in range(0, self.n_samples, self.chunk)]

    def read(self, a: int = 0, b: int | None = None) -> torch.Tensor:
        """Trajectories ``a .. b-1`` (relative) as ``[n, T', C, *grid]`` (Darcy: ``[n, 2, 1, *grid]``)."""
        b = self.n_samples if b is None else b
        return torch.from_numpy(self.view.trajectory_block(self.start + a, self.start + b))


@dataclass
class Chunk:
    """One chunk's part of an epoch: its sample range, its window order, and what else was drawn for it."""

    samples: tuple[int, int]
    order: torch.Tensor  # window ids local to the chunk, in stream order
    extra: Any = None  # all_to_all: the chunk's lead-time pairs


def plan(
    split: StreamSplit,
    windows_per_sample: int,
    shuffle: bool,
    generator: torch.Generator | None,
    draw: Callable[[int, int, torch.Generator | None], Any] | None = None,
) -> list[Chunk]:
    """The epoch's stream: chunks in (shuffled) order, each with its (shuffled) window order.

    ``draw(n_samples, n_windows, generator)`` draws a chunk's extra randomness right after its order.
    """
    ranges = split.chunks()
    if shuffle and len(ranges) > 1:
        ranges = [ranges[i] for i in torch.randperm(len(ranges), generator=generator).tolist()]
    out = []
    for a, b in ranges:
        count = (b - a) * windows_per_sample
        order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
        out.append(Chunk((a, b), order, draw(b - a, count, generator) if draw is not None else None))
    return out


def local_sizes(total: int, batch_size: int, rank: int, world_size: int, training: bool) -> list[int]:
    """Rows this rank contributes to each batch: its ``local_share`` slice of every global batch (training),
    or batches of ``batch_size`` over its ``1/world_size`` of the windows (evaluation)."""
    if training:
        sizes = [min(batch_size, total - i) for i in range(0, total, batch_size)]
        return [(rank + 1) * n // world_size - rank * n // world_size for n in sizes]
    mine = (rank + 1) * total // world_size - rank * total // world_size
    return [min(batch_size, mine - i) for i in range(0, mine, batch_size)]


def rank_range(total: int, batch_size: int, rank: int, world_size: int, training: bool) -> tuple[int, int]:
    """Stream positions ``[a, b)`` this rank reads: the ranks' ranges are contiguous and disjoint."""
    if not training:
        return rank * total // world_size, (rank + 1) * total // world_size
    before = sum(sum(local_sizes(total, batch_size, r, world_size, True)) for r in range(rank))
    return before, before + sum(local_sizes(total, batch_size, rank, world_size, True))


class ChunkReader(torch.utils.data.Dataset):
    """Item ``i``: the trajectories of the split's chunk ``i`` (read in a worker); a SciformerError is returned, not
    raised."""

    def __init__(self, split: StreamSplit):
        self.split, self.ranges = split, split.chunks()

    def __len__(self) -> int:
        return len(self.ranges)

    def __getitem__(self, i: int) -> torch.Tensor | SciformerError:
        try:
            return self.split.read(*self.ranges[i])
        except SciformerError as exc:
            return exc


class PassOrder(torch.utils.data.Sampler):
    """The chunks the current pass reads, set before each pass: the workers persist, the order does not."""

    def __init__(self) -> None:
        self.indices: list[int] = []

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.indices))

    def __len__(self) -> int:
        return len(self.indices)


def read_chunks(split: StreamSplit, ranges: list[tuple[int, int]], pin: bool) -> Iterator[torch.Tensor]:
    """The chunks' trajectories in order, read ahead by the split's persistent worker processes."""
    reader = ChunkReader(split)
    index = {r: i for i, r in enumerate(reader.ranges)}
    indices = [index[r] for r in ranges]
    items: Any
    if split.workers == 0 or not indices:
        items = (reader[i] for i in indices)
    else:
        loader, order = split.loader(reader, pin)
        order.indices = indices
        items = loader
    for item in items:
        if isinstance(item, SciformerError):
            raise item
        yield item


@dataclass
class Piece:
    """Rows of a batch taken from one chunk: the chunk on the device and the windows' local ids (and extras)."""

    block: torch.Tensor
    ids: torch.Tensor
    chunk: Chunk


def stream(split: StreamSplit, chunks: list[Chunk], sizes: list[int], first: int, device: torch.device) -> Iterator[list[Piece]]:
    """For each entry of ``sizes``, the pieces that make this rank's rows of that batch, from stream position
    ``first`` on. Only the chunks that hold those positions are read."""
    ends = np.cumsum([len(c.order) for c in chunks])
    starts = ends - np.array([len(c.order) for c in chunks])
    last = first + sum(sizes)
    needed = [(c, max(first, s) - s, min(last, e) - s) for c, s, e in zip(chunks, starts, ends) if s < last and e > first]
    blocks = read_chunks(split, [c.samples for c, _, _ in needed], pin=device.type == "cuda")
    targets = iter(sizes)
    want = next(targets, None)
    pieces: list[Piece] = []
    while want == 0:  # batches where this rank owns no row
        yield []
        want = next(targets, None)
    for (chunk, lo, hi), block in zip(needed, blocks):
        block = block.to(device, non_blocking=True)
        ids = chunk.order[lo:hi].to(device)
        pos = 0
        while pos < len(ids) and want is not None:
            take = min(want - sum(len(p.ids) for p in pieces), len(ids) - pos)
            pieces.append(Piece(block, ids[pos : pos + take], chunk))
            pos += take
            if sum(len(p.ids) for p in pieces) == want:
                yield pieces
                pieces, want = [], next(targets, None)
                while want == 0:
                    yield []
                    want = next(targets, None)
