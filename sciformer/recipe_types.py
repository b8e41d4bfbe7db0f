"""A recipe value checked against its annotation: the type, ``Literal`` choices, ``Annotated`` bounds
(:class:`~sciformer.registry.Bounds`), 64-bit integers, finite floats. :mod:`sciformer.config` reads every key of a
recipe through :func:`coerce`, with the annotation of the dataclass field or constructor argument it sets.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import re
import reprlib
import types
import typing
from typing import Annotated, Any, Literal

from sciformer.errors import ConfigError, did_you_mean
from sciformer.registry import Bounds

_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_INT64 = 2**63  # what torch and numpy take; a larger integer would overflow deep inside them


def show(value: Any) -> str:
    """``repr`` cut to a readable length: a message quotes what it got, not a megabyte of it."""
    return reprlib.repr(value)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (choices, bounds, finiteness); ints are accepted where floats
    are expected."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    if origin is Annotated:
        base, *extras = typing.get_args(tp)
        # finiteness of an annotated float is its Bounds' to decide (and to word, with the range)
        value = __coerce_scalar(value, base, key, finite=False) if base in (int, float) else coerce(value, base, key)
        for bounds in (e for e in extras if isinstance(e, Bounds)):
            if (problem := bounds.violation(value)) is not None:
                raise ConfigError(f"recipe key '{key}': {problem}, got {show(value)}")
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"recipe key '{key}': expected one of {', '.join(map(str, choices))}, got {show(value)}{did_you_mean(value, choices)}")
        return value
    if origin in (typing.Union, types.UnionType):
        return __coerce_union(value, tp, key)
    if origin in (list, tuple, collections.abc.Sequence):
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"recipe key '{key}': expected a list, got {type(value).__name__} ({show(value)})")
        return [coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"recipe key '{key}': expected a mapping, got {type(value).__name__} ({show(value)})")
        check_finite(value, key)
        return dict(value)
    if tp in (int, float, str, bool):
        return __coerce_scalar(value, tp, key)
    return value


def __coerce_union(value: Any, tp: Any, key: str) -> Any:
    options = typing.get_args(tp)
    if value is None and type(None) in options:
        return None
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return coerce(value, option, key)
        except ConfigError as exc:
            errors.append(exc)
    if len(errors) == 1:  # X | None: X's own message says more (a bound, a choice) than the union's
        raise errors[0]
    raise ConfigError(f"recipe key '{key}': expected {_type_name(tp)}, got {type(value).__name__} ({show(value)})")


def __coerce_scalar(value: Any, tp: type, key: str, finite: bool = True) -> Any:
    if tp is float and isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads "1e-4" (no dot) as a string
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < _INT64 else value  # a 300-digit "float" is refused below, not rounded
    if isinstance(value, bool) and tp is not bool:
        raise ConfigError(f"recipe key '{key}': expected {tp.__name__}, got bool ({show(value)})")
    if not isinstance(value, tp):
        raise ConfigError(f"recipe key '{key}': expected {tp.__name__}, got {type(value).__name__} ({show(value)})")
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise ConfigError(f"recipe key '{key}': expected an integer of at most 64 bits, got one of {len(str(abs(value)))} digits")
    if isinstance(value, float) and finite and not math.isfinite(value):
        raise ConfigError(f"recipe key '{key}': expected a finite number, got {show(value)}")
    return value


def check_finite(value: Any, key: str) -> None:
    """No NaN or infinity anywhere in a free-form mapping (``data.generate``): its reader checks the rest."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"recipe key '{key}': expected a finite number, got {show(value)}")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        check_finite(v, f"{key}.{k}" if isinstance(value, dict) else f"{key}[{k}]")
