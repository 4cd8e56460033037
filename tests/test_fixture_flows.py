"""pfkit against promptflow 1.18.5 on the golden fixture flows in tests/flows.

Each valid case runs every line through pfkit and compares, line by line, the status, the
outputs, the error message and every node's status with what promptflow produced on the same
flow (expected.json, written by tests/flows/regenerate_expected.py). Aggregation metrics, node
statuses and outputs are compared too. LLM nodes talk to the deterministic EchoModel, which
answers with the exact request it received, so equal outputs mean equal requests.

Each invalid case must be rejected by pfkit before any line runs, with an error whose code is
pfkit's name for what promptflow reported and which names the file (and node, where there is one).
"""

from __future__ import annotations

import pytest
from fixture_cases import fixture_connection, load_cases, normalise, run_case, same

from pfkit._flows import load_bound_flow
from pfkit.errors import PfkitError
from pfkit.testing import EchoModel

CASES = load_cases()
VALID = [c for c in CASES if not c.invalid]
INVALID = [c for c in CASES if c.invalid]

# promptflow's error type (or, for its catch-all ResolveToolError, the inner cause) -> pfkit code.
PFKIT_CODE = {
    "invalid_activate_refs_unknown_node": "NodeReferenceNotFound",
    "invalid_activate_when_without_is": "InvalidActivateConfig",
    "invalid_aggregation_activate_refs_normal": "InvalidNodeReference",
    "invalid_bracket_reference_in_node_input": "UnsupportedReference",
    "invalid_cycle_three_nodes": "NodeCircularDependency",
    "invalid_cycle_two_nodes": "NodeCircularDependency",
    "invalid_duplicate_node_names": "DuplicateNodeName",
    "invalid_literal_conversion": "NodeInputValidationError",
    "invalid_llm_missing_api": "InvalidFlowSchema",
    "invalid_llm_template_var_collides_param": "NodeInputValidationError",
    "invalid_llm_wrong_api": "APINotFound",
    "invalid_missing_connection": "ConnectionNotFound",
    "invalid_missing_default_variant_id": "InvalidFlowSchema",
    "invalid_missing_input_type": "InvalidFlowSchema",
    "invalid_missing_source_file": "InvalidSource",
    "invalid_no_tool_in_script": "NoToolDefined",
    "invalid_node_without_source": "InvalidSource",
    "invalid_non_output_reference": "UnsupportedReference",
    "invalid_normal_node_refs_aggregation": "InvalidNodeReference",
    "invalid_output_refs_missing_node": "OutputReferenceNotFound",
    "invalid_output_without_reference": "EmptyOutputReference",
    "invalid_prompt_reserved_variable": "NodeInputValidationError",
    "invalid_script_import_error": "PythonLoadError",
    "invalid_script_syntax_error": "PythonParsingError",
    "invalid_self_reference": "NodeCircularDependency",
    "invalid_two_tools_in_script": "MultipleToolsDefined",
    "invalid_unknown_flow_input": "InputReferenceNotFound",
    "invalid_unknown_input_type": "InputTypeNotSupported",
    "invalid_unknown_node_reference": "NodeReferenceNotFound",
    "invalid_unknown_node_type": "InvalidNodeType",
    # promptflow fails every line with a TypeError; pfkit rejects the flow before running it.
    "invalid_unknown_tool_param": "NodeInputValidationError",
    "invalid_use_variants_without_node_variants": "InvalidFlowSchema",
    "invalid_variant_not_found": "InvalidVariant",
    "invalid_vision_template_var_collides_param": "NodeInputValidationError",
    "invalid_yaml_syntax": "InvalidYaml",
}


def test_there_are_enough_fixtures():
    assert len(VALID) >= 20 and len(INVALID) >= 20
    assert all(c.expected for c in CASES), [c.name for c in CASES if not c.expected]


# Cases where pfkit deliberately differs from promptflow 1.18.5 (each checked by its own test).
KNOWN_DIFFERENCES = {
    # promptflow's llm node sends "![image](Image(<hash>))" as text; pfkit sends the image as an
    # image_url part (what the template's author meant): tests/test_images.py checks it.
    "image_llm_node_template",
}


@pytest.mark.parametrize("case", [c for c in VALID if c.name not in KNOWN_DIFFERENCES],
                         ids=lambda c: c.name)
def test_valid_flow_matches_promptflow(case):
    if case.server:
        from pfkit.testing import TestServer

        with TestServer() as server:
            _, (lines, aggregation) = run_case(case, server)
            requests = [{"path": r.path, "body": r.body} for r in server.requests]
    else:
        _, (lines, aggregation) = run_case(case)
        requests = None
    if "requests" in case.expected:
        assert requests == case.expected["requests"]
    expected_lines = case.expected["lines"]
    assert len(lines) == len(expected_lines)
    for got, want in zip(lines, expected_lines, strict=True):
        where = f"line {got.line_number}"
        assert got.status == want["status"], (where, got.error, want["error"])
        assert same(normalise(got.outputs), want["output"]), (where, got.outputs, want["output"])
        if want["error"]:
            assert got.error["message"] == want["error"]["message"], where
        assert got.node_statuses() == want["nodes"], where
    want_agg = case.expected.get("aggregation")
    if want_agg is None:
        assert aggregation is None or not aggregation.node_runs
        return
    assert same(normalise(aggregation.metrics), want_agg["metrics"])
    assert {k: r.status for k, r in aggregation.node_runs.items()} == want_agg["nodes"]
    if want_agg.get("outputs") is not None:
        assert same(normalise(aggregation.outputs), want_agg["outputs"])
    assert (aggregation.error or {}).get("message") == (want_agg.get("error") or {}).get("message")


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.name)
def test_invalid_flow_is_rejected_before_running(case):
    if case.expected.get("promptflow_rejects") is False:
        # promptflow accepts this shape; pfkit must accept it too.
        load_bound_flow(case.folder, variant=case.variant, models={"echo": EchoModel(), "echo_azure": EchoModel("azure_openai")},
                        connections=fixture_connection)
        return
    assert case.expected["error"], "promptflow rejected this flow"
    with pytest.raises(PfkitError) as info:
        load_bound_flow(case.folder, variant=case.variant, models={"echo": EchoModel(), "echo_azure": EchoModel("azure_openai")},
                        connections=fixture_connection)
    err = info.value
    assert err.code == PFKIT_CODE[case.name], str(err)
    assert err.location.file and err.location.file.endswith("flow.dag.yaml")
    assert err.message and "Traceback" not in str(err)
