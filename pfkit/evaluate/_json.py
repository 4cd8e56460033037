"""JSON answers: does the text parse, and does it satisfy a JSON Schema.

The validator covers the keywords structured-output schemas use (type, enum, const,
properties, required, additionalProperties, patternProperties, items, prefixItems,
min/maxItems, uniqueItems, min/maxLength, pattern, minimum, maximum, exclusiveMinimum,
exclusiveMaximum, multipleOf, min/maxProperties, allOf, anyOf, oneOf, not, local ``$ref``
into ``#/$defs`` or ``#/definitions``). Other keywords (``format``, ``$schema``, titles and
descriptions) are accepted and not checked.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?\s*```\s*$", re.DOTALL | re.IGNORECASE)
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def parse_json_answer(text: Any) -> tuple[bool, Any, str | None]:
    """``(ok, value, error)``: a value that is already JSON data passes as it is; text may be
    wrapped in a Markdown code fence, as models often do."""
    if not isinstance(text, str):
        try:
            json.dumps(text)
        except (TypeError, ValueError) as exc:
            return False, None, f"not JSON data: {exc}"
        return True, text, None
    match = _FENCE.match(text)
    body = match.group(1) if match else text
    try:
        return True, json.loads(body), None
    except json.JSONDecodeError as exc:
        return False, None, f"line {exc.lineno} column {exc.colno}: {exc.msg}"


class SchemaError(ValueError):
    """The schema itself is malformed (the evaluator's input, not the answer)."""


def schema_errors(value: Any, schema: Any, *, limit: int = 20) -> list[str]:
    """Every way ``value`` breaks ``schema`` (at most ``limit``), each with its JSON path."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"the schema is not valid JSON: {exc.msg}") from None
    if not isinstance(schema, (dict, bool)):
        raise SchemaError("a schema is a JSON object (or true/false)")
    errors: list[str] = []
    _check(value, schema, "$", schema, errors, limit, 0)
    return errors[:limit]


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        raise SchemaError(f"only local $ref is supported, got {ref!r}")
    node = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise SchemaError(f"$ref {ref!r} points nowhere")
        node = node[part]
    return node


def _check(value: Any, schema: Any, path: str, root: Any, errors: list[str], limit: int,
           depth: int) -> None:
    if len(errors) >= limit:
        return
    if depth > 64:
        raise SchemaError("the schema nests (or refers to itself) more than 64 levels deep")
    if schema is True or schema == {}:
        return
    if schema is False:
        errors.append(f"{path}: no value is allowed here")
        return
    if not isinstance(schema, dict):
        raise SchemaError(f"{path}: a schema must be an object, got {type(schema).__name__}")
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), path, root, errors, limit, depth + 1)
    wanted = schema.get("type")
    if wanted is not None:
        names = wanted if isinstance(wanted, list) else [wanted]
        unknown = [n for n in names if n not in _TYPES]
        if unknown:
            raise SchemaError(f"unknown type {unknown[0]!r} in the schema")
        if not any(_TYPES[n](value) for n in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {_kind(value)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {json.dumps(value)[:80]} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {json.dumps(schema['const'])[:80]}")
    if isinstance(value, str):
        _check_string(value, schema, path, errors)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, path, errors)
    elif isinstance(value, list):
        _check_array(value, schema, path, root, errors, limit, depth)
    elif isinstance(value, dict):
        _check_object(value, schema, path, root, errors, limit, depth)
    for sub in schema.get("allOf", []):
        _check(value, sub, path, root, errors, limit, depth + 1)
    if "anyOf" in schema and not any(_valid(value, s, root, depth) for s in schema["anyOf"]):
        errors.append(f"{path}: matches none of anyOf")
    if "oneOf" in schema:
        matched = sum(_valid(value, s, root, depth) for s in schema["oneOf"])
        if matched != 1:
            errors.append(f"{path}: matches {matched} of oneOf (exactly 1 needed)")
    if "not" in schema and _valid(value, schema["not"], root, depth):
        errors.append(f"{path}: must not match the 'not' schema")


def _valid(value: Any, schema: Any, root: Any, depth: int) -> bool:
    found: list[str] = []
    _check(value, schema, "$", root, found, 1, depth + 1)
    return not found


def _kind(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def _check_string(value: str, schema: dict, path: str, errors: list[str]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: shorter than {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']} characters")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        errors.append(f"{path}: does not match {schema['pattern']!r}")


def _check_number(value: float, schema: dict, path: str, errors: list[str]) -> None:
    checks = [("minimum", lambda b: value < b, "less than"),
              ("maximum", lambda b: value > b, "greater than"),
              ("exclusiveMinimum", lambda b: value <= b, "not greater than"),
              ("exclusiveMaximum", lambda b: value >= b, "not less than")]
    for key, broken, words in checks:
        if key in schema and not isinstance(schema[key], bool) and broken(schema[key]):
            errors.append(f"{path}: {value} is {words} {schema[key]}")
    step = schema.get("multipleOf")
    if step and not math.isclose(value / step, round(value / step), abs_tol=1e-9):
        errors.append(f"{path}: {value} is not a multiple of {step}")


def _check_array(value: list, schema: dict, path: str, root: Any, errors: list[str], limit: int,
                 depth: int) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    if schema.get("uniqueItems"):
        seen = [json.dumps(v, sort_keys=True) for v in value]
        if len(set(seen)) != len(seen):
            errors.append(f"{path}: items are not unique")
    prefix = schema.get("prefixItems", [])
    for i, sub in enumerate(prefix[:len(value)]):
        _check(value[i], sub, f"{path}[{i}]", root, errors, limit, depth + 1)
    items = schema.get("items")
    if isinstance(items, list):  # draft-07 tuple form
        for i, sub in enumerate(items[:len(value)]):
            _check(value[i], sub, f"{path}[{i}]", root, errors, limit, depth + 1)
    elif items is not None:
        for i in range(len(prefix), len(value)):
            _check(value[i], items, f"{path}[{i}]", root, errors, limit, depth + 1)


def _check_object(value: dict, schema: dict, path: str, root: Any, errors: list[str],
                  limit: int, depth: int) -> None:
    for key in schema.get("required", []):
        if key not in value:
            errors.append(f"{path}: missing required property '{key}'")
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(f"{path}: fewer than {schema['minProperties']} properties")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(f"{path}: more than {schema['maxProperties']} properties")
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        where = f"{path}.{key}"
        matched = False
        if key in properties:
            matched = True
            _check(item, properties[key], where, root, errors, limit, depth + 1)
        for pattern, sub in patterns.items():
            if re.search(pattern, key):
                matched = True
                _check(item, sub, where, root, errors, limit, depth + 1)
        if not matched:
            if extra is False:
                errors.append(f"{path}: property '{key}' is not allowed")
            elif isinstance(extra, dict):
                _check(item, extra, where, root, errors, limit, depth + 1)
