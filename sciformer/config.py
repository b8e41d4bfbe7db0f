"""Typed recipe schema: YAML → frozen dataclasses, dotted overrides, strict validation.

A recipe has five sections (``data``, ``model``, ``train``, ``tracking``, ``seed``). Everything is checked
before any work starts: unknown keys, wrong types, values out of range and unknown model or dataset names raise
:class:`~sciformer.errors.ConfigError` naming the key, the expected type and the closest valid key.

Each key is typed once, in its annotation, and checked from it: ``Literal`` choices, ``Annotated`` bounds
(:class:`~sciformer.registry.Bounds`: ``PositiveInt``, ``Dropout``...), finiteness of every float. The ``model``
section is checked against the registered model's constructor signature (torchtune-style), minus the sizes that
come from the data (``n_vars``, ``n_marks``, ``lookback``, ``horizon``...), and the model is then built on the
``meta`` device (no memory) so that its own argument checks (``d_model`` divisible by ``n_heads``...) fail here too.
Keys that only one task reads (``data.lookback`` for forecasting, ``data.initial_step`` for operators) are refused
in a recipe of the other task, unless null (:meth:`Recipe.to_dict` writes them so). YAML is read by a bounded safe
loader (:mod:`sciformer.recipe_yaml`); a value is checked against its annotation by :mod:`sciformer.recipe_types`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from sciformer.errors import ConfigError, check_input_file, did_you_mean
from sciformer.recipe_types import coerce, show
from sciformer.recipe_yaml import MAX_DEPTH, read_recipe_file, read_yaml
from sciformer.registry import NORMALIZE, RESIDUAL, Bounds, ModelClass, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, get_model

# Constructor arguments that the data module fills in; never typed in YAML.
DATA_FILLED = ("n_vars", "n_marks", "lookback", "horizon", "label_len", "in_channels", "out_channels", "n_dims")

LrSchedule = Literal["halve", "cosine", "constant", "type3", "onecycle"]
Precision = Literal["fp32", "tf32", "bf16"]
LossName = Literal["mse", "mae", "rel_l2", "rel_l2_h1"]
TrainMode = Literal["one_step", "unroll", "all_to_all"]
Augment = Literal["none", "dihedral", "transpose"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
Fraction = Annotated[float, Bounds(low=0, high=1, low_open=True, high_open=True)]
Seed = Annotated[int, Bounds(low=0, high=2**32 - 1)]  # numpy's seed range


# field metadata of keys that only models of one task read: a recipe of the other task may not set them
FORECAST_ONLY, OPERATOR_ONLY = {"task": "forecast"}, {"task": "operator"}


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is windowed.

    ``name`` is a registered dataset (``ett_h1``, ``darcy_small``...) or a path to a data file.
    """

    name: str = "ett_h1"
    # time series (forecasting models)
    lookback: PositiveInt = field(default=96, metadata=FORECAST_ONLY)
    horizon: PositiveInt = field(default=96, metadata=FORECAST_ONLY)
    label_len: NonNegativeInt | None = field(default=None, metadata=FORECAST_ONLY)  # decoder's known steps (enc-dec); default min(48, lookback // 2)
    time_col: str | None = field(default=None, metadata=FORECAST_ONLY)  # default: the manifest's, else "date"
    columns: list[str] | None = field(default=None, metadata=FORECAST_ONLY)  # default: every numeric column (target last)
    target: str | None = field(default=None, metadata=FORECAST_ONLY)  # moved to the last column, as TSLib does
    time_features: str | None = field(default=None, metadata=FORECAST_ONLY)  # frequency code of the time features ('h', 't', 'd'...); default: manifest's
    split: list[Fraction] | None = field(default=None, metadata=FORECAST_ONLY)  # train/val/test fractions for custom CSVs; default 0.7/0.1/0.2
    # PDE fields (operator models)
    initial_step: PositiveInt = field(default=1, metadata=OPERATOR_ONLY)  # frames of history fed to the model
    reduced_resolution: PositiveInt = field(default=1, metadata=OPERATOR_ONLY)  # spatial stride (PDEBench)
    reduced_resolution_t: PositiveInt = field(default=1, metadata=OPERATOR_ONLY)  # temporal stride (PDEBench)
    num_samples: PositiveInt | None = field(default=None, metadata=OPERATOR_ONLY)  # cap on samples read from the file
    test_resolution: PositiveInt | None = field(default=None, metadata=OPERATOR_ONLY)  # darcy_small: evaluate at 16 or 32
    generate: dict[str, Any] | None = field(default=None, metadata=OPERATOR_ONLY)  # simulate data.name on first use: {generator, n, res, ...}
    # auto: in memory when under 1/4 of the memory this process may use; false: streamed from the file
    in_memory: bool | Literal["auto"] = field(default="auto", metadata=OPERATOR_ONLY)
    # name: mixture: several files in one channel layout, [{path, weight, channels}] (sciformer.data.sources.mixture)
    mixture: list[dict[str, Any]] | None = field(default=None, metadata=OPERATOR_ONLY)
    mixture_channels: list[str] | None = field(default=None, metadata=OPERATOR_ONLY)  # the layout; default: the members' union


@dataclass(frozen=True)
class ModelConfig:
    """``name`` picks a registered model (or a size preset such as ``pde_transformer_s``); every other key is a
    constructor argument."""

    name: str = "itransformer"
    args: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # start from a pretrained checkpoint: RUN_DIR, CHECKPOINT_DIR or models:/name/version


@dataclass(frozen=True)
class TrainConfig:
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt | None = None  # default: batch_size
    lr: PositiveFloat = 1e-4
    weight_decay: NonNegativeFloat = 0.0
    lr_schedule: LrSchedule = "halve"  # halve (TSLib 'type1'), type3 (official PatchTST), onecycle (Galerkin)
    patience: NonNegativeInt = 3  # early stopping on validation loss; 0 disables
    freeze_epochs: NonNegativeInt = 0  # with model.init: train only the re-initialised layers for this many epochs
    grad_clip: PositiveFloat | None = None  # max global grad norm
    precision: Precision = "fp32"  # tf32: float32 matrix products on TF32 tensor cores (CUDA); bf16: autocast
    loss: LossName = "mse"  # rel_l2_h1: operators only
    h1_weight: NonNegativeFloat = 0.1  # rel_l2_h1: weight of the relative H1 seminorm (Galerkin Transformer, arXiv 2105.14995)
    mode: TrainMode = field(default="one_step", metadata=OPERATOR_ONLY)  # unroll (pushforward) | all_to_all (lead-time pairs)
    unroll_steps: PositiveInt = field(default=1, metadata=OPERATOR_ONLY)  # mode unroll: model applications per training sample
    augment: Augment = field(default="none", metadata=OPERATOR_ONLY)  # square 2D grids: a random symmetry per training batch
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: cuda:LOCAL_RANK)
    progress: bool = True
    checkpoint_every: NonNegativeInt = 0  # also save the resumable training state every K optimiser steps (0: at epoch ends only)
    fused_optimizer: bool | None = None  # fused Adam; default: on CUDA
    cuda_graphs: bool | None = None  # replay each fixed-shape train/eval step from one CUDA graph; default: forecasters on one GPU
    compile: bool = False  # torch.compile the model
    compile_mode: CompileMode = "default"

    @property
    def eval_rows(self) -> int:
        """The batch size of validation, test and calibration passes."""
        return self.eval_batch_size or self.batch_size


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = "sciformer"
    run_name: str | None = None


@dataclass(frozen=True)
class Recipe:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: Seed = 2021
    name: str | None = None  # used for the run directory; default: the recipe file's stem

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data; keys that the model's task does not read are null, so the result reads
        back through :func:`recipe_from_dict` as the same recipe."""
        out = dataclasses.asdict(self)
        out["model"] = {"name": self.model.name, **self.model.args}
        if self.model.init is not None:
            out["model"]["init"] = self.model.init
        task = get_model(self.model.name).task
        for section in ("data", "train"):
            for f in dataclasses.fields(getattr(self, section)):
                if f.metadata.get("task", task) != task:
                    out[section][f.name] = None
        return out


_RUN_NAME = re.compile(r"\w[\w.+-]{0,99}")  # a folder name under runs/: no separators, no leading dot


# ----------------------------------------------------------------------------------------------- sections
def _build_section(cls: type, values: Any, prefix: str, task: str, model: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"recipe key '{prefix}': expected a mapping, got {type(values).__name__} ({show(values)})")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown recipe key '{prefix}.{key}'{did_you_mean(key, fields)}; valid keys in '{prefix}': {', '.join(fields)}")
        only = fields[key].metadata.get("task")
        if only not in (None, task):
            if value is not None:  # null is "not set", as to_dict writes it
                raise ConfigError(f"recipe key '{prefix}.{key}' applies to {only} models, but '{model}' is {_a(task)} model; remove it")
            continue
        kwargs[key] = coerce(value, hints[key], f"{prefix}.{key}")
    return cls(**kwargs)


def _a(task: str) -> str:
    return f"{'an' if task[0] in 'aeiou' else 'a'} {task}"


def _build_model(values: Any) -> ModelConfig:
    if not isinstance(values, dict):
        raise ConfigError(f"recipe key 'model': expected a mapping with a 'name', got {show(values)}")
    values = dict(values)
    name = values.pop("name", ModelConfig.name)
    if not isinstance(name, str):
        raise ConfigError(f"recipe key 'model.name': expected str, got {type(name).__name__} ({name!r})")
    init = coerce(values.pop("init", None), str | None, "model.init")
    cls = get_model(name)
    allowed, hints = model_arguments(cls)
    args = {}
    for key, value in values.items():
        if key in DATA_FILLED:
            raise ConfigError(f"recipe key 'model.{key}' comes from the data and must not be set in the recipe")
        if key in getattr(cls, "preset", {}):
            raise ConfigError(f"recipe key 'model.{key}' is fixed by the size preset '{name}' ({cls.preset[key]!r}); to change it, use model '{cls.preset_of}'")
        if key not in allowed:
            raise ConfigError(f"unknown recipe key 'model.{key}' for model '{name}'{did_you_mean(key, allowed)}; valid keys: {', '.join(allowed)}")
        args[key] = coerce(value, hints.get(key, Any), f"model.{key}")
    return ModelConfig(name=name, args=args, init=init)


def model_arguments(cls: ModelClass) -> tuple[list[str], dict[str, Any]]:
    """The recipe keys of a model class (constructor arguments minus data sizes, plus ``residual`` and ``normalize``
    for operators) and their annotations."""
    signature = inspect.signature(cls.__init__)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    allowed = [p for p, v in signature.parameters.items() if p != "self" and v.kind in kinds and p not in DATA_FILLED]
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    if cls.task == "operator":
        allowed += [RESIDUAL, NORMALIZE]
        hints[RESIDUAL] = hints[NORMALIZE] = bool
    return allowed, hints


# ------------------------------------------------------------------------------------------- validation
def _validate(recipe: Recipe, task: str, check_data: bool = True) -> None:
    """Checks across keys; each key's own type and range were checked when it was read."""
    from sciformer.data.catalog import check_dataset_name

    d, t = recipe.data, recipe.train

    if t.freeze_epochs and recipe.model.init is None:
        raise ConfigError(
            f"recipe key 'train.freeze_epochs' ({t.freeze_epochs}) freezes the pretrained layers, but 'model.init' names no pretrained checkpoint"
        )
    if (d.mixture is None) != (d.name != "mixture") or (d.mixture_channels is not None and d.mixture is None):
        raise ConfigError(
            f"recipe keys 'data.mixture' and 'data.mixture_channels' go with 'data.name: mixture' (got name {d.name!r}, "
            f"mixture {'set' if d.mixture is not None else 'unset'}); a mixture lists its files under data.mixture"
        )
    if d.mixture is not None:
        from sciformer.data.sources.mixture import check_members

        check_members(d.mixture)
    if check_data and recipe.data.generate is None and d.mixture is None:  # a generated file may not exist yet
        check_dataset_name(recipe.data.name)
    if d.time_features is not None:
        from sciformer.data.timefeatures import feature_code

        try:
            feature_code(d.time_features)
        except ConfigError as exc:
            raise ConfigError(f"recipe key 'data.time_features': {exc}") from None
    if d.label_len is not None and d.label_len > d.lookback:
        raise ConfigError(f"recipe key 'data.label_len': expected 0 <= label_len <= lookback ({d.lookback}), got {d.label_len}")
    if d.split is not None and (len(d.split) != 3 or abs(sum(d.split) - 1) > 1e-6):
        raise ConfigError(f"recipe key 'data.split': expected three positive fractions summing to 1, got {d.split}")
    if t.cuda_graphs and t.compile and t.compile_mode == "reduce-overhead":
        raise ConfigError("recipe keys 'train.cuda_graphs' and 'train.compile_mode=reduce-overhead' both capture CUDA graphs; use one of them")
    if recipe.name is not None and not _RUN_NAME.fullmatch(recipe.name):
        raise ConfigError(
            f"recipe key 'name': expected a plain name (letters, digits, _ - . +; at most 100), got {show(recipe.name)}; "
            "it names the run folder, so it holds no path"
        )
    if t.device not in ("auto", "cpu", "cuda") and re.fullmatch(r"cuda:\d+", t.device) is None:
        raise ConfigError(f"recipe key 'train.device': expected auto, cpu, cuda or cuda:N, got {t.device!r}")
    if t.loss == "rel_l2_h1" and task != "operator":
        raise ConfigError(
            f"recipe key 'train.loss': rel_l2_h1 differentiates the fields [B, C, *grid] of operator models, "
            f"but '{recipe.model.name}' is {_a(task)} model; use mse, mae or rel_l2"
        )
    _check_model_builds(recipe, task)


def _check_model_builds(recipe: Recipe, task: str) -> None:
    """Build the model on the ``meta`` device (shapes only, no memory), so its constructor's own checks (heads that
    divide the width, matching stage lists...) run now. Data sizes the recipe does not know are stand-ins that every
    model accepts (one variable or channel, a 2D grid); the real ones are checked when the data is loaded."""
    import torch

    from sciformer.registry import build_model

    if task == "forecast":
        d = recipe.data
        sizes = {"n_vars": 1, "n_marks": 1, "lookback": d.lookback, "horizon": d.horizon, "label_len": d.label_len}
    else:
        sizes = {"in_channels": recipe.data.initial_step, "out_channels": 1, "n_dims": 2}
    try:
        with torch.device("meta"):
            build_model(recipe.model.name, recipe.model.args, **sizes)
    except ImportError:
        return  # an optional dependency (neuralop for fno): fit names the extra to install when it builds the model
    except ConfigError as exc:
        raise ConfigError(f"recipe section 'model' ({recipe.model.name}): {exc.__cause__ or exc}") from None


# ------------------------------------------------------------------------------------------ overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=3"`` → ``(["train", "epochs"], 3)``; the value is read as YAML (safely, bounded)."""
    if "=" not in text:
        raise ConfigError(f"override {show(text)}: expected KEY=VALUE, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {show(text)}: expected a dotted key such as train.epochs")
    if key.count(".") >= MAX_DEPTH:
        raise ConfigError(f"override key {show(key)}: more than {MAX_DEPTH} levels; recipe keys are a few levels deep")
    value = read_yaml(raw, f"override {show(text)}") if raw != "" else None
    return key.split("."), value


def _apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in ``raw`` (a copy of the caller's mapping), before validation so overrides are validated too."""
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {show(text)}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return raw


# ------------------------------------------------------------------------------------------- loading
_SECTIONS = {"data": DataConfig, "train": TrainConfig, "tracking": TrackingConfig}
_TOP_LEVEL = ("data", "model", "train", "tracking", "seed", "name")


def recipe_from_dict(raw: dict[str, Any], overrides: list[str] | None = None, check_data: bool = True) -> Recipe:
    """Validate a raw mapping (plus dotted overrides) into a :class:`Recipe`; ``raw`` is left as it was.

    ``check_data=False`` skips the dataset-name check, for data handed over in Python (``Forecaster.fit(df)``).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"a recipe must be a mapping of sections ({', '.join(_TOP_LEVEL)}), got {type(raw).__name__}")
    raw = _apply_overrides(_deepcopy(raw), overrides or [])
    for key in raw:
        if key not in _TOP_LEVEL:
            raise ConfigError(f"unknown recipe key '{key}'{did_you_mean(key, _TOP_LEVEL)}; valid sections: {', '.join(_TOP_LEVEL)}")
    model = _build_model(raw.get("model", {"name": ModelConfig.name}))
    task = get_model(model.name).task
    sections = {key: _build_section(cls, raw.get(key), key, task, model.name) for key, cls in _SECTIONS.items()}
    data = sections["data"]
    if data.label_len is None and task == "forecast":
        sections["data"] = dataclasses.replace(data, label_len=min(48, data.lookback // 2))  # TSLib's 48 at lookback 96
    recipe = Recipe(**sections, model=model, seed=coerce(raw.get("seed", Recipe.seed), Seed, "seed"), name=coerce(raw.get("name"), str | None, "name"))
    _validate(recipe, task, check_data)
    return recipe


def stored_recipe(raw: dict[str, Any], overrides: list[str] | None = None) -> Recipe:
    """The recipe a run or checkpoint stored (``recipe.json``, a checkpoint's ``config.json``), plus overrides.

    A stored recipe may hold every key of both tasks at their defaults; the keys its model's task does not read are
    dropped before it is validated like any recipe (without the dataset-name check: the run already read its data).
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("model", {}), dict):
        raise ConfigError(f"a stored recipe must be a mapping of sections ({', '.join(_TOP_LEVEL)}), got {type(raw).__name__}")
    task = get_model(raw.get("model", {}).get("name", ModelConfig.name)).task
    raw = _deepcopy(raw)
    for section, cls in (("data", DataConfig), ("train", TrainConfig)):
        for f in dataclasses.fields(cls):
            if isinstance(raw.get(section), dict) and f.metadata.get("task", task) != task:
                raw[section].pop(f.name, None)
    return recipe_from_dict(raw, overrides, check_data=False)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe file (``~`` expanded) with the bounded safe loader and validate it."""
    path = check_input_file(path, "recipe", ConfigError)
    recipe = recipe_from_dict(read_recipe_file(path), overrides)
    return recipe if recipe.name is not None else dataclasses.replace(recipe, name=path.stem)


def _deepcopy(raw: Any, depth: int = 1) -> Any:
    """A copy of a raw recipe's dicts and lists (validation leaves its input alone); one nested deeper than
    MAX_DEPTH, or one that contains itself, is refused."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"a recipe is nested deeper than {MAX_DEPTH} levels (or contains itself)")
    if isinstance(raw, dict):
        return {k: _deepcopy(v, depth + 1) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_deepcopy(v, depth + 1) for v in raw]
    return raw
