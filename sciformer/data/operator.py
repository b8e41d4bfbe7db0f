"""Operator-learning data on the training device: steady pairs (Darcy) or trajectories (time-dependent PDEs).

Sources: the neuraloperator small sets (``darcy_small``, ``burgers_small``), any PDEBench HDF5 file (either
layout), and files that a recipe generates on first use (``data.generate``). Everything is read once
through :mod:`sciformer.data.pde` / :mod:`sciformer.data.neuralop` into device tensors, and batches are
gathered with index arithmetic, as for time series.

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

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from sciformer.data import catalog
from sciformer.data.pde import gather_windows, open_pdebench, windows_per_trajectory
from sciformer.errors import DataError

MODES = ("one_step", "unroll", "all_to_all")
# train.augment -> the symmetries of the square (indices of dihedral()) a training batch may be mapped by
AUGMENTS: dict[str, tuple[int, ...]] = {
    "none": (0,),
    "dihedral": tuple(range(8)),  # all 8: for grids that contain both ends of each axis, or cell-centred grids
    "transpose": (0, 7),  # identity or x <-> y: for grids like [0, 1)² that one reflection x -> 1 - x would shift
}


class OperatorBatch(NamedTuple):
    """``u [B, C_in, *grid]`` → ``y [B, C_out, *grid]``; ``t [B]`` lead time (``all_to_all``) or None;
    ``steps``: how many model applications lead from ``u`` to ``y`` (``unroll``)."""

    u: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor | None = None
    steps: int = 1


@dataclass
class SplitTensors:
    """Steady pairs (``inputs``/``targets``) or trajectories ``[N, T, C, *grid]`` of one split."""

    inputs: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    trajectories: torch.Tensor | None = None

    def to(self, device) -> "SplitTensors":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return SplitTensors(move(self.inputs), move(self.targets), move(self.trajectories))


class OperatorData:
    """Splits ``train``/``val``/``test`` of an operator data set, batched on the device.

    ``in_channels`` = ``initial_step × C`` for trajectories, ``out_channels`` = C, ``n_dims`` = grid axes.

    ``augment="dihedral"`` maps each shuffled training batch (input and target alike) by one of the 8 symmetries
    of the square, drawn from the epoch's generator; ``"transpose"`` by the identity or the swap of the two axes.
    They suit problems that these maps leave invariant, such as Darcy flow on the unit square with isotropic
    coefficients and symmetric boundary conditions, and only on a grid the maps send to itself: neuraloperator's
    small Darcy set samples ``[0, 1)²`` (its solution vanishes on the first row and column, not on the last), so
    there only ``transpose`` is exact. They are wrong for pseudo-scalars (vorticity changes sign under a
    reflection) and for anisotropic forcing (Kolmogorov flow).
    """

    def __init__(self, splits: dict[str, SplitTensors], mode: str = "one_step", initial_step: int = 1, unroll_steps: int = 1,
                 name: str = "data", augment: str = "none") -> None:
        if mode not in MODES:
            raise DataError(f"{name}: training mode must be one of {MODES}, got {mode!r}")
        if augment not in AUGMENTS:
            raise DataError(f"{name}: train.augment must be one of {tuple(AUGMENTS)}, got {augment!r}")
        self.splits, self.mode, self.name, self.augment = splits, mode, name, augment
        first = splits["train"]
        self.steady = first.trajectories is None
        if self.steady and mode != "one_step":
            raise DataError(f"{name} is a steady problem (coefficient → solution); train.mode must be one_step, got {mode!r}")
        self.initial_step = 1 if (self.steady or mode == "all_to_all") else initial_step
        self.unroll_steps = unroll_steps if mode == "unroll" else 1
        if self.steady:
            self.in_channels, self.out_channels = first.inputs.shape[1], first.targets.shape[1]
            self.grid_shape = tuple(first.targets.shape[2:])
        else:
            n_frames, channels = first.trajectories.shape[1:3]
            self.out_channels, self.in_channels = channels, self.initial_step * channels
            self.grid_shape = tuple(first.trajectories.shape[3:])
            need = self.initial_step + self.unroll_steps
            for split, tensors in splits.items():
                if tensors.trajectories.shape[1] < need:
                    raise DataError(
                        f"{name}: the {split} trajectories have {tensors.trajectories.shape[1]} frames; initial_step "
                        f"{self.initial_step} + unroll_steps {self.unroll_steps} need at least {need}"
                    )
        self.n_dims = len(self.grid_shape)
        if augment != "none" and (self.n_dims != 2 or self.grid_shape[0] != self.grid_shape[1]):
            raise DataError(f"{name}: train.augment={augment} needs a square 2D grid, got grid {self.grid_shape}")

    def to(self, device) -> "OperatorData":
        self.splits = {k: v.to(device) for k, v in self.splits.items()}
        return self

    @property
    def device(self) -> torch.device:
        s = self.splits["train"]
        return (s.inputs if self.steady else s.trajectories).device

    def sizes(self) -> dict[str, int]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "n_dims": self.n_dims}

    # -------------------------------------------------------------------------------------- batching
    def _count(self, split: str, training: bool) -> int:
        s = self.splits[split]
        if self.steady:
            return s.inputs.shape[0]
        n, n_frames = s.trajectories.shape[:2]
        return n * windows_per_trajectory(n_frames, self.initial_step, self.unroll_steps if training else 1)

    def n_batches(self, split: str, batch_size: int, world_size: int = 1) -> int:
        n = len(range(0, self._count(split, split == "train"), world_size))
        return -(-n // batch_size)

    def batches(self, split: str, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1) -> Iterator[OperatorBatch]:
        training = split == "train"
        count = self._count(split, training)
        order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
        order = order[rank::world_size]
        if self.mode == "all_to_all" and training:
            pairs = self._random_lead_pairs(count, generator)
        augment = training and shuffle and self.augment != "none"
        if augment:  # one symmetry of the square per batch
            allowed = AUGMENTS[self.augment]
            symmetries = [allowed[k] for k in torch.randint(len(allowed), (-(-len(order) // batch_size),), generator=generator).tolist()]
        for n, i in enumerate(range(0, len(order), batch_size)):
            idx = order[i : i + batch_size]
            if self.mode == "all_to_all" and training:
                batch = self._lead_batch(split, *(p[idx].to(self.device) for p in pairs))
            else:
                batch = self._window_batch(split, idx.to(self.device), self.unroll_steps if training else 1)
            yield batch._replace(u=dihedral(batch.u, symmetries[n]), y=dihedral(batch.y, symmetries[n])) if augment else batch

    def _window_batch(self, split: str, idx: torch.Tensor, ahead: int) -> OperatorBatch:
        s = self.splits[split]
        if self.steady:
            return OperatorBatch(s.inputs[idx], s.targets[idx])
        traj = s.trajectories
        u, y = gather_windows(traj, idx, self.initial_step, ahead)  # [B, initial_step * C, *grid], [B, C, *grid]
        t = torch.full((len(idx),), 1.0 / (traj.shape[1] - 1), device=idx.device) if self.mode == "all_to_all" else None
        return OperatorBatch(u, y, t, ahead)

    def _random_lead_pairs(self, count: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_samples, n_frames = self.splits["train"].trajectories.shape[:2]
        n = torch.randint(n_samples, (count,), generator=generator)
        i = torch.randint(n_frames - 1, (count,), generator=generator)
        j = i + 1 + (torch.rand(count, generator=generator) * (n_frames - 1 - i)).long()  # uniform over i < j < T
        return n, i, j

    def _lead_batch(self, split: str, n: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> OperatorBatch:
        traj = self.splits[split].trajectories
        return OperatorBatch(traj[n, i], traj[n, j], (j - i).float() / (traj.shape[1] - 1))

    def test_trajectories(self) -> torch.Tensor:
        """``[N, T, C, *grid]`` test trajectories (for rollouts)."""
        traj = self.splits["test"].trajectories
        if traj is None:
            raise DataError(f"{self.name} is a steady problem: it has no trajectories to roll out")
        return traj


# ---------------------------------------------------------------------------------------- building
def dihedral(field: torch.Tensor, symmetry: int) -> torch.Tensor:
    """Symmetry ``symmetry`` (0–7) of the square applied to the last two axes of ``field``: ``symmetry % 4``
    quarter turns, then a reflection of the last axis when ``symmetry >= 4``. 0 is the identity, 7 the transpose."""
    turned = torch.rot90(field, symmetry % 4, dims=(-2, -1))
    return turned.flip(-1) if symmetry >= 4 else turned


def _stack_pairs(dataset) -> SplitTensors:
    parts = list(dataset.iter_batches(4096))
    return SplitTensors(inputs=torch.cat([p[0] for p in parts]), targets=torch.cat([p[1] for p in parts]))


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None


def read_split(dataset) -> torch.Tensor:
    """Every trajectory of a lazy :class:`~sciformer.data.pde.PDEDataset` split in one tensor ``[N, T', C, *grid]``.

    The tensor is allocated once and filled chunk by chunk, so reading holds the split plus one chunk, not twice the
    split (a list of chunks and their concatenation). A split larger than the machine's memory is refused up front."""
    shape = (dataset.n_samples, dataset.n_frames, dataset.n_channels, *dataset.spatial_shape)
    size = math.prod(shape) * 4
    memory = _physical_memory()
    if memory is not None and size > memory:
        raise DataError(
            f"{dataset!r} needs {size / 2**30:.1f} GiB in memory, more than this machine's {memory / 2**30:.1f} GiB; "
            "read fewer samples (data.num_samples) or a coarser grid (data.reduced_resolution, data.reduced_resolution_t)"
        )
    out = torch.empty(shape, dtype=torch.float32)
    filled = 0
    for block in dataset.iter_trajectories():
        out[filled : filled + block.shape[0]] = block
        filled += block.shape[0]
    return out


def _stack_trajectories(dataset) -> SplitTensors:
    block = read_split(dataset)
    if dataset.is_darcy:  # [N, 2, 1, *grid]: coefficient, solution
        return SplitTensors(inputs=block[:, 0], targets=block[:, 1])
    return SplitTensors(trajectories=block)


def _first(split: SplitTensors, n: int) -> SplitTensors:
    take = lambda t: None if t is None else t[:n]  # noqa: E731
    return SplitTensors(take(split.inputs), take(split.targets), take(split.trajectories))


def _holdout(train: SplitTensors, fraction: float) -> tuple[SplitTensors, SplitTensors]:
    """The last ``fraction`` of the training samples as a validation split."""
    tensors = train.inputs if train.trajectories is None else train.trajectories
    n = tensors.shape[0]
    n_val = max(1, int(round(n * fraction)))
    if n - n_val < 1:
        raise DataError(f"too few training samples ({n}) to hold out a validation split")
    cut = lambda t: (None, None) if t is None else (t[: n - n_val], t[n - n_val :])  # noqa: E731
    (a, b), (c, d), (e, f) = cut(train.inputs), cut(train.targets), cut(train.trajectories)
    return SplitTensors(a, c, e), SplitTensors(b, d, f)


def load_operator_data(cfg, train_cfg) -> OperatorData:
    """Build :class:`OperatorData` from a recipe's ``data`` and ``train`` sections."""
    from sciformer.data.neuralop import NEURALOP_SMALL, load_neuralop_small

    name = cfg.name
    if name in NEURALOP_SMALL:
        if name == "darcy_small":
            train = _stack_pairs(load_neuralop_small(name, "train", 16))
            test = _stack_pairs(load_neuralop_small(name, "test", cfg.test_resolution or 16))
        else:
            train = _stack_trajectories(load_neuralop_small(name, "train", mode="trajectory", traj_mode="trajectory"))
            test = _stack_trajectories(load_neuralop_small(name, "test", mode="trajectory", traj_mode="trajectory"))
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            if cfg.generate is None:
                raise DataError(f"PDE data file '{path}' does not exist; give data.generate to create it on first use")
            path = generate_missing(path, cfg.generate)
        options = {"reduced_resolution": cfg.reduced_resolution, "reduced_resolution_t": cfg.reduced_resolution_t, "mode": "trajectory"}
        if cfg.num_samples:
            options["num_samples_max"] = cfg.num_samples
        if path.suffix.lower() == ".nc":  # NetCDF as to_xarray/write_netcdf lay it out
            from sciformer.data.xarray_io import from_xarray, read_netcdf

            xds = read_netcdf(path)
            open_split = lambda split: from_xarray(xds, split, **options)  # noqa: E731
        else:
            open_split = lambda split: open_pdebench(path, split, **options)  # noqa: E731
        with open_split("train") as ds:
            train = _stack_trajectories(ds)
        with open_split("test") as ds:
            test = _stack_trajectories(ds)
    if cfg.num_samples:  # neuralop sets: keep the first num_samples training samples (files are read whole above)
        train = _first(train, cfg.num_samples)
    train, val = _holdout(train, 0.1)
    return OperatorData({"train": train, "val": val, "test": test}, train_cfg.mode, cfg.initial_step, train_cfg.unroll_steps,
                        name=f"dataset '{name}'", augment=train_cfg.augment)


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
    """True for PDE data sets (neuralop sets, HDF5/NetCDF files), False for time series."""
    manifest = catalog.manifests().get(name)
    if manifest is not None:
        return manifest.kind != "timeseries"
    return Path(name).suffix.lower() in (".h5", ".hdf5", ".nc")
