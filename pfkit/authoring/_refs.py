"""What node inputs are made of in code: references to flow inputs and node outputs."""

from __future__ import annotations

import re
from typing import Any

_IDENT = re.compile(r"^\w+$")


class Ref:
    """A ``${...}`` reference: ``flow.inputs.question`` or ``node.output`` (index it for a part
    of the output: ``node.output["label"]``, ``node.output[0]``)."""

    __slots__ = ("expr",)

    def __init__(self, expr: str) -> None:
        self.expr = expr

    def __str__(self) -> str:
        return self.expr

    def __repr__(self) -> str:
        return f"Ref({self.expr!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.expr == self.expr

    def __hash__(self) -> int:
        return hash(self.expr)


class InputRef(Ref):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__(f"${{inputs.{name}}}")
        self.name = name


class OutputRef(Ref):
    """``${node.output}`` and its parts."""

    __slots__ = ("node", "path")

    def __init__(self, node: str, path: str = "") -> None:
        super().__init__(f"${{{node}.output{path}}}")
        self.node = node
        self.path = path

    def __getitem__(self, key: Any) -> OutputRef:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"a part of a node output is named by a key or an index, not "
                            f"{type(key).__name__}")
        if isinstance(key, int):
            if key < 0:
                raise ValueError("promptflow references take indexes from 0 (no negative index)")
            return OutputRef(self.node, f"{self.path}[{key}]")
        if _IDENT.match(key):
            return OutputRef(self.node, f"{self.path}.{key}")
        if "'" in key or "]" in key:
            raise ValueError(f"the key {key!r} cannot be written in a promptflow reference")
        return OutputRef(self.node, f"{self.path}['{key}']")


def to_yaml_value(value: Any, *, where: str) -> Any:
    """A node input, output reference or activate value as the flow file writes it."""
    from ._builder import Node

    if isinstance(value, Node):
        return value.output.expr
    if isinstance(value, Ref):
        return value.expr
    if isinstance(value, (list, tuple)):
        items = [to_yaml_value(v, where=where) for v in value]
        _no_nested_refs(value, where)
        return items
    if isinstance(value, dict):
        _no_nested_refs(value, where)
        return {str(k): to_yaml_value(v, where=where) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"{where}: {type(value).__name__} values cannot be written into a flow file "
                    "(use text, numbers, booleans, lists, dicts, or a reference)")


def _no_nested_refs(value: Any, where: str) -> None:
    from ._builder import Node

    items = value.values() if isinstance(value, dict) else value
    for item in items:
        if isinstance(item, (Ref, Node)):
            raise TypeError(f"{where}: a reference inside a list or dict is not resolved by "
                            "promptflow (only a whole input can be a reference); add a python "
                            "node that builds the list or dict")
