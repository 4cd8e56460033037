"""Value types of flow inputs and tool parameters, and the conversions promptflow applies."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InputError, Location


def parse_value_type(type_name: str, value: Any) -> Any:
    """Convert ``value`` to a flow value type (``int``, ``double``, ``bool``, ``string``,
    ``list``, ``object``; others pass through). Raises ValueError / json.JSONDecodeError."""
    if type_name == "int":
        return int(value)
    if type_name == "double":
        return float(value)
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"invalid boolean value {value!r}")
    if type_name == "string":
        return str(value)
    if type_name == "list":
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, list):
            raise ValueError(f"invalid list value {value!r}")
        return value
    if type_name == "object":
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value  # it may really be a string
    return value


def coerce_flow_input(name: str, type_name: str, value: Any, *, line: int | None = None) -> Any:
    """Convert one flow input; a failure names the input, the line and the expected type (the
    message is promptflow's, so records match)."""
    info = f"'{name}'" if line is None else f"'{name}' in line {line} of input data"
    try:
        return parse_value_type(type_name, value)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"Failed to parse the flow input. The value for flow input {info} was interpreted as "
            f"JSON string since its type is '{type_name}'. However, the value '{value}' is invalid "
            f"for JSON parsing. Error details: (JSONDecodeError) {exc}. Please make sure your "
            "inputs are properly formatted.",
            code="InputParseError", location=Location(field=f"inputs.{name}", row=line),
            hint=f"Give a JSON {type_name} such as {'[1, 2]' if type_name == 'list' else '{}'}.",
        ) from None
    except (TypeError, ValueError):
        raise InputError(
            f"The input for flow is incorrect. The value for flow input {info} does not match the "
            f"expected type '{type_name}'. Please change flow input type or adjust the input "
            "value in your input data.",
            code="InputTypeError", location=Location(field=f"inputs.{name}", row=line),
            hint=f"The value was {_short(value)}.",
        ) from None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
