"""A mixture of PDE data files in one channel layout: the pretraining data of a PDE foundation model.

Poseidon (Herde et al., "Poseidon: Efficient Foundation Models for PDEs", arXiv 2405.19101) and GPhyT
(Wiesner et al., "Towards a Physics Foundation Model", arXiv 2509.13805) train one model on several PDE families
whose fields differ, laid out in one fixed set of channels. A recipe names the files::

    data:
      name: mixture
      mixture:
        - {path: ns2d_nu1e-3.h5, weight: 2, channels: [vorticity]}   # channels: names of the file's fields
        - {path: diffreact2d.h5, weight: 1}                         # default: the file's own names (u, v)
      mixture_channels: [vorticity, u, v]                           # default: the members' fields, first seen first

* **Layout**: the ``F`` fields of ``mixture_channels``, then one presence channel ``present_<field>`` per field (1
  where the member has the field, 0 where not); an absent field is zeros. The model sees which fields exist; the
  training loss ignores the absent ones: the model's prediction there is replaced by the target's own values
  (zeros, and the presence itself; :class:`sciformer.engine.pretrained.PresenceMasked`).
* **Splits** (:func:`sciformer.data.mixture.mixture_splits`): each member keeps its file's own test split (as a run
  on that file alone has it) and validates on the last 10 % of its training samples, so no trajectory is in two splits.
* **Weighted sampling**: in the training split a member takes the share ``weight / Σ weights`` of the samples.
  Members are repeated (never cut) to reach their share, and the samples of all members are interleaved evenly,
  so every chunk a stream reads (:mod:`sciformer.data.sources.streaming`) holds each member in proportion.
  Validation and test take each sample once.
* Members share one grid; trajectories are cut to the shortest member's frames. Steady problems (Darcy) cannot
  be members: they have no frames to step.

A :class:`MixtureSource` is a :class:`~sciformer.data.sources.base.TrajectorySource`, so the mixture streams and
loads into memory exactly as one file does; each member opens its own file lazily in each DataLoader worker.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sciformer.data.sources.base import TrajectorySource, sample_ids
from sciformer.errors import ConfigError, did_you_mean

MIXTURE = "mixture"  # the data.name of a mixture recipe
PRESENT = "present_"  # prefix of the presence channels
MEMBER_KEYS = ("path", "weight", "channels", "generate")


@dataclass
class Member:
    """One file of a mixture: its source, the rows of a split, its sampling weight, its fields' layout names."""

    source: TrajectorySource
    rows: list[int]
    weight: float
    fields: list[str]


def check_members(entries: list[dict[str, Any]]) -> None:
    """Refuse a ``data.mixture`` entry with unknown keys, no path, a non-positive weight or bad channel names."""
    if not entries:
        raise ConfigError("recipe key 'data.mixture': expected a list of at least one {path, weight, channels} entry, got none")
    for i, entry in enumerate(entries):
        key = f"data.mixture[{i}]"
        for name in entry:
            if name not in MEMBER_KEYS:
                raise ConfigError(f"unknown recipe key '{key}.{name}'{did_you_mean(name, MEMBER_KEYS)}; valid keys: {', '.join(MEMBER_KEYS)}")
        if not isinstance(entry.get("path"), str) or not entry["path"]:
            raise ConfigError(f"recipe key '{key}.path': expected the path of a PDE data file, got {entry.get('path')!r}")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < math.inf:
            raise ConfigError(f"recipe key '{key}.weight': expected a positive finite number, got {weight!r}")
        channels = entry.get("channels")
        if channels is not None and (not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels)):
            raise ConfigError(f"recipe key '{key}.channels': expected a list of field names, got {channels!r}")
        if channels is not None and len(set(channels)) != len(channels):
            raise ConfigError(f"recipe key '{key}.channels': the names {channels} repeat one")


class MixtureSource(TrajectorySource):
    """Samples ``rows[k] = (member, sample)`` of several member sources in the layout ``fields + present_<field>``."""

    kind = MIXTURE

    def __init__(self, members: list[Member], fields: list[str], rows: list[tuple[int, int]], name: str = MIXTURE) -> None:
        self.members, self.fields, self.rows = members, list(fields), np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        self.path = Path(name)
        first = members[0].source
        self.n_samples = len(self.rows)
        self.n_frames = min(m.source.n_frames for m in members)
        self.grid_shape = tuple(first.grid_shape)
        self.channels = self.fields + [PRESENT + f for f in self.fields]
        self.coords = dict(first.coords)
        self.times = np.asarray(first.times[: self.n_frames])
        self.attrs = {}
        self._slots = [[self.fields.index(f) for f in m.fields] for m in members]  # member channel -> layout field

    def fingerprint(self) -> dict[str, Any]:
        rows = hashlib.sha256(self.rows.tobytes()).hexdigest()
        return {
            "kind": self.kind,
            "path": str(self.path),
            "shape": list(self.shape),
            "channels": self.channels,
            "rows": rows,
            "members": [m.source.fingerprint() for m in self.members],
        }

    def check_unchanged(self, fingerprint: dict[str, Any]) -> None:
        for member, stamp in zip(self.members, fingerprint["members"]):
            member.source.check_unchanged(stamp)

    def close(self) -> None:
        for member in getattr(self, "members", ()):
            member.source.close()

    def dataset_name(self, channel: int, sample: int) -> str:
        return self.channels[channel]

    def _read(self, handle: Any, samples: slice | np.ndarray, frames: slice, stride: int) -> np.ndarray:
        ids = sample_ids(samples, self.n_samples)
        frames = slice(*frames.indices(self.n_frames))  # within every member's frames
        n_t = len(range(*frames.indices(self.n_frames)))
        space = tuple(len(range(0, n, stride)) for n in self.grid_shape)
        out = np.zeros((len(ids), n_t, len(self.channels), *space), dtype=np.float32)
        which = self.rows[ids]
        for m, member in enumerate(self.members):
            at = np.flatnonzero(which[:, 0] == m)
            if not len(at):
                continue
            wanted, back = np.unique(which[at, 1], return_inverse=True)  # sources read increasing, distinct rows
            block = member.source.read(wanted, frames, stride)[back]  # [b, t, C_m, *grid]
            slots = self._slots[m]
            out[at[:, None], :, slots] = np.moveaxis(block, 2, 1)  # advanced indices first: [b, C_m, t, *grid]
            out[at[:, None], :, [len(self.fields) + s for s in slots]] = 1.0
        return out


def weighted_rows(sizes: list[int], weights: list[float]) -> list[tuple[int, int]]:
    """``(member, sample)`` pairs in which member ``m`` takes the share ``weights[m] / Σ weights``, none cut:
    the total is the least at which every member has at least all its samples; the members are interleaved evenly."""
    total_weight = sum(weights)
    total = max(math.ceil(n * total_weight / w - 1e-9) for n, w in zip(sizes, weights))
    slots = []
    for m, (n, w) in enumerate(zip(sizes, weights)):
        count = max(n, round(total * w / total_weight))
        slots += [((k + 0.5) / count, m, k % n) for k in range(count)]
    return [(m, i) for _, m, i in sorted(slots)]
