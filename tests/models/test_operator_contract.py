"""Contract tests over every registered operator model, built from its smoke recipe's model arguments.

Weights are perturbed before the checks (small noise on every parameter): adaLN-Zero gates and zero output layers
would otherwise make the model the identity or zero at initialisation, so the checks would say nothing about its
wiring. Size presets (``pde_transformer_s``...) are the base model with fixed arguments; they are built on the
``meta`` device (shapes only) and checked against the base model built with the same arguments.
"""

import pickle
from pathlib import Path

import pytest
import torch
from test_contract import perturb  # the same perturbation as the forecasters' contract

from sciformer.config import load_recipe
from sciformer.engine.checkpoint import load_model, save_checkpoint
from sciformer.registry import build_model, get_model, list_models

REPO = Path(__file__).resolve().parents[2]
OPERATORS = [name for name in list_models(task="operator") if not hasattr(get_model(name), "preset")]
PRESETS = [name for name in list_models(task="operator") if hasattr(get_model(name), "preset")]


def build(name: str, n_dims: int = 2, channels: tuple[int, int] = (2, 1)) -> torch.nn.Module:
    path = REPO / "recipes" / "smoke" / f"{name}.yaml"
    assert path.is_file(), f"operator '{name}' has no smoke recipe at {path}"
    args = load_recipe(path).model.args
    return build_model(name, args, in_channels=channels[0], out_channels=channels[1], n_dims=n_dims)


def test_the_operator_models_and_their_size_presets_are_registered():
    assert OPERATORS == ["factformer", "fno", "galerkin", "pde_transformer", "poseidon"]
    assert PRESETS == ["pde_transformer_b", "pde_transformer_l", "pde_transformer_s", "poseidon_b", "poseidon_l", "poseidon_t"]


@pytest.mark.parametrize("name", PRESETS)
def test_a_size_preset_is_its_base_model_with_fixed_arguments(name):
    cls = get_model(name)
    base = cls.preset_of
    sizes = {"in_channels": 2, "out_channels": 1, "n_dims": 2}
    with torch.device("meta"):
        preset, plain = build_model(name, {}, **sizes), build_model(base, cls.preset, **sizes)
    assert isinstance(preset, get_model(base)) and cls.task == "operator"
    assert {k: v.shape for k, v in preset.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    with torch.device("meta"):  # positional arguments follow the preset's signature (the fixed ones left out)
        patch = cls(2, 1, 2, 8).patch_size
    assert patch == 8
    assert pickle.loads(pickle.dumps(cls)) is cls  # importable by name, like any class


@pytest.fixture(params=OPERATORS)
def model_name(request):
    if request.param == "fno":
        pytest.importorskip("neuralop")
    return request.param


def test_output_shape_finite_and_gradients(model_name):
    torch.manual_seed(0)
    model = build(model_name)
    perturb(model)
    u, t = torch.randn(2, 2, 32, 32), torch.tensor([0.1, 0.5])  # non-zero lead times: t-conditioned weights see a gradient
    out = model(u, t)
    assert out.shape == (2, 1, 32, 32) and torch.isfinite(out).all()
    with torch.no_grad():
        assert not torch.allclose(out, model(u + torch.randn_like(u), t)), "the output does not change when the input does"
    out.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead, f"parameters without gradient: {dead}"


def test_checkpoint_round_trip(model_name, tmp_path):
    torch.manual_seed(0)
    model = perturb(build(model_name)).eval()
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
    plain = perturb(build(model_name, channels=(4, 2))).eval()  # two frames of two channels, stacked time-major
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


def test_normalize_scales_the_fields_in_and_out_and_keeps_a_residual_an_identity(model_name, tmp_path):
    """``model.normalize``: the model sees ``(u − μ_in) / σ_in`` and its output is mapped back by ``σ_out, μ_out``;
    with a residual the latest frame is added in normalised units, so the map stays ``u_last + σ_out · net``. The
    statistics are buffers: checkpoints keep them."""
    from sciformer.nn.normalization import set_field_statistics

    torch.manual_seed(0)
    plain = perturb(build(model_name, channels=(4, 2))).eval()
    smoke = load_recipe(REPO / "recipes" / "smoke" / f"{model_name}.yaml").model.args
    sizes = {"in_channels": 4, "out_channels": 2, "n_dims": 2}
    stats = (torch.tensor([0.5, -1.0, 0.5, -1.0]), torch.tensor([2.0, 0.5, 2.0, 0.5]), torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.5]))
    u, t = torch.randn(2, 4, 32, 32), torch.tensor([0.1, 0.5])
    mu_in, sd_in, mu_out, sd_out = (s.view(1, -1, 1, 1) for s in stats)
    for residual in (False, True):
        args = {**smoke, "normalize": True, "residual": residual}
        model = build_model(model_name, args, **sizes).eval()
        model.load_state_dict(plain.state_dict(), strict=False)  # the same weights; the statistics still identity
        set_field_statistics(model, *stats)
        with torch.no_grad():
            net = plain((u - mu_in) / sd_in, t)
            expected = (net * sd_out + mu_out) if not residual else u[:, 2:] + net * sd_out
            torch.testing.assert_close(model(u, t), expected)
            torch.testing.assert_close(model(u=u, t=t), expected)
        save_checkpoint(tmp_path / f"ckpt{residual}", model, {"model": {"name": model_name, "args": args, "data_sizes": sizes}})
        loaded, _ = load_model(tmp_path / f"ckpt{residual}")
        assert torch.equal(loaded.field_out_scale, stats[3])
        with torch.no_grad():
            torch.testing.assert_close(loaded(u, t), expected)


def test_residual_needs_whole_input_frames():
    from sciformer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"in_channels a multiple of out_channels.*in_channels=3, out_channels=2"):
        build_model("galerkin", {"residual": True}, in_channels=3, out_channels=2, n_dims=2)
    with pytest.raises(ConfigError, match=r"model 'itransformer' \(forecast\)"):
        build_model("itransformer", {"residual": True}, n_vars=3, lookback=8, horizon=4)
    with pytest.raises(ConfigError, match=r"model.normalize is a key of operator models.*'itransformer' \(forecast\)"):
        build_model("itransformer", {"normalize": True}, n_vars=3, lookback=8, horizon=4)
