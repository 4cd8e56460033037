"""Property-based fuzzing of the flow loader and the ``${...}`` reference parser.

Whatever bytes a flow.dag.yaml holds, loading and planning it either succeeds or raises pfkit's
FlowValidationError (a UserError) naming the file and the line: never another exception, never a
hang. The reference parser returns a reference or raises ReferenceSyntaxError, nothing else.
Example counts are kept small so the module takes a few seconds.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pfkit.errors import UserError  # noqa: E402
from pfkit.graph import plan  # noqa: E402
from pfkit.spec import load_flow_spec  # noqa: E402
from pfkit.spec._references import ReferenceSyntaxError, parse_value  # noqa: E402

# More examples for a long local session: PFKIT_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_spec.py
EXAMPLES = int(os.environ.get("PFKIT_FUZZ_EXAMPLES", "150"))
ROOT = Path(__file__).resolve().parent
SEEDS = sorted((ROOT / "flows").glob("*/flow.dag.yaml"))[:40]
SEED_TEXTS = [p.read_text(encoding="utf-8") for p in SEEDS] or [
    "inputs:\n  q: {type: string}\nnodes:\n- name: a\n  type: python\n"
    "  source: {type: code, path: t.py}\n  inputs: {x: '${inputs.q}'}\n"]

# Fragments that broke loaders before: tags, anchors, flow collections, huge numbers, bad dates,
# path tricks, control characters, references.
FRAGMENTS = [
    "{", "}", "[", "]", ": ", "\n", "\n  ", "\n- ", "- ", "&a ", "*a", "<<: *a", "!!int 'y'",
    "!!float x", "!!binary ???", "!!timestamp 2024-13-45", "2024-02-30", "9" * 5000, "-", "~",
    "null", "true", "'", '"', "\\", "\t", "\x01", "\x00", "\ufeff", "${", "${a.output", "}",
    "${a.output.x[99999999999999999999999]}", "${inputs.}", "${.output}", "../../x", "/etc/passwd",
    "a" * 5000, "{python: 1}", "[1, 2]", "use_variants: true", "node_variants:", "? [a]\n: 1",
    "%YAML 1.1\n---\n", "---\n", "...\n", "#", "|", ">", "&b [*b]",
]


def _mutate(text: str, edits: list[tuple[int, int, int]]) -> str:
    for kind, pos, which in edits:
        pos = pos % (len(text) + 1)
        if kind == 0:  # insert a fragment
            text = text[:pos] + FRAGMENTS[which % len(FRAGMENTS)] + text[pos:]
        elif kind == 1:  # delete a few characters
            text = text[:pos] + text[pos + 1 + which % 8:]
        else:  # duplicate a slice (repeated keys, deeper nesting)
            text = text[:pos] + text[pos:pos + which % 40] + text[pos:]
    return text


_TOOL = "from promptflow.core import tool\n\n@tool\ndef f(x=None, y=None):\n    return x\n"


def _check_file(folder: Path, text: str) -> None:
    flow_file = folder / "flow.dag.yaml"
    flow_file.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        plan(load_flow_spec(folder))
    except UserError as exc:
        assert exc.location.file, exc
        assert Path(exc.location.file).name in {"flow.dag.yaml", *[p.name for p in folder.iterdir()]}
        if exc.location.file == str(flow_file):
            assert exc.location.line is not None, exc
        str(exc), exc.to_dict()  # printable, serialisable


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flow"
        path.mkdir()
        for name in ("t.py", "p.py", "hello.py", "echo.py"):
            (path / name).write_text(_TOOL)
        yield path


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, len(SEED_TEXTS) - 1),
       edits=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 10**4)),
                      min_size=1, max_size=6))
def test_mutated_flow_files_only_raise_located_user_errors(folder, seed, edits):
    _check_file(folder, _mutate(SEED_TEXTS[seed], edits))


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
    st.sampled_from(["${inputs.q}", "${a.output}", "${a.output.x[0]}", "${a}", "python", "code",
                     "llm", "prompt", "chat", "t.py", "../t.py", "string", "a", "v0"]),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.integers()),
                                                 inner, max_size=4)), max_leaves=12)
_KEYS = ["inputs", "outputs", "nodes", "node_variants", "environment_variables",
         "additional_includes", "name", "type", "message_format", "tags", "description"]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=st.dictionaries(st.sampled_from(_KEYS), _values, max_size=5),
       node=st.dictionaries(st.sampled_from(["name", "type", "source", "inputs", "api", "activate",
                                             "use_variants", "aggregation", "connection"]),
                            _values, max_size=6))
def test_wrong_shapes_in_every_key_only_raise_located_user_errors(folder, doc, node):
    doc = dict(doc)
    doc.setdefault("nodes", [node])
    _check_file(folder, yaml.safe_dump(doc, allow_unicode=True))


_REF_TEXT = st.lists(st.sampled_from(list("ab_.[]'0123456789${}:-x ") + ["output", "inputs"]),
                    max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(inner=_REF_TEXT, wrap=st.booleans(), in_output=st.booleans())
def test_reference_parser_returns_a_reference_or_a_syntax_error(inner, wrap, in_output):
    text = "${" + inner + "}" if wrap else inner
    try:
        ref = parse_value(text, in_flow_output=in_output)
    except ReferenceSyntaxError as exc:
        assert exc.code and str(exc)
        return
    assert type(ref).__name__ in {"Literal", "FlowInputRef", "NodeRef"}


def test_reference_parser_handles_huge_input_quickly():
    for text in ["${a.output." + "x." * 50_000 + "y}", "${a.output.x[" + "9" * 100_000 + "]}",
                 "${a.output." + "['k']" * 20_000 + "}", "${" + "." * 100_000 + "}"]:
        try:
            parse_value(text)
        except ReferenceSyntaxError:
            pass
