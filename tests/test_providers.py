"""LLM nodes through real connections, over real HTTP, to pfkit's own OpenAI-compatible test
server on 127.0.0.1. Chat, completion, streaming, tools, JSON mode and embeddings; OpenAI and
Azure argument mapping; retries, limits, clear errors, masked secrets. Every test runs on both
transports: pfkit's own (aiohttp, the default) and the real openai client
(``PFKIT_OPENAI_TRANSPORT=openai``), which must behave the same."""

from __future__ import annotations

import array
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pfkit
from pfkit.connections._store import ConnectionStore
from pfkit.errors import ExecutionError, PfkitError, UserError
from pfkit.providers._limits import Limiter, Limits
from pfkit.testing import ScriptedResponder, TestServer, echo_responder
from pfkit.testing._echo import echo_chat_content

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-test-secret-value-1234567890"

CHAT_FLOW = """
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: "${chat.output}"}
nodes:
- name: chat
  type: llm
  source: {type: code, path: chat.jinja2}
  connection: CONN
  api: chat
  inputs:
    MODEL_KEY: gpt-4o-mini
    temperature: "0.2"
    max_tokens: "32"
    question: ${inputs.question}
"""
TEMPLATE = "# system:\nYou answer briefly.\n# user:\n{{question}}\n"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("PFKIT_HOME", str(path))
    return path


@pytest.fixture(autouse=True, params=["aiohttp", "openai"])
def transport(request, monkeypatch):
    monkeypatch.setenv("PFKIT_OPENAI_TRANSPORT", request.param)
    return request.param


@pytest.fixture(autouse=True)
def clean_server(server):
    server.reset()
    server.responder = echo_responder
    server.latency = 0.0
    yield


def connect(name: str, server: TestServer, *, azure: bool = False, **options) -> None:
    record = ({"name": name, "type": "azure_open_ai", "api_key": SECRET, "api_base": server.url,
               "api_version": "2024-06-01"} if azure else
              {"name": name, "type": "open_ai", "api_key": SECRET, "base_url": server.base_url})
    record.update({k: str(v) for k, v in options.items()})
    ConnectionStore().create(record)


def chat_flow(make_flow, conn: str, *, model_key: str = "model", extra: str = "",
              template: str = TEMPLATE):
    text = CHAT_FLOW.replace("CONN", conn).replace("MODEL_KEY", model_key) + extra
    return make_flow({"flow.dag.yaml": text, "chat.jinja2": template}, name=f"flow_{conn}")


def test_chat_through_an_openai_connection_sends_promptflows_request(make_flow, server):
    connect("oai", server)
    answer = pfkit.load_flow(chat_flow(make_flow, "oai"))(question="What is pfkit?")["answer"]
    sent = json.loads(answer)
    assert sent["messages"] == [{"role": "system", "content": "You answer briefly."},
                                {"role": "user", "content": "What is pfkit?"}]
    assert sent["params"] == {"model": "gpt-4o-mini", "temperature": 0.2, "top_p": 1.0,
                              "max_tokens": 32}
    request = server.last_request
    assert request.path.endswith("/chat/completions")
    assert request.headers.get("authorization") == f"Bearer {SECRET}"


def test_azure_connection_maps_deployment_name_into_the_path(make_flow, server):
    connect("aoai", server, azure=True)
    flow = chat_flow(make_flow, "aoai", model_key="deployment_name")
    answer = json.loads(pfkit.load_flow(flow)(question="hi")["answer"])
    assert answer["params"]["n"] == 1  # the Azure tool sends n
    request = server.last_request
    assert "/openai/deployments/gpt-4o-mini/chat/completions" in request.path
    assert request.query.get("api-version") in ("2024-06-01", ["2024-06-01"])
    assert request.headers.get("api-key") == SECRET


def test_completion_streaming_tools_json_mode(make_flow, server):
    connect("oai", server)
    flow = make_flow({"flow.dag.yaml": """
inputs:
  q: {type: string}
outputs:
  completion: {type: string, reference: "${complete.output}"}
  streamed: {type: string, reference: "${stream.output}"}
  tool_message: {type: object, reference: "${tools.output}"}
  json_mode: {type: string, reference: "${json_mode.output}"}
nodes:
- name: complete
  type: llm
  source: {type: code, path: prompt.jinja2}
  connection: oai
  api: completion
  inputs: {model: text-model, max_tokens: 8, q: "${inputs.q}"}
- name: stream
  type: llm
  source: {type: code, path: chat.jinja2}
  connection: oai
  api: chat
  inputs: {model: m, stream: true, q: "${inputs.q}"}
- name: tools
  type: llm
  source: {type: code, path: chat.jinja2}
  connection: oai
  api: chat
  inputs:
    model: m
    q: ${inputs.q}
    tools: '[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]'
- name: json_mode
  type: llm
  source: {type: code, path: chat.jinja2}
  connection: oai
  api: chat
  inputs: {model: m, q: "${inputs.q}", response_format: '{"type": "json_object"}', seed: 7}
""", "prompt.jinja2": "Complete: {{q}}", "chat.jinja2": "# user:\n{{q}}\n"})
    out = pfkit.load_flow(flow)(q="ping")
    assert json.loads(out["completion"])["prompt"] == "Complete: ping"
    streamed = json.loads(out["streamed"])  # the deltas, joined
    assert streamed["messages"] == [{"role": "user", "content": "ping"}]
    assert out["tool_message"]["role"] == "assistant"
    assert json.loads(out["tool_message"]["content"])["params"]["tools"][0]["function"]["name"] == "lookup"
    sent = json.loads(out["json_mode"])["params"]
    assert sent["response_format"] == {"type": "json_object"} and sent["seed"] == 7
    endpoints = server.counters.by_endpoint
    assert endpoints.get("completions", 0) >= 1 and endpoints.get("chat.completions", 0) >= 3


def test_tool_calls_are_returned_as_the_whole_message(make_flow, server):
    connect("oai", server)
    server.responder = ScriptedResponder([{"tool_calls": [
        {"id": "call_1", "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'}}]}])
    flow = chat_flow(make_flow, "oai", extra="")
    text = (flow / "flow.dag.yaml").read_text().replace(
        "    question: ${inputs.question}",
        "    question: ${inputs.question}\n    tools: '[{\"type\": \"function\", \"function\": "
        "{\"name\": \"lookup\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}]'")
    (flow / "flow.dag.yaml").write_text(text)
    message = pfkit.load_flow(flow)(question="weather?")["answer"]
    assert message["tool_calls"][0]["function"]["arguments"] == '{"city": "Oslo"}'


def test_embedding_package_tool_without_promptflow_tools(make_flow, server):
    connect("oai", server)
    flow = make_flow({"flow.dag.yaml": """
inputs:
  text: {type: string}
outputs:
  vector: {type: list, reference: "${embed.output}"}
nodes:
- name: embed
  type: python
  source: {type: package, tool: promptflow.tools.embedding.embedding}
  inputs: {connection: oai, deployment_name: text-embedding-3-small, input: "${inputs.text}"}
"""})
    vector = pfkit.load_flow(flow)(text="hello")["vector"]
    from pfkit.testing._echo import hash_embedding

    # as promptflow-tools sends it: an OpenAI connection sends `model` (ada-002 by default; the
    # deployment name is Azure's), with the openai client's default base64, decoded to float32
    assert server.last_request.body == {"model": "text-embedding-ada-002", "input": "hello",
                                        "encoding_format": "base64"}
    float32 = array.array("f", hash_embedding("hello", 8)).tolist()
    assert vector == float32 and vector != hash_embedding("hello", 8)

    # the same floats the openai client itself returns for the same request
    import openai

    client = openai.OpenAI(api_key="k", base_url=server.base_url, max_retries=0)
    assert client.embeddings.create(model="text-embedding-3-small",
                                    input="hello").data[0].embedding == vector


def test_promptflow_tools_llm_package_tool(make_flow, server):
    connect("oai", server)
    flow = make_flow({"flow.dag.yaml": """
inputs:
  q: {type: string}
outputs:
  a: {type: string, reference: "${llm.output}"}
nodes:
- name: llm
  type: custom_llm
  source: {type: package_with_prompt, tool: promptflow.tools.llm.llm, path: p.jinja2}
  inputs: {connection: oai, api: chat, model: m, q: "${inputs.q}"}
""", "p.jinja2": "# user:\n{{q}}\n"})
    answer = json.loads(pfkit.load_flow(flow)(q="x")["a"])
    assert answer["messages"] == [{"role": "user", "content": "x"}]


def test_retries_on_429_and_5xx_honour_retry_after(make_flow, server):
    connect("oai", server, max_retries=3)
    flow = pfkit.load_flow(chat_flow(make_flow, "oai"))
    server.set_faults(rate_limit_next=2, retry_after=0.01)
    assert "hi" in flow(question="hi")["answer"]
    assert server.counters.by_status.get(429) == 2 and server.counters.total == 3
    server.reset()
    server.set_faults(error_next=1, error_status=503)
    assert "again" in flow(question="again")["answer"]
    assert server.counters.by_status.get(503) == 1


def test_no_retry_on_other_4xx_and_clear_errors(make_flow, server):
    connect("oai", server, max_retries=2)
    flow = pfkit.load_flow(chat_flow(make_flow, "oai"))
    server.set_faults(models=["only-this-model"])
    with pytest.raises(UserError) as info:
        flow(question="hi")
    assert info.value.code == "ModelNotFound" and "'oai'" in info.value.message
    assert server.counters.total == 1  # not retried
    server.reset()
    server.set_faults(max_context_words=3)
    with pytest.raises(UserError) as info:
        flow(question="a question that is far too long for it")
    assert info.value.code == "ContextLengthExceeded" and info.value.hint


def test_rejected_key_never_shows_the_secret(make_flow, server, home):
    connect("oai", server, max_retries=0)
    flow_dir = chat_flow(make_flow, "oai")
    server.set_faults(expected_api_key="sk-another-key-xyz")
    with pytest.raises(UserError) as info:
        pfkit.load_flow(flow_dir)(question="hi")
    assert info.value.code == "ProviderAuthenticationError"
    assert SECRET not in str(info.value) and SECRET[:12] not in str(info.value)
    result = subprocess.run([sys.executable, "-m", "pfkit", "flow", "test", "--flow",
                             str(flow_dir), "--inputs", "question=hi"], capture_output=True,
                            text=True, cwd=ROOT, env={**os.environ, "PFKIT_HOME": str(home)})
    assert result.returncode == 1 and "401" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    run = pfkit.run(flow_dir, _data(flow_dir, [{"question": "q"}]))
    stored = "".join(p.read_text() for p in run.path.rglob("*") if p.is_file())
    assert SECRET not in stored and "401" in stored


def _data(folder: Path, rows: list[dict]) -> Path:
    path = folder.parent / f"{folder.name}_data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_timeouts_and_malformed_responses(make_flow, server):
    connect("oai_slow", server, max_retries=1, timeout=0.3)
    flow = pfkit.load_flow(chat_flow(make_flow, "oai_slow"))
    server.set_faults(hang_next=2, hang_seconds=5)
    with pytest.raises(ExecutionError) as info:
        flow(question="hi")
    assert info.value.code == "ProviderTimeout" and "after 2 attempts" in info.value.message
    server.reset()
    server.set_faults(malformed_next=1)
    with pytest.raises(ExecutionError) as info:
        flow(question="hi")
    assert info.value.code == "MalformedResponse" and "'oai_slow'" in info.value.message


def test_wrong_base_url_and_missing_key(make_flow, monkeypatch):
    ConnectionStore().create({"name": "nowhere", "type": "open_ai", "api_key": "k",
                              "base_url": "http://127.0.0.1:9/v1", "max_retries": "0"})
    with pytest.raises(ExecutionError) as info:
        pfkit.load_flow(chat_flow(make_flow, "nowhere"))(question="hi")
    assert info.value.code == "ProviderConnectionError" and "127.0.0.1:9" in info.value.message
    ConnectionStore().create({"name": "by_env", "type": "open_ai",
                              "api_key": "${env:PFKIT_TEST_MISSING_KEY}"})
    monkeypatch.delenv("PFKIT_TEST_MISSING_KEY", raising=False)
    with pytest.raises(PfkitError) as info:
        pfkit.load_flow(chat_flow(make_flow, "by_env"))
    err = info.value
    assert err.code == "ConnectionKeyMissing" and "PFKIT_TEST_MISSING_KEY" in err.message
    assert err.location.node == "chat" and err.hint


def test_connection_override_on_the_command_line(make_flow, server, home):
    connect("real", server)
    flow_dir = chat_flow(make_flow, "does_not_exist")
    result = subprocess.run([sys.executable, "-m", "pfkit", "flow", "test", "--flow", str(flow_dir),
                             "--inputs", "question=hi", "--connections", "chat.connection=real",
                             "chat.model=other-model"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PFKIT_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert json.loads(json.loads(result.stdout)["answer"])["params"]["model"] == "other-model"


def test_concurrency_limit_is_shared_by_every_line(make_flow, server, tmp_path):
    connect("limited", server, max_concurrency=2)
    server.latency = 0.05
    flow_dir = chat_flow(make_flow, "limited")
    data = _data(flow_dir, [{"question": f"q{i}"} for i in range(12)])
    run = pfkit.run(flow_dir, data, concurrency=8)
    server.latency = 0.0
    assert run.info["properties"]["system_metrics"]["__pf__.lines.completed"] == 12
    assert server.counters.max_in_flight == 2


def test_token_usage_per_node_line_and_run(make_flow, server):
    connect("oai", server)
    flow_dir = chat_flow(make_flow, "oai")
    result = pfkit.load_flow(flow_dir).test(question="two words")
    node_usage = result.line.node_runs["chat"].usage
    assert node_usage.calls == 1 and node_usage.prompt_tokens > 0
    assert result.line.usage.total_tokens == node_usage.total_tokens
    run = pfkit.run(flow_dir, _data(flow_dir, [{"question": "a"}, {"question": "b c"}]))
    system = run.info["properties"]["system_metrics"]
    assert system["total_tokens"] == sum(r["usage"]["total_tokens"] for r in run.lines())
    assert "cost_usd" in system  # gpt-4o-mini has a price in the default table


def test_rate_limits_wait_for_the_window():
    limiter = Limiter(Limits(requests_per_minute=2, tokens_per_minute=100))
    limiter._requests.extend([0.0, 10.0])
    assert limiter._wait_time(1, 20.0) == pytest.approx(40.0)  # until the first one expires
    limiter._requests.clear()
    limiter._tokens.extend([[0.0, 60.0], [30.0, 30.0]])
    assert limiter._wait_time(20, 40.0) == pytest.approx(20.0)  # 60 tokens must expire first
    assert limiter._wait_time(5, 40.0) == 0.0


def test_record_then_replay_without_the_connection(make_flow, server, home, tmp_path):
    connect("oai", server)
    flow_dir = chat_flow(make_flow, "oai")
    env = {**os.environ, "PFKIT_HOME": str(home)}
    cmd = [sys.executable, "-m", "pfkit", "flow", "test", "--flow", str(flow_dir), "--inputs",
           "question=recorded?"]
    recorded = subprocess.run([*cmd, "--cache", "record"], capture_output=True, text=True,
                              cwd=ROOT, env=env)
    assert recorded.returncode == 0, recorded.stderr
    assert (flow_dir / "pfkit.cassette.jsonl").is_file()
    assert SECRET not in (flow_dir / "pfkit.cassette.jsonl").read_text()
    calls = server.counters.total
    fresh_home = {**env, "PFKIT_HOME": str(tmp_path / "ci_home")}  # no connection, no cache db
    replayed = subprocess.run([*cmd, "--cache", "replay"], capture_output=True, text=True,
                              cwd=ROOT, env=fresh_home)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout and server.counters.total == calls
    missed = subprocess.run([*cmd[:-1], "question=never recorded", "--cache", "replay"],
                            capture_output=True, text=True, cwd=ROOT, env=fresh_home)
    assert missed.returncode == 1 and "--cache record" in missed.stderr


def test_echo_server_and_in_process_echo_model_agree(server):
    request = {"model": "m", "messages": [{"role": "user", "content": "é"}], "temperature": 1.0}

    async def via_http():
        import openai

        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        reply = await client.chat.completions.create(**request)
        await client.close()
        return reply.choices[0].message.content

    assert asyncio.run(via_http()) == echo_chat_content(request)


# -- limits, streams, unreachable servers, model-call events, logprobs (issues 7 and 8) ---------

CHAT = {"model": "gpt-4o-mini", "temperature": 0,
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}]}


def run_async(coro):
    """Run a coroutine on a fresh loop, closing the openai clients it opened."""
    from pfkit.providers._openai import close_loop_clients

    async def main():
        try:
            return await coro
        finally:
            await close_loop_clients()

    return asyncio.run(main())


def registry_model(name: str):
    from pfkit.providers._registry import ModelRegistry

    return ModelRegistry().model(name)


def collect_stream(model, request):
    async def go():
        return [item async for item in model.chat_stream(request)]

    return run_async(go())


def test_tokens_per_minute_limiter_settles_on_the_real_usage(server):
    from pfkit.providers._limits import estimate_tokens

    connect("tpm", server, tokens_per_minute=100_000)
    model = registry_model("tpm")
    request = {**CHAT, "max_tokens": 500}
    response = run_async(model.chat(request))
    assert response.usage.total_tokens > 0
    assert estimate_tokens(request) > 500  # the estimate counts the completion budget
    assert model.limiter.tokens_in_window() == response.usage.total_tokens


def test_one_connection_budget_is_shared_across_event_loops_and_threads(server):
    import threading

    connect("shared", server, max_concurrency=2)
    server.latency = 0.05
    model = registry_model("shared")
    answers: list = []

    def worker():  # each thread runs its own event loop, as concurrent sessions' callers do
        async def calls():
            return await asyncio.gather(*(model.chat(CHAT) for _ in range(4)))

        answers.extend(run_async(calls()))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 12
    assert server.counters.max_in_flight == 2
    assert model.limiter.max_in_flight_seen == 2 and model.limiter.in_flight == 0
    # and the same model keeps working on a later loop
    assert run_async(model.chat(CHAT)).message["content"]


def test_two_concurrent_flows_on_one_registry_share_a_connections_limit(make_flow, server):
    from pfkit.providers._registry import ModelRegistry

    connect("both", server, max_concurrency=3)
    server.latency = 0.05
    registry = ModelRegistry()
    first = make_flow({"flow.dag.yaml": CHAT_FLOW.replace("CONN", "both").replace(
        "MODEL_KEY", "model"), "chat.jinja2": TEMPLATE}, name="first")
    second = make_flow({"flow.dag.yaml": CHAT_FLOW.replace("CONN", "both").replace(
        "MODEL_KEY", "model"), "chat.jinja2": TEMPLATE}, name="second")
    flows = [pfkit.load_flow(first, models=registry), pfkit.load_flow(second, models=registry)]
    assert registry.model("both") is registry.model("both")
    import threading

    outputs: list = []
    threads = [threading.Thread(target=lambda f=f: outputs.extend(
        f(question=f"q{i}") for i in range(4))) for f in flows for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outputs) == 16
    assert server.counters.max_in_flight <= 3
    assert registry.model("both").limiter.max_in_flight_seen <= 3


def test_a_stream_cut_before_any_delta_is_retried(server):
    connect("cut", server)
    server.set_faults(cut_next=1, cut_after=0)
    items = collect_stream(registry_model("cut"), {**CHAT, "stream": True})
    text = "".join(i for i in items if isinstance(i, str))
    assert json.loads(text)["messages"] == CHAT["messages"]
    assert len(server.requests) == 2


def test_a_stream_that_ends_without_finish_reason_is_a_failed_call(server):
    from pfkit.providers._openai import ProviderError

    connect("unfinished", server, max_retries=1)
    server.set_faults(unfinished_next=2)
    with pytest.raises(ProviderError) as info:
        collect_stream(registry_model("unfinished"), {**CHAT, "stream": True})
    err = info.value
    assert err.code == "IncompleteStream"
    assert "connection 'unfinished'" in err.message and server.base_url in err.message
    assert "finish_reason" in err.message and "not retried" in err.message
    assert len(server.requests) == 1  # its deltas had been passed on: not retried


def test_a_stream_cut_after_deltas_were_passed_on_is_not_retried(server):
    from pfkit.providers._openai import ProviderError

    connect("late_cut", server)
    server.set_faults(cut_next=1, cut_after=4)
    received: list = []

    async def consume():
        async for item in registry_model("late_cut").chat_stream({**CHAT, "stream": True}):
            received.append(item)

    with pytest.raises(ProviderError) as info:
        run_async(consume())
    assert info.value.code == "IncompleteStream" and "not retried" in info.value.message
    assert received and len(server.requests) == 1


def test_a_streamed_llm_node_cut_mid_body_fails_the_line(make_flow, server):
    connect("node_cut", server, max_retries=0)
    flow_dir = chat_flow(make_flow, "node_cut", extra="")
    text = (flow_dir / "flow.dag.yaml").read_text().replace('max_tokens: "32"', 'stream: "true"')
    (flow_dir / "flow.dag.yaml").write_text(text)
    server.set_faults(cut_next=1, cut_after=3)
    with pytest.raises(PfkitError) as info:
        out = pfkit.load_flow(flow_dir)(question="hi")
        "".join(out["answer"])  # consumed: the cut is found while reading
    assert "IncompleteStream" in json.dumps(info.value.to_dict()) or \
        "incomplete chat stream" in str(info.value)


def test_an_unreachable_server_fails_fast_naming_the_endpoint():
    import socket

    from pfkit.providers._openai import ProviderError

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ConnectionStore().create({"name": "down", "type": "open_ai", "api_key": SECRET,
                              "base_url": f"http://127.0.0.1:{port}/v1"})
    model = registry_model("down")
    with pytest.raises(ProviderError) as info:
        run_async(model.chat(CHAT))
    err = info.value
    assert err.code == "ProviderConnectionError"
    assert f"127.0.0.1:{port}" in err.message and "connection 'down'" in err.message
    assert "after 3 attempts" in err.message  # two quick retries, not eight slow ones
    assert model.retries == 2
    # just found down: the next calls (a batch's other lines) try once, and fail at once
    with pytest.raises(ProviderError) as again:
        run_async(model.chat(CHAT))
    assert again.value.code == "ProviderConnectionError" and model.retries == 2


class Recorder:
    def __init__(self):
        self.calls, self.streams = [], []

    def on_model_call(self, event):
        self.calls.append(event)

    def on_stream_end(self, event):
        self.streams.append(event)


def observe_calls(coro_factory):
    from pfkit.observe import Observers, current_node, current_observers

    recorder = Recorder()

    async def main():
        current_observers.set(Observers((recorder,)))
        current_node.set(("judge", 7))
        return await coro_factory()

    return recorder, run_async(main())


def test_every_model_call_emits_one_model_call_event(server):
    from pfkit.providers._cache import CachingModel, ResponseCache
    from pfkit.providers._observed import observed

    connect("seen", server)
    server.set_faults(error_next=1, error_status=503, retry_after=0)
    cache = ResponseCache.in_memory()
    model = observed(CachingModel(registry_model("seen"), cache, "read_write"))
    assert observed(model) is model  # wrapping twice never reports twice

    async def calls():
        await model.chat(CHAT)  # a miss, after one retry
        await model.chat(CHAT)  # a hit
        first = [i async for i in model.chat_stream({**CHAT, "seed": 1, "stream": True})]
        again = [i async for i in model.chat_stream({**CHAT, "seed": 1, "stream": True})]
        assert first == again
        return first

    recorder, _ = observe_calls(calls)
    miss, hit, stream, replayed = recorder.calls
    assert not stream.cache_hit and replayed.cache_hit
    assert (miss.connection, miss.provider, miss.api, miss.model) == \
        ("seen", "openai", "chat", "gpt-4o-mini")
    assert miss.retries == 1 and not miss.cache_hit and miss.usage.total_tokens > 0
    assert miss.error is None and miss.latency > 0 and miss.request == CHAT
    assert (miss.node, miss.line_number) == ("judge", 7)
    assert hit.cache_hit and hit.retries == 0
    assert stream.api == "chat_stream" and stream.usage.total_tokens > 0
    finished, _ = recorder.streams
    assert finished.node == "judge" and finished.items > 0 and finished.usage == stream.usage


def test_a_failed_call_is_reported_with_its_error_and_no_observer_costs_nothing(server):
    from pfkit.providers._observed import ObservedModel, observed

    connect("fails", server, max_retries=0)
    server.set_faults(error_next=1, error_status=500)
    model = observed(registry_model("fails"))

    async def call():
        with pytest.raises(PfkitError):
            await model.chat(CHAT)

    recorder, _ = observe_calls(call)
    (event,) = recorder.calls
    assert event.error["code"] == "ProviderServerError" and SECRET not in json.dumps(event.error)
    # without observers the call goes straight to the model: no event object is built
    assert isinstance(model, ObservedModel)
    assert run_async(model.chat(CHAT)).message["content"]


def test_logprobs_reach_the_llm_nodes_output_when_asked(make_flow, server):
    connect("lp", server)
    extra = '    logprobs: "true"\n    top_logprobs: "2"\n'
    flow_dir = chat_flow(make_flow, "lp", extra="")
    text = (flow_dir / "flow.dag.yaml").read_text().replace(
        "    question: ${inputs.question}\n", "    question: ${inputs.question}\n" + extra)
    (flow_dir / "flow.dag.yaml").write_text(text)
    answer = pfkit.load_flow(flow_dir)(question="hi")["answer"]
    body = server.last_request.body
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert json.loads(answer["content"])["messages"][-1]["content"] == "hi"
    first = answer["logprobs"][0]
    assert {"token", "logprob", "top_logprobs"} <= set(first) and len(first["top_logprobs"]) == 2
    # without them, the output is the text alone, as promptflow's
    plain = pfkit.load_flow(chat_flow(make_flow, "lp"))(question="hi")["answer"]
    assert isinstance(plain, str) and "logprobs" not in server.last_request.body


def test_a_later_provider_registers_its_model_factory(make_flow, server):
    from pfkit.connections import ConnectionType, OpenAIConnection, register_connection_type
    from pfkit.providers import register_model_factory
    from pfkit.providers._registry import MODEL_FACTORIES
    from pfkit.testing import EchoModel

    class MyConnection(OpenAIConnection):
        TYPE = "my_provider"

    register_connection_type(ConnectionType("my_provider", MyConnection, ("api_key",),
                                            ("api_key",), ("organization", "base_url"),
                                            model=True))
    made = []
    register_model_factory("my_provider", lambda name, conn: made.append(name) or EchoModel())
    try:
        ConnectionStore().create({"name": "mine", "type": "my_provider", "api_key": SECRET})
        out = pfkit.load_flow(chat_flow(make_flow, "mine"))(question="hi")
        assert made == ["mine"] and json.loads(out["answer"])["messages"][-1]["content"] == "hi"
    finally:
        MODEL_FACTORIES.pop("my_provider")
        from pfkit.connections._registry import CONNECTION_TYPES

        CONNECTION_TYPES.pop("my_provider")


def test_a_registry_keeps_one_model_per_connection_until_its_file_changes(server):
    from pfkit.providers._registry import ModelRegistry

    connect("kept", server, max_concurrency=2)
    registry = ModelRegistry()
    first = registry.model("kept")
    assert registry.model("kept") is first and first.limiter.limits.max_concurrency == 2
    connect("kept", server, max_concurrency=5, timeout=7)  # edited: a new model, new limits
    second = registry.model("kept")
    assert second is not first and second.limiter.limits.max_concurrency == 5
    assert second.options.timeout == 7.0 and registry.model("kept") is second


EMBED_FLOW = """
inputs:
  text: {type: string}
outputs:
  vector: {type: list, reference: "${embed.output}"}
nodes:
- name: embed
  type: python
  source: {type: package, tool: promptflow.tools.embedding.embedding}
  inputs: {connection: CONN, INPUTS, input: "${inputs.text}"}
"""


def test_embeddings_of_azure_and_serverless_connections_as_promptflow_tools_send_them(
        make_flow, server):
    from pfkit.testing._echo import hash_embedding

    connect("az_embed", server, azure=True)
    flow = make_flow({"flow.dag.yaml": EMBED_FLOW.replace("CONN", "az_embed").replace(
        "INPUTS", "deployment_name: my-embedder")}, name="az_embed")
    vector = pfkit.load_flow(flow)(text="hello")["vector"]
    request = server.last_request
    assert "/deployments/my-embedder/embeddings" in request.path
    assert request.body["encoding_format"] == "base64" and request.body["input"] == "hello"
    assert vector == array.array("f", hash_embedding("hello", 8)).tolist()

    ConnectionStore().create({"name": "sl_embed", "type": "serverless", "api_key": SECRET,
                              "api_base": server.url})
    flow = make_flow({"flow.dag.yaml": EMBED_FLOW.replace("CONN", "sl_embed").replace(
        "INPUTS", "model: text-embedding-3-small")}, name="sl_embed")
    vector = pfkit.load_flow(flow)(text="hello")["vector"]
    assert server.last_request.body == {"model": "text-embedding-3-small", "input": ["hello"],
                                        "encoding_format": "float"}
    assert vector == hash_embedding("hello", 8)  # floats asked for: not rounded to float32


def test_cancelled_waiters_never_leak_a_slot():
    limiter = Limiter(Limits(max_concurrency=2))
    order: list[int] = []

    async def hold(i: int):
        async with limiter.slot():
            order.append(i)
            await asyncio.sleep(0.01)

    async def main():
        tasks = [asyncio.create_task(hold(i)) for i in range(10)]
        await asyncio.sleep(0.001)
        for task in tasks[3:7]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert limiter.in_flight == 0
        await asyncio.wait_for(hold(99), timeout=5)  # the budget is whole again

    asyncio.run(main())
    assert order == [0, 1, 2, 7, 8, 9, 99]  # first come, first served
    assert limiter.max_in_flight_seen == 2
