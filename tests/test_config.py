import copy
import dataclasses
import json
import math
import re
import typing
from pathlib import Path
from typing import Annotated

import pytest
import torch

from sciformer import config
from sciformer.config import DataConfig, load_recipe, parse_override, recipe_from_dict, stored_recipe
from sciformer.errors import ConfigError
from sciformer.registry import Activation, get_model, list_models

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


def test_defaults_and_types():
    recipe = recipe_from_dict({"model": {"name": "itransformer", "d_model": 32}, "train": {"lr": 1}})
    assert recipe.train.lr == 1.0 and isinstance(recipe.train.lr, float)  # ints accepted where floats are expected
    assert recipe.model.args == {"d_model": 32}
    assert recipe.data.name == DataConfig().name and recipe.data.label_len == 48  # resolved from lookback 96


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(REPO)) for p in RECIPES])
def test_every_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem


def test_recipes_start_with_the_command_that_runs_them():
    for path in RECIPES:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# sciformer fit recipes/"), f"{path} should start with the command that runs it"


def test_unknown_key_has_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown recipe key 'train.epoch'.*did you mean 'epochs'"):
        recipe_from_dict({"train": {"epoch": 3}})


def test_unknown_section():
    with pytest.raises(ConfigError, match=r"unknown recipe key 'trian'.*did you mean 'train'"):
        recipe_from_dict({"trian": {}})


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"'train.epochs': expected int, got str \('ten'\)"):
        recipe_from_dict({"train": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match=r"'train.epochs': expected int, got bool"):
        recipe_from_dict({"train": {"epochs": True}})


def test_unknown_model_has_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown model 'itransfromer'.*did you mean 'itransformer'"):
        recipe_from_dict({"model": {"name": "itransfromer"}})


def test_model_keys_checked_against_constructor():
    with pytest.raises(ConfigError, match=r"unknown recipe key 'model.d_modle'.*did you mean 'd_model'"):
        recipe_from_dict({"model": {"name": "itransformer", "d_modle": 8}})
    with pytest.raises(ConfigError, match=r"'model.d_model': expected int, got float"):
        recipe_from_dict({"model": {"name": "itransformer", "d_model": 8.5}})


def test_residual_is_a_key_of_operator_models_only():
    assert recipe_from_dict({"model": {"name": "galerkin", "residual": True}}, check_data=False).model.args["residual"] is True
    with pytest.raises(ConfigError, match=r"'model.residual': expected bool"):
        recipe_from_dict({"model": {"name": "galerkin", "residual": "sometimes"}}, check_data=False)
    with pytest.raises(ConfigError, match=r"unknown recipe key 'model.residual' for model 'itransformer'"):
        recipe_from_dict({"model": {"name": "itransformer", "residual": True}})


def test_sizes_from_data_cannot_be_typed():
    with pytest.raises(ConfigError, match=r"'model.n_vars' comes from the data"):
        recipe_from_dict({"model": {"name": "itransformer", "n_vars": 7}})


def test_unknown_dataset_has_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown dataset 'ett_h3'.*did you mean"):
        recipe_from_dict({"data": {"name": "ett_h3"}})


def test_missing_csv_path_fails_early():
    with pytest.raises(ConfigError, match=r"file 'nowhere/my.csv' does not exist"):
        recipe_from_dict({"data": {"name": "nowhere/my.csv"}})


def test_choice_values_checked():
    with pytest.raises(ConfigError, match=r"'train.lr_schedule': expected one of halve, cosine, constant, type3, onecycle, got 'cosin'.*did you mean 'cosine'"):
        recipe_from_dict({"train": {"lr_schedule": "cosin"}})


def test_dotted_overrides_are_parsed_as_yaml_and_validated():
    assert parse_override("train.epochs=3") == (["train", "epochs"], 3)
    assert recipe_from_dict({}, ["train.lr=1e-3"]).train.lr == 1e-3  # YAML 1.1 reads 1e-3 as a string
    recipe = recipe_from_dict({}, ["train.epochs=3", "data.name=ett_m1", "data.horizon=336", "model.d_model=64"])
    assert (recipe.train.epochs, recipe.data.name, recipe.data.horizon, recipe.model.args["d_model"]) == (3, "ett_m1", 336, 64)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        recipe_from_dict({}, ["train.epochs"])
    with pytest.raises(ConfigError, match=r"unknown recipe key 'train\.epoks'"):
        recipe_from_dict({}, ["train.epoks=3"])


def test_value_ranges():
    with pytest.raises(ConfigError, match=r"'data\.label_len'"):
        recipe_from_dict({"data": {"lookback": 24, "label_len": 48}})
    with pytest.raises(ConfigError, match=r"'train.epochs': expected an integer >= 1, got 0"):
        recipe_from_dict({"train": {"epochs": 0}})
    # numbers the optimiser would reject deep inside torch, or silently misuse (a negative clip flips the gradients)
    for override, message in [
        ("train.grad_clip=-1", r"'train.grad_clip': expected a finite number > 0, got -1.0"),
        ("train.lr=.nan", r"'train.lr': expected a finite number > 0, got nan"),
        ("train.weight_decay=-1", r"'train.weight_decay': expected a finite number >= 0"),
        ("train.eval_batch_size=0", r"'train.eval_batch_size': expected an integer >= 1, got 0"),
        ("train.patience=-2", r"'train.patience': expected an integer >= 0"),
        ("model.name=galerkin data.num_samples=0", r"'data.num_samples': expected an integer >= 1"),
        ("model.name=galerkin data.reduced_resolution=0", r"'data.reduced_resolution': expected an integer >= 1"),
        ("train.device=tpu", r"'train.device': expected auto, cpu, cuda or cuda:N, got 'tpu'"),
        ("train.device=cuda:abc", r"'train.device': expected auto, cpu, cuda or cuda:N"),
    ]:
        with pytest.raises(ConfigError, match=message):
            recipe_from_dict({}, override.split(), check_data=False)
    assert recipe_from_dict({}, ["train.grad_clip=1.0", "train.device=cuda:1", "train.patience=0"]).train.grad_clip == 1.0


def test_model_argument_checks_and_a_missing_gpu_are_recipe_errors():
    from sciformer.engine.distributed import pick_device
    from sciformer.registry import build_model

    with pytest.raises(ConfigError, match=r"model 'itransformer' with \{'d_model': 16, 'n_heads': 3\}.*divisible"):
        build_model("itransformer", {"d_model": 16, "n_heads": 3}, n_vars=7, n_marks=4, lookback=96, horizon=96)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"'train.device': 'cuda' asks for a GPU, but torch .* sees none"):
            pick_device("cuda")


def test_yaml_is_read_safely(tmp_path):
    bad = tmp_path / "evil.yaml"
    bad.write_text("data: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)


def test_literal_choices_of_model_arguments():
    with pytest.raises(ConfigError, match=r"'model.activation': expected one of gelu, relu, sigmoid, got 'gelo'.*did you mean 'gelu'"):
        recipe_from_dict({"model": {"name": "itransformer", "activation": "gelo"}})


def test_engine_settings_for_scale_and_resume():
    train = {"checkpoint_every": 500, "cuda_graphs": True, "fused_optimizer": False, "compile": True, "compile_mode": "max-autotune"}
    recipe = recipe_from_dict({"train": train})
    t = recipe.train
    assert (t.checkpoint_every, t.cuda_graphs, t.fused_optimizer, t.compile, t.compile_mode) == (500, True, False, True, "max-autotune")
    assert recipe_from_dict({}).train.fused_optimizer is None  # fused on CUDA, not on CPU
    with pytest.raises(ConfigError, match=r"'train.checkpoint_every': expected an integer >= 0, got -5"):
        recipe_from_dict({"train": {"checkpoint_every": -5}})
    with pytest.raises(ConfigError, match=r"'train.compile_mode': expected one of .*did you mean 'reduce-overhead'"):
        recipe_from_dict({"train": {"compile_mode": "reduce_overhead"}})
    with pytest.raises(ConfigError, match="both capture CUDA graphs"):
        recipe_from_dict({"train": {"cuda_graphs": True, "compile": True, "compile_mode": "reduce-overhead"}})


# ---------------------------------------------------------------------------------- raw mappings, data paths
def test_deep_or_self_containing_mappings_from_python_and_overrides_are_refused():
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["x"] = node = {}
    looped: dict = {"train": {}}
    looped["train"]["self"] = looped
    for raw in ({"data": {"generate": deep}}, looped):
        with pytest.raises(ConfigError, match=r"a recipe is nested deeper than 50 levels \(or contains itself\)"):
            recipe_from_dict(raw, check_data=False)
    with pytest.raises(ConfigError, match=r"more than 50 levels"):
        recipe_from_dict({}, ["data.generate." + ".".join(["x"] * 5000) + "=1"])


def test_data_path_says_what_it_is(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe key 'data.name': data file '.*' is a directory, not a regular file"):
        recipe_from_dict({"data": {"name": f"{tmp_path}/"}})
    with pytest.raises(ConfigError, match=r"recipe key 'data.name': data file '/dev/null' is a character device"):
        recipe_from_dict({"data": {"name": "/dev/null"}})


def test_tilde_in_recipe_and_data_paths_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "series.csv").write_text("date,y\n2020-01-01,1\n")
    (tmp_path / "r.yaml").write_text("data:\n  name: ~/series.csv\n")
    recipe = load_recipe("~/r.yaml")
    assert (recipe.name, recipe.data.name) == ("r", "~/series.csv")  # the reader expands it with the same user_path


# ------------------------------------------------------------------------------------------- value checks
def test_non_finite_and_non_positive_floats_are_refused():
    for raw, message in [
        ({"data": {"split": [float("nan"), 0.5, 0.5]}}, r"'data.split\[0\]': expected a finite number in \(0, 1\), got nan"),
        ({"data": {"split": [0.0, 0.5, 0.5]}}, r"'data.split\[0\]': expected a finite number in \(0, 1\), got 0.0"),
        ({"data": {"split": [0.8, 0.3, -0.1]}}, r"'data.split\[2\]': expected a finite number in \(0, 1\)"),
        ({"data": {"split": [0.5, 0.25, 0.2]}}, r"'data.split': expected three positive fractions summing to 1"),
        ({"train": {"lr": "1e999"}}, r"'train.lr': expected a finite number > 0, got inf"),
        ({"train": {"h1_weight": float("inf")}}, r"'train.h1_weight': expected a finite number >= 0, got inf"),
        ({"model": {"name": "patchtst", "head_dropout": float("nan")}}, r"'model.head_dropout': expected a finite number in \[0, 1\)"),
        ({"model": {"name": "galerkin", "xavier_init": float("-inf")}, "data": {"name": "darcy_small"}}, r"'model.xavier_init': expected a finite number > 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            recipe_from_dict(raw, check_data=False)
    assert recipe_from_dict({"data": {"split": [0.6, 0.2, 0.2]}}, check_data=False).data.split == [0.6, 0.2, 0.2]


def test_non_finite_values_inside_a_mapping_are_refused():
    generate = {"generator": "burgers1d", "n": 8, "nu": [0.01, float("nan")]}
    with pytest.raises(ConfigError, match=r"'data.generate.nu\[1\]': expected a finite number, got nan"):
        recipe_from_dict({"model": {"name": "fno"}, "data": {"name": "b.h5", "generate": generate}}, check_data=False)


def test_non_finite_plain_floats_are_refused():
    from sciformer.recipe_types import coerce
    from sciformer.registry import Bounds

    with pytest.raises(ConfigError, match=r"'x': expected a finite number, got nan"):
        coerce(float("nan"), float, "x")
    assert math.isinf(coerce(float("inf"), Annotated[float, Bounds(finite=False)], "x"))  # a key may allow it


@pytest.mark.parametrize(("args", "message"), [
    ({"d_model": 0}, r"'model.d_model': expected an integer >= 1, got 0"),
    ({"n_heads": 0}, r"'model.n_heads': expected an integer >= 1, got 0"),
    ({"e_layers": -1}, r"'model.e_layers': expected an integer >= 1, got -1"),
    ({"dropout": 1.0}, r"'model.dropout': expected a finite number in \[0, 1\), got 1.0"),
    ({"dropout": -0.1}, r"'model.dropout': expected a finite number in \[0, 1\), got -0.1"),
    ({"d_model": 16, "n_heads": 3}, r"recipe section 'model' \(itransformer\): d_model \(16\) must be divisible by n_heads \(3\)"),
])
def test_model_sizes_are_checked_at_validate(args, message):
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict({"model": {"name": "itransformer", **args}})


def test_the_meta_build_at_validate_draws_no_random_numbers():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    recipe_from_dict({"model": {"name": "itransformer", "d_model": 16, "n_heads": 2}})
    recipe_from_dict({"data": {"name": "darcy_small"}, "model": {"name": "pde_transformer"}}, check_data=False)
    assert torch.equal(torch.get_rng_state(), before)  # a Forecaster built before seeding trains as one built after


def test_cross_argument_checks_of_operator_models_run_at_validate():
    with pytest.raises(ConfigError, match=r"\(pde_transformer\): hidden_size \(18\) must be even and divisible by n_heads \(4\)"):
        recipe_from_dict({"data": {"name": "darcy_small"}, "model": {"name": "pde_transformer", "hidden_size": 18}}, check_data=False)
    with pytest.raises(ConfigError, match=r"\(poseidon\): depths, n_heads and skip_blocks must have one entry per stage"):
        recipe_from_dict({"data": {"name": "darcy_small"}, "model": {"name": "poseidon", "depths": [1, 1]}}, check_data=False)


# ---------------------------------------------------------------------------------- choices, typed once
def test_every_choice_is_read_from_its_annotation():
    from sciformer.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for key in ("lr_schedule", "precision", "loss", "mode", "augment", "compile_mode"):
        choices = typing.get_args(hints[key])
        assert choices, f"train.{key} is not a Literal"
        with pytest.raises(ConfigError, match=rf"'train.{key}': expected one of {re.escape(', '.join(choices))}, got 'nope'"):
            recipe_from_dict({"model": {"name": "galerkin"}, "train": {key: "nope"}}, check_data=False)
    assert not hasattr(config, "_CHOICES")


def test_runtime_choice_lists_agree_with_the_annotations():
    """Layers below config check these choices again at run time; their lists must be the annotation's."""
    from sciformer.config import Augment, TrainMode
    from sciformer.data.operator import AUGMENTS, MODES
    from sciformer.nn.patching import NORMS, POSITIONAL, Norm, Positional

    assert (tuple(MODES), tuple(AUGMENTS)) == (typing.get_args(TrainMode), typing.get_args(Augment))
    patchtst = typing.get_type_hints(get_model("patchtst").__init__)
    assert (patchtst["norm"], patchtst["positional"]) == (Norm, Positional)  # the model annotates with nn's Literals
    assert (typing.get_args(Norm), typing.get_args(Positional)) == (NORMS, POSITIONAL)


def test_model_choices_are_literals_shared_by_every_model():
    from sciformer.nn.encoder import ACTIVATIONS

    assert set(typing.get_args(Activation)) == set(ACTIVATIONS)
    for name in list_models():
        hints = typing.get_type_hints(get_model(name).__init__)
        for arg, hint in hints.items():
            assert hint is not str or arg in ("device",), f"{name}.{arg} is a bare str: type its choices with Literal"
        if "activation" in hints:
            assert hints["activation"] == Activation, f"{name}.activation"
    with pytest.raises(ConfigError, match=r"'model.norm': expected one of batch, layer, got 'group'"):
        recipe_from_dict({"model": {"name": "patchtst", "norm": "group"}})
    with pytest.raises(ConfigError, match=r"'model.cross_attention': expected one of full, probsparse"):
        recipe_from_dict({"model": {"name": "informer", "cross_attention": "sparse"}})


# --------------------------------------------------------------------------------- frozen, not mutated
def test_recipes_are_frozen_and_validation_leaves_its_input_alone():
    raw = {"data": {"lookback": 48}, "model": {"name": "itransformer", "d_model": 32}, "train": {"epochs": 2}}
    before = copy.deepcopy(raw)
    recipe = recipe_from_dict(raw, ["train.epochs=3", "model.n_heads=4"])
    assert raw == before and recipe.data.label_len == 24 and recipe.train.epochs == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.train.epochs = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.data = None


# -------------------------------------------------------------------------------- task-specific keys
@pytest.mark.parametrize(("raw", "message"), [
    ({"model": {"name": "galerkin"}, "data": {"name": "darcy_small", "lookback": 96}},
     r"recipe key 'data.lookback' applies to forecast models, but 'galerkin' is an operator model; remove it"),
    ({"model": {"name": "pde_transformer"}, "data": {"name": "darcy_small", "target": "u"}}, r"'data.target' applies to forecast models"),
    ({"model": {"name": "poseidon"}, "data": {"name": "darcy_small", "split": [0.7, 0.1, 0.2]}}, r"'data.split' applies to forecast models"),
    ({"model": {"name": "itransformer"}, "data": {"initial_step": 2}}, r"'data.initial_step' applies to operator models, but 'itransformer'"),
    ({"model": {"name": "patchtst"}, "data": {"generate": {"generator": "burgers1d"}}}, r"'data.generate' applies to operator models"),
    ({"model": {"name": "patchtst"}, "train": {"augment": "dihedral"}}, r"'train.augment' applies to operator models"),
])
def test_keys_of_the_other_task_are_refused(raw, message):
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict(raw, check_data=False)


# ------------------------------------------------------------------------------------------ size presets
def test_size_presets_are_models_of_their_own_name(capsys):
    from sciformer.cli import main

    recipe = recipe_from_dict({"data": {"name": "darcy_small"}, "model": {"name": "pde_transformer_b", "periodic": True}}, check_data=False)
    assert recipe.model.args == {"periodic": True}
    fixed = r"'model.hidden_size' is fixed by the size preset 'pde_transformer_s' \(96\); to change it, use model 'pde_transformer'"
    with pytest.raises(ConfigError, match=fixed):
        recipe_from_dict({"data": {"name": "darcy_small"}, "model": {"name": "pde_transformer_s", "hidden_size": 32}}, check_data=False)
    with pytest.raises(ConfigError, match=r"unknown recipe key 'model.size' for model 'poseidon'"):
        recipe_from_dict({"data": {"name": "darcy_small"}, "model": {"name": "poseidon", "size": "T"}}, check_data=False)
    assert main(["ls", "models"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("pde_transformer_s", "pde_transformer_b", "pde_transformer_l", "poseidon_t", "poseidon_b", "poseidon_l"))


def test_a_resolved_recipe_reads_back_as_itself():
    for raw in ({"model": {"name": "galerkin", "n_layers": 2}, "data": {"name": "darcy_small", "initial_step": 1}},
                {"model": {"name": "patchtst"}, "data": {"lookback": 336, "split": [0.7, 0.1, 0.2]}}):
        recipe = recipe_from_dict(raw, check_data=False)
        stored = json.loads(json.dumps(recipe.to_dict()))
        assert recipe_from_dict(stored, check_data=False) == recipe
        other = "lookback" if recipe.model.name == "galerkin" else "initial_step"
        assert stored["data"][other] is None  # keys of the other task are null: not set
    old = recipe.to_dict()  # patchtst's, as a run stores it, plus operator keys at their defaults
    old["data"] |= {"initial_step": 1, "reduced_resolution": 1, "in_memory": "auto"}
    with pytest.raises(ConfigError, match=r"'data.initial_step' applies to operator models"):
        recipe_from_dict(old, check_data=False)
    assert stored_recipe(old) == recipe  # a stored recipe may list every key of both tasks at their defaults
