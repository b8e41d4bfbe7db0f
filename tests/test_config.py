from pathlib import Path

import pytest
import torch

from sciformer.config import DataConfig, load_recipe, parse_override, recipe_from_dict
from sciformer.errors import ConfigError

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
    with pytest.raises(ConfigError, match="unknown recipe key 'train.epoks'"):
        recipe_from_dict({}, ["train.epoks=3"])


def test_value_ranges():
    with pytest.raises(ConfigError, match="'data.label_len'"):
        recipe_from_dict({"data": {"lookback": 24, "label_len": 48}})
    with pytest.raises(ConfigError, match="'train.epochs': expected a positive integer"):
        recipe_from_dict({"train": {"epochs": 0}})
    # numbers the optimiser would reject deep inside torch, or silently misuse (a negative clip flips the gradients)
    for override, message in [
        ("train.grad_clip=-1", r"'train.grad_clip': expected a finite number > 0, got -1"),
        ("train.lr=.nan", r"'train.lr': expected a finite number > 0, got nan"),
        ("train.weight_decay=-1", r"'train.weight_decay': expected a finite number >= 0"),
        ("train.eval_batch_size=0", r"'train.eval_batch_size': expected an integer >= 1, got 0"),
        ("train.patience=-2", r"'train.patience': expected an integer >= 0"),
        ("data.num_samples=0", r"'data.num_samples': expected an integer >= 1"),
        ("data.reduced_resolution=0", r"'data.reduced_resolution': expected an integer >= 1"),
        ("train.device=tpu", r"'train.device': expected auto, cpu, cuda or cuda:N, got 'tpu'"),
        ("train.device=cuda:abc", r"'train.device': expected auto, cpu, cuda or cuda:N"),
    ]:
        with pytest.raises(ConfigError, match=message):
            recipe_from_dict({}, [override])
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
    with pytest.raises(ConfigError, match=r"'model.activation': expected one of gelu, relu, got 'gelo'.*did you mean 'gelu'"):
        recipe_from_dict({"model": {"name": "itransformer", "activation": "gelo"}})


def test_engine_settings_for_scale_and_resume():
    recipe = recipe_from_dict({"train": {"checkpoint_every": 500, "cuda_graphs": True, "fused_optimizer": False, "compile": True, "compile_mode": "max-autotune"}})
    t = recipe.train
    assert (t.checkpoint_every, t.cuda_graphs, t.fused_optimizer, t.compile, t.compile_mode) == (500, True, False, True, "max-autotune")
    assert recipe_from_dict({}).train.fused_optimizer is None  # fused on CUDA, not on CPU
    with pytest.raises(ConfigError, match=r"'train.checkpoint_every': expected a number of steps >= 0"):
        recipe_from_dict({"train": {"checkpoint_every": -5}})
    with pytest.raises(ConfigError, match=r"'train.compile_mode': expected one of .*did you mean 'reduce-overhead'"):
        recipe_from_dict({"train": {"compile_mode": "reduce_overhead"}})
    with pytest.raises(ConfigError, match="both capture CUDA graphs"):
        recipe_from_dict({"train": {"cuda_graphs": True, "compile": True, "compile_mode": "reduce-overhead"}})
