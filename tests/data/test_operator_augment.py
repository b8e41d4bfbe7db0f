"""Dihedral augmentation of square 2D operator data (``train.augment: dihedral``)."""

import pytest
import torch

from sciformer.config import recipe_from_dict
from sciformer.data.operator import OperatorData, SplitTensors, dihedral
from sciformer.engine.runner import load_data
from sciformer.errors import ConfigError, DataError


def test_the_eight_symmetries_are_distinct_and_form_the_dihedral_group():
    field = torch.arange(9.0).reshape(1, 1, 3, 3)
    images = [dihedral(field, s) for s in range(8)]
    assert torch.equal(images[0], field)
    assert len({tuple(im.flatten().tolist()) for im in images}) == 8
    # closed under composition: every product of two symmetries is one of the eight
    for a in range(8):
        for b in range(8):
            assert any(torch.equal(dihedral(images[a], b), im) for im in images)
    # a quarter turn maps the corner (0, 0) to (2, 0) in rot90's convention, and 4 turns are the identity
    assert images[1][0, 0, 2, 0] == field[0, 0, 0, 0]
    assert torch.equal(dihedral(dihedral(images[1], 1), 2), field)
    assert torch.equal(images[7], field.transpose(-1, -2))


def _pairs(n: int, size=(4, 4)) -> SplitTensors:
    a = torch.randn(n, 1, *size)
    return SplitTensors(inputs=a, targets=2 * a + 1)  # an equivariant map: augmented pairs stay consistent


def test_training_batches_are_transformed_pairwise_and_reproducibly():
    torch.manual_seed(0)
    data = OperatorData({s: _pairs(16) for s in ("train", "val", "test")}, augment="dihedral")
    plain = OperatorData(data.splits, augment="none")

    def draw(source):
        return list(source.batches("train", 4, shuffle=True, generator=torch.Generator().manual_seed(3)))

    augmented, reference = draw(data), draw(plain)
    assert [b.u.shape for b in augmented] == [b.u.shape for b in reference]
    changed = 0
    for aug, ref in zip(augmented, reference):
        assert torch.allclose(aug.y, 2 * aug.u + 1)  # input and target turned by the same symmetry
        assert any(torch.equal(aug.u, dihedral(ref.u, s)) for s in range(8))
        changed += not torch.equal(aug.u, ref.u)
    assert changed > 0
    again = draw(data)
    assert all(torch.equal(a.u, b.u) for a, b in zip(augmented, again))  # the generator decides
    # evaluation splits and unshuffled passes are never augmented
    for split in ("val", "test"):
        assert all(torch.equal(a.u, b.u) for a, b in zip(data.batches(split, 4), plain.batches(split, 4)))


def test_transpose_draws_only_the_identity_and_the_axis_swap():
    data = OperatorData({s: _pairs(64) for s in ("train", "val", "test")}, augment="transpose")
    plain = OperatorData(data.splits)
    generator = lambda: torch.Generator().manual_seed(5)
    seen = set()
    for aug, ref in zip(data.batches("train", 4, shuffle=True, generator=generator()), plain.batches("train", 4, shuffle=True, generator=generator())):
        seen |= {s for s in range(8) if torch.equal(aug.u, dihedral(ref.u, s))}
    assert seen == {0, 7}


def test_dihedral_needs_a_square_2d_grid():
    with pytest.raises(DataError, match=r"augment=dihedral needs a square 2D grid, got grid \(4, 6\)"):
        OperatorData({s: _pairs(4, (4, 6)) for s in ("train", "val", "test")}, augment="dihedral")
    with pytest.raises(DataError, match=r"train\.augment must be one of"):
        OperatorData({s: _pairs(4) for s in ("train", "val", "test")}, augment="shift")


def test_recipe_choices_and_time_series_rejection():
    with pytest.raises(ConfigError, match=r"'train.augment'"):
        recipe_from_dict({"train": {"augment": "mirror"}}, check_data=False)
    with pytest.raises(ConfigError, match=r"augment"):  # refused by the recipe check or, at the latest, by the data loader
        load_data(recipe_from_dict({"data": {"name": "ett_h1"}, "train": {"augment": "dihedral"}}, check_data=False))
