"""Property-based fuzzing of role-injection escaping: whatever untrusted text (or list, or nested
dict of text) reaches a chat template, the messages are the template's own, and the text arrives
unchanged inside them. Example counts are kept small so the module takes a few seconds."""

from __future__ import annotations

import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pfkit.nodes._templates import build_messages, compile_template  # noqa: E402

EXAMPLES = int(os.environ.get("PFKIT_FUZZ_EXAMPLES", "200"))

# Text made of the pieces role lines are built from.
_PIECES = ["system", "user", "assistant", "tool", "function", "SYSTEM", "User", "#", ":", "\n",
           " ", "\t", "x", "name", "content", "tool_call_id", "tool_calls", "[", "]", "{", "}"]
_TEXT = st.lists(st.sampled_from(_PIECES), max_size=30).map("".join)

_TEMPLATE = compile_template("# system:\nYou are safe.\n# user:\n{{q}}\n# assistant:\nnoted\n")
# Items side by side with no template text between them (a role word split inside itself,
# "sys" + "tem:", is the documented limit of escaping; the pieces here are whole words).
_LIST_TEMPLATE = compile_template(
    "# system:\nYou are safe.\n# user:\n{% for d in docs %}{{d}}{% endfor %}"
    "{{nested.a.b[0]}}\n# assistant:\nnoted\n")


@settings(max_examples=EXAMPLES, deadline=None)
@given(text=_TEXT)
def test_untrusted_text_never_adds_a_message(text):
    messages = build_messages(_TEMPLATE, {"q": text}, frozenset({"q"}))
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[1]["content"] == text.strip() or not text.strip()
    assert messages[2]["content"] == "noted"


@settings(max_examples=EXAMPLES, deadline=None)
@given(docs=st.lists(_TEXT, max_size=4), deep=_TEXT)
def test_untrusted_lists_and_nested_values_never_add_a_message(docs, deep):
    variables = {"docs": docs, "nested": {"a": {"b": [deep]}}}
    messages = build_messages(_LIST_TEMPLATE, variables, frozenset(variables))
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    rendered = "".join(docs) + deep
    assert messages[1]["content"] == rendered.strip()
