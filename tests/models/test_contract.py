"""Contract tests over every registered forecasting model, built from its smoke recipe's model arguments.

Weights are perturbed before the checks (small noise on every parameter), so a layer that starts at zero (a
zero-initialised head or gate) cannot make "the output depends on the input" or "every parameter gets a gradient"
pass or fail by its initialisation rather than by the wiring.
"""

from pathlib import Path

import pytest
import torch

from sciformer.config import load_recipe
from sciformer.engine.checkpoint import load_model, save_checkpoint
from sciformer.registry import build_model, list_models

REPO = Path(__file__).resolve().parents[2]
FORECASTERS = list_models(task="forecast")
B, L, H, N, F = 3, 48, 24, 5, 4


def smoke_recipe(name: str):
    path = REPO / "recipes" / "smoke" / f"{name}.yaml"
    assert path.is_file(), f"model '{name}' has no smoke recipe at {path}"
    recipe = load_recipe(path)
    assert recipe.model.name == name
    return recipe


def build(name: str) -> torch.nn.Module:
    recipe = smoke_recipe(name)
    return build_model(name, recipe.model.args, n_vars=N, n_marks=F, lookback=L, horizon=H, label_len=L // 2)


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Add noise of 1% of each parameter's scale (at least 1e-2) to every parameter, as a few optimiser steps would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            scale = max(p.abs().mean().item(), 1.0) * 1e-2
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, L, N, generator=g), torch.rand(B, L, F, generator=g) - 0.5, torch.rand(B, H, F, generator=g) - 0.5


def test_the_five_forecasters_are_registered():
    assert FORECASTERS == ["autoformer", "etsformer", "informer", "itransformer", "patchtst"]


@pytest.mark.parametrize("name", FORECASTERS)
def test_output_shape_finite_and_dependent_on_the_input(name):
    torch.manual_seed(0)
    model = perturb(build(name)).eval()
    x, x_mark, y_mark = batch()
    with torch.no_grad():
        out = model(x, x_mark, y_mark)
        other = model(x + torch.randn_like(x), x_mark, y_mark)
    assert out.shape == (B, H, N), f"expected [B, H, N] = {(B, H, N)}, got {tuple(out.shape)}"
    assert torch.isfinite(out).all()
    assert not torch.allclose(out, other), "the forecast does not change when the history does"


@pytest.mark.parametrize("name", FORECASTERS)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = perturb(build(name)).train()
    x, x_mark, y_mark = batch()
    model(x, x_mark, y_mark).square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
    assert not dead, f"parameters without gradient: {dead}"


@pytest.mark.parametrize("name", FORECASTERS)
def test_checkpoint_round_trip_reproduces_outputs(name, tmp_path):
    torch.manual_seed(0)
    model = perturb(build(name)).eval()
    x, x_mark, y_mark = batch()
    sizes = {"n_vars": N, "n_marks": F, "lookback": L, "horizon": H, "label_len": L // 2}
    save_checkpoint(tmp_path / "ckpt", model, {"model": {"name": name, "args": smoke_recipe(name).model.args, "data_sizes": sizes}})
    loaded, _ = load_model(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(model(x, x_mark, y_mark), loaded(x, x_mark, y_mark))
    assert model.state_dict().keys() == loaded.state_dict().keys()
