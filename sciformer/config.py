"""Typed recipe schema: YAML → dataclasses, dotted overrides, strict validation.

A recipe has five sections (``data``, ``model``, ``train``, ``tracking``, ``seed``). Everything is checked
before any work starts: unknown keys, wrong types and unknown model or dataset names raise
:class:`~sciformer.errors.ConfigError` naming the key, the expected type and the closest valid key.
The ``model`` section is checked against the registered model's constructor signature (torchtune-style),
minus the sizes that come from the data (``n_vars``, ``n_marks``, ``lookback``, ``horizon``...).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sciformer.errors import ConfigError, did_you_mean
from sciformer.registry import RESIDUAL, get_model

# Constructor arguments that the data module fills in; never typed in YAML.
DATA_FILLED = ("n_vars", "n_marks", "lookback", "horizon", "label_len", "in_channels", "out_channels", "n_dims")


@dataclass
class DataConfig:
    """Where the series comes from and how it is windowed.

    ``name`` is a registered dataset (``ett_h1``, ``weather``...) or a path to a CSV file.
    """

    name: str = "ett_h1"
    lookback: int = 96
    horizon: int = 96
    label_len: int | None = None  # decoder's known steps (enc-dec models); default min(48, lookback // 2)
    time_col: str | None = None  # default: the manifest's, else "date"
    columns: list[str] | None = None  # default: every numeric column (target last)
    target: str | None = None  # moved to the last column, as TSLib does
    time_features: str | None = None  # frequency code of the time features ('h', 't', 'd'...); default: manifest's
    split: list[float] | None = None  # train/val/test fractions for custom CSVs; default 0.7/0.1/0.2
    # PDE (operator) data; ignored for time series
    initial_step: int = 1  # frames of history fed to the model
    reduced_resolution: int = 1  # spatial stride (PDEBench)
    reduced_resolution_t: int = 1  # temporal stride (PDEBench)
    num_samples: int | None = None  # cap on samples read from the file
    test_resolution: int | None = None  # darcy_small: evaluate at 16 or 32
    generate: dict[str, Any] | None = None  # simulate data.name on first use: {generator, n, res, ...}


@dataclass
class ModelConfig:
    """``name`` picks a registered model; every other key is a constructor argument."""

    name: str = "itransformer"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int | None = None  # default: batch_size
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "halve"  # halve (TSLib 'type1') | cosine | constant | type3 (official PatchTST) | onecycle
    patience: int = 3  # early stopping on validation loss; 0 disables
    grad_clip: float | None = None  # max global grad norm
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    loss: str = "mse"  # mse | mae | rel_l2 | rel_l2_h1 (operators)
    h1_weight: float = 0.1  # rel_l2_h1: weight of the relative H1 seminorm (Galerkin Transformer, arXiv 2105.14995)
    mode: str = "one_step"  # operators: one_step | unroll (pushforward) | all_to_all (lead-time pairs)
    unroll_steps: int = 1  # operators, mode unroll: model applications per training sample
    augment: str = "none"  # operators, square 2D grids: none | dihedral | transpose (random symmetry per training batch)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: cuda:LOCAL_RANK)
    progress: bool = True
    checkpoint_every: int = 0  # also save the resumable training state every K optimiser steps (0: at epoch ends only)
    fused_optimizer: bool | None = None  # fused Adam; default: on CUDA
    cuda_graphs: bool = False  # replay each fixed-shape train/eval step from one CUDA graph (single GPU)
    compile: bool = False  # torch.compile the model
    compile_mode: str = "default"  # default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs

    @property
    def eval_rows(self) -> int:
        """The batch size of validation, test and calibration passes."""
        return self.eval_batch_size or self.batch_size


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = "sciformer"
    run_name: str | None = None


@dataclass
class Recipe:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 2021
    name: str | None = None  # used for the run directory; default: the recipe file's stem

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model"] = {"name": self.model.name, **self.model.args}
        return out


_CHOICES = {
    "train.lr_schedule": ("halve", "cosine", "constant", "type3", "onecycle"),
    "train.precision": ("fp32", "bf16"),
    "train.loss": ("mse", "mae", "rel_l2", "rel_l2_h1"),
    "train.mode": ("one_step", "unroll", "all_to_all"),
    "train.augment": ("none", "dihedral", "transpose"),
    "train.compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
}


# ----------------------------------------------------------------------------------------------- types
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"recipe key '{key}': expected one of {', '.join(map(str, choices))}, got {value!r}{did_you_mean(value, choices)}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"recipe key '{key}': expected {_type_name(tp)}, got {type(value).__name__} ({value!r})")
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"recipe key '{key}': expected a list, got {type(value).__name__} ({value!r})")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"recipe key '{key}': expected a mapping, got {type(value).__name__} ({value!r})")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads "1e-4" (no dot) as a string
    if tp in (int, float, str, bool):
        if isinstance(value, bool) and tp is not bool:
            raise ConfigError(f"recipe key '{key}': expected {tp.__name__}, got bool ({value!r})")
        if not isinstance(value, tp):
            raise ConfigError(f"recipe key '{key}': expected {tp.__name__}, got {type(value).__name__} ({value!r})")
        return value
    return value


def _build_section(cls: type, values: Any, prefix: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"recipe key '{prefix}': expected a mapping, got {type(values).__name__} ({values!r})")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"unknown recipe key '{prefix}.{key}'{did_you_mean(key, names)}; valid keys in '{prefix}': {', '.join(names)}"
            )
        full = f"{prefix}.{key}"
        value = _coerce(value, hints[key], full)
        if full in _CHOICES and value not in _CHOICES[full]:
            raise ConfigError(
                f"recipe key '{full}': expected one of {', '.join(_CHOICES[full])}, got {value!r}{did_you_mean(value, _CHOICES[full])}"
            )
        kwargs[key] = value
    return cls(**kwargs)


def _build_model(values: Any) -> ModelConfig:
    if not isinstance(values, dict):
        raise ConfigError(f"recipe key 'model': expected a mapping with a 'name', got {values!r}")
    values = dict(values)
    name = values.pop("name", ModelConfig.name)
    if not isinstance(name, str):
        raise ConfigError(f"recipe key 'model.name': expected str, got {type(name).__name__} ({name!r})")
    cls = get_model(name)
    signature = inspect.signature(cls.__init__)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = [p for p, v in signature.parameters.items() if p != "self" and v.kind in kinds]
    allowed = [p for p in params if p not in DATA_FILLED]
    hints = typing.get_type_hints(cls.__init__)
    if cls.task == "operator":
        allowed.append(RESIDUAL)
        hints[RESIDUAL] = bool
    args = {}
    for key, value in values.items():
        if key in DATA_FILLED:
            raise ConfigError(f"recipe key 'model.{key}' comes from the data and must not be set in the recipe")
        if key not in allowed:
            raise ConfigError(
                f"unknown recipe key 'model.{key}' for model '{name}'{did_you_mean(key, allowed)}; "
                f"valid keys: {', '.join(allowed)}"
            )
        args[key] = _coerce(value, hints.get(key, Any), f"model.{key}")
    return ModelConfig(name=name, args=args)


def _validate(recipe: Recipe, check_data: bool = True) -> None:
    from sciformer.data.catalog import check_dataset_name

    if check_data and recipe.data.generate is None:  # a generated file may not exist yet
        check_dataset_name(recipe.data.name)
    d, t = recipe.data, recipe.train
    if d.label_len is None:
        d.label_len = min(48, d.lookback // 2)  # TSLib's 48 at lookback 96
    for key, value in (("data.lookback", d.lookback), ("data.horizon", d.horizon), ("train.epochs", t.epochs), ("train.batch_size", t.batch_size)):
        if value < 1:
            raise ConfigError(f"recipe key '{key}': expected a positive integer, got {value}")
    if d.label_len < 0 or d.label_len > d.lookback:
        raise ConfigError(f"recipe key 'data.label_len': expected 0 <= label_len <= lookback ({d.lookback}), got {d.label_len}")
    if t.checkpoint_every < 0:
        raise ConfigError(f"recipe key 'train.checkpoint_every': expected a number of steps >= 0 (0: epoch ends only), got {t.checkpoint_every}")
    if t.cuda_graphs and t.compile and t.compile_mode == "reduce-overhead":
        raise ConfigError(
            "recipe keys 'train.cuda_graphs' and 'train.compile_mode=reduce-overhead' both capture CUDA graphs; use one of them"
        )
    # a negative grad_clip would flip the gradients, and NaN passes every `<=` check: both are refused here
    for key, value, positive in (("train.lr", t.lr, True), ("train.grad_clip", t.grad_clip, True),
                                 ("train.weight_decay", t.weight_decay, False), ("train.h1_weight", t.h1_weight, False)):
        if value is not None and (not math.isfinite(value) or (value <= 0 if positive else value < 0)):
            raise ConfigError(f"recipe key '{key}': expected a finite number {'> 0' if positive else '>= 0'}, got {value}")
    for key, value, least in (("train.patience", t.patience, 0), ("train.unroll_steps", t.unroll_steps, 1),
                              ("train.eval_batch_size", t.eval_batch_size, 1), ("data.num_samples", d.num_samples, 1),
                              ("data.initial_step", d.initial_step, 1), ("data.reduced_resolution", d.reduced_resolution, 1),
                              ("data.reduced_resolution_t", d.reduced_resolution_t, 1)):
        if value is not None and value < least:
            raise ConfigError(f"recipe key '{key}': expected an integer >= {least}, got {value}")
    if t.device not in ("auto", "cpu", "cuda") and re.fullmatch(r"cuda:\d+", t.device) is None:
        raise ConfigError(f"recipe key 'train.device': expected auto, cpu, cuda or cuda:N, got {t.device!r}")
    task = get_model(recipe.model.name).task
    if t.loss == "rel_l2_h1" and task != "operator":
        raise ConfigError(
            f"recipe key 'train.loss': rel_l2_h1 differentiates the fields [B, C, *grid] of operator models, "
            f"but '{recipe.model.name}' is a {task} model; use mse, mae or rel_l2"
        )
    if d.split is not None and (len(d.split) != 3 or abs(sum(d.split) - 1) > 1e-6 or min(d.split) <= 0):
        raise ConfigError(f"recipe key 'data.split': expected three positive fractions summing to 1, got {d.split}")


# ------------------------------------------------------------------------------------------ overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=3"`` → ``(["train", "epochs"], 3)``; the value is read as YAML (safely)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected a dotted key such as train.epochs")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a raw recipe mapping (before validation, so overrides are validated too)."""
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return raw


# ------------------------------------------------------------------------------------------- loading
_SECTIONS = {"data": DataConfig, "train": TrainConfig, "tracking": TrackingConfig}
_TOP_LEVEL = ("data", "model", "train", "tracking", "seed", "name")


def recipe_from_dict(raw: dict[str, Any], overrides: list[str] | None = None, check_data: bool = True) -> Recipe:
    """Validate a raw mapping (plus dotted overrides) into a :class:`Recipe`.

    ``check_data=False`` skips the dataset-name check, for data handed over in Python (``Forecaster.fit(df)``).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"a recipe must be a mapping of sections ({', '.join(_TOP_LEVEL)}), got {type(raw).__name__}")
    raw = apply_overrides(_deepcopy(raw), overrides or [])
    for key in raw:
        if key not in _TOP_LEVEL:
            raise ConfigError(f"unknown recipe key '{key}'{did_you_mean(key, _TOP_LEVEL)}; valid sections: {', '.join(_TOP_LEVEL)}")
    sections = {key: _build_section(cls, raw.get(key), key) for key, cls in _SECTIONS.items()}
    recipe = Recipe(
        **sections,
        model=_build_model(raw.get("model", {"name": ModelConfig.name})),
        seed=_coerce(raw.get("seed", 2021), int, "seed"),
        name=_coerce(raw.get("name"), str | None, "name"),
    )
    _validate(recipe, check_data)
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe with ``yaml.safe_load`` and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe file '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe file '{path}' is not valid YAML: {exc}") from None
    recipe = recipe_from_dict(raw, overrides)
    if recipe.name is None:
        recipe.name = path.stem
    return recipe


def _deepcopy(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {k: _deepcopy(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_deepcopy(v) for v in raw]
    return raw
