"""``${...}`` references, parsed once into typed objects.

After :mod:`pfkit.spec`, nothing in pfkit sees a ``"${...}"`` string: node inputs, flow outputs and
``activate.when`` hold :class:`Literal`, :class:`FlowInputRef` or :class:`NodeRef` values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_MAX_INDEX_DIGITS = 18  # a list index past 10**18 cannot exist
_PROPERTY_TOKEN = re.compile(r"\.?(?:(\w+)|\[(\d+)\]|\['([^']*)'\])")


class ReferenceSyntaxError(ValueError):
    """A ``${...}`` string that pfkit (and promptflow) cannot interpret. ``code`` names the kind."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, slots=True)
class FlowInputRef:
    name: str

    def __str__(self) -> str:
        return f"${{inputs.{self.name}}}"


@dataclass(frozen=True, slots=True)
class NodeRef:
    """``${node}``, ``${node.output}`` or ``${node.output.<path>}``; ``path`` holds str keys and int
    indexes. ``text`` is the reference as written, for messages."""

    node: str
    path: tuple[str | int, ...] = ()
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"${{{self.node}.output}}"

    @property
    def property_text(self) -> str:
        """The path as written after ``output.``, e.g. ``a[5]``."""
        parts = self.text[2:-1].split(".", 2)
        return parts[2] if len(parts) == 3 else ""


Reference = Literal | FlowInputRef | NodeRef


def is_reference_text(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def parse_property_path(text: str) -> tuple[str | int, ...]:
    """``a.b[0]['k.x']`` -> ``("a", "b", 0, "k.x")``."""
    path: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _PROPERTY_TOKEN.match(text, pos)
        if not match or match.end() == pos or (pos == 0 and text.startswith(".")):
            raise ReferenceSyntaxError(
                f"cannot parse the property path '{text}' at '{text[pos:]}'; use names, [N] "
                "indexes and ['key'] keys, as in ${node.output.items[0]['key']}",
                "InvalidReferenceProperty",
            )
        name, index, key = match.groups()
        if index is not None and len(index) > _MAX_INDEX_DIGITS:
            raise ReferenceSyntaxError(
                f"the index [{index[:20]}...] in the property path has {len(index)} digits; an "
                f"index has at most {_MAX_INDEX_DIGITS}", "InvalidReferenceProperty")
        path.append(name if name is not None else int(index) if index is not None else key)
        pos = match.end()
    return tuple(path)


def parse_value(value: Any, *, in_flow_output: bool = False) -> Reference:
    """Parse a YAML value of a node input, flow output reference or ``activate.when``.

    A value is a reference only when it is a string that starts with ``${`` and ends with ``}``;
    ``"prefix ${x}"`` stays a literal string, as in promptflow.
    """
    if not is_reference_text(value):
        return Literal(value)
    inner = value[2:-1]
    parts = inner.split(".", 2)
    head = parts[0]
    if head in ("inputs", "flow") and len(parts) > 1:
        # No property access into flow inputs: ${inputs.a.b} names an input literally "a.b".
        return FlowInputRef(inner[len(head) + 1:])
    if not head:
        raise ReferenceSyntaxError(f"'{value}' names no node or input", "InvalidReference")
    if len(parts) == 1:
        return NodeRef(head, (), value)
    if parts[1] != "output":
        if in_flow_output:
            # promptflow silently returns the whole node output here (e.g. ${n.output['k']}).
            return NodeRef(head, (), value)
        raise ReferenceSyntaxError(
            f"'{value}' is not supported: after the node name only '.output' may follow "
            f"(write ${{{head}.output}} or ${{{head}.output.key}})",
            "UnsupportedReference",
        )
    if len(parts) == 2:
        return NodeRef(head, (), value)
    return NodeRef(head, parse_property_path(parts[2]), value)
