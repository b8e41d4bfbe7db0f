"""data.mixture: one channel layout over several PDE files, presence channels, weighted rows, disjoint splits."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from sciformer.config import recipe_from_dict
from sciformer.data.generators import generate
from sciformer.data.mixture import load_mixture_data, mixture_splits
from sciformer.data.sources import open_source
from sciformer.data.sources.mixture import weighted_rows
from sciformer.engine.pretrained import masked_operator_step
from sciformer.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> tuple[Path, Path]:
    """Vorticity NS (one field, 10 samples) and diffusion–reaction (u, v; 10 samples), 8×8, 3 frames."""
    base = tmp_path_factory.mktemp("members")
    ns = generate("ns2d", base / "ns.h5", n=10, res=8, t_end=2.0, progress=False)
    dr = generate("diffreact2d", base / "dr.h5", n=10, res=8, t_end=0.1, dt_save=0.05, progress=False)
    return ns, dr


def entries(ns: Path, dr: Path, ns_weight: float = 1.0) -> list[dict]:
    return [{"path": str(ns), "channels": ["w"], "weight": ns_weight}, {"path": str(dr)}]


def test_layout_fills_absent_fields_with_zeros_and_marks_presence(members):
    ns, dr = members
    test = mixture_splits(entries(ns, dr), None, allow_generate=False)["test"]
    assert test.channels == ["w", "u", "v", "present_w", "present_u", "present_v"]
    block = test.read(slice(None))  # [N, T, 6, 8, 8]
    for k, (member, row) in enumerate(test.rows.tolist()):
        source = open_source(ns if member == 0 else dr)
        own = source.read([row])[0]
        fields = [0] if member == 0 else [1, 2]
        np.testing.assert_array_equal(block[k][:, fields], own)
        absent = [c for c in range(3) if c not in fields]
        assert not block[k][:, absent].any()
        assert (block[k][:, [3 + c for c in fields]] == 1).all() and not block[k][:, [3 + c for c in absent]].any()


def test_splits_are_disjoint_and_weights_set_each_members_share(members):
    ns, dr = members
    splits = mixture_splits(entries(ns, dr, ns_weight=3), None, allow_generate=False)
    seen = {name: {tuple(r) for r in s.rows.tolist()} for name, s in splits.items()}
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])
    counts = np.bincount(splits["train"].rows[:, 0])
    assert counts[0] == 3 * counts[1] and counts[1] >= 8  # dr's 8 training samples all used, ns repeated to 3x
    # equal weights, equal shares: the smaller member repeats; the members alternate
    assert weighted_rows([4, 2], [1, 1]) == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 0), (0, 3), (1, 1)]


def test_streamed_and_in_memory_mixtures_give_the_same_batches(members):
    ns, dr = members

    def first_batch(in_memory: bool):
        recipe = recipe_from_dict({"data": {"name": "mixture", "mixture": entries(ns, dr), "in_memory": in_memory},
                                   "model": {"name": "galerkin"}, "train": {"batch_size": 4}})
        data = load_mixture_data(recipe.data, recipe.train, allow_generate=False)
        assert data.masked_fields == 3 and data.streamed is not in_memory
        return next(iter(data.batches("train", 4, shuffle=True, generator=torch.Generator().manual_seed(0))))

    a, b = first_batch(True), first_batch(False)
    assert torch.equal(a.u, b.u) and torch.equal(a.y, b.y)


def test_masked_step_gives_absent_fields_no_loss_and_no_gradient():
    presence = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(2, 2, 3, 3)  # field 0 present, field 1 absent

    class Batch:
        u = torch.cat([torch.zeros(2, 2, 3, 3), presence], dim=1)  # one frame: fields, then presence
        y = torch.cat([torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3), presence], dim=1)  # an absent field is zeros
        t, steps = None, 1

    weight = torch.nn.Parameter(torch.full((1, 4, 1, 1), 5.0))
    pred, target = masked_operator_step(2)(lambda u, t: u + weight, Batch())
    torch.nn.functional.mse_loss(pred, target).backward()
    assert torch.equal(pred[:, 1:], target[:, 1:])  # absent field and presence channels: the target itself
    assert weight.grad[0, 0].item() != 0 and not weight.grad[0, 1:].any()

    class Unrolled(Batch):  # train.mode unroll: the intermediate prediction is masked as well
        steps = 2

    assert torch.equal(masked_operator_step(2)(lambda u, t: u + weight, Unrolled())[0][:, 1:], Batch.y[:, 1:])


@contextlib.contextmanager
def raises_one_line(error, match):
    with pytest.raises(error, match=match) as info:
        yield
    assert "\n" not in str(info.value)


def test_bad_mixtures_are_one_clear_line(members, tmp_path):
    ns, dr = members
    other = generate("diffreact2d", tmp_path / "dr16.h5", n=10, res=16, t_end=0.1, dt_save=0.05, progress=False)
    with raises_one_line(ConfigError, r"unknown recipe key 'data.mixture\[0\].wieght'.*did you mean 'weight'"):
        recipe_from_dict({"data": {"name": "mixture", "mixture": [{"path": str(ns), "wieght": 2}]}, "model": {"name": "galerkin"}})
    with raises_one_line(ConfigError, "go with 'data.name: mixture'"):
        recipe_from_dict({"data": {"name": str(ns), "mixture": [{"path": str(ns)}]}, "model": {"name": "galerkin"}})
    with raises_one_line(DataError, "must share one grid"):
        mixture_splits([{"path": str(ns)}, {"path": str(other)}], None, allow_generate=False)
    with raises_one_line(ConfigError, r"'data.mixture\[1\].channels' names 1 fields \['u'\]; .* has 2 \(u, v\)"):
        mixture_splits([{"path": str(ns)}, {"path": str(dr), "channels": ["u"]}], None, allow_generate=False)
    with raises_one_line(ConfigError, r"fields \['v'\] that 'data.mixture_channels'"):
        mixture_splits(entries(ns, dr), ["w", "u"], allow_generate=False)
    with raises_one_line(DataError, "does not exist; give the member a 'generate' entry"):
        mixture_splits([{"path": str(tmp_path / "absent.h5")}], None, allow_generate=True)
