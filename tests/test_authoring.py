"""Building flows in Python (pfkit.authoring): the saved folder, validation with the flow
loader's own messages pointed at the Python line, round trips, and the notebook helpers on
pfkit.Flow (run, evaluate, compare, graph) over the real run store."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pfkit
from pfkit.authoring import FlowBuilder, Metrics, tool_script
from pfkit.errors import FlowValidationError, UserError
from pfkit.runs import LocalRunStore
from pfkit.spec import load_flow_spec
from pfkit.testing import EchoModel

ROOT = Path(__file__).resolve().parent.parent
LABELS = ("positive", "negative")


def _squash(text):
    return re.sub(r"\s+", " ", text).strip()


@pfkit.tool
def tidy(text: str) -> str:
    """Whitespace collapsed; uses a helper, a module and a constant of this file."""
    return _squash(text)


def first_label(reply: str) -> str:
    for word in reply.lower().replace('"', " ").split():
        if word.strip(".,:") in LABELS:
            return word.strip(".,:")
    return "unknown"


def count_words(text: str) -> int:
    return len(text.split())


def mean_words(counts: list) -> dict:
    values = [c for c in counts if c is not None]
    pfkit.log_metric("mean_words", sum(values) / len(values))
    return {"n": len(values)}


@pytest.fixture
def session(tmp_path):
    s = pfkit.Session(store=LocalRunStore(tmp_path / "home"), models={"*": EchoModel()})
    yield s
    s.close()


def sample_flow() -> FlowBuilder:
    flow = FlowBuilder("sample")
    question = flow.input("question", str)
    flow.input("long_answers", bool, default=False)
    clean = flow.python(tidy, text=question)
    prompt = flow.prompt("make_prompt", "Question: {{q}}", q=clean)
    answer = flow.llm("answer", "system:\nBe brief.\nuser:\n{{text}}", connection="echo",
                      text=prompt, max_tokens=8, temperature=0)
    answer.variant("chatty", "system:\nBe chatty.\nuser:\n{{text}}", temperature=0.5)
    words = flow.python(count_words, text=clean, activate=(flow.inputs.long_answers, True))
    flow.python(mean_words, counts=words, aggregation=True)
    flow.output("answer", answer)
    flow.output("clean", clean.output)
    flow.output("words", words)
    return flow


def test_saved_folder_holds_the_flow_file_scripts_and_templates(tmp_path):
    folder = sample_flow().save(tmp_path / "sample")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["answer.jinja2", "answer__chatty.jinja2", "count_words.py", "flow.dag.yaml",
                     "make_prompt.jinja2", "mean_words.py", "tidy.py"]
    script = (folder / "tidy.py").read_text()
    assert script.startswith("from promptflow.core import tool\nimport re\n")
    assert "def _squash(text):" in script and "@tool\ndef tidy(text: str) -> str:" in script
    assert "@pfkit.tool" not in script
    mean = (folder / "mean_words.py").read_text()  # pfkit.log_metric becomes promptflow's
    assert mean.startswith("from promptflow.core import log_metric, tool\n\n\n@tool\n")
    assert '    log_metric("mean_words", sum(values) / len(values))' in mean and "pfkit" not in mean
    labels = tool_script(first_label)
    assert "LABELS = ('positive', 'negative')" in labels
    spec = load_flow_spec(folder)
    assert [n.name for n in spec.nodes] == ["tidy", "make_prompt", "answer", "count_words",
                                            "mean_words"]
    assert spec.node("answer").use_variants
    assert set(spec.node_variants["answer"].variants) == {"variant_0", "chatty"}
    assert spec.node("count_words").activate is not None
    assert spec.node("mean_words").aggregation
    assert (folder / "answer__chatty.jinja2").read_text().startswith("system:\nBe chatty.")


def test_the_saved_tool_script_runs_on_its_own(tmp_path):
    folder = sample_flow().save(tmp_path / "sample")
    code = (f"import sys; sys.path.insert(0, {str(folder)!r})\n"
            "from pfkit._compat.promptflow_shim import install; install()\n"  # as pfkit's loader
            "from tidy import tidy\nprint(tidy('  a   b '))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "a b"


def test_built_flow_runs_like_the_saved_folder(tmp_path, session):
    built = sample_flow().build(session=session)
    outputs = built(question="  What   is  it? ")
    assert outputs["clean"] == "What is it?"
    assert outputs["words"] is None  # activate false: bypassed
    sent = json.loads(outputs["answer"])
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Question: What is it?"}]
    result = built.test(question="one two three", long_answers=True)
    assert result.outputs["words"] == 3 and result.metrics == {"mean_words": 3.0}
    folder = sample_flow().save(tmp_path / "sample")
    loaded = pfkit.load_flow(folder, session=session, variant="${answer.chatty}")
    assert json.loads(loaded(question="x")["answer"])["params"]["temperature"] == 0.5


def test_round_trip_gives_the_same_files(tmp_path):
    first = sample_flow().save(tmp_path / "a")
    second = FlowBuilder.from_folder(first).save(tmp_path / "b")
    third = FlowBuilder.from_folder(second).save(tmp_path / "c")
    for folder in (second, third):
        assert _files(folder) == _files(first)


def test_an_example_folder_is_saved_unchanged_comments_included(tmp_path):
    source = ROOT / "flows" / "review_sentiment"
    copy = FlowBuilder.from_folder(source).save(tmp_path / "copy")
    assert _files(copy) == _files(source)


def test_a_loaded_folder_can_be_extended(tmp_path, session):
    builder = FlowBuilder.from_folder(ROOT / "flows" / "review_sentiment")
    builder.python(count_words, text=builder.node("label"))
    builder.output("label_words", builder.node("count_words"), type="int")
    folder = builder.save(tmp_path / "extended")
    text = (folder / "flow.dag.yaml").read_text()
    assert "count_words" in text and "${label.output}" in text
    assert "label_words" in [o for o in load_flow_spec(folder).outputs]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".promptflow" not in p.parts
            and "__pycache__" not in p.parts}


def _same_as_file(make_flow, yaml_text: str) -> FlowValidationError:
    with pytest.raises(FlowValidationError) as caught:
        folder = make_flow({"flow.dag.yaml": yaml_text, "tidy.py": tool_script(tidy)})
        from pfkit.graph import plan

        plan(load_flow_spec(folder))
    return caught.value


def test_duplicate_node_is_refused_with_the_loaders_message_at_the_python_line(make_flow):
    flow = FlowBuilder("dup")
    q = flow.input("question", str)
    flow.python(tidy, text=q)
    line = sys._getframe().f_lineno + 1
    flow.python(tidy, text=q)
    with pytest.raises(FlowValidationError) as caught:
        flow.validate()
    error = caught.value
    assert error.code == "DuplicateNodeName"
    assert error.location.file == __file__ and error.location.line == line
    assert error.location.node == "tidy"
    from_file = _same_as_file(make_flow, flow.to_yaml())
    assert (error.code, error.message, error.hint) == (from_file.code, from_file.message,
                                                      from_file.hint)


def test_unknown_references_are_refused_like_in_a_flow_file(make_flow):
    flow = FlowBuilder("refs")
    flow.input("question", str)
    line = sys._getframe().f_lineno + 1
    flow.python(tidy, text="${inputs.qestion}")
    with pytest.raises(FlowValidationError) as caught:
        flow.save(make_flow({}, name="unused"), overwrite=True)
    assert caught.value.code == "InputReferenceNotFound"
    assert caught.value.location.line == line and caught.value.location.field == "inputs.text"
    assert caught.value.message == _same_as_file(make_flow, flow.to_yaml()).message

    cyclic = FlowBuilder("cycle")
    cyclic.python(tidy, name="a", text="${b.output}")
    cyclic.python(tidy, name="b", text="${a.output}")
    with pytest.raises(FlowValidationError) as caught:
        cyclic.validate()
    assert caught.value.code == "NodeCircularDependency"
    assert "a -> b -> a" in caught.value.message

    outputs = FlowBuilder("outputs")
    line = sys._getframe().f_lineno + 1
    outputs.output("x", "${nowhere.output}")
    with pytest.raises(FlowValidationError) as caught:
        outputs.validate()
    assert caught.value.code == "OutputReferenceNotFound" and caught.value.location.line == line


def test_a_bad_node_name_never_becomes_a_path(tmp_path):
    flow = FlowBuilder("names")
    flow.prompt("../escape", "hi")
    with pytest.raises(FlowValidationError) as caught:
        flow.save(tmp_path / "out")
    assert caught.value.code == "InvalidName"
    assert not (tmp_path / "escape.jinja2").exists() and not (tmp_path / "out").exists()


def test_bind_errors_point_at_the_python_line(session):
    flow = FlowBuilder("collide")
    q = flow.input("question", str)
    line = sys._getframe().f_lineno + 1
    flow.llm("ask", "user:\n{{prompt}}", connection="echo", prompt=q)
    with pytest.raises(FlowValidationError) as caught:
        flow.build(session=session)
    assert caught.value.location.line == line and caught.value.location.node == "ask"
    assert "chat API's parameters" in caught.value.message


def make_scaler(factor):
    def scale(x: int) -> int:
        return x * factor
    return scale


class Settings:
    pass


SETTINGS = Settings()


def uses_object(x: str) -> str:
    return str(SETTINGS) + x


def test_tools_that_cannot_stand_alone_are_refused_clearly():
    flow = FlowBuilder("closure")
    with pytest.raises(UserError) as caught:
        flow.python(make_scaler(2), x=1)
    assert caught.value.code == "ToolNotSelfContained" and "factor" in caught.value.message
    with pytest.raises(UserError) as caught:
        flow.python(uses_object, x="a")
    assert "SETTINGS" in caught.value.message and caught.value.code == "ToolNotSelfContained"
    with pytest.raises(UserError) as caught:
        flow.python(lambda x: x, x=1)
    assert caught.value.code == "InvalidTool"
    with pytest.raises(TypeError):
        flow.python(tidy, text=[flow.input("q", str)])  # a reference inside a list


def test_save_refuses_a_non_empty_folder(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(UserError) as caught:
        sample_flow().save(target)
    assert caught.value.code == "FolderNotEmpty"
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    sample_flow().save(target, overwrite=True)
    assert (target / "notes.txt").read_text() == "mine" and (target / "flow.dag.yaml").is_file()


def test_templates_from_files_are_copied(tmp_path):
    template = tmp_path / "ask.jinja2"
    template.write_text("user:\n{{question}}\n")
    flow = FlowBuilder("files")
    q = flow.input("question", str)
    flow.llm("ask", template, connection="echo", question=q)
    flow.output("answer", flow.node("ask"))
    folder = flow.save(tmp_path / "out")
    assert (folder / "ask.jinja2").read_text() == "user:\n{{question}}\n"


def test_run_evaluate_and_compare_from_the_flow(tmp_path, session):
    flow = sample_flow().build(session=session)
    data = [{"question": "good  day", "long_answers": True}, {"question": "bad"},
            {"question": "fine <b>x</b>", "long_answers": True}]
    # an input with a default keeps it unless mapped (promptflow's rule)
    run = flow.run(data, column_mapping={"question": "${data.question}",
                                         "long_answers": "${data.long_answers}"}, progress=False)
    assert run.status == "Completed" and len(run.lines()) == 3
    html = run._repr_html_()
    assert "Completed" in html and "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert run.name.startswith("sample_variant_0_")
    assert isinstance(run.metrics(), Metrics) and run.metrics() == {"mean_words": 2.0}
    assert "mean_words" in run.metrics()._repr_html_()

    def length(clean: str) -> dict:
        return {"length": len(clean)}

    result = flow.evaluate(run, evaluators={"len": length},
                           evaluator_config={"default": {"column_mapping": {
                               "clean": "${run.outputs.clean}"}}})
    assert [row["outputs.len.length"] for row in result["rows"]] == [8, 3, 13]
    comparison = flow.compare(data=data, evaluators={"len": length}, evaluator_config={
        "default": {"column_mapping": {"clean": "${run.outputs.clean}"}}}, progress=False)
    assert "<svg" in comparison._repr_html_() or "<table" in comparison._repr_html_()
    assert len(comparison.runs) == 2
    again = flow.compare(comparison.runs)
    assert again.runs == comparison.runs
    fresh = flow.evaluate(data=data, evaluators={"len": length}, evaluator_config={
        "default": {"column_mapping": {"clean": "${run.outputs.clean}"}}}, progress=False)
    assert [row["outputs.len.length"] for row in fresh["rows"]] == [8, 3, 13]


def test_progress_bar_updates_per_line(tmp_path, session, capsys):
    pytest.importorskip("tqdm")
    flow = sample_flow().build(session=session)
    flow.run([{"question": str(i)} for i in range(4)])
    err = capsys.readouterr().err
    assert "4/4" in err


def test_graph_of_a_built_flow_is_svg():
    view = sample_flow().graph()
    assert view.svg.startswith("<svg") and "flowchart TD" in view.mermaid
    assert view._repr_svg_() == view.svg


OPENAI_API_KEY = "not-a-real-key-but-named-like-one"
SETTINGS_TABLE = {"region": "eu", "token": "abc"}
EXAMPLE_KEY = "sk-abcdefghijklmnopqrstuvwxyz0123"


def uses_key(x: str) -> str:
    return OPENAI_API_KEY + x


def uses_openai_style(x: str) -> str:
    return EXAMPLE_KEY + x


def uses_registered(x: str) -> str:
    return SETTINGS_TABLE["region"] + x


def test_secrets_are_never_written_into_a_tool_script():
    from pfkit import _secrets

    flow = FlowBuilder("secrets")
    for tool in (uses_key, uses_openai_style):
        with pytest.raises(UserError) as caught:
            flow.python(tool, x="a")
        assert caught.value.code == "SecretInToolScript"
        assert "not-a-real-key" not in str(caught.value) and "sk-abc" not in str(caught.value)
    assert "region" in tool_script(uses_registered)  # an ordinary dict is written as it is
    _secrets.register("eu-secret-value-123")
    try:
        global SETTINGS_TABLE
        SETTINGS_TABLE = {"region": "eu-secret-value-123"}
        with pytest.raises(UserError) as caught:
            tool_script(uses_registered)
        assert caught.value.code == "SecretInToolScript"
    finally:
        SETTINGS_TABLE = {"region": "eu", "token": "abc"}


def test_pfkit_run_draws_a_tqdm_bar_inside_a_jupyter_kernel(tmp_path, session, capsys,
                                                           monkeypatch):
    pytest.importorskip("tqdm")
    import types

    from pfkit.authoring._display import in_notebook

    folder = sample_flow().save(tmp_path / "sample")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(3)))
    assert not in_notebook()
    pfkit.run(folder, data, progress=True, session=session)
    terminal = capsys.readouterr().err
    assert "lines 3/3" in terminal and "it/s" not in terminal and "line/s]" not in terminal

    kernel = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel))
    assert in_notebook()
    pfkit.run(folder, data, progress=True, session=session)
    bar = capsys.readouterr().err
    assert "3/3 [" in bar and "line/s]" in bar  # tqdm's bar, redrawn in place


def test_mistakes_in_python_arguments_are_explained():
    flow = FlowBuilder("args")
    with pytest.raises(TypeError, match="has no flow input type"):
        flow.input("x", list[str])
    assert flow.input("n", float).expr == "${inputs.n}"
    assert flow.to_dict()["inputs"]["n"] == {"type": "double"}
    with pytest.raises(UserError) as caught:
        flow.prompt("p", "prompt.jinja2")
    assert caught.value.code == "InvalidTemplate" and "Path('prompt.jinja2')" in caught.value.hint
    with pytest.raises(KeyError, match="not defined"):
        flow.inputs.missing  # noqa: B018
    answer = flow.prompt("q", "{{x}}", x=flow.inputs.n)
    assert answer["a b"].expr == "${q.output['a b']}" and answer[0]["k"].expr == "${q.output[0].k}"


def test_an_error_in_a_variant_points_at_the_variant_line():
    flow = FlowBuilder("variants")
    q = flow.input("question", str)
    node = flow.prompt("p", "{{x}}", x=q, variant_id="plain")
    line = sys._getframe().f_lineno + 1
    node.variant("broken", "{{x}}", x="${inputs.nothing}")
    with pytest.raises(FlowValidationError) as caught:
        flow.validate()
    assert caught.value.code == "InputReferenceNotFound"
    assert caught.value.location.line == line and caught.value.location.node == "p"


def test_a_chat_flow_built_in_python(session):
    flow = FlowBuilder("chat")
    question = flow.input("question", str, is_chat_input=True)
    history = flow.input("chat_history", list, default=[], is_chat_history=True)
    reply = flow.llm("reply", "{% for turn in history %}user:\n{{turn.inputs.question}}\n"
                     "assistant:\n{{turn.outputs.answer}}\n{% endfor %}user:\n{{question}}\n",
                     connection="echo", question=question, history=history)
    flow.output("answer", reply, is_chat_output=True)
    built = flow.build(session=session)
    assert built.spec.is_chat
    turns = [{"inputs": {"question": "hi"}, "outputs": {"answer": "hello"}}]
    sent = json.loads(built(question="and now?", chat_history=turns)["answer"])["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[-1]["content"] == "and now?"


def test_sample_data_is_saved_with_the_flow(tmp_path):
    flow = sample_flow()
    assert flow.add_data([{"question": "héllo"}, {"question": "b"}]) == "data.jsonl"
    folder = flow.save(tmp_path / "with_data")
    lines = (folder / "data.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"question": "héllo"}, {"question": "b"}]
    with pytest.raises(UserError):
        flow.add_data([], name="../x.jsonl")
