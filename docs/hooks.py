"""mkdocs hooks: the recipe reference page, generated at build time from the schema in ``sciformer/config.py``, and
the measured results of each model card, quoted from the recorded results (``benchmarks/results/*.json``).

Every recipe key is typed once, in its dataclass annotation (``Literal`` choices, ``Annotated`` bounds), with its
meaning in the comment beside it; this page renders exactly those, so it cannot disagree with what ``sciformer
validate`` accepts. Model keys come from each registered model's constructor signature, the schema the recipe
loader checks them against.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import io
import json
import re
import tokenize
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from mkdocs.structure.files import File

PAGE = "reference/recipes.md"
REPO = Path(__file__).resolve().parents[1]
RESULTS_MARKER = re.compile(r"<!-- results: (\w+) -->")


def on_files(files, config):
    files.append(File.generated(config, PAGE, content=recipe_reference()))
    return files


def on_page_markdown(markdown, page, config, files):
    """A model card's ``<!-- results: NAME -->`` becomes every recorded table row about model NAME."""
    return RESULTS_MARKER.sub(lambda m: _model_results(m.group(1)), markdown)


def _model_results(model: str) -> str:
    spec = importlib.util.spec_from_file_location("results_page", REPO / "benchmarks" / "results_page.py")
    results_page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results_page)
    lines = results_page.rows_for_model(results_page.load_results(), model)
    return "\n".join(lines) if lines else "No recorded results yet: see the [results page](../benchmarks.md)."


def recipe_reference() -> str:
    from sciformer import config

    lines = [
        "# Recipe reference",
        "",
        "Generated from `sciformer/config.py` and the registered models' constructors when the docs are built. "
        "A key marked *forecast* or *operator* belongs to recipes of that task only; the other task's recipes refuse it. "
        "Sizes that come from the data (`" + "`, `".join(config.DATA_FILLED) + "`) are never typed in a recipe.",
        "",
    ]
    for section in dataclasses.fields(config.Recipe):
        cls = section.type if isinstance(section.type, type) else _hints(config.Recipe)[section.name]
        if section.name == "model":
            lines += _model_section()
        elif dataclasses.is_dataclass(cls):
            lines += [f"## `{section.name}`", "", *_doc(cls), *_key_table(cls, prefix=f"{section.name}.")]
    lines += ["## Top-level keys", "", *_key_table(config.Recipe, prefix="", sections=False)]
    return "\n".join(lines) + "\n"


def _key_table(cls: type, prefix: str, sections: bool = True, skip: tuple[str, ...] = ()) -> list[str]:
    hints, comments = _hints(cls), _field_comments(cls)
    rows = ["| key | type | default | task | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name in skip or (not sections and dataclasses.is_dataclass(hints[f.name])):
            continue
        rows.append(f"| `{prefix}{f.name}` | {describe(hints[f.name])} | {_default(f)} | {f.metadata.get('task', 'all')} | {_cell(comments.get(f.name, ''))} |")
    return [*rows, ""]


def _model_section() -> list[str]:
    from sciformer.config import ModelConfig, model_arguments
    from sciformer.registry import get_model, list_models

    intro = "`model.name` picks a registered model or size preset; every key not in this table is a constructor argument."
    lines = ["## `model`", "", intro, ""]
    lines += _key_table(ModelConfig, prefix="model.", skip=("args",))
    for name in list_models():
        cls = get_model(name)
        lines += [f"### `{name}` ({cls.task})", ""]
        if "preset" in vars(cls):
            base = cls.preset_of
            lines += [f"{_cell(cls.__doc__ or '')} Its other keys are those of [`{base}`](#{base}-{cls.task}).", ""]
            continue
        keys, hints = model_arguments(cls)
        parameters = inspect.signature(cls.__init__).parameters
        lines += ["| key | type | default |", "|---|---|---|"]
        for key in keys:
            default = parameters[key].default if key in parameters else False
            shown = "required" if default is inspect.Parameter.empty else _yaml(default)
            lines.append(f"| `model.{key}` | {describe(hints.get(key, Any))} | {shown} |")
        lines.append("")
    return lines


def describe(tp: Any) -> str:
    """A type annotation as a reader of a recipe needs it: choices, bounds, ``null`` for None."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *extras = typing.get_args(tp)
        return describe(base) + "".join(_bounds(e) for e in extras if hasattr(e, "low"))
    if origin is Literal:
        return " \\| ".join(f"`{c!r}`" if isinstance(c, str) else f"`{c}`" for c in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in typing.get_args(tp))
    if origin in (list, tuple, Sequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list of {describe(args[0])}" if args else "list"
    if origin is dict or tp is dict:
        return "mapping"
    if tp is Any or tp is inspect.Parameter.empty:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _bounds(b: Any) -> str:
    low = None if b.low is None else f"{'>' if b.low_open else '≥'} {_number(b.low)}"
    high = None if b.high is None else f"{'<' if b.high_open else '≤'} {_number(b.high)}"
    return " (" + ", ".join(x for x in (low, high) if x) + ")" if low or high else ""


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return _yaml(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return _yaml(f.default_factory())
    return "required"


def _yaml(value: Any) -> str:
    """A default as it would be written in a recipe (``true``, ``null``, ``[2, 2]``)."""
    try:
        return f"`{json.dumps(value)}`"
    except TypeError:
        return f"`{value!r}`"


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _field_comments(cls: type) -> dict[str, str]:
    """The comment on each field's line in the class body (the schema's documentation)."""
    comments: dict[str, str] = {}
    field_on_line: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(inspect.getsource(cls)).readline):
        if token.type == tokenize.NAME and token.start[1] == 4 and token.line.strip().startswith(f"{token.string}:"):
            field_on_line[token.start[0]] = token.string
        elif token.type == tokenize.COMMENT and token.start[0] in field_on_line:
            comments[field_on_line[token.start[0]]] = token.string.lstrip("# ").strip()
    return comments


def _doc(cls: type) -> list[str]:
    doc = inspect.getdoc(cls)
    own = doc and not doc.startswith(f"{cls.__name__}(")  # dataclasses invent a signature docstring
    return [" ".join(doc.split()).replace("``", "`"), ""] if own else []


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
