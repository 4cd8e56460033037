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


# -- malformed files: always a FlowValidationError naming the file and the line -----------------

_FLOW = """inputs:
  q: {type: string}
outputs:
  o: {type: string, reference: "${a.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: t.py}
  inputs: {x: "${inputs.q}"}
"""


def reject_spec(make_flow, yaml_text: str) -> FlowValidationError:
    """Load and plan (no binding): the loader's own checks."""
    folder = make_flow({"flow.dag.yaml": yaml_text, "t.py": TOOL})
    with pytest.raises(FlowValidationError) as info:
        plan(load_flow_spec(folder))
    return info.value


def _bomb(levels: int = 9) -> str:
    lines = ["tags:", "  l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return _FLOW + "\n".join(lines) + "\n"


MALFORMED = {
    "deep nesting": ("inputs: " + "[" * 5000 + "]" * 5000 + "\n", 1),
    "500 levels of nesting": ("inputs:\n  q:\n    type: list\n    default: " + "[" * 500 +
                              "]" * 500 + "\n", 4),
    "5000-digit integer": ("inputs:\n  q: {type: int, default: " + "9" * 5000 + "}\n", 2),
    "invalid date": ("inputs:\n  q: {type: string, default: 2024-13-45}\n", 2),
    "!!int 'y'": ("inputs:\n  q: {type: string, default: !!int 'y'}\n", 2),
    "node type mapping": (_FLOW.replace("type: python", "type: {python: 1}"), 7),
    "source type mapping": (_FLOW.replace("type: code", "type: {code: 1}"), 8),
    "input type mapping": (_FLOW.replace("q: {type: string}", "q: {type: {a: 1}}"), 2),
    "default_variant_id mapping": ("""nodes:
- name: a
  use_variants: true
node_variants:
  a:
    default_variant_id: {x: 1}
    variants:
      v0: {node: {type: python, source: {type: code, path: t.py}}}
""", 6),
    "integer variant id": ("""nodes:
- name: a
  use_variants: true
node_variants:
  a:
    default_variant_id: 5
    variants:
      5: {node: {type: python, source: {type: code, path: t.py}}}
""", 6),
    "5000-character path": (_FLOW.replace("path: t.py", "path: " + "a" * 5000 + ".py"), 8),
    "5000-character include": (_FLOW + "additional_includes: [" + "b" * 5000 + "]\n", 10),
    "5000-character env file": (_FLOW + "environment_variables: " + "c" * 5000 + "\n", 10),
    "source path mapping": (_FLOW.replace("path: t.py", "path: {a: 1}"), 8),
    "alias bomb": (_bomb(), 16),
    "recursive alias": (_FLOW + "tags: &t\n  self: *t\n", 10),
    "control character": (_FLOW + "description: \"x\"\x01\n", 10),
    "huge index in a reference": (_FLOW.replace('"${inputs.q}"', '"${a.output.x[' + "9" * 5000 + ']}"'), 9),
    "integer output name": (_FLOW.replace("  o: {type", "  5: {type"), 4),
    "mapping output type": (_FLOW.replace("o: {type: string,", "o: {type: {a: 1},"), 4),
    "mapping message_format": (_FLOW + "message_format: {a: 1}\n", 10),
    "mapping flow name": (_FLOW + "name: [a]\n", 10),
    "integer environment variable name": (_FLOW + "environment_variables:\n  5: x\n", 11),
}


@pytest.mark.parametrize("case", sorted(MALFORMED), ids=lambda c: c.replace(" ", "_"))
def test_malformed_flow_file_names_file_and_line(make_flow, case):
    text, line = MALFORMED[case]
    folder = make_flow({"flow.dag.yaml": text, "t.py": TOOL})
    with pytest.raises(FlowValidationError) as info:
        plan(load_flow_spec(folder))
    err = info.value
    assert err.location.file == str(folder / "flow.dag.yaml")
    assert err.location.line == line, str(err)
    assert len(str(err)) < 1000  # the 5,000-character values are cut short


def test_malformed_file_is_a_clean_cli_error(make_flow):
    import subprocess
    import sys

    folder = make_flow({"flow.dag.yaml": MALFORMED["!!int 'y'"][0], "t.py": TOOL})
    proc = subprocess.run([sys.executable, "-m", "pfkit", "flow", "validate", "--flow", str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.startswith(f"pfkit: error: {folder / 'flow.dag.yaml'}:2: ")
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


# -- names that become paths ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "my node", "a\\b", "x" * 201,
                                  "nodé"])
def test_unsafe_node_names_are_refused(make_flow, name):
    import json

    text = _FLOW.replace("- name: a", f"- name: {json.dumps(name)}").replace(
        '"${a.output}"', "x")
    err = reject_spec(make_flow, text)
    assert err.code == "InvalidName"
    assert (err.location.line, err.location.field) == (6, "name")
    assert "cannot be used" in err.message and "letters, digits" in err.hint


def test_safe_node_names_load(make_flow):
    text = _FLOW.replace("- name: a", "- name: Summarize-Text_v2.1").replace(
        '"${a.output}"', '"${Summarize-Text_v2.1.output}"')
    folder = make_flow({"flow.dag.yaml": text, "t.py": TOOL})
    assert load_flow_spec(folder).nodes[0].name == "Summarize-Text_v2.1"


def test_unsafe_variant_ids_and_variant_nodes_are_refused(make_flow):
    err = reject_spec(make_flow, """nodes:
- name: a
  use_variants: true
node_variants:
  a:
    default_variant_id: ../v
    variants:
      ../v: {node: {type: python, source: {type: code, path: t.py}}}
""")
    assert err.code == "InvalidName" and err.location.node == "a" and err.location.line == 8
    err = reject_spec(make_flow, """nodes: []
node_variants:
  ../a:
    default_variant_id: v
    variants:
      v: {node: {type: python, source: {type: code, path: t.py}}}
""")
    assert err.code == "InvalidName" and err.location.line == 3


# -- paths that lead outside the flow folder ------------------------------------------------

def test_paths_outside_the_flow_folder_are_recorded_warned_and_refusable(make_flow, tmp_path):
    import warnings

    from pfkit.spec import OutsideFlowFolderWarning, describe_outside_paths, refuse_outside_paths

    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "t.py").write_text(TOOL)
    (tmp_path / "shared" / "lib.py").write_text("X = 1\n")
    outside_secret = tmp_path / "secret.txt"
    outside_secret.write_text("s3cret")
    text = _FLOW.replace("path: t.py", "path: ../shared/t.py") + \
        "additional_includes:\n- ../shared/lib.py\n"
    folder = make_flow({"flow.dag.yaml": text})
    (folder / "data.txt").symlink_to(outside_secret)
    (folder / "inner.txt").write_text("fine")
    (folder / "ok_link.txt").symlink_to(folder / "inner.txt")  # inside: not reported
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = load_flow_spec(folder)
        load_flow_spec(folder)  # warned once per flow file
    found = {(p.field, p.path, p.node, p.line) for p in spec.outside_paths}
    assert found == {("source.path", "../shared/t.py", "a", 8),
                     ("additional_includes", "../shared/lib.py", None, 11),
                     ("symlink", "data.txt", None, None)}
    assert {p.target for p in spec.outside_paths} == {
        str((tmp_path / "shared" / "t.py").resolve()), str((tmp_path / "shared" / "lib.py").resolve()),
        str(outside_secret.resolve())}
    ours = [w for w in caught if issubclass(w.category, OutsideFlowFolderWarning)]
    assert len(ours) == 1 and str(ours[0].message) == describe_outside_paths(spec)
    assert "../shared/t.py" in str(ours[0].message) and "data.txt" in str(ours[0].message)
    with pytest.raises(FlowValidationError) as info:
        refuse_outside_paths(spec)
    err = info.value
    assert err.code == "PathOutsideFlow"
    assert (err.location.node, err.location.field, err.location.line) == ("a", "source.path", 8)
    assert "2 more" in err.message and err.hint
    assert refuse_outside_paths(spec, allow=True) == spec.outside_paths


def test_a_flow_inside_its_folder_has_no_outside_paths(make_flow):
    from pfkit.spec import describe_outside_paths, refuse_outside_paths

    folder = make_flow({"flow.dag.yaml": _FLOW, "t.py": TOOL, "sub/x.txt": "x"})
    spec = load_flow_spec(folder)
    assert spec.outside_paths == () and describe_outside_paths(spec) is None
    assert refuse_outside_paths(spec) == ()


def test_unsafe_connection_names_are_refused(make_flow):
    err = reject_spec(make_flow, """nodes:
- name: chat
  type: llm
  source: {type: code, path: chat.jinja2}
  api: chat
  connection: ../../etc/conn
""")
    assert err.code == "InvalidName" and err.location.field == "connection"
    assert (err.location.node, err.location.line) == ("chat", 6) and "Connection names" in err.hint


def test_an_environment_variables_file_outside_the_folder_is_recorded(make_flow, tmp_path):
    import warnings

    (tmp_path / "env.yaml").write_text("A: '1'\n")
    folder = make_flow({"flow.dag.yaml": _FLOW + "environment_variables: ../env.yaml\n",
                        "t.py": TOOL})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = load_flow_spec(folder)
    assert spec.environment_variables == {"A": "1"}
    assert [(p.field, p.path, p.line) for p in spec.outside_paths] == [
        ("environment_variables", "../env.yaml", 10)]


def test_a_missing_environment_variables_file_points_at_the_flow_file(make_flow):
    err = reject_spec(make_flow, _FLOW + "environment_variables: nope.yaml\n")
    assert err.code == "FileNotFound" and err.location.file.endswith("flow.dag.yaml")
    assert err.location.line == 10 and "nope.yaml" in err.message


def test_mermaid_ids_stay_distinct_and_labels_stay_inside_quotes(make_flow):
    from pfkit.graph import to_mermaid

    folder = make_flow({"flow.dag.yaml": """inputs:
  "a b": {type: string}
  a_b: {type: string}
nodes:
- name: n-1
  type: python
  source: {type: code, path: t.py}
  inputs: {x: "${inputs.a b}"}
- name: n_1
  type: python
  source: {type: code, path: t.py}
  inputs: {x: "${inputs.a_b}", y: "${n-1.output}"}
""", "t.py": TOOL})
    text = to_mermaid(plan(load_flow_spec(folder)))
    ids = [line.split("[")[0].strip() for line in text.splitlines()[1:5]]
    assert len(set(ids)) == 4, text  # 'a b' / 'a_b' and 'n-1' / 'n_1' are not merged
    assert f"{ids[2]} --> {ids[3]}" in text  # n-1 feeds n_1
