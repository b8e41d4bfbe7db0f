"""Recipe YAML, read safely and within bounds.

A recipe is a small hand-written text; anything else is refused with a one-line :class:`ConfigError` before it
can cost memory or time: files over 1 MiB, text that is not UTF-8, nesting deeper than 50 levels, aliases that
would expand to more than 100 000 nodes (a "billion laughs") or that contain themselves, duplicate keys, integers
of more than 100 digits. Only plain YAML types are built (a :class:`yaml.SafeLoader`): no tag constructs a Python
object.
"""

from __future__ import annotations

import codecs
import functools
from pathlib import Path
from typing import Any

import yaml

from sciformer.errors import ConfigError

MAX_BYTES = 1 << 20
MAX_DEPTH = 50
MAX_NODES = 100_000
MAX_DIGITS = 100
_MERGE = "tag:yaml.org,2002:merge"


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with a nesting limit, an alias-expansion limit, duplicate-key and long-integer checks.
    ``where`` names the text in messages ("recipe 'x.yaml'", "override 'train.lr=...'")."""

    def __init__(self, stream: str, where: str) -> None:
        super().__init__(stream)
        self.where = where
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # the composer recurses once per level: stop before Python's recursion limit does
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ConfigError(f"{self.where}: nested deeper than {MAX_DEPTH} levels (line {self._line()})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _expanded_size(node, 1, {}, set(), self.where)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:  # `<<: *base` keys may be overridden: that is what merging is for
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise ConfigError(f"{self.where}: duplicate key '{key}' on line {line} (first on line {seen[key]})")
                seen[key] = line
            except TypeError:  # an unhashable key: SafeConstructor's own error says so
                continue
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > MAX_DIGITS:
            raise ConfigError(
                f"{self.where}: an integer of {len(node.value)} digits on line {node.start_mark.line + 1}; recipes take integers of at most {MAX_DIGITS} digits"
            )
        return super().construct_yaml_int(node)

    def _line(self) -> int:
        return self.peek_event().start_mark.line + 1


RecipeLoader.add_constructor("tag:yaml.org,2002:int", RecipeLoader.construct_yaml_int)


def _expanded_size(node: yaml.Node, depth: int, done: dict[int, tuple[int, int]], active: set[int], where: str) -> tuple[int, int]:
    """``(nodes, height)`` of ``node`` with every alias expanded, memoised per node so a billion laughs costs as
    many steps as it has nodes; raises once the expansion passes MAX_NODES or MAX_DEPTH, or an alias contains itself."""
    line = node.start_mark.line + 1
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels once aliases are expanded (line {line})")
    if id(node) in active:
        raise ConfigError(f"{where}: the alias on line {line} refers to a node that contains it (a recursive alias)")
    if id(node) not in done:
        active.add(id(node))
        children = node.value if isinstance(node, yaml.SequenceNode) else ()
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        size, height = 1, 1
        for child in children:
            child_size, child_height = _expanded_size(child, depth + 1, done, active, where)
            size, height = size + child_size, max(height, child_height + 1)
            if size > MAX_NODES:
                raise ConfigError(f"{where}: aliases expand to more than {MAX_NODES} values (line {line}); a recipe is small")
        active.discard(id(node))
        done[id(node)] = size, height
    if depth - 1 + done[id(node)][1] > MAX_DEPTH:
        raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels once aliases are expanded (line {line})")
    return done[id(node)]


def read_yaml(text: str, where: str) -> Any:
    """Parse ``text`` with :class:`RecipeLoader`; every problem is a one-line ConfigError that starts with ``where``."""
    try:
        return yaml.load(text, Loader=functools.partial(RecipeLoader, where=where))  # RecipeLoader is a yaml.SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {_problem(exc)}") from None
    except ValueError as exc:  # a value YAML recognised but Python cannot build, e.g. the date 2024-13-45
        raise ConfigError(f"{where}: cannot read a value: {exc}") from None


def _problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line report as one line: what is wrong and where."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.context + ', ' if exc.context else ''}{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def read_recipe_file(path: Path) -> dict[str, Any]:
    """The raw mapping of the recipe file ``path`` (a readable regular file): at most MAX_BYTES of UTF-8 YAML
    whose top level is a non-empty mapping."""
    where = f"recipe '{path}'"
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{where} is larger than {MAX_BYTES // 2**20} MiB; a recipe is a short YAML file")
    raw = read_yaml(_decode(data, where), where)
    if raw is None or raw == {}:
        raise ConfigError(f"{where} is empty (only comments or blank lines); a recipe sets at least its data and model")
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise ConfigError(
            f"{where}: expected a mapping of sections (data, model, train, tracking, seed, name), got {'an' if kind[0] in 'aeiou' else 'a'} {kind}"
        )
    return raw


def _decode(data: bytes, where: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data:
        raise ConfigError(f"{where} is UTF-16/UTF-32 text or binary (it holds NUL bytes); save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{where} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8") from None
