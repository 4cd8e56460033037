"""YAML loading that remembers line numbers, so every error can name ``file:line``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import FlowValidationError, Location

try:  # the C parser is several times faster; the constructor stays the Python one
    _BaseLoader = yaml.CSafeLoader  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _BaseLoader = yaml.SafeLoader


class LineDict(dict):
    """A mapping from YAML that knows the line of itself and of each key (1-based)."""

    __slots__ = ("line", "key_lines")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line: int | None = None
        self.key_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int | None:
        return self.key_lines.get(key, self.line)


class LineList(list):
    __slots__ = ("line", "item_lines")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.line: int | None = None
        self.item_lines: list[int] = []


class _LineLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found an unhashable key", key_node.start_mark,
            ) from None
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_text(text: str, file: str) -> Any:
    """Parse YAML text; a syntax error becomes a :class:`FlowValidationError` naming file:line."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a safe loader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise FlowValidationError(
            f"the file is not valid YAML: {problem}",
            code="InvalidYaml",
            location=Location(file=file, line=line),
            hint="Fix the YAML syntax at that line (indentation, quotes, a missing ':').",
        ) from None
    except yaml.YAMLError as exc:
        raise FlowValidationError(
            f"the file is not valid YAML: {exc}", code="InvalidYaml", location=Location(file=file)
        ) from None


def load_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlowValidationError(
            "file not found", code="FileNotFound", location=Location(file=str(path))
        ) from None
    except UnicodeDecodeError as exc:
        raise FlowValidationError(
            f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})",
            code="InvalidYaml",
            location=Location(file=str(path)),
            hint="Save the file as UTF-8.",
        ) from None
    return load_yaml_text(text, str(path))


def plain(value: Any) -> Any:
    """Strip the line bookkeeping: plain dicts and lists, for user-visible values."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
