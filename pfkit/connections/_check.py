"""A connection given to a tool parameter is checked against the parameter's annotation
before anything runs, as promptflow's tool resolver does (same message)."""

from __future__ import annotations

import typing
from typing import Any

from ..errors import Location, UserError
from ._types import CustomConnection, CustomStrongTypeConnection


class ConnectionTypeError(UserError):
    default_code = "NodeInputValidationError"


def accepted_types(annotation: Any) -> list[type]:
    """The connection classes an annotation names (``X``, ``Optional[X]``, ``X | Y``)."""
    if annotation is None or annotation is typing.Any:
        return []
    if typing.get_origin(annotation) is typing.Union or type(annotation).__name__ == "UnionType":
        found: list[type] = []
        for arg in typing.get_args(annotation):
            found.extend(accepted_types(arg))
        return found
    if isinstance(annotation, type) and annotation.__name__.endswith("Connection"):
        return [annotation]
    return []


def check_connection_type(conn: Any, annotation: Any, *, node: str, input: str,  # noqa: A002
                          location: Location | None = None) -> Any:
    """``conn`` when its type is one the annotation accepts (a custom connection becomes the
    tool's own ``CustomStrongTypeConnection`` subclass); otherwise a UserError worded as
    promptflow's: ``Input 'conn' for node 'n' of type 'OpenAIConnection' is not supported,
    valid types ['AzureOpenAIConnection'].``"""
    accepted = accepted_types(annotation)
    if not accepted:
        return conn
    given = type(conn).__name__
    for cls in accepted:
        if cls.__name__ == given or (isinstance(conn, cls)):
            return conn
    for cls in accepted:
        strong = issubclass(cls, CustomStrongTypeConnection) or (
            cls.__name__ != "CustomStrongTypeConnection"
            and any(base.__name__ == "CustomStrongTypeConnection" for base in cls.__mro__[1:]))
        if strong and isinstance(conn, CustomConnection):
            try:
                return cls(configs=dict(conn.configs), secrets=dict(conn.secrets), name=conn.name)
            except TypeError:
                return cls(configs=dict(conn.configs), secrets=dict(conn.secrets))
    names = [cls.__name__ for cls in accepted]
    raise ConnectionTypeError(
        f"Input '{input}' for node '{node}' of type {given!r} is not supported, valid types "
        f"{names}.", location=location or Location(node=node, field=f"inputs.{input}"),
        hint=f"Give the node a connection of type {' or '.join(names)}, or change the "
             "parameter's annotation.")
