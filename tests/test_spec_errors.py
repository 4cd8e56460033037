"""Invalid flows are rejected before anything runs, naming file, line, node and field."""

from __future__ import annotations

import pytest

from pfkit._flows import load_bound_flow
from pfkit.errors import FlowValidationError
from pfkit.graph import plan
from pfkit.spec import FlowInputRef, Literal, NodeRef, load_flow_spec

TOOL = "from promptflow.core import tool\n\n@tool\ndef f(x=None, y=None):\n    return x\n"


def reject(make_flow, yaml_text: str, files: dict | None = None) -> FlowValidationError:
    folder = make_flow({"flow.dag.yaml": yaml_text, "t.py": TOOL, **(files or {})})
    with pytest.raises(FlowValidationError) as info:
        load_bound_flow(folder)
    return info.value


def test_yaml_syntax_error_names_the_line(make_flow):
    err = reject(make_flow, "inputs:\n  x:\n    type: string\nnodes:\n- name: a\n  type: [python\n")
    assert err.code == "InvalidYaml"
    assert err.location.file.endswith("flow.dag.yaml")
    assert err.location.line in (6, 7)


def test_duplicate_yaml_key_is_an_error(make_flow):
    err = reject(make_flow, "inputs: {}\ninputs: {}\n")
    assert err.code == "InvalidYaml" and "duplicate key" in err.message


def test_duplicate_node_names_point_at_the_second_node(make_flow):
    err = reject(make_flow, """
nodes:
- name: a
  type: python
  source: {type: code, path: t.py}
- name: a
  type: python
  source: {type: code, path: t.py}
""")
    assert err.code == "DuplicateNodeName"
    assert err.location.node == "a" and err.location.line == 6
    assert err.hint


def test_cycle_names_the_nodes(make_flow):
    err = reject(make_flow, """
nodes:
- name: a
  type: python
  source: {type: code, path: t.py}
  inputs: {x: "${c.output}"}
- name: b
  type: python
  source: {type: code, path: t.py}
  inputs: {x: "${a.output}"}
- name: c
  type: python
  source: {type: code, path: t.py}
  inputs: {x: "${b.output}"}
""")
    assert err.code == "NodeCircularDependency"
    assert "a -> c -> b -> a" in err.message or all(n in err.message for n in "abc")


def test_unknown_node_reference_names_the_field(make_flow):
    err = reject(make_flow, """
nodes:
- name: a
  type: python
  source: {type: code, path: t.py}
  inputs:
    x: ${nope.output}
""")
    assert err.code == "NodeReferenceNotFound"
    assert (err.location.node, err.location.field, err.location.line) == ("a", "inputs.x", 3)


def test_unknown_flow_input(make_flow):
    err = reject(make_flow, """
inputs:
  q: {type: string}
nodes:
- name: a
  type: python
  source: {type: code, path: t.py}
  inputs: {x: "${inputs.question}"}
""")
    assert err.code == "InputReferenceNotFound" and "question" in err.message and "q" in err.hint


def test_missing_source_file(make_flow):
    err = reject(make_flow, """
nodes:
- name: a
  type: python
  source: {type: code, path: missing.py}
""")
    assert err.code == "InvalidSource" and err.location.field == "source.path"


@pytest.mark.parametrize("script,code", [
    ("def f():\n    return 1\n", "NoToolDefined"),
    ("from promptflow.core import tool\n@tool\ndef f():\n    pass\n@tool\ndef g():\n    pass\n",
     "MultipleToolsDefined"),
    ("def f(:\n", "PythonParsingError"),
    ("import not_a_real_module_xyz\n", "PythonLoadError"),
])
def test_bad_scripts(make_flow, script, code):
    err = reject(make_flow, """
nodes:
- name: a
  type: python
  source: {type: code, path: s.py}
""", {"s.py": script})
    assert err.code == code and err.location.node == "a"


def test_bad_activate_and_api(make_flow):
    err = reject(make_flow, """
nodes:
- name: a
  type: python
  source: {type: code, path: t.py}
  activate: {when: "${inputs.x}"}
""")
    assert err.code == "InvalidActivateConfig" and "'is'" in err.message
    err = reject(make_flow, """
nodes:
- name: a
  type: llm
  source: {type: code, path: p.jinja2}
  connection: c
  api: embeddings
""", {"p.jinja2": "user:\nhi"})
    assert err.code == "APINotFound" and err.location.field == "api"


def test_template_variable_colliding_with_parameter(make_flow):
    err = reject(make_flow, """
nodes:
- name: p
  type: prompt
  source: {type: code, path: p.jinja2}
  inputs: {template: x}
""", {"p.jinja2": "{{template}}"})
    assert err.code == "NodeInputValidationError" and "template" in err.message


def test_aggregation_reference_rules(make_flow):
    err = reject(make_flow, """
nodes:
- name: agg
  type: python
  source: {type: code, path: t.py}
  aggregation: true
- name: line
  type: python
  source: {type: code, path: t.py}
  inputs: {x: "${agg.output}"}
""")
    assert err.code == "InvalidNodeReference" and err.location.node == "line"


def test_unsupported_reference_forms(make_flow):
    err = reject(make_flow, """
nodes:
- name: a
  type: python
  source: {type: code, path: t.py}
- name: b
  type: python
  source: {type: code, path: t.py}
  inputs: {x: "${a.output['k']}"}
""")
    assert err.code == "UnsupportedReference" and err.location.field == "inputs.x"


def test_references_are_parsed_once_into_objects(make_flow):
    folder = make_flow({"flow.dag.yaml": """
inputs:
  x: {type: string}
outputs:
  o: {type: string, reference: "${b.output.d['k.x'][0]}"}
nodes:
- name: b
  type: python
  source: {type: code, path: t.py}
  inputs:
    x: ${flow.x}
    y: prefix ${inputs.x}
    z: ${b2}
- name: b2
  type: python
  source: {type: code, path: t.py}
""", "t.py": TOOL})
    spec = load_flow_spec(folder)
    node = spec.node("b")
    assert node.inputs["x"] == FlowInputRef("x")
    assert node.inputs["y"] == Literal("prefix ${inputs.x}")
    assert isinstance(node.inputs["z"], NodeRef) and node.inputs["z"].path == ()
    assert spec.outputs["o"].reference.path == ("d", "k.x", 0)
    graph = plan(spec)
    assert [n.name for n in graph.nodes] == ["b2", "b"]  # stable topological order


def test_variant_errors(make_flow):
    folder = make_flow({"flow.dag.yaml": """
nodes:
- name: a
  use_variants: true
node_variants:
  a:
    default_variant_id: v0
    variants:
      v0: {node: {type: python, source: {type: code, path: t.py}}}
""", "t.py": TOOL})
    with pytest.raises(FlowValidationError) as info:
        load_bound_flow(folder, variant="${a.v9}")
    assert info.value.code == "InvalidVariant" and "v0" in info.value.hint
