"""The training losses: hand-computed relative H1 seminorms, the rel_l2_h1 recipe key and a short training."""

import json
import math

import pytest
import torch

from sciformer.config import TrainConfig, recipe_from_dict
from sciformer.data.operator import OperatorData, SplitTensors
from sciformer.engine.losses import LOSS_NAMES, h1_seminorm, make_loss, relative_h1_seminorm, relative_l2, relative_l2_h1
from sciformer.engine.runner import fit_recipe
from sciformer.engine.trainer import Trainer
from sciformer.errors import ConfigError
from sciformer.registry import build_model

TINY_GALERKIN = {"name": "galerkin", "d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 16, "modes": 4, "freq_dim": 8, "n_regressor_layers": 1}


def _grid(*sizes: int) -> list[torch.Tensor]:
    """Coordinates ``i / n`` of each axis, broadcast to ``[1, 1, *sizes]``."""
    axes = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) / n for n in sizes), indexing="ij")
    return [a[None, None] for a in axes]


# ------------------------------------------------------------------------------------- hand-computed
def test_1d_ramp_with_a_bump():
    target = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 4)
    pred = target + torch.tensor([0.0, 1.0, 0.0, 0.0])
    # differences × n = 4: target (4, 4, 4), error (4, -4, 0) -> |e| / |f| = sqrt(32 / 48)
    assert h1_seminorm(target).item() == pytest.approx(4 * math.sqrt(3))
    assert relative_h1_seminorm(pred, target).item() == pytest.approx(math.sqrt(2 / 3))
    expected = 1 / math.sqrt(14) + 0.5 * math.sqrt(2 / 3)  # ‖e‖ = 1, ‖f‖ = sqrt(0 + 1 + 4 + 9)
    assert relative_l2_h1(pred, target, h1_weight=0.5).item() == pytest.approx(expected)


def test_spacing_is_per_axis_on_a_non_square_grid():
    # grid 2 × 4: target varies along axis 0 only (difference 1, × n0 = 2, at 1 × 4 places: |f|² = 16),
    # the error along axis 1 only (difference 1, × n1 = 4, at 2 × 3 places: |e|² = 96)
    i, j = torch.meshgrid(torch.arange(2.0), torch.arange(4.0), indexing="ij")
    target, error = i[None, None], j[None, None]
    assert relative_h1_seminorm(target + error, target).item() == pytest.approx(math.sqrt(96 / 16))


@pytest.mark.parametrize("sizes", [(7,), (5, 6), (3, 4, 5)])
def test_linear_field_has_its_exact_gradient(sizes):
    # f = Σ a_k x_k with x_k = i / n_k: every scaled difference along axis k is a_k, at (n_k − 1) Π_{m≠k} n_m places
    slopes = [2.0, -3.0, 0.5][: len(sizes)]
    field = sum(a * x for a, x in zip(slopes, _grid(*sizes)))
    count = math.prod(sizes)
    expected = math.sqrt(sum(a**2 * count * (n - 1) / n for a, n in zip(slopes, sizes)))
    assert h1_seminorm(field).item() == pytest.approx(expected)


@pytest.mark.parametrize("shape", [(3, 2, 16), (3, 2, 8, 9), (3, 1, 4, 5, 6)])
def test_constant_offset_has_zero_h1_error_but_positive_l2_error(shape):
    target = torch.randn(shape)
    pred = target + 0.3
    assert torch.allclose(relative_h1_seminorm(pred, target), torch.zeros(shape[0]), atol=1e-6)
    assert (relative_l2(pred, target) > 0).all()
    assert torch.allclose(relative_l2_h1(pred, target, 0.7), relative_l2(pred, target))


@pytest.mark.parametrize("n_dims", [1, 2, 3])
def test_relative_h1_converges_to_the_continuous_value_as_the_grid_refines(n_dims):
    # target Σ_k sin(2π(k+1) x_k), error 0.1 cos(2π x_0): |e|_H1 / |f|_H1 = 0.1 / sqrt(Σ_k (k+1)²) on the unit cube
    exact = 0.1 / math.sqrt(sum((k + 1) ** 2 for k in range(n_dims)))

    def rel_h1(n: int) -> float:
        x = _grid(*(n,) * n_dims)
        target = sum(torch.sin(2 * math.pi * (k + 1) * xk) for k, xk in enumerate(x))
        return relative_h1_seminorm(target + 0.1 * torch.cos(2 * math.pi * x[0]), target).item()

    coarse, fine = rel_h1(32), rel_h1(64)
    assert coarse == pytest.approx(exact, rel=0.05) and abs(fine - exact) < abs(coarse - exact)


def test_matching_fields_give_zero_loss_and_finite_gradients():
    target = torch.randn(2, 1, 6, 6)
    pred = target.clone().requires_grad_()
    loss = make_loss(TrainConfig(loss="rel_l2_h1"))(pred, target)
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(pred.grad).all()


# -------------------------------------------------------------------------------------- the factory
def test_zero_weight_equals_rel_l2_and_the_loss_averages_samples():
    pred, target = torch.randn(4, 2, 8, 8), torch.randn(4, 2, 8, 8)
    rel_l2 = make_loss(TrainConfig(loss="rel_l2"))(pred, target)
    assert make_loss(TrainConfig(loss="rel_l2_h1", h1_weight=0.0))(pred, target).item() == pytest.approx(rel_l2.item())
    per_sample = relative_l2(pred, target) + 0.25 * relative_h1_seminorm(pred, target)
    assert make_loss(TrainConfig(loss="rel_l2_h1", h1_weight=0.25))(pred, target).item() == pytest.approx(per_sample.mean().item())


def test_every_recipe_choice_has_a_loss():
    assert LOSS_NAMES == ("mse", "mae", "rel_l2", "rel_l2_h1")  # read from the recipe's annotation of train.loss
    pred, target = torch.randn(2, 1, 5), torch.randn(2, 1, 5)
    for name in LOSS_NAMES:
        assert make_loss(TrainConfig(loss=name))(pred, target).ndim == 0
    with pytest.raises(ConfigError, match="expected one of mse, mae, rel_l2, rel_l2_h1, got 'h1'"):
        make_loss(TrainConfig(loss="h1"))


def test_fields_without_a_grid_axis_are_rejected():
    with pytest.raises(ValueError, match=r"loss 'rel_l2_h1': expected .*\[B, C, \*grid\].*got \(8, 96\)"):
        make_loss(TrainConfig(loss="rel_l2_h1"))(torch.randn(8, 96), torch.randn(8, 96))
    with pytest.raises(ValueError, match=r"got \(2, 1, 8\) and \(2, 1, 9\)"):
        relative_h1_seminorm(torch.randn(2, 1, 8), torch.randn(2, 1, 9))


# ---------------------------------------------------------------------------------------- the recipe
def _recipe(model: dict, **train) -> dict:
    return {"data": {"name": "darcy_small"}, "model": model, "train": train, "tracking": {"enabled": False}}


def test_h1_weight_is_validated():
    assert recipe_from_dict(_recipe(TINY_GALERKIN, loss="rel_l2_h1"), check_data=False).train.h1_weight == 0.1
    assert recipe_from_dict(_recipe(TINY_GALERKIN, loss="rel_l2_h1", h1_weight=1), check_data=False).train.h1_weight == 1.0
    with pytest.raises(ConfigError, match=r"'train.h1_weight': expected a finite number >= 0, got -0.5"):
        recipe_from_dict(_recipe(TINY_GALERKIN, loss="rel_l2_h1", h1_weight=-0.5), check_data=False)
    with pytest.raises(ConfigError, match=r"'train.h1_weight': expected float, got str"):
        recipe_from_dict(_recipe(TINY_GALERKIN, loss="rel_l2_h1", h1_weight="big"), check_data=False)
    with pytest.raises(ConfigError, match=r"'train.loss': .*got 'rel_h1' \(did you mean 'rel_l2_h1'\?\)"):
        recipe_from_dict(_recipe(TINY_GALERKIN, loss="rel_h1"), check_data=False)


def test_forecasting_models_reject_rel_l2_h1():
    with pytest.raises(ConfigError, match=r"rel_l2_h1 .*operator models, but 'itransformer' is a forecast model"):
        recipe_from_dict(_recipe({"name": "itransformer"}, loss="rel_l2_h1"), check_data=False)


# -------------------------------------------------------------------------------------- training
def _steady_2d(n: int, generator: torch.Generator) -> SplitTensors:
    a = torch.rand(n, 1, 8, 8, generator=generator)
    return SplitTensors(inputs=a, targets=a.cumsum(-1).cumsum(-2) / 16 + 1)  # a smooth function of the input


def test_trainer_validates_and_early_stops_on_rel_l2_h1():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = OperatorData({split: _steady_2d(n, g) for split, n in (("train", 32), ("val", 8), ("test", 8))})
    model = build_model("galerkin", {k: v for k, v in TINY_GALERKIN.items() if k != "name"}, **data.sizes())
    cfg = TrainConfig(epochs=3, batch_size=8, lr=3e-3, loss="rel_l2_h1", h1_weight=0.5, patience=0, progress=False)
    trainer = Trainer(model, cfg, torch.device("cpu"))
    fit = trainer.fit(data)
    val = trainer.evaluate(data, "val")
    with torch.no_grad():
        split = data.splits["val"]
        pred = model(split.inputs)
    expected = (relative_l2(pred, split.targets) + 0.5 * relative_h1_seminorm(pred, split.targets)).mean().item()
    assert val["rel_l2_h1"] == pytest.approx(expected, rel=1e-5) and val["rel_l2_h1"] > val["rel_l2"]
    assert val["rel_l2_h1"] == pytest.approx(min(h["val_loss"] for h in fit.history), rel=1e-6)  # the best by this loss
    assert "rel_l2_h1" not in Trainer(model, TrainConfig(loss="rel_l2"), torch.device("cpu")).evaluate(data, "val")


def test_operator_recipe_trains_with_rel_l2_h1(tmp_path):
    raw = {
        "data": {"name": str(tmp_path / "burgers.h5"), "generate": {"generator": "burgers1d", "n": 12, "res": 32, "nu": 0.01, "t_end": 0.2, "dt_save": 0.02}},
        "model": TINY_GALERKIN,
        "train": {"epochs": 2, "batch_size": 16, "lr": 1e-3, "loss": "rel_l2_h1", "h1_weight": 0.2, "progress": False},
        "tracking": {"enabled": False},
        "seed": 0,
    }
    result = fit_recipe(recipe_from_dict(raw), tmp_path / "run")
    m = result.metrics
    assert math.isfinite(m["val_rel_l2_h1"]) and m["val_rel_l2_h1"] > m["val_rel_l2"] > 0 and m["test_rel_l2_h1"] > 0
    history = json.loads((result.run_dir / "history.json").read_text())
    assert m["val_rel_l2_h1"] == pytest.approx(min(h["val_loss"] for h in history), rel=1e-6)
