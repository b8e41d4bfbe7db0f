"""Operator data from a mixture of PDE files (``data.name: mixture``): splits, weighted rows, streaming or in memory.

The layout, the splits and the weighting are described in :mod:`sciformer.data.sources.mixture`; this module opens
the members, cuts their splits and hands the result to :class:`~sciformer.data.operator.OperatorData`, which batches
it like the data of one file (``data.in_memory`` applies to the mixture as a whole).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sciformer.data.operator import OperatorData, SplitTensors, generate_missing
from sciformer.data.pde import PDEDataset
from sciformer.data.sources import open_source
from sciformer.data.sources.memory import keep_in_memory
from sciformer.data.sources.mixture import MIXTURE, Member, MixtureSource, check_members, weighted_rows
from sciformer.data.sources.streaming import StreamSplit
from sciformer.errors import ConfigError, DataError, did_you_mean, user_path

VAL_FRACTION = 0.1  # of each member's training samples


def split_rows(source: Any, num_samples: int | None) -> tuple[list[int], list[int]]:
    """The file rows of a member's training and test samples, by its file's own convention (as a run on it alone)."""
    cap = {"num_samples_max": num_samples} if num_samples else {}
    return PDEDataset(source, "train", mode="trajectory", **cap)._rows, PDEDataset(source, "test", mode="trajectory", **cap)._rows


def open_members(entries: list[dict[str, Any]], allow_generate: bool, num_samples: int | None) -> list[tuple[Any, dict[str, Any]]]:
    """Each member's source and its entry completed with ``channels`` (its fields' layout names) and its ``train``
    and ``test`` rows; a missing file is simulated first where the member has ``generate`` (``fit`` only)."""
    check_members(entries)
    opened = []
    for i, entry in enumerate(entries):
        path = user_path(entry["path"])
        if not path.exists():
            if entry.get("generate") is None:
                raise DataError(f"data.mixture[{i}]: PDE data file '{path}' does not exist; give the member a 'generate' entry to create it on first use")
            if not allow_generate:
                raise DataError(f"data.mixture[{i}]: PDE data file '{path}' does not exist; only `sciformer fit` simulates a member's 'generate'")
            path = generate_missing(path, entry["generate"])
        source = open_source(path)
        if source.coefficient is not None:
            raise DataError(f"data.mixture[{i}] ({path}) is a steady problem (coefficient → solution); a mixture takes time-dependent members only")
        fields = entry.get("channels") or list(source.channels)
        if len(fields) != len(source.channels):
            have = f"{len(source.channels)} ({', '.join(source.channels)})"
            raise ConfigError(f"recipe key 'data.mixture[{i}].channels' names {len(fields)} fields {fields}; '{path}' has {have}")
        train, test = split_rows(source, num_samples)
        opened.append((source, {**entry, "channels": fields, "train": train, "test": test}))
    grids = {tuple(s.grid_shape) for s, _ in opened}
    if len(grids) > 1:
        shown = ", ".join(f"{e['path']}: {tuple(s.grid_shape)}" for s, e in opened)
        raise DataError(f"data.mixture: the members must share one grid, got {shown}")
    return opened


def mixture_splits(entries: list[dict[str, Any]], layout: list[str] | None, allow_generate: bool, num_samples: int | None = None) -> dict[str, MixtureSource]:
    """The ``train``/``val``/``test`` sources of a ``data.mixture`` (see the module docstring)."""
    opened = open_members(entries, allow_generate, num_samples)
    fields = list(layout) if layout else list(dict.fromkeys(f for _, e in opened for f in e["channels"]))
    for i, (_, entry) in enumerate(opened):
        unknown = [f for f in entry["channels"] if f not in fields]
        if unknown:
            raise ConfigError(f"data.mixture[{i}] has fields {unknown} that 'data.mixture_channels' ({fields}) does not list{did_you_mean(unknown[0], fields)}")
    splits: dict[str, list[Member]] = {"train": [], "val": [], "test": []}
    for i, (source, entry) in enumerate(opened):
        train = entry["train"]
        n_val = max(1, round(len(train) * VAL_FRACTION))
        if len(train) - n_val < 1:
            raise DataError(f"data.mixture[{i}] ({source.path}): too few training samples ({len(train)}) to hold out a validation split")
        weight = float(entry.get("weight", 1.0))
        for split, rows in (("train", train[:-n_val]), ("val", train[-n_val:]), ("test", entry["test"])):
            splits[split].append(Member(source, list(rows), weight, entry["channels"]))
    out = {}
    for split, members in splits.items():
        sizes = [len(m.rows) for m in members]
        if split == "train":
            pairs = weighted_rows(sizes, [m.weight for m in members])
        else:
            pairs = [(m, k) for m, n in enumerate(sizes) for k in range(n)]
        out[split] = MixtureSource(members, fields, [(m, members[m].rows[k]) for m, k in pairs], name=f"{MIXTURE}:{split}")
    return out


def mixture_digest(sources: dict[str, MixtureSource]) -> str:
    """What changes when a member file or the mixture's layout or rows change (no data is read)."""
    facts = {split: s.fingerprint() for split, s in sources.items()}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


class MixtureData(OperatorData):
    """Operator data in a mixture's layout: ``masked_fields`` fields, then as many presence channels."""

    masked_fields: int = 0


def load_mixture_data(cfg: Any, train_cfg: Any, *, allow_generate: bool) -> MixtureData:
    """The :class:`MixtureData` of a recipe's ``data.mixture`` (``in_memory``, ``reduced_resolution`` and
    ``num_samples`` apply as for one file)."""
    sources = mixture_splits(cfg.mixture, cfg.mixture_channels, allow_generate, cfg.num_samples)
    options = {"reduced_resolution": cfg.reduced_resolution, "reduced_resolution_t": cfg.reduced_resolution_t, "mode": "trajectory"}
    parts = {split: StreamSplit(view, 0, view.n_samples) for split, s in sources.items() for view in [PDEDataset(s, "all", **options)]}
    in_memory = keep_in_memory(cfg.in_memory, sum(p.nbytes for p in parts.values()), f"the mixture of {len(cfg.mixture)} files")
    splits: dict[str, SplitTensors | StreamSplit] = {k: SplitTensors(trajectories=p.trajectories) if in_memory else p for k, p in parts.items()}
    mode, name = train_cfg.mode, f"data '{MIXTURE}'"
    data = MixtureData(splits, mode, cfg.initial_step, train_cfg.unroll_steps, name=name, augment=train_cfg.augment, fingerprint=mixture_digest(sources))
    data.masked_fields = len(sources["train"].fields)
    return data
