"""YAML loading that remembers line numbers, so every error can name ``file:line``."""

from __future__ import annotations

import re
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


# A flow file is small: a document whose aliases expand it past this many values is an
# "alias bomb" (billion laughs), refused before anything walks it.
MAX_EXPANDED_VALUES = 200_000
# Real flow files nest a few levels; deeper values are refused before the (recursive)
# constructor and the later walks over the data could run out of stack.
MAX_DEPTH = 100


class _LineLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Any failure of a value's constructor (``!!int 'y'``, a 5,000-digit integer, the date
        2024-13-45, ...) becomes a YAML error at that value's line."""
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except RecursionError:
            raise yaml.constructor.ConstructorError(
                None, None, "the YAML is nested too deeply", node.start_mark) from None
        except Exception as exc:  # noqa: BLE001 - a constructor's own failure, e.g. ValueError
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read the value {_snippet(node)}: {_reason(exc)}",
                node.start_mark) from None


def _snippet(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        text = str(node.value)
        text = text if len(text) <= 40 else f"{text[:37]}... ({len(text)} characters)"
        tag = node.tag.rsplit(":", 1)[-1]
        return f"{text!r} (tag {tag})" if node.tag.startswith("tag:yaml.org,2002:") else repr(text)
    return f"at {node.tag}"


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "integer string conversion" in text:
        return "the integer has too many digits (at most 4,300)"
    return text if len(text) <= 200 else text[:197] + "..."


def _check_expansion(root: yaml.Node) -> None:
    """Count the values the document would have with every alias expanded (each node once,
    memoised, without recursion); refuse more than MAX_EXPANDED_VALUES, recursive aliases and
    nesting deeper than MAX_DEPTH."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool, int]] = [(root, False, 0)]
    on_path: set[int] = set()
    while stack:
        node, children_done, depth = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            if isinstance(node, yaml.MappingNode):
                total = 1 + sum(sizes[id(k)] + sizes[id(v)] for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                total = 1 + sum(sizes[id(c)] for c in node.value)
            else:
                total = 1
            sizes[key] = total
            if total > MAX_EXPANDED_VALUES:
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"its aliases expand to more than {MAX_EXPANDED_VALUES:,} values (an alias "
                    "bomb?)", node.start_mark)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise yaml.constructor.ConstructorError(
                None, None, "an alias refers to the value that contains it", node.start_mark)
        if depth > MAX_DEPTH:
            raise yaml.constructor.ConstructorError(
                None, None, f"values are nested more than {MAX_DEPTH} levels deep",
                node.start_mark)
        on_path.add(key)
        stack.append((node, True, depth))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.extend(((k, False, depth + 1), (v, False, depth + 1)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((c, False, depth + 1) for c in node.value)


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
    """Parse YAML text; any failure becomes a :class:`FlowValidationError` naming file:line."""
    hint = "Fix the YAML at that line (indentation, quotes, a missing ':', the value's type)."
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a safe loader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise FlowValidationError(
            f"the file is not valid YAML: {problem}",
            code="InvalidYaml", location=Location(file=file, line=line), hint=hint,
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise FlowValidationError(
            f"the file is not valid YAML: it contains the character {what} ({exc.reason})",
            code="InvalidYaml", location=Location(file=file, line=line),
            hint="Remove the control character, or write it as an escape in a quoted string.",
        ) from None
    except yaml.YAMLError as exc:
        raise FlowValidationError(
            f"the file is not valid YAML: {exc}", code="InvalidYaml",
            location=Location(file=file, line=_line_in(str(exc))), hint=hint,
        ) from None
    except RecursionError:
        raise FlowValidationError(
            "the file is not valid YAML: it is nested too deeply", code="InvalidYaml",
            location=Location(file=file, line=1), hint=hint,
        ) from None
    except MemoryError:
        raise FlowValidationError(
            "the file is too large to read", code="InvalidYaml",
            location=Location(file=file, line=1),
        ) from None


def _line_in(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def load_yaml_file(path: Path, *, line: int | None = None, what: str = "file") -> Any:
    """Read and parse a YAML file. ``line`` is where an error about opening it points (the line
    of the key that named this file, in the file that named it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlowValidationError(
            f"{what} not found", code="FileNotFound", location=Location(file=str(path), line=line)
        ) from None
    except UnicodeDecodeError as exc:
        raise FlowValidationError(
            f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})",
            code="InvalidYaml",
            location=Location(file=str(path), line=text_line_of_byte(path, exc.start)),
            hint="Save the file as UTF-8.",
        ) from None
    except (OSError, ValueError) as exc:  # a folder, a name too long, no permission, a NUL
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FlowValidationError(
            f"cannot read {what}: {reason}", code="FileNotFound",
            location=Location(file=_short_path(path), line=line),
        ) from None
    return load_yaml_text(text, str(path))


def text_line_of_byte(path: Path, offset: int) -> int | None:
    try:
        return path.read_bytes()[:offset].count(b"\n") + 1
    except OSError:
        return None


def _short_path(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 300 else f"{text[:150]}...{text[-100:]}"


def plain(value: Any) -> Any:
    """Strip the line bookkeeping: plain dicts and lists, for user-visible values."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
