"""Contract tests over every registered forecasting model, built from its smoke recipe's model arguments."""

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


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, L, N, generator=g), torch.rand(B, L, F, generator=g) - 0.5, torch.rand(B, H, F, generator=g) - 0.5


def test_at_least_the_five_forecasters_are_registered():
    assert "itransformer" in FORECASTERS


@pytest.mark.parametrize("name", FORECASTERS)
def test_output_shape_and_finite(name):
    torch.manual_seed(0)
    model = build(name).eval()
    x, x_mark, y_mark = batch()
    with torch.no_grad():
        out = model(x, x_mark, y_mark)
    assert out.shape == (B, H, N), f"expected [B, H, N] = {(B, H, N)}, got {tuple(out.shape)}"
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", FORECASTERS)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = build(name).train()
    x, x_mark, y_mark = batch()
    model(x, x_mark, y_mark).square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
    assert not dead, f"parameters without gradient: {dead}"


@pytest.mark.parametrize("name", FORECASTERS)
def test_checkpoint_round_trip_reproduces_outputs(name, tmp_path):
    torch.manual_seed(0)
    model = build(name).eval()
    x, x_mark, y_mark = batch()
    sizes = {"n_vars": N, "n_marks": F, "lookback": L, "horizon": H, "label_len": L // 2}
    save_checkpoint(tmp_path / "ckpt", model, {"model": {"name": name, "args": smoke_recipe(name).model.args, "data_sizes": sizes}})
    loaded, _ = load_model(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(model(x, x_mark, y_mark), loaded(x, x_mark, y_mark))
    assert model.state_dict().keys() == loaded.state_dict().keys()
