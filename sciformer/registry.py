"""Name → class registries for models, and the argument types through which a model's constructor tells recipes
what it accepts.

Adding a model is one file with ``@register_model("name")`` plus one import line in
``sciformer/models/__init__.py``; look-ups by an unknown name fail with a "did you mean" hint. A named size of a
model (timm style: ``pde_transformer_s``) is :func:`register_preset`. Constructor annotations are the schema of a
recipe's ``model`` section: ``PositiveInt``, ``Dropout``, ``Literal[...]`` choices and the like are checked by
:mod:`sciformer.config` before anything is built.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from sciformer.errors import ConfigError, did_you_mean

# A registered model class: an nn.Module subclass with the attributes registry_name and task (set by register_model).
ModelClass = Any
_MODELS: dict[str, ModelClass] = {}

# Operator models of time-dependent data may predict the increment over their latest input frame
# (``u_next = u_last + net(u)``, scOT's ``learn_residual``): a recipe key of every operator model, applied here
# as a forward hook so the weights, their names and the model's attributes stay those of the model itself.
RESIDUAL = "residual"
NORMALIZE = "normalize"  # operator models: fields scaled by the training split's per-channel statistics

Task = Literal["forecast", "operator"]


# ------------------------------------------------------------------------------------------ argument types
@dataclass(frozen=True)
class Bounds:
    """Range of a numeric recipe value, attached with ``Annotated[int, Bounds(low=1)]``.

    Floats must be finite unless ``finite=False``; ``low_open``/``high_open`` exclude the end points."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    finite: bool = True

    def violation(self, value: float) -> str | None:
        """What was expected, when ``value`` lies outside the bounds; None when it is inside."""
        kind = "an integer" if isinstance(value, int) else "a finite number" if self.finite else "a number"
        if isinstance(value, float) and self.finite and not math.isfinite(value):
            return f"expected {kind}{self._range()}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        return f"expected {kind}{self._range()}" if too_low or too_high else None

    def _range(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return f" in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f" {'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f" {'<' if self.high_open else '<='} {high}"
        return ""


def _number(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


PositiveInt = Annotated[int, Bounds(low=1)]  # widths, heads, layers, patch and window sizes
NonNegativeInt = Annotated[int, Bounds(low=0)]
PositiveFloat = Annotated[float, Bounds(low=0, low_open=True)]
NonNegativeFloat = Annotated[float, Bounds(low=0)]
Dropout = Annotated[float, Bounds(low=0, high=1, high_open=True)]  # a probability that keeps some units
Activation = Literal["gelu", "relu", "sigmoid"]  # the feed-forward activations of sciformer.nn.encoder


# ------------------------------------------------------------------------------------------------- models
def register_model(name: str, task: Task = "forecast") -> Callable[[ModelClass], ModelClass]:
    """Class decorator: make a model reachable from recipes under ``name``.

    ``task`` is ``"forecast"`` (batch ``x [B, L, N]`` → ``[B, H, N]``) or ``"operator"``
    (``u [B, C_in, *grid]`` → ``[B, C_out, *grid]``); the trainer picks the matching step from it.
    """

    def decorator(cls: ModelClass) -> ModelClass:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is registered twice ({_MODELS[name]} and {cls})")
        cls.registry_name = name
        cls.task = task
        _MODELS[name] = cls
        return cls

    return decorator


def register_preset(name: str, base: ModelClass, fixed: dict[str, Any], defaults: dict[str, Any] | None = None) -> ModelClass:
    """Register a named size of the model class ``base`` (timm style: ``pde_transformer_s``).

    The preset is a subclass whose constructor sets the arguments in ``fixed`` (a recipe cannot set them) and
    starts the arguments in ``defaults`` at new values (a recipe may change them); weights and their names are the
    base model's. Its constructor signature, and so the recipe schema, shows only what a recipe may set. The class
    keeps ``preset`` (the fixed arguments) and ``preset_of`` (the base model's registry name).
    """
    defaults = dict(defaults or {})
    signature = inspect.signature(base.__init__)
    unknown = (set(fixed) | set(defaults)) - set(signature.parameters)
    if unknown:
        raise ValueError(f"preset {name!r}: {sorted(unknown)} are not arguments of {base.__name__}")
    hints = typing.get_type_hints(base.__init__, include_extras=True)
    params = [p.replace(default=defaults.get(p.name, p.default)) for p in signature.parameters.values() if p.name not in fixed]

    preset_signature = signature.replace(parameters=params)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if given := sorted(set(kwargs) & set(fixed)):
            raise ValueError(f"{', '.join(given)} fixed by preset '{name}'; use model '{base.registry_name}' to set them")
        arguments = preset_signature.bind(self, *args, **kwargs).arguments  # positions are the preset's, not the base's
        del arguments[params[0].name]  # self
        base.__init__(self, **{**defaults, **arguments, **fixed})

    __init__.__signature__ = preset_signature  # type: ignore[attr-defined]
    __init__.__annotations__ = {k: v for k, v in hints.items() if k not in fixed}
    doc = f"{base.__name__} with {', '.join(f'{k}={v!r}' for k, v in fixed.items())} (preset '{name}')."
    size = name.removeprefix(f"{base.registry_name}_")
    class_name = f"{base.__name__}{size.upper()}" if size != name else f"{base.__name__}_{name}"  # PDETransformerS
    namespace = {
        "__init__": __init__,
        "__doc__": doc,
        "__module__": base.__module__,
        "__qualname__": class_name,
        "preset": dict(fixed),
        "preset_of": base.registry_name,
    }
    cls = type(class_name, (base,), namespace)
    setattr(sys.modules[base.__module__], class_name, cls)  # importable by name, as pickle and copy expect of a class
    return register_model(name, task=base.task)(cls)


def _load_builtin_models() -> None:
    import sciformer.models  # noqa: F401  (registers every built-in model)


def get_model(name: str) -> ModelClass:
    """The model class registered as ``name``."""
    _load_builtin_models()
    try:
        return _MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}{did_you_mean(name, _MODELS)}; registered models: {', '.join(sorted(_MODELS))}") from None


def list_models(task: str | None = None) -> list[str]:
    """Registered model names (presets included), optionally only those of one task."""
    _load_builtin_models()
    return sorted(n for n, cls in _MODELS.items() if task is None or cls.task == task)


def build_model(name: str, args: dict[str, Any] | None = None, **data_sizes: Any):
    """Instantiate a registered model from recipe arguments plus the sizes the data provides.

    Only the data sizes the constructor accepts are passed (a model that has no ``n_marks`` never sees it).
    """
    cls = get_model(name)
    args = dict(args or {})
    residual, normalize = args.pop(RESIDUAL, False), args.pop(NORMALIZE, False)
    accepted = inspect.signature(cls.__init__).parameters
    if unknown := sorted(set(args) - set(accepted)):
        raise ConfigError(f"model '{name}' has no argument(s) {', '.join(unknown)}; its arguments: {', '.join(p for p in accepted if p != 'self')}")
    sizes = {k: v for k, v in data_sizes.items() if k in accepted}
    if not residual and not normalize:
        return _construct(cls, name, sizes, args)
    c_in, c_out = data_sizes.get("in_channels"), data_sizes.get("out_channels")
    if cls.task != "operator" or not c_in or not c_out:
        key = RESIDUAL if residual else NORMALIZE
        raise ConfigError(f"model.{key} is a key of operator models (fields in, fields out); got model '{name}' ({cls.task})")
    if residual and c_in % c_out:
        raise ConfigError(
            f"model.residual adds the latest input frame to the output of an operator model whose input is "
            f"whole frames (in_channels a multiple of out_channels); got model '{name}' with in_channels={c_in}, out_channels={c_out}"
        )
    model = _construct(cls, name, sizes, args)
    field = next(p for p in inspect.signature(cls.forward).parameters if p != "self")  # u, by contract
    if normalize:  # the residual's frame is added in normalised units, before the output is mapped back
        from sciformer.nn.normalization import attach_field_denormalization, attach_field_normalization

        attach_field_normalization(model, c_in, c_out, field)
    if residual:
        model.register_forward_hook(functools.partial(_add_latest_frame, field=field), with_kwargs=True)
    if normalize:
        attach_field_denormalization(model)
    return model


def _construct(cls: ModelClass, name: str, sizes: dict[str, Any], args: dict[str, Any]) -> Any:
    """``cls(**sizes, **args)``; a constructor's own argument check (a ValueError such as "d_model must be divisible
    by n_heads") is a recipe problem, so it becomes a ConfigError that the CLI reports in one line."""
    try:
        return cls(**sizes, **args)
    except ValueError as exc:
        raise ConfigError(f"model '{name}' with {args or 'its defaults'} and data sizes {sizes}: {exc}") from exc


def _add_latest_frame(model, args: tuple, kwargs: dict, output, *, field: str):
    """Input frames are stacked time-major into channels, so the latest frame is the last ``C_out`` channels.
    (A hook runs on ``model(...)``, not on a direct ``model.forward(...)`` call.)"""
    u = args[0] if args else kwargs[field]
    return output + u[:, u.shape[1] - output.shape[1] :]
