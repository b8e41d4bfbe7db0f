"""FNO baseline (neuraloperator): the operator-model contract, coordinates appended to the input, resolution
independence, checkpoints through safetensors, the missing-extra error and a tiny learning run."""

import builtins
import math
from pathlib import Path

import pytest
import torch
import yaml

from sciformer.config import recipe_from_dict
from sciformer.engine.checkpoint import load_model, save_checkpoint
from sciformer.registry import build_model

REPO = Path(__file__).resolve().parents[2]
TINY = dict(modes=4, width=8, n_layers=2)


@pytest.fixture
def neuralop():
    return pytest.importorskip("neuralop")


def tiny(n_dims=2, in_channels=2, out_channels=3, **kwargs):
    return build_model("fno", {**TINY, **kwargs}, in_channels=in_channels, out_channels=out_channels, n_dims=n_dims)


def test_missing_neuraloperator_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_neuralop(name, *args, **kwargs):
        if name == "neuralop" or name.startswith("neuralop."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_neuralop)
    with pytest.raises(ImportError, match=r"the FNO baseline needs neuraloperator: pip install 'sciformer\[fno\]'"):
        tiny()


@pytest.mark.parametrize("n_dims, grid", [(1, (20,)), (2, (12, 10)), (3, (6, 8, 5))])
def test_output_shape_finite_and_every_parameter_gets_a_gradient(neuralop, n_dims, grid):
    torch.manual_seed(0)
    model = tiny(n_dims).train()
    out = model(torch.randn(3, 2, *grid))
    assert out.shape == (3, 3, *grid)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"parameters without gradient: {dead}"


def test_wraps_neuralop_fno_with_the_coordinates_as_extra_input_channels(neuralop):
    from neuralop.models import FNO as NeuralopFNO

    model = tiny(n_dims=2, in_channels=2, modes=6, width=12, n_layers=3)
    assert isinstance(model.fno, NeuralopFNO)
    assert model.fno.in_channels == 2 + 2 and model.fno.positional_embedding is None  # appended once, by us
    assert tuple(model.fno.n_modes) == (6, 6) and model.fno.hidden_channels == 12 and model.fno.n_layers == 3
    # the coordinates reach the network: a constant input gives a field that varies in space
    with torch.no_grad():
        out = model(torch.ones(1, 2, 16, 16))
    assert out.std() > 0


def test_wrong_input_shape_names_what_was_expected(neuralop):
    with pytest.raises(ValueError, match=r"with C_in=2 and 2 grid axes, got \(4, 2, 64\)"):
        tiny()(torch.zeros(4, 2, 64))


def test_same_weights_run_at_16_and_32(neuralop):
    torch.manual_seed(0)
    model = tiny(n_dims=2, in_channels=1, out_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 16, 16)).shape == (2, 1, 16, 16)
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 1, 32, 32)


def test_checkpoint_round_trip_reproduces_outputs(neuralop, tmp_path):
    torch.manual_seed(0)
    model = tiny().eval()
    assert "_metadata" not in model.state_dict()  # neuralop's non-tensor entry would break safetensors
    sizes = {"in_channels": 2, "out_channels": 3, "n_dims": 2}
    save_checkpoint(tmp_path / "ckpt", model, {"model": {"name": "fno", "args": TINY, "data_sizes": sizes}})
    loaded, _ = load_model(tmp_path / "ckpt")
    u = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(u), loaded(u))
    assert model.state_dict().keys() == loaded.state_dict().keys()


def test_smoke_recipe_validates_against_the_constructor(neuralop):
    raw = yaml.safe_load((REPO / "recipes" / "smoke" / "fno.yaml").read_text())
    recipe = recipe_from_dict(raw, check_data=False)
    assert recipe.model.name == "fno"
    model = build_model("fno", recipe.model.args, in_channels=1, out_channels=1, n_dims=2)
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 1, 16, 16)


def test_learns_a_smoothing_operator(neuralop):
    torch.manual_seed(0)
    n, B = 32, 32
    x = torch.arange(n) / n
    k = torch.arange(1, 6).view(1, 5, 1)
    u = (torch.randn(B, 5, 1) * torch.sin(2 * math.pi * k * x + 6.28 * torch.rand(B, 5, 1)) / k).sum(1, keepdim=True)
    target = (u.roll(1, -1) + u + u.roll(-1, -1)) / 3
    model = tiny(n_dims=1, in_channels=1, out_channels=1, modes=8, width=16)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        optimiser.zero_grad()
        loss = (model(u) - target).square().mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], f"loss went from {losses[0]:.4f} to {losses[-1]:.4f}"
