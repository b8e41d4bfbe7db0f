"""Operator-learning data on the training device: steady pairs (Darcy) or trajectories (time-dependent PDEs).

Sources: the neuraloperator small sets (``darcy_small``, ``burgers_small``), and any file
:func:`sciformer.data.sources.open_source` reads (PDEBench HDF5 in either layout, The Well, NetCDF, Zarr,
neuraloperator ``.npz``/``.pt``), which ``fit`` may also simulate on first use (``data.generate``; ``evaluate``,
``predict`` and ``rollout`` never do). ``data.in_memory`` decides per run whether the splits are read once into
device tensors (``true``; ``auto`` when they take under a quarter of the memory this process may use, see
:mod:`sciformer.data.sources.memory`) or streamed from the file in chunks (``false``, or ``auto`` for larger data;
see :mod:`sciformer.data.sources.streaming`). Either way batches are gathered with index arithmetic.

Training samples depend on ``mode``:

* ``one_step``: input = the ``initial_step`` frames before frame ``k`` (stacked into channels), target = frame ``k``;
* ``unroll``: the same windows, but the target lies ``unroll_steps`` frames ahead; the model is applied that many
  times, with gradients through the last application only (the pushforward trick, Brandstetter et al. 2022,
  "Message Passing Neural PDE Solvers", arXiv 2202.03376);
* ``all_to_all``: input = frame ``i``, target = frame ``j > i``, lead time ``t = (j − i) / (T − 1)`` (Poseidon,
  arXiv 2405.19101); each epoch draws as many random pairs as ``one_step`` has windows.

Validation and test always score one-step predictions (``all_to_all``: lead ``1/(T − 1)``), so every mode is
measured the same way; autoregressive rollouts are :mod:`sciformer.engine.rollout`'s job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from sciformer.data import catalog
from sciformer.data.pde import PDEDataset, gather_windows, windows_per_trajectory
from sciformer.data.sources import SUFFIXES, open_source
from sciformer.data.sources.memory import fill, keep_in_memory
from sciformer.data.sources.streaming import Piece, StreamSplit, local_sizes, plan, rank_range, stream
from sciformer.errors import DataError, user_path

MODES = ("one_step", "unroll", "all_to_all")
# train.augment -> the symmetries of the square (indices of dihedral()) a training batch may be mapped by
AUGMENTS: dict[str, tuple[int, ...]] = {
    "none": (0,),
    "dihedral": tuple(range(8)),  # all 8: for grids that contain both ends of each axis, or cell-centred grids
    "transpose": (0, 7),  # identity or x <-> y: for grids like [0, 1)² that one reflection x -> 1 - x would shift
}
VAL_FRACTION = 0.1  # the last 10% of the training samples validate


class OperatorBatch(NamedTuple):
    """``u [B, C_in, *grid]`` → ``y [B, C_out, *grid]``; ``t [B]`` lead time (``all_to_all``) or None;
    ``steps``: how many model applications lead from ``u`` to ``y`` (``unroll``)."""

    u: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor | None = None
    steps: int = 1


@dataclass
class SplitTensors:
    """Steady pairs (``inputs``/``targets``) or trajectories ``[N, T, C, *grid]`` of one split, in memory."""

    inputs: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    trajectories: torch.Tensor | None = None

    def to(self, device) -> SplitTensors:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return SplitTensors(move(self.inputs), move(self.targets), move(self.trajectories))

    def field(self) -> torch.Tensor:
        """The trajectories ``[N, T, C, *grid]``, or the inputs ``[N, C_in, *grid]`` of steady pairs."""
        tensor = self.inputs if self.trajectories is None else self.trajectories
        if tensor is None:
            raise DataError("a split holds neither trajectories nor input/target pairs")
        return tensor

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of steady pairs."""
        if self.inputs is None or self.targets is None:
            raise DataError("a steady split needs both inputs and targets")
        return self.inputs, self.targets


class OperatorData:
    """Splits ``train``/``val``/``test`` of an operator data set, batched on the device.

    A split is either in memory (:class:`SplitTensors`, moved to the device whole) or streamed
    (:class:`~sciformer.data.sources.streaming.StreamSplit`: chunks read by DataLoader workers, windows
    gathered on the device; the file's fingerprint is checked at the start of every pass). Both give the
    same batches where a streamed split is one chunk.

    ``in_channels`` = ``initial_step × C`` for trajectories, ``out_channels`` = C, ``n_dims`` = grid axes,
    ``n_frames`` = T (None for steady pairs).

    ``augment="dihedral"`` maps each shuffled training batch (input and target alike) by one of the 8 symmetries
    of the square, drawn from the epoch's generator; ``"transpose"`` by the identity or the swap of the two axes.
    They suit problems that these maps leave invariant, such as Darcy flow on the unit square with isotropic
    coefficients and symmetric boundary conditions, and only on a grid the maps send to itself: neuraloperator's
    small Darcy set samples ``[0, 1)²`` (its solution vanishes on the first row and column, not on the last), so
    there only ``transpose`` is exact. They are wrong for pseudo-scalars (vorticity changes sign under a
    reflection) and for anisotropic forcing (Kolmogorov flow).
    """

    def __init__(
        self,
        splits: dict[str, SplitTensors | StreamSplit],
        mode: str = "one_step",
        initial_step: int = 1,
        unroll_steps: int = 1,
        name: str = "data",
        augment: str = "none",
        fingerprint: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise DataError(f"{name}: training mode must be one of {MODES}, got {mode!r}")
        if augment not in AUGMENTS:
            raise DataError(f"{name}: train.augment must be one of {tuple(AUGMENTS)}, got {augment!r}")
        self.splits, self.mode, self.name, self.augment, self.fingerprint = splits, mode, name, augment, fingerprint
        self._device = torch.device("cpu")
        shape = _shape(splits["train"])  # [N, T, C, *grid], or [N, C_in, *grid] for steady pairs
        self.steady = _is_steady(splits["train"])
        self.n_frames: int | None = None if self.steady else shape[1]  # frames per trajectory
        if self.steady and mode != "one_step":
            raise DataError(f"{name} is a steady problem (coefficient → solution); train.mode must be one_step, got {mode!r}")
        self.initial_step = 1 if (self.steady or mode == "all_to_all") else initial_step
        self.unroll_steps = unroll_steps if mode == "unroll" else 1
        if self.steady:
            self.in_channels, self.out_channels = _pair_channels(splits["train"])
            self.grid_shape = tuple(shape[2:])
        else:
            channels = shape[2]
            self.out_channels, self.in_channels = channels, self.initial_step * channels
            self.grid_shape = tuple(shape[3:])
            need = self.initial_step + self.unroll_steps
            for split, part in splits.items():
                if _shape(part)[1] < need:
                    raise DataError(
                        f"{name}: the {split} trajectories have {_shape(part)[1]} frames; initial_step "
                        f"{self.initial_step} + unroll_steps {self.unroll_steps} need at least {need}"
                    )
        self.n_dims = len(self.grid_shape)
        if augment != "none" and (self.n_dims != 2 or self.grid_shape[0] != self.grid_shape[1]):
            raise DataError(f"{name}: train.augment={augment} needs a square 2D grid, got grid {self.grid_shape}")

    @torch.no_grad()
    def field_statistics(self, max_samples: int = 4096, batch_size: int = 64) -> tuple[torch.Tensor, ...]:
        """Per-channel mean and standard deviation of the training split, ``(in_mean, in_std, out_mean, out_std)``,
        over its first ``max_samples`` windows (float64 sums; a constant channel gets std 1). For trajectories the
        input channels are frames of the target fields, so both take the fields' statistics: a residual's latest
        frame then stays an identity in normalised units."""
        totals: list[torch.Tensor] = []  # per part (input, target; target alone for trajectories): Σx, Σx², count
        seen = 0
        lead_pairs = torch.Generator().manual_seed(0)  # all_to_all draws pairs: not from the global stream
        for batch in self.batches("train", batch_size, generator=lead_pairs):
            moments = [_channel_moments(t) for t in ((batch.u, batch.y) if self.steady else (batch.y,))]
            totals = moments if not totals else [a + b for a, b in zip(totals, moments)]
            seen += batch.y.shape[0]
            if seen >= max_samples:
                break
        stats = []
        for s1, s2, n in totals:
            mean = s1 / n
            std = (s2 / n - mean.square()).clamp_min(0).sqrt()
            stats.append((mean.float().cpu(), torch.where(std > 1e-12, std, torch.ones_like(std)).float().cpu()))
        if self.steady:
            (in_mean, in_std), (out_mean, out_std) = stats
            return in_mean, in_std, out_mean, out_std
        (out_mean, out_std), frames = stats[0], self.in_channels // self.out_channels
        return out_mean.repeat(frames), out_std.repeat(frames), out_mean, out_std

    def to(self, device) -> OperatorData:
        self._device = torch.device(device)
        self.splits = {k: v.to(device) if isinstance(v, SplitTensors) else v for k, v in self.splits.items()}
        return self

    @property
    def device(self) -> torch.device:
        """Where batches are gathered: the in-memory tensors' device, else the one given to :meth:`to`."""
        for part in self.splits.values():
            if isinstance(part, SplitTensors):
                return part.field().device
        return self._device

    @property
    def streamed(self) -> bool:
        """True when some split is read from its file while training (``data.in_memory``)."""
        return any(isinstance(s, StreamSplit) for s in self.splits.values())

    def sizes(self) -> dict[str, int]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "n_dims": self.n_dims}

    # -------------------------------------------------------------------------------------- batching
    def _per_sample(self, split: str, training: bool) -> int:
        """Training pairs per trajectory: windows (``unroll``: ``unroll_steps`` ahead), or lead pairs."""
        if self.steady:
            return 1
        return windows_per_trajectory(_shape(self.splits[split])[1], self.initial_step, self.unroll_steps if training else 1)

    def _count(self, split: str, training: bool) -> int:
        return _shape(self.splits[split])[0] * self._per_sample(split, training)

    def n_batches(self, split: str, batch_size: int, world_size: int = 1) -> int:
        n = len(range(0, self._count(split, split == "train"), world_size))
        return -(-n // batch_size)

    def batches(
        self, split: str, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1
    ) -> Iterator[OperatorBatch]:
        s = self.splits[split]
        if isinstance(s, StreamSplit):
            yield from self._streamed_batches(s, split, batch_size, shuffle, generator, rank, world_size)
            return
        training = split == "train"
        count = self._count(split, training)
        order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
        order = order[rank::world_size]
        lead = self.mode == "all_to_all" and training
        if lead:
            pairs = self._random_lead_pairs(_shape(s)[0], _shape(s)[1], count, generator)
        symmetries = self._symmetries(training and shuffle, -(-len(order) // batch_size), generator)
        for n, i in enumerate(range(0, len(order), batch_size)):
            idx = order[i : i + batch_size]
            if lead:
                batch = self._lead_batch(s.field(), *(p[idx].to(self.device) for p in pairs))
            else:
                batch = self._window_batch(s, idx.to(self.device), self.unroll_steps if training else 1)
            yield self._augmented(batch, symmetries, n)

    def _symmetries(self, augment: bool, n_batches: int, generator: torch.Generator | None) -> list[int] | None:
        """One symmetry of the square per batch, drawn after the epoch's order."""
        if not augment or self.augment == "none":
            return None
        allowed = AUGMENTS[self.augment]
        return [allowed[k] for k in torch.randint(len(allowed), (n_batches,), generator=generator).tolist()]

    @staticmethod
    def _augmented(batch: OperatorBatch, symmetries: list[int] | None, n: int) -> OperatorBatch:
        if symmetries is None:
            return batch
        return batch._replace(u=dihedral(batch.u, symmetries[n]), y=dihedral(batch.y, symmetries[n]))

    def _window_batch(self, s: SplitTensors, idx: torch.Tensor, ahead: int) -> OperatorBatch:
        if self.steady:
            inputs, targets = s.pairs()
            return OperatorBatch(inputs[idx], targets[idx])
        traj = s.field()
        u, y = gather_windows(traj, idx, self.initial_step, ahead)  # [B, initial_step * C, *grid], [B, C, *grid]
        t = torch.full((len(idx),), 1.0 / (traj.shape[1] - 1), device=idx.device) if self.mode == "all_to_all" else None
        return OperatorBatch(u, y, t, ahead)

    @staticmethod
    def _random_lead_pairs(n_samples: int, n_frames: int, count: int, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        n = torch.randint(n_samples, (count,), generator=generator)
        i = torch.randint(n_frames - 1, (count,), generator=generator)
        j = i + 1 + (torch.rand(count, generator=generator) * (n_frames - 1 - i)).long()  # uniform over i < j < T
        return n, i, j

    @staticmethod
    def _lead_batch(traj: torch.Tensor, n: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> OperatorBatch:
        return OperatorBatch(traj[n, i], traj[n, j], (j - i).float() / (traj.shape[1] - 1))

    # ------------------------------------------------------------------------------ streamed splits
    def _streamed_batches(
        self, s: StreamSplit, split: str, batch_size: int, shuffle: bool, generator: torch.Generator | None, rank: int, world_size: int
    ) -> Iterator[OperatorBatch]:
        s.check_unchanged()  # every pass (every epoch) starts on the file it started with
        training = split == "train"
        lead = self.mode == "all_to_all" and training
        shared = training and world_size == 1 and _world()[1] > 1  # DDP training: every rank yields global batches
        if shared:
            rank, world_size = _world()
        n_frames = _shape(s)[1]
        draw = (lambda n, count, g: self._random_lead_pairs(n, n_frames, count, g)) if lead else None
        chunks = plan(s, self._per_sample(split, training), shuffle, generator, draw)
        total = sum(len(c.order) for c in chunks)
        sizes = local_sizes(total, batch_size, rank, world_size, training=shared or world_size == 1)
        symmetries = self._symmetries(training and shuffle, len(sizes), generator)
        first, _ = rank_range(total, batch_size, rank, world_size, training=shared or world_size == 1)
        ahead = self.unroll_steps if training else 1
        for n, pieces in enumerate(stream(s, chunks, sizes, first, self.device)):
            batch = self._assemble(pieces, ahead, lead)
            if shared:  # this rank's rows where local_share will take them; the other ranks' rows stay zero
                rows = min(batch_size, total - n * batch_size)
                batch = _place(batch, rows, rank * rows // world_size)
            yield self._augmented(batch, symmetries, n)

    def _assemble(self, pieces: list[Piece], ahead: int, lead: bool) -> OperatorBatch:
        parts = [self._piece_batch(p, ahead, lead) for p in pieces]
        if not parts:  # a batch in which this rank owns no row
            u = torch.zeros(0, self.in_channels, *self.grid_shape, device=self.device)
            y = torch.zeros(0, self.out_channels, *self.grid_shape, device=self.device)
            t = torch.zeros(0, device=self.device) if self.mode == "all_to_all" else None
            return OperatorBatch(u, y, t, 1 if lead else ahead)
        if len(parts) == 1:
            return parts[0]
        t = None if parts[0].t is None else torch.cat([p.t for p in parts if p.t is not None])
        return OperatorBatch(torch.cat([p.u for p in parts]), torch.cat([p.y for p in parts]), t, parts[0].steps)

    def _piece_batch(self, piece: Piece, ahead: int, lead: bool) -> OperatorBatch:
        block, ids = piece.block, piece.ids
        if self.steady:  # [b, 2, 1, *grid]: coefficient, solution
            return self._window_batch(SplitTensors(inputs=block[:, 0], targets=block[:, 1]), ids, 1)
        if lead:
            n, i, j = (p.to(ids.device)[ids] for p in piece.chunk.extra)
            return self._lead_batch(block, n, i, j)
        return self._window_batch(SplitTensors(trajectories=block), ids, ahead)

    def test_trajectories(self) -> torch.Tensor:
        """``[N, T, C, *grid]`` test trajectories (for rollouts)."""
        if self.steady:
            raise DataError(f"{self.name} is a steady problem: it has no trajectories to roll out")
        part = self.splits["test"]
        return (part.trajectories if isinstance(part, StreamSplit) else part.field()).to(self.device)


def _channel_moments(t: torch.Tensor) -> torch.Tensor:
    """``[3, C]``: per channel of ``t [B, C, *grid]`` the sum, the sum of squares and the count (float64)."""
    c = t.double().transpose(0, 1).flatten(1)
    return torch.stack([c.sum(1), c.square().sum(1), torch.full_like(c[:, 0], c.shape[1])])


def _shape(part: SplitTensors | StreamSplit) -> tuple[int, ...]:
    if isinstance(part, StreamSplit):
        view = part.view
        if view.is_darcy:
            return (part.n_samples, 1, *view.spatial_shape)
        return (part.n_samples, view.n_frames, view.n_channels, *view.spatial_shape)
    return tuple(part.field().shape)


def _is_steady(part: SplitTensors | StreamSplit) -> bool:
    return part.view.is_darcy if isinstance(part, StreamSplit) else part.trajectories is None


def _pair_channels(part: SplitTensors | StreamSplit) -> tuple[int, int]:
    if isinstance(part, StreamSplit):
        return 1, 1
    inputs, targets = part.pairs()
    return inputs.shape[1], targets.shape[1]


def _world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) without one. The trainer asks for training
    batches without a rank: under DDP each rank yields global batches and trains on its share."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _place(batch: OperatorBatch, rows: int, offset: int) -> OperatorBatch:
    """A global batch of ``rows`` rows holding ``batch`` at ``offset`` and zeros elsewhere."""

    def spread(t: torch.Tensor) -> torch.Tensor:
        out = t.new_zeros((rows, *t.shape[1:]))
        out[offset : offset + t.shape[0]] = t
        return out

    return OperatorBatch(spread(batch.u), spread(batch.y), None if batch.t is None else spread(batch.t), batch.steps)


def dihedral(field: torch.Tensor, symmetry: int) -> torch.Tensor:
    """Symmetry ``symmetry`` (0–7) of the square applied to the last two axes of ``field``: ``symmetry % 4``
    quarter turns, then a reflection of the last axis when ``symmetry >= 4``. 0 is the identity, 7 the transpose."""
    turned = torch.rot90(field, symmetry % 4, dims=(-2, -1))
    return turned.flip(-1) if symmetry >= 4 else turned


# ---------------------------------------------------------------------------------------- building
def read_split(dataset: PDEDataset) -> torch.Tensor:
    """Every trajectory of a lazy :class:`~sciformer.data.pde.PDEDataset` split in one tensor ``[N, T', C, *grid]``.

    The tensor is allocated once and filled chunk by chunk, so reading holds the split plus one chunk, not twice the
    split. A split larger than the memory this process may use is refused up front."""
    shape = (dataset.n_samples, dataset.n_frames, dataset.n_channels, *dataset.spatial_shape)
    return fill(shape, dataset.iter_trajectories(), repr(dataset))


def _in_memory(part: StreamSplit) -> SplitTensors:
    """A split read whole, chunk by chunk; Darcy's ``[N, 2, 1, *grid]`` becomes coefficient → solution pairs."""
    block = part.trajectories
    if part.view.is_darcy:
        return SplitTensors(inputs=block[:, 0], targets=block[:, 1])
    return SplitTensors(trajectories=block)


def _views(cfg, allow_generate: bool) -> tuple[PDEDataset, PDEDataset, int]:
    """Trajectory views of the training and test samples, and how many training samples to use."""
    from sciformer.data.neuralop import NEURALOP_SMALL, neuralop_split_source

    if cfg.name in NEURALOP_SMALL:  # the files are already split; num_samples keeps the first training samples
        train = PDEDataset(neuralop_split_source(cfg.name, "train", 16), "all", mode="trajectory")
        resolution = (cfg.test_resolution or 16) if cfg.name == "darcy_small" else 16
        test = PDEDataset(neuralop_split_source(cfg.name, "test", resolution), "all", mode="trajectory")
        return train, test, min(train.n_samples, cfg.num_samples or train.n_samples)
    path = user_path(cfg.name)
    if not path.exists():
        if cfg.generate is None:
            raise DataError(f"PDE data file '{path}' does not exist; give data.generate to create it on first use")
        if not allow_generate:
            raise DataError(
                f"PDE data file '{path}' does not exist; only `sciformer fit` simulates data.generate, evaluate, predict and rollout read existing files only"
            )
        path = generate_missing(path, cfg.generate)
    source = open_source(path)
    options = {"reduced_resolution": cfg.reduced_resolution, "reduced_resolution_t": cfg.reduced_resolution_t, "mode": "trajectory"}
    if cfg.num_samples:
        options["num_samples_max"] = cfg.num_samples
    train = PDEDataset(source, "train", **options)
    return train, PDEDataset(source, "test", **options), train.n_samples


def _fingerprint(parts: dict[str, StreamSplit]) -> str:
    """The files (path, size, modification time, shapes) and the samples each split takes: no data is read."""
    facts = {
        name: {**p.stamp, "samples": [p.view._rows[p.start], p.view._rows[p.stop - 1]], "grid": list(p.view.spatial_shape), "frames": p.view.n_frames}
        for name, p in parts.items()
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def load_operator_data(cfg, train_cfg, *, allow_generate: bool) -> OperatorData:
    """Build :class:`OperatorData` from a recipe's ``data`` and ``train`` sections.

    ``allow_generate``: whether a missing file may be simulated from ``data.generate`` (``fit`` only). The splits
    are held in memory or streamed as ``data.in_memory`` says (``auto``: in memory under a quarter of the memory
    this process may use)."""
    train, test, n = _views(cfg, allow_generate)
    n_val = max(1, round(n * VAL_FRACTION))
    if n - n_val < 1:
        raise DataError(f"{train.source.path}: too few training samples ({n}) to hold out a validation split")
    parts = {"train": StreamSplit(train, 0, n - n_val), "val": StreamSplit(train, n - n_val, n), "test": StreamSplit(test, 0, test.n_samples)}
    name = f"dataset '{cfg.name}'"
    total = sum(p.nbytes for p in parts.values())
    setting = getattr(cfg, "in_memory", "auto")
    in_memory = keep_in_memory(setting, total, f"{name} ({train.source.path})")
    splits: dict[str, SplitTensors | StreamSplit] = {k: _in_memory(p) if in_memory else p for k, p in parts.items()}
    return OperatorData(splits, train_cfg.mode, cfg.initial_step, train_cfg.unroll_steps, name=name, augment=train_cfg.augment, fingerprint=_fingerprint(parts))


def generate_missing(path: Path, spec: dict) -> Path:
    """Simulate the file a recipe names, once (``data.generate: {generator: ns2d, n: 1000, res: 64, ...}``)."""
    from sciformer.data.generators import generate

    spec = dict(spec)
    try:
        generator, n, res = spec.pop("generator"), spec.pop("n"), spec.pop("res")
    except KeyError as exc:
        raise DataError(f"data.generate needs 'generator', 'n' and 'res'; missing {exc}") from None
    device = spec.pop("device", "cuda" if torch.cuda.is_available() else "cpu")
    print(f"generating {n} {generator} samples at resolution {res} into {path} (first use)")
    return generate(generator, path, n=n, res=res, device=device, **spec)


def is_operator_dataset(name: str) -> bool:
    """True for PDE data sets (neuralop sets, files of a format :func:`~sciformer.data.sources.open_source` reads)."""
    manifest = catalog.manifests().get(name)
    if manifest is not None:
        return manifest.kind != "timeseries"
    return Path(name).suffix.lower() in SUFFIXES
