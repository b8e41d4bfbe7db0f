"""Contract tests over every registered operator model, built from its smoke recipe's model arguments."""

from pathlib import Path

import pytest
import torch

from sciformer.config import load_recipe
from sciformer.engine.checkpoint import load_model, save_checkpoint
from sciformer.registry import build_model, list_models

REPO = Path(__file__).resolve().parents[2]
OPERATORS = list_models(task="operator")


def build(name: str, n_dims: int = 2, channels: tuple[int, int] = (2, 1)) -> torch.nn.Module:
    path = REPO / "recipes" / "smoke" / f"{name}.yaml"
    assert path.is_file(), f"operator '{name}' has no smoke recipe at {path}"
    args = load_recipe(path).model.args
    return build_model(name, args, in_channels=channels[0], out_channels=channels[1], n_dims=n_dims)


def test_the_operator_models_are_registered():
    assert {"galerkin", "factformer", "pde_transformer"} <= set(OPERATORS)


@pytest.fixture(params=OPERATORS)
def model_name(request):
    if request.param == "fno":
        pytest.importorskip("neuralop")
    return request.param


def test_output_shape_finite_and_gradients(model_name):
    torch.manual_seed(0)
    model = build(model_name)
    u = torch.randn(2, 2, 32, 32)
    out = model(u, torch.tensor([0.1, 0.5]))  # non-zero lead times: t-conditioned weights see a gradient
    assert out.shape == (2, 1, 32, 32) and torch.isfinite(out).all()
    # adaLN-Zero style models start with zero gates: nudge all-zero tensors the way the first optimiser steps would
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.add_(1e-3 * torch.randn_like(p))
    model(u, torch.tensor([0.1, 0.5])).square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead, f"parameters without gradient: {dead}"


def test_checkpoint_round_trip(model_name, tmp_path):
    torch.manual_seed(0)
    model = build(model_name).eval()
    u = torch.randn(2, 2, 32, 32)
    spec = {"model": {"name": model_name, "args": load_recipe(REPO / "recipes" / "smoke" / f"{model_name}.yaml").model.args,
                      "data_sizes": {"in_channels": 2, "out_channels": 1, "n_dims": 2}}}
    save_checkpoint(tmp_path / "ckpt", model, spec)
    loaded, _ = load_model(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(model(u), loaded(u))


def test_wrong_input_rank_is_a_clear_error(model_name):
    model = build(model_name)
    with pytest.raises((ValueError, RuntimeError), match=r"expected|got"):
        model(torch.randn(2, 2, 32))


def test_residual_adds_the_latest_input_frame(model_name, tmp_path):
    """``model.residual``: the same weights (same names), plus the last ``C_out`` input channels, kept by checkpoints."""
    torch.manual_seed(0)
    plain = build(model_name, channels=(4, 2)).eval()  # two frames of two channels, stacked time-major
    args = {**load_recipe(REPO / "recipes" / "smoke" / f"{model_name}.yaml").model.args, "residual": True}
    sizes = {"in_channels": 4, "out_channels": 2, "n_dims": 2}
    residual = build_model(model_name, args, **sizes).eval()
    residual.load_state_dict(plain.state_dict(), strict=True)
    u, t = torch.randn(2, 4, 32, 32), torch.tensor([0.1, 0.5])
    with torch.no_grad():
        expected = plain(u, t) + u[:, 2:]
        torch.testing.assert_close(residual(u, t), expected)
        torch.testing.assert_close(residual(u=u, t=t), expected)
    save_checkpoint(tmp_path / "ckpt", residual, {"model": {"name": model_name, "args": args, "data_sizes": sizes}})
    loaded, _ = load_model(tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(u, t), expected)


def test_residual_needs_whole_input_frames():
    from sciformer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"in_channels a multiple of out_channels.*in_channels=3, out_channels=2"):
        build_model("galerkin", {"residual": True}, in_channels=3, out_channels=2, n_dims=2)
    with pytest.raises(ConfigError, match=r"model 'itransformer' \(forecast\)"):
        build_model("itransformer", {"residual": True}, n_vars=3, lookback=8, horizon=4)
