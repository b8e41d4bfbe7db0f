"""Name → class registries for models (and anything else looked up by name from a recipe).

Adding a model is one file with ``@register_model("name")`` plus one import line in
``sciformer/models/__init__.py``; look-ups by an unknown name fail with a "did you mean" hint.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sciformer.errors import ConfigError, did_you_mean

_MODELS: dict[str, type] = {}

# Operator models of time-dependent data may predict the increment over their latest input frame
# (``u_next = u_last + net(u)``, scOT's ``learn_residual``): a recipe key of every operator model, applied here
# as a forward hook so the weights, their names and the model's attributes stay those of the model itself.
RESIDUAL = "residual"


def register_model(name: str, task: str = "forecast") -> Callable[[type], type]:
    """Class decorator: make a model reachable from recipes under ``name``.

    ``task`` is ``"forecast"`` (batch ``x [B, L, N]`` → ``[B, H, N]``) or ``"operator"``
    (``u [B, C_in, *grid]`` → ``[B, C_out, *grid]``); the trainer picks the matching step from it.
    """

    def decorator(cls: type) -> type:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is registered twice ({_MODELS[name]} and {cls})")
        cls.registry_name = name
        cls.task = task
        _MODELS[name] = cls
        return cls

    return decorator


def _load_builtin_models() -> None:
    import sciformer.models  # noqa: F401  (registers every built-in model)


def get_model(name: str) -> type:
    """The model class registered as ``name``."""
    _load_builtin_models()
    try:
        return _MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}{did_you_mean(name, _MODELS)}; "
            f"registered models: {', '.join(sorted(_MODELS))}"
        ) from None


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, optionally only those of one task."""
    _load_builtin_models()
    return sorted(n for n, cls in _MODELS.items() if task is None or cls.task == task)


def build_model(name: str, args: dict[str, Any] | None = None, **data_sizes: Any):
    """Instantiate a registered model from recipe arguments plus the sizes the data provides.

    Only the data sizes the constructor accepts are passed (a model that has no ``n_marks`` never sees it).
    """
    import inspect

    cls = get_model(name)
    args = dict(args or {})
    residual = args.pop(RESIDUAL, False)
    accepted = inspect.signature(cls.__init__).parameters
    sizes = {k: v for k, v in data_sizes.items() if k in accepted}
    if not residual:
        return _construct(cls, name, sizes, args)
    c_in, c_out = data_sizes.get("in_channels"), data_sizes.get("out_channels")
    if cls.task != "operator" or not c_in or not c_out or c_in % c_out:
        raise ConfigError(
            f"model.residual adds the latest input frame to the output of an operator model whose input is "
            f"whole frames (in_channels a multiple of out_channels); got model '{name}' ({cls.task}) with "
            f"in_channels={c_in}, out_channels={c_out}"
        )
    model = _construct(cls, name, sizes, args)
    field = next(p for p in inspect.signature(cls.forward).parameters if p != "self")  # u, by contract
    model.register_forward_hook(functools.partial(_add_latest_frame, field=field), with_kwargs=True)
    return model


def _construct(cls, name: str, sizes: dict[str, Any], args: dict[str, Any]):
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
