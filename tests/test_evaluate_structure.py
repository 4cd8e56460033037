"""JSON answers, schema validation (against the jsonschema package) and classification."""

from __future__ import annotations

import pytest

from pfkit.evaluate._classification import classification_report
from pfkit.evaluate._json import SchemaError, parse_json_answer, schema_errors

SCHEMA = {
    "type": "object",
    "required": ["name", "tags"],
    "properties": {
        "name": {"type": "string", "minLength": 2, "pattern": "^[A-Z]"},
        "age": {"type": "integer", "minimum": 0, "exclusiveMaximum": 150},
        "score": {"type": ["number", "null"], "multipleOf": 0.5},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True,
                 "maxItems": 3},
        "kind": {"const": "person"},
        "address": {"$ref": "#/$defs/address"},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "one": {"oneOf": [{"type": "integer"}, {"minimum": 10}]},
        "nope": {"not": {"type": "string"}},
    },
    "additionalProperties": False,
    "$defs": {"address": {"type": "object", "required": ["city"],
                          "properties": {"city": {"type": "string"}},
                          "additionalProperties": {"type": "string"}}},
}

CASES = [
    {"name": "Ada", "tags": ["a"]},
    {"name": "Ada", "tags": ["a"], "age": 36, "score": 1.5, "kind": "person"},
    {"name": "ada", "tags": []},
    {"name": "A", "tags": []},
    {"tags": ["a"]},
    {"name": "Ada", "tags": ["a", "a"]},
    {"name": "Ada", "tags": ["d"]},
    {"name": "Ada", "tags": ["a", "b", "c", "a"]},
    {"name": "Ada", "tags": [], "age": -1},
    {"name": "Ada", "tags": [], "age": 150},
    {"name": "Ada", "tags": [], "age": 3.5},
    {"name": "Ada", "tags": [], "age": True},
    {"name": "Ada", "tags": [], "score": 0.3},
    {"name": "Ada", "tags": [], "score": None},
    {"name": "Ada", "tags": [], "kind": "cat"},
    {"name": "Ada", "tags": [], "extra": 1},
    {"name": "Ada", "tags": [], "address": {"city": "Paris", "zip": "75001"}},
    {"name": "Ada", "tags": [], "address": {"zip": 75001}},
    {"name": "Ada", "tags": [], "either": 1.5},
    {"name": "Ada", "tags": [], "either": "x"},
    {"name": "Ada", "tags": [], "one": 12},
    {"name": "Ada", "tags": [], "one": 5},
    {"name": "Ada", "tags": [], "nope": "s"},
    [1, 2],
    "text",
    None,
]


@pytest.mark.parametrize("value", CASES)
def test_schema_validation_agrees_with_jsonschema(value):
    jsonschema = pytest.importorskip("jsonschema")
    expected = jsonschema.Draft202012Validator(SCHEMA).is_valid(value)
    errors = schema_errors(value, SCHEMA)
    assert (not errors) == expected, errors
    assert all(e.startswith("$") for e in errors)


def test_bad_schemas_are_reported_as_such():
    with pytest.raises(SchemaError, match="not valid JSON"):
        schema_errors({}, "{oops")
    with pytest.raises(SchemaError, match="unknown type"):
        schema_errors(1, {"type": "float"})
    with pytest.raises(SchemaError, match="points nowhere"):
        schema_errors(1, {"$ref": "#/$defs/missing"})
    with pytest.raises(SchemaError, match="64 levels"):
        schema_errors(1, {"$ref": "#"})
    assert schema_errors(1, '{"type": "integer"}') == []


def test_parse_json_answer():
    assert parse_json_answer('{"a": 1}') == (True, {"a": 1}, None)
    assert parse_json_answer('```json\n{"a": [1, 2]}\n```') == (True, {"a": [1, 2]}, None)
    ok, value, error = parse_json_answer('{"a": }')
    assert not ok and value is None and error.startswith("line 1 column 7")
    assert parse_json_answer({"already": "data"})[0]
    assert not parse_json_answer({"x": object()})[0]


def test_classification_report_by_hand():
    predictions = ["cat", "dog", "cat", "bird", "Dog ", "cat"]
    truths = ["cat", "cat", "cat", "dog", "dog", "bird"]
    report = classification_report(predictions, truths)
    assert report["accuracy"] == pytest.approx(3 / 6)
    cat = report["classes"]["cat"]
    assert (cat["precision"], cat["recall"], cat["support"]) == (2 / 3, 2 / 3, 3)
    dog = report["classes"]["dog"]
    assert (dog["precision"], dog["recall"]) == (1 / 2, 1 / 2)
    bird = report["classes"]["bird"]
    assert (bird["precision"], bird["recall"], bird["f1"]) == (0.0, 0.0, 0.0)
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0.0) / 3)
    assert report["confusion_matrix"] == {"labels": ["bird", "cat", "dog"],
                                          "matrix": [[0, 1, 0], [0, 2, 1], [1, 0, 1]]}
    assert classification_report([], [])["accuracy"] is None
