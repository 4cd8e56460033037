"""The OpenAI-compatible test server, exercised through the real ``openai`` client."""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import math
import os
import re
import socket
import struct
import time

import openai
import pytest

from pfkit.cli._testing import build_server, load_rules, parse_fail_rates, register
from pfkit.errors import UserError
from pfkit.testing import (
    EchoModel,
    Fault,
    Faults,
    RuleResponder,
    ScriptedResponder,
    TestServer,
    TestServerProcess,
)
from pfkit.testing._echo import echo_chat_content, echo_completion_text, hash_embedding
from pfkit.testing._openai_api import DEFAULT_MODELS
from pfkit.testing._server import is_loopback_host

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France?"}]
MESSAGE_WORDS = 8
PROMPT = "Once upon a time"
ERROR_KEYS = {"message", "type", "param", "code"}


_OPEN_CLIENTS: list[openai.OpenAI | openai.AzureOpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients():
    """Sync clients made by the helpers below are closed after each test."""
    yield
    while _OPEN_CLIENTS:
        _OPEN_CLIENTS.pop().close()


@pytest.fixture
def server():
    with TestServer() as running:
        yield running


def sync_client(server: TestServer, **options) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    options.setdefault("api_key", "sk-test")
    client = openai.OpenAI(base_url=server.base_url, **options)
    _OPEN_CLIENTS.append(client)
    return client


def async_client(server: TestServer, **options) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 0)
    options.setdefault("api_key", "sk-test")
    return openai.AsyncOpenAI(base_url=server.base_url, **options)


def azure_client(server: TestServer, **options) -> openai.AzureOpenAI:
    options.setdefault("max_retries", 0)
    options.setdefault("api_key", "azure-key")
    client = openai.AzureOpenAI(azure_endpoint=server.url, api_version="2024-06-01", **options)
    _OPEN_CLIENTS.append(client)
    return client


def async_azure_client(server: TestServer, **options) -> openai.AsyncAzureOpenAI:
    options.setdefault("max_retries", 0)
    options.setdefault("api_key", "azure-key")
    return openai.AsyncAzureOpenAI(azure_endpoint=server.url, api_version="2024-06-01",
                                   **options)


def chat(client: openai.OpenAI, **params):
    params.setdefault("model", MODEL)
    params.setdefault("messages", MESSAGES)
    return client.chat.completions.create(**params)


def raw_request(server: TestServer, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def join_chat_stream(chunks) -> dict[int, str]:
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    return texts


# -- chat, completions, embeddings, models -----------------------------------------------------


def test_chat_echoes_the_request_with_word_usage(server):
    reply = chat(sync_client(server))

    expected = echo_chat_content({"model": MODEL, "messages": MESSAGES})
    message = reply.choices[0].message
    assert message.role == "assistant" and message.content == expected
    assert reply.object == "chat.completion" and reply.model == MODEL
    assert reply.choices[0].finish_reason == "stop" and reply.id.startswith("chatcmpl-")
    assert reply.usage.prompt_tokens == MESSAGE_WORDS
    assert reply.usage.completion_tokens == len(expected.split())
    assert reply.usage.total_tokens == MESSAGE_WORDS + len(expected.split())
    assert server.counters.by_endpoint == {"chat.completions": 1}
    assert server.counters.by_status == {200: 1}
    assert server.last_request.headers["authorization"] == "Bearer sk-test"
    assert server.last_request.body == {"model": MODEL, "messages": MESSAGES}


def test_chat_answers_like_the_in_process_echo_model(server):
    request = {"model": MODEL, "messages": MESSAGES, "temperature": 0.2, "max_tokens": 50}
    in_process = asyncio.run(EchoModel().chat(dict(request)))

    reply = chat(sync_client(server), temperature=0.2, max_tokens=50)

    assert reply.choices[0].message.model_dump() == in_process.message


def test_async_chat_and_completion(server):
    async def calls():
        async with async_client(server) as client:
            return (await client.chat.completions.create(model=MODEL, messages=MESSAGES),
                    await client.completions.create(model="gpt-35-turbo-instruct", prompt=PROMPT))

    reply, completion = asyncio.run(calls())

    assert reply.choices[0].message.content == echo_chat_content(
        {"model": MODEL, "messages": MESSAGES})
    assert completion.choices[0].text == echo_completion_text(
        {"model": "gpt-35-turbo-instruct", "prompt": PROMPT})


def test_completion(server):
    completion = sync_client(server).completions.create(model="davinci-002", prompt=PROMPT,
                                                        max_tokens=5)

    expected = echo_completion_text({"model": "davinci-002", "prompt": PROMPT, "max_tokens": 5})
    assert completion.object == "text_completion"
    assert completion.choices[0].text == expected
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 4
    assert completion.usage.completion_tokens == len(expected.split())
    assert server.counters.by_endpoint == {"completions": 1}


def test_chat_stream_joins_to_the_non_streamed_answer(server):
    client = sync_client(server)
    expected = chat(client).choices[0].message.content

    chunks = list(chat(client, stream=True))

    assert join_chat_stream(chunks) == {0: expected}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)


def test_chat_stream_usage_chunk_when_requested(server):
    chunks = list(chat(sync_client(server), stream=True,
                       stream_options={"include_usage": True}))

    text = join_chat_stream(chunks)[0]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == MESSAGE_WORDS
    assert chunks[-1].usage.completion_tokens == len(text.split())
    assert text == echo_chat_content({"model": MODEL, "messages": MESSAGES,
                                      "stream_options": {"include_usage": True}})


def test_async_streams(server):
    async def streams():
        async with async_client(server) as client:
            plain = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
            chat_chunks = [c async for c in await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True)]
            text = await client.completions.create(model="m", prompt=PROMPT)
            text_chunks = [c async for c in await client.completions.create(
                model="m", prompt=PROMPT, stream=True)]
            return plain, chat_chunks, text, text_chunks

    plain, chat_chunks, text, text_chunks = asyncio.run(streams())

    assert join_chat_stream(chat_chunks) == {0: plain.choices[0].message.content}
    assert "".join(c.choices[0].text for c in text_chunks) == text.choices[0].text
    assert text_chunks[-1].choices[0].finish_reason == "stop"


def test_completion_stream_with_usage(server):
    client = sync_client(server)
    chunks = list(client.completions.create(model="m", prompt=PROMPT, stream=True,
                                            stream_options={"include_usage": True}))

    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == echo_completion_text({"model": "m", "prompt": PROMPT,
                                         "stream_options": {"include_usage": True}})
    assert chunks[-1].usage.completion_tokens == len(text.split())


def test_slow_stream_with_first_chunk_and_chunk_delays(server):
    server.first_chunk_delay, server.chunk_delay = 0.02, 0.001
    client = sync_client(server)
    chunks = list(chat(client, stream=True))

    assert join_chat_stream(chunks) == {0: chat(client).choices[0].message.content}


def test_n_choices(server):
    client = sync_client(server)
    reply = chat(client, n=3)

    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len({c.message.content for c in reply.choices}) == 1
    words = len(reply.choices[0].message.content.split())
    assert reply.usage.completion_tokens == 3 * words
    streamed = join_chat_stream(chat(client, n=2, stream=True))
    assert set(streamed) == {0, 1} and streamed[0] == streamed[1]


def test_tool_calls_from_a_scripted_responder():
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    script = ScriptedResponder([{"tool_calls": [call]}, "It is sunny in Paris.",
                                {"tool_calls": [call]}])
    with TestServer(script) as server:
        client = sync_client(server)
        tools = [{"type": "function", "function": {
            "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]

        first = chat(client, tools=tools)
        second = chat(client, tools=tools)
        streamed = list(chat(client, tools=tools, stream=True))

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [tool_call] = choice.message.tool_calls
    assert tool_call.type == "function" and tool_call.id.startswith("call_")
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
    assert second.choices[0].message.content == "It is sunny in Paris."
    assert second.choices[0].finish_reason == "stop"
    arguments = "".join(d.function.arguments or "" for c in streamed
                        for d in (c.choices[0].delta.tool_calls or []))
    assert json.loads(arguments) == {"city": "Paris"}
    assert streamed[-1].choices[0].finish_reason == "tool_calls"
    assert script.remaining == 0


def test_json_mode_reply_is_returned_as_is():
    rules = RuleResponder([(r"(?i)capital", '{"capital": "Paris"}')])
    with TestServer(rules) as server:
        client = sync_client(server)
        reply = chat(client, response_format={"type": "json_object"})
        other = chat(client, messages=[{"role": "user", "content": "hello"}])

    assert json.loads(reply.choices[0].message.content) == {"capital": "Paris"}
    assert json.loads(other.choices[0].message.content)["messages"] == [
        {"role": "user", "content": "hello"}]


def test_rules_match_the_last_user_message_and_the_prompt():
    rules = RuleResponder([(r"^first", "one"), (r"time$", "story")], default="no rule")
    with TestServer(rules) as server:
        client = sync_client(server)
        messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "x"},
                    {"role": "user", "content": "second"}]
        assert chat(client, messages=messages).choices[0].message.content == "no rule"
        assert chat(client, messages=messages[:1]).choices[0].message.content == "one"
        assert client.completions.create(model="m", prompt=PROMPT).choices[0].text == "story"


def test_chat_and_completion_logprobs(server):
    client = sync_client(server)
    reply = chat(client, logprobs=True, top_logprobs=2)
    completion = client.completions.create(model="m", prompt=PROMPT, logprobs=2)

    content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in content)
    logprobs = completion.choices[0].logprobs
    assert "".join(logprobs.tokens) == completion.choices[0].text
    assert len(logprobs.token_logprobs) == len(logprobs.tokens) == len(logprobs.text_offset)
    assert chat(client).choices[0].logprobs is None


def test_seed_gives_a_system_fingerprint(server):
    client = sync_client(server)
    assert chat(client, seed=7).system_fingerprint == "fp_pfkit_7"
    assert chat(client).system_fingerprint is None


def test_embeddings(server):
    client = sync_client(server)
    default = client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
    as_floats = client.embeddings.create(model="e", input="a", encoding_format="float")
    wide = client.embeddings.create(model="e", input="a", dimensions=16, encoding_format="float")

    assert [d.index for d in default.data] == [0, 1]
    for item, text in zip(default.data, ["a", "b c"], strict=True):
        assert item.embedding == pytest.approx(hash_embedding(text), abs=1e-6)
    assert as_floats.data[0].embedding == hash_embedding("a")
    assert wide.data[0].embedding == hash_embedding("a", 16)
    assert default.usage.prompt_tokens == 3 and default.model == "text-embedding-3-small"
    assert server.counters.by_endpoint == {"embeddings": 3}


def test_large_embedding_dimensions(server):
    client = sync_client(server)
    first = client.embeddings.create(model="e", input="a", dimensions=1536,
                                     encoding_format="float").data[0].embedding
    again = client.embeddings.create(model="e", input="a", dimensions=1536).data[0].embedding

    assert len(first) == 1536 and sum(v * v for v in first) == pytest.approx(1.0, abs=1e-4)
    assert again == pytest.approx(first, abs=1e-6)


def test_models_list_and_retrieve():
    with TestServer() as server:
        assert [m.id for m in sync_client(server).models.list()] == list(DEFAULT_MODELS)
    with TestServer(models=["b-model", "a-model"]) as server:
        client = sync_client(server)
        assert [m.id for m in client.models.list()] == ["a-model", "b-model"]
        assert client.models.retrieve("a-model").id == "a-model"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("other")


def test_azure_clients_use_the_deployment_as_model(server):
    client = azure_client(server)
    reply = client.chat.completions.create(model="my-gpt", messages=MESSAGES)
    completion = client.completions.create(model="my-instruct", prompt=PROMPT)
    embedding = client.embeddings.create(model="my-embedder", input="a",
                                         encoding_format="float")
    streamed = list(client.chat.completions.create(model="my-gpt", messages=MESSAGES,
                                                   stream=True))

    assert reply.model == "my-gpt" and completion.model == "my-instruct"
    assert reply.choices[0].message.content == echo_chat_content(
        {"model": "my-gpt", "messages": MESSAGES})
    assert embedding.data[0].embedding == hash_embedding("a")
    assert join_chat_stream(streamed) == {0: reply.choices[0].message.content}
    first = server.requests[0]
    assert first.path == "/openai/deployments/my-gpt/chat/completions"
    assert first.deployment == "my-gpt"
    assert first.query == {"api-version": "2024-06-01"}
    assert first.headers["api-key"] == "azure-key"


def test_async_azure_client(server):
    async def calls():
        async with async_azure_client(server) as client:
            reply = await client.chat.completions.create(model="dep", messages=MESSAGES)
            chunks = [c async for c in await client.chat.completions.create(
                model="dep", messages=MESSAGES, stream=True)]
            completion = await client.completions.create(model="dep2", prompt=PROMPT)
            embedding = await client.embeddings.create(model="dep3", input=["x", "y"])
            return reply, chunks, completion, embedding

    reply, chunks, completion, embedding = asyncio.run(calls())

    assert reply.model == "dep"
    assert join_chat_stream(chunks) == {0: reply.choices[0].message.content}
    assert completion.model == "dep2" and len(embedding.data) == 2
    assert [r.deployment for r in server.requests] == ["dep", "dep", "dep2", "dep3"]


def test_paths_without_the_v1_prefix(server):
    with openai.OpenAI(base_url=server.url, api_key="k", max_retries=0) as client:
        assert chat(client).choices[0].message.content
    assert server.last_request.path == "/chat/completions"


# -- HTTP behaviour ----------------------------------------------------------------------------


def test_unknown_path_is_a_404_in_openai_error_shape(server):
    status, headers, body = raw_request(server, "POST", "/v1/nope", b"{}")

    assert status == 404 and headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert set(error) == ERROR_KEYS and error["code"] == "unknown_url"
    assert server.counters.by_endpoint == {"not_found": 1}
    assert server.counters.by_status == {404: 1}


def test_wrong_method_and_bad_json(server):
    status, headers, _ = raw_request(server, "GET", "/v1/chat/completions")
    assert status == 405 and headers["allow"] == "POST"
    status, _, body = raw_request(server, "POST", "/v1/chat/completions", b"{not json")
    assert status == 400 and set(json.loads(body)["error"]) == ERROR_KEYS
    status, _, body = raw_request(server, "POST", "/v1/chat/completions",
                                  json.dumps({"model": MODEL}).encode())
    assert status == 400 and json.loads(body)["error"]["param"] == "messages"


def test_bad_requests_get_openai_errors_not_dropped_connections(server):
    body = {"model": MODEL, "messages": MESSAGES}
    for bad in ({"n": "two"}, {"n": 0}, {"messages": "not a list"}):
        status, _, raw = raw_request(server, "POST", "/v1/chat/completions",
                                     json.dumps({**body, **bad}).encode())
        assert status == 400 and set(json.loads(raw)["error"]) == ERROR_KEYS
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        # aiohttp answers a request it cannot parse in HTTP/1.0 (it never saw a version).
        assert re.match(rb"HTTP/1\.[01] 400 ", sock.recv(65536))


def test_responses_carry_a_request_id(server):
    client = sync_client(server)
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.headers["x-request-id"].startswith("req_")
    with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=MESSAGES, stream=True) as streamed:
        assert streamed.headers["x-request-id"].startswith("req_")
        assert streamed.headers["content-type"].startswith("text/event-stream")


def test_keep_alive_and_content_length(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = json.dumps({"model": MODEL, "messages": MESSAGES})
    sockets = set()
    for _ in range(3):
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        assert response.status == 200
        assert int(response.getheader("Content-Length")) == len(data)
        assert response.getheader("Connection") == "keep-alive"
        sockets.add(id(conn.sock))
    conn.close()
    assert len(sockets) == 1


def test_chunked_request_body(server):
    body = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
    half = len(body) // 2
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half,
                                                        body[half:])
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(payload)["choices"][0]["message"]["content"] == echo_chat_content(
        json.loads(body))


def test_async_with_inside_a_running_loop():
    async def run():
        async with TestServer(latency=0.01) as server:
            async with async_client(server) as client:
                reply = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
                return reply, server.counters

    reply, counters = asyncio.run(run())
    assert reply.choices[0].message.content and counters.total == 1


# -- faults ------------------------------------------------------------------------------------


def test_rate_limit_with_retry_after(server):
    server.set_faults(rate_limit_next=1, retry_after=2)
    client = sync_client(server)

    with pytest.raises(openai.RateLimitError) as caught:
        chat(client)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"
    assert chat(client).choices[0].message.content  # only the next 1 request
    assert server.counters.by_status == {429: 1, 200: 1}


def test_client_retry_after_a_rate_limit_is_visible_in_the_log(server):
    server.set_faults(rate_limit_next=1, retry_after=0.01)

    reply = chat(sync_client(server, max_retries=2))

    assert reply.choices[0].message.content
    assert [r.status for r in server.requests] == [429, 200]
    assert server.requests[0].body == server.requests[1].body


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors(server, status):
    server.set_faults(error_next=2, error_status=status)
    client = sync_client(server)

    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as caught:
            chat(client)
        assert caught.value.status_code == status
        assert set(caught.value.body) == ERROR_KEYS
    assert chat(client).choices[0].message.content


def test_hang_makes_the_client_time_out(server):
    server.set_faults(hang_next=1, hang_seconds=30)
    client = sync_client(server, timeout=0.3)

    with pytest.raises(openai.APITimeoutError):
        chat(client)

    assert chat(client).choices[0].message.content
    assert server.faults.hang_next == 0


def test_malformed_body(server):
    server.set_faults(malformed_next=2)

    with pytest.raises((openai.APIResponseValidationError, ValueError)):
        chat(sync_client(server))
    status, headers, body = raw_request(server, "POST", "/v1/chat/completions",
                                        json.dumps({"model": MODEL, "messages": MESSAGES}).encode())
    assert status == 200 and int(headers["content-length"]) == len(body)
    with pytest.raises(ValueError):
        json.loads(body)


def test_api_key_check():
    with TestServer(expected_api_key="sk-right") as server:
        with pytest.raises(openai.AuthenticationError) as caught:
            chat(sync_client(server, api_key="sk-wrong-key"))
        assert caught.value.code == "invalid_api_key"
        assert "sk-wrong-key" not in caught.value.message
        assert chat(sync_client(server, api_key="sk-right")).choices
        azure = azure_client(server, api_key="sk-right")
        assert azure.chat.completions.create(model="d", messages=MESSAGES).choices
        with pytest.raises(openai.AuthenticationError):
            azure_client(server).chat.completions.create(model="d", messages=MESSAGES)


def test_model_allow_list():
    with TestServer(models=[MODEL, "my-deployment"]) as server:
        with pytest.raises(openai.NotFoundError) as caught:
            chat(sync_client(server), model="gpt-5-imaginary")
        assert caught.value.code == "model_not_found"
        with pytest.raises(openai.NotFoundError):
            azure_client(server).chat.completions.create(model="other", messages=MESSAGES)
        assert chat(sync_client(server)).choices
        assert azure_client(server).chat.completions.create(model="my-deployment",
                                                            messages=MESSAGES).choices


def test_context_length():
    with TestServer(max_context_words=5) as server:
        client = sync_client(server)
        with pytest.raises(openai.BadRequestError) as caught:
            chat(client)
        assert caught.value.code == "context_length_exceeded"
        assert chat(client, messages=[{"role": "user", "content": "short"}]).choices
        with pytest.raises(openai.BadRequestError):
            client.completions.create(model="m", prompt="one two three four five six")


def test_fail_rate_probabilities_are_seeded():
    def statuses(seed: int) -> list[int]:
        with TestServer(fail_rate={429: 0.3, 503: 0.2}, seed=seed) as server:
            body = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
            return [raw_request(server, "POST", "/v1/chat/completions", body)[0]
                    for _ in range(30)]

    first = statuses(3)
    assert first == statuses(3)
    assert {429, 503, 200} <= set(first)


def test_certain_failure_rate_and_runtime_changes():
    with TestServer(fail_rate={503: 1.0}) as server:
        client = sync_client(server)
        with pytest.raises(openai.InternalServerError):
            chat(client)
        server.set_faults(fail_rate={})
        assert chat(client).choices
        server.set_faults(fail_rate={429: 1.0}, retry_after=0.5)
        with pytest.raises(openai.RateLimitError) as caught:
            chat(client)
        assert caught.value.response.headers["retry-after"] == "0.5"


def test_scripted_faults_and_exhaustion():
    script = ScriptedResponder([Fault.rate_limit(3), Fault.error(502), "ok",
                                Fault.malformed()])
    with TestServer(script) as server:
        client = sync_client(server)
        with pytest.raises(openai.RateLimitError) as caught:
            chat(client)
        assert caught.value.response.headers["retry-after"] == "3"
        with pytest.raises(openai.InternalServerError):
            chat(client)
        assert chat(client).choices[0].message.content == "ok"
        with pytest.raises(ValueError):
            chat(client)
        with pytest.raises(openai.InternalServerError) as caught:
            chat(client)
        assert caught.value.code == "script_exhausted"


def test_callable_and_failing_responders():
    async def responder(kind, body):
        if kind == "completion":
            raise RuntimeError("boom")
        return [{"content": "a"}, "b"]

    with TestServer(responder) as server:
        client = sync_client(server)
        reply = chat(client, n=3)
        server.responder = lambda kind, body: 42
        with pytest.raises(openai.InternalServerError) as caught:
            chat(client)
        assert caught.value.code == "responder_error"
        server.responder = responder
        assert [c.message.content for c in reply.choices] == ["a", "b", "a"]
        with pytest.raises(openai.InternalServerError) as caught:
            client.completions.create(model="m", prompt=PROMPT)
        assert "boom" in caught.value.message


def test_set_faults_reset_and_counters():
    with TestServer(rate_limit_next=1) as server:
        with pytest.raises(TypeError):
            server.set_faults(no_such_fault=1)
        with pytest.raises(ValueError):
            server.set_faults(Faults(fail_rate={200: 0.5}))
        client = sync_client(server)
        with pytest.raises(openai.RateLimitError):
            chat(client)
        assert chat(client).choices
        assert server.counters.total == 2 and len(server.requests) == 2

        server.reset()

        assert server.counters.total == 0 and server.requests == []
        assert server.faults.rate_limit_next == 1
        server.clear_faults()
        assert chat(client).choices


def test_request_log_is_bounded():
    with TestServer(request_log_size=3) as server:
        client = sync_client(server)
        for i in range(5):
            chat(client, messages=[{"role": "user", "content": str(i)}])
        assert [r.body["messages"][0]["content"] for r in server.requests] == ["2", "3", "4"]
        assert server.counters.total == 5


# -- concurrency -------------------------------------------------------------------------------


def test_64_concurrent_requests_overlap():
    server = TestServer(latency=0.2)
    gate_open = False

    async def gate(kind, body):
        # Hold every request until all 64 have been inside the server at once (the deadline
        # only stops a broken server from hanging the test; the assertion is on the counters).
        nonlocal gate_open
        deadline = time.monotonic() + 10
        while not gate_open and time.monotonic() < deadline:
            if server.counters.in_flight >= 64:
                gate_open = True
            await asyncio.sleep(0.005)
        return f"answer {body['messages'][0]['content']}"

    server.responder = gate

    async def burst():
        async with async_client(server) as client:
            return await asyncio.gather(*(client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": str(i)}]) for i in range(64)))

    with server:
        replies = asyncio.run(burst())
        counters = server.counters

    assert [r.choices[0].message.content for r in replies] == [f"answer {i}" for i in range(64)]
    assert counters.max_in_flight == 64 and counters.in_flight == 0
    assert counters.by_status == {200: 64}


# -- CLI ---------------------------------------------------------------------------------------


def cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pfkit")
    register(parser.add_subparsers(dest="group"))
    return parser


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "example.com"])
def test_cli_refuses_a_non_loopback_host(host, capsys):
    args = cli_parser().parse_args(["testing", "serve", "--host", host, "--port", "0"])

    assert args.handler(args) == 2
    assert "refusing" in capsys.readouterr().err
    with pytest.raises(ValueError):
        TestServer(host=host)


def test_loopback_hosts():
    assert all(map(is_loopback_host, ["127.0.0.1", "127.5.5.5", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback_host, ["0.0.0.0", "::", "192.168.1.1", "example.com"]))


def test_cli_fail_rates():
    assert parse_fail_rates(["429=0.1", "503=0.05"]) == {429: 0.1, 503: 0.05}
    assert parse_fail_rates(None) == {}
    for bad in (["429"], ["x=0.1"], ["200=0.1"], ["429=2"], ["429=0.6", "500=0.6"]):
        with pytest.raises(UserError):
            parse_fail_rates(bad)


def test_cli_rules_files_and_server_options(tmp_path):
    yaml_rules = tmp_path / "rules.yaml"
    yaml_rules.write_text('rules:\n  - pattern: "(?i)capital"\n    reply: "Paris."\n'
                          '  - pattern: "overload"\n    fault: {status: 503}\n'
                          'default: "No idea."\n', encoding="utf-8")
    json_rules = tmp_path / "rules.json"
    json_rules.write_text(json.dumps([{"pattern": "weather", "reply": {"tool_calls": [
        {"name": "get_weather", "arguments": {"city": "Oslo"}}]}}]), encoding="utf-8")
    args = cli_parser().parse_args(["testing", "serve", "--port", "0", "--rules",
                                    str(yaml_rules), "--api-key", "sk-cli",
                                    "--models", MODEL, "--latency", "0.01"])

    with build_server(args) as server:
        client = sync_client(server, api_key="sk-cli")
        assert chat(client).choices[0].message.content == "Paris."
        assert chat(client, messages=[{"role": "user", "content": "hi"}]).choices[
            0].message.content == "No idea."
        with pytest.raises(openai.InternalServerError):
            chat(client, messages=[{"role": "user", "content": "overload"}])
        with pytest.raises(openai.NotFoundError):
            chat(client, model="other")
    reply = load_rules(str(json_rules))("chat", {"messages": [{"role": "user",
                                                               "content": "weather?"}]})
    assert reply["tool_calls"][0]["name"] == "get_weather"
    for bad in ("missing.yaml", "bad.json"):
        (tmp_path / "bad.json").write_text('[{"reply": "no pattern"}]', encoding="utf-8")
        with pytest.raises(UserError):
            load_rules(str(tmp_path / bad))


def test_server_process_prints_the_base_url_and_stops_on_ctrl_c(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"pattern": "ping", "reply": "pong"}]), encoding="utf-8")

    with TestServerProcess("--rules", str(rules), latency=0.001) as process:
        assert process.base_url.startswith("http://127.0.0.1:")
        assert process.base_url.endswith("/v1")
        with openai.OpenAI(base_url=process.base_url, api_key="k", max_retries=0,
                           timeout=5) as client:
            reply = chat(client, messages=[{"role": "user", "content": "ping"}])
            assert reply.choices[0].message.content == "pong"

    assert process.returncode == 0


def test_server_processes_share_one_port_and_stop_together():
    """``processes=2``: two servers on one port (SO_REUSEPORT); the kernel spreads new
    connections over both (each numbers its own requests from 1), and stop ends both."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    with TestServerProcess(processes=2) as process:
        pids = process.pids
        assert len(set(pids)) == 2
        port = int(process.url.rsplit(":", 1)[1])
        first_ids = 0
        for _ in range(40):  # a new connection each time
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 ")
            first_ids += b"x-request-id: req_00000001" in answer.lower()
        assert first_ids == 2  # each process answered its own first request
    assert process.pids == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_server_process_reports_a_refused_start():
    with pytest.raises(RuntimeError, match="refusing"):
        TestServerProcess("--host", "10.1.2.3").start()


# -- faults that break the delivery of an answer -----------------------------------------------


def raw_stream_request(server: TestServer, body: dict, version: str = "HTTP/1.1") -> bytes:
    """Everything the server sends for one request, until it closes the connection."""
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"POST /v1/chat/completions {version}\r\nHost: x\r\nConnection: close\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
                     .encode() + payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_stream_cut_mid_body_through_the_client(server):
    server.set_faults(cut_next=1, cut_after=3)
    client = sync_client(server)
    received = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in chat(client, stream=True):
            received.append(chunk)

    assert len(received) == 3
    assert received[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].finish_reason is None for c in received)
    expected = chat(client).choices[0].message.content  # the next request is served normally
    assert expected.startswith(join_chat_stream(received)[0])
    assert server.faults.cut_next == 0
    assert server.counters.by_status == {200: 2}


def test_stream_cut_on_the_wire_has_no_chunked_terminator(server):
    server.set_faults(cut_next=1, cut_after=2)

    received = raw_stream_request(server, {"model": MODEL, "messages": MESSAGES, "stream": True})

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
    assert body.count(b"data: ") == 2
    assert b"[DONE]" not in body and not body.endswith(b"0\r\n\r\n")


def test_cut_plain_responses_and_embeddings(server):
    server.set_faults(cut_next=2)
    client = sync_client(server)

    with pytest.raises(openai.APIConnectionError):
        chat(client)
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model="e", input="a")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    server.set_faults(cut_next=1)
    conn.request("POST", "/v1/chat/completions", json.dumps({"model": MODEL,
                                                             "messages": MESSAGES}))
    response = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    conn.close()
    assert 0 < len(caught.value.partial) < int(response.getheader("Content-Length"))
    assert chat(client).choices[0].message.content


def test_stream_cut_after_zero_events_sends_only_the_headers(server):
    server.set_faults(cut_next=1, cut_after=0)

    received = raw_stream_request(server, {"model": MODEL, "messages": MESSAGES, "stream": True})

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b""


def test_unfinished_stream_has_no_finish_reason_usage_or_done(server):
    client = sync_client(server)
    full = list(chat(client, stream=True, stream_options={"include_usage": True}))
    server.set_faults(unfinished_next=2)

    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))

    assert join_chat_stream(chunks) == join_chat_stream(full)  # all the content came
    assert chunks and all(c.choices and c.choices[0].finish_reason is None for c in chunks)
    assert all(c.usage is None for c in chunks)
    received = raw_stream_request(server, {"model": MODEL, "messages": MESSAGES, "stream": True})
    assert b"data: " in received and b"[DONE]" not in received
    assert received.endswith(b"0\r\n\r\n")  # the body itself ended cleanly
    assert b'"finish_reason":"stop"' not in received


def test_unfinished_plain_answers_and_completion_streams(server):
    server.set_faults(unfinished_next=2)
    client = sync_client(server)

    reply = chat(client)
    chunks = list(client.completions.create(model="m", prompt=PROMPT, stream=True))

    assert reply.choices[0].finish_reason is None and reply.choices[0].message.content
    assert reply.usage.completion_tokens >= 1
    assert chunks and all(c.choices[0].finish_reason is None for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == echo_completion_text(
        {"model": "m", "prompt": PROMPT})
    assert chat(client, stream=True) and server.faults.unfinished_next == 0


def test_responders_return_delivery_faults_with_their_own_reply():
    script = ScriptedResponder([Fault.cut(after=2, reply="one two three " * 5),
                                Fault.unfinished("partial answer"), Fault.cut(1)])
    with TestServer(script, stream_chunk_chars=4) as server:
        client = sync_client(server)
        got = []
        with pytest.raises(openai.APIConnectionError):
            for chunk in chat(client, stream=True):
                got.append(chunk)
        unfinished = list(chat(client, stream=True))
        with pytest.raises(openai.APIConnectionError):
            chat(client)

    assert join_chat_stream(got) == {0: "one "}
    assert join_chat_stream(unfinished) == {0: "partial answer"}
    assert all(c.choices[0].finish_reason is None for c in unfinished)
    assert script.remaining == 0


def test_fail_rate_draws_named_faults():
    with TestServer(fail_rate={"cut": 1.0}, cut_after=1) as server:
        client = sync_client(server)
        with pytest.raises(openai.APIConnectionError):
            list(chat(client, stream=True))
        server.set_faults(fail_rate={"unfinished": 1.0})
        assert all(c.choices[0].finish_reason is None for c in chat(client, stream=True))
        server.set_faults(fail_rate={"malformed": 1.0})
        with pytest.raises((openai.APIResponseValidationError, ValueError)):
            chat(client)
        server.set_faults(fail_rate={"hang": 1.0}, hang_seconds=30)
        with pytest.raises(openai.APITimeoutError):
            chat(sync_client(server, timeout=0.3))
    for bad in ({"bogus": 0.1}, {200: 0.5}, {"cut": 1.5}):
        with pytest.raises(ValueError):
            Faults(fail_rate=bad)
    assert Faults(fail_rate={"503": 0.1, "CUT": 0.2}).fail_rate == {503: 0.1, "cut": 0.2}


def test_fault_config_forms():
    assert Fault.from_config({"cut": 3}).after == 3
    assert Fault.from_config({"cut": True}).after == 2
    assert Fault.from_config({"unfinished": True, "reply": "x"}).reply == "x"
    assert Fault.from_config({"status": 429, "retry_after": 2}).retry_after == 2
    for bad in ({"cut": -1}, {"cut": "many"}, {"status": 200}, {"status": "x"}, "503"):
        with pytest.raises(ValueError):
            Fault.from_config(bad)
    with pytest.raises(ValueError):
        Faults(cut_after=-1)


def test_a_closed_port_refuses_the_connection():
    with TestServer() as server:
        port = server.port
    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0,
                       timeout=5) as client:
        with pytest.raises(openai.APIConnectionError):
            chat(client)


def test_stopping_ends_a_hanging_request_and_closes_its_connection():
    server = TestServer(hang_next=1, hang_seconds=60).start()
    try:
        payload = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"\r\n%s" % (len(payload), payload))
        deadline = time.monotonic() + 5
        while server.counters.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.counters.in_flight == 1
    finally:
        server.stop()
    assert sock.recv(65536) == b""  # closed, no response
    sock.close()


def test_a_client_that_gives_up_on_a_hang_is_no_longer_in_flight(server):
    server.set_faults(hang_next=1, hang_seconds=60)
    with pytest.raises(openai.APITimeoutError):
        chat(sync_client(server, timeout=0.3))
    _OPEN_CLIENTS.pop().close()  # the client's connection closes: the server notices

    deadline = time.monotonic() + 5
    while server.counters.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.counters.in_flight == 0
    assert server.requests[-1].status is None


def test_reset_while_a_request_is_in_flight_keeps_the_gauge_right():
    async def slow(kind, body):
        await asyncio.sleep(0.3)
        return "late"

    with TestServer(slow) as server:
        async def run():
            async with async_client(server) as client:
                call = asyncio.ensure_future(client.chat.completions.create(
                    model=MODEL, messages=MESSAGES))
                while server.counters.in_flight == 0:
                    await asyncio.sleep(0.005)
                server.reset()
                return await call

        reply = asyncio.run(run())
        counters = server.counters
    assert reply.choices[0].message.content == "late"
    assert counters.in_flight == 0 and counters.total == 0


def test_http_10_stream_is_close_delimited(server):
    received = raw_stream_request(server, {"model": MODEL, "messages": MESSAGES, "stream": True},
                                  version="HTTP/1.0")

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert b"chunked" not in head.lower() and body.endswith(b"data: [DONE]\n\n")


# -- logprobs and embeddings as the real client asks for them ----------------------------------


def test_logprobs_of_a_rating_answer_cover_the_scale():
    rules = RuleResponder([(r"(?i)rate", "4")])
    with TestServer(rules) as server:
        reply = chat(sync_client(server), messages=[{"role": "user", "content": "Rate it 1-5"}],
                     logprobs=True, top_logprobs=5)

    [token] = reply.choices[0].logprobs.content
    assert token.token == "4" and token.bytes == [ord("4")]
    top = token.top_logprobs
    assert [t.token for t in top][0] == "4" and {t.token for t in top} == {"1", "2", "3", "4", "5"}
    probabilities = [math.exp(t.logprob) for t in top]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) < 1.0 and top[0].logprob == token.logprob
    assert reply.usage.prompt_tokens == 3 and reply.usage.completion_tokens == 1


def test_logprobs_alternatives_are_plausible_and_streamed():
    rules = RuleResponder([(r"yes or no", "Yes"), (r"score", "Score: 7")])
    with TestServer(rules) as server:
        client = sync_client(server)
        yes = chat(client, messages=[{"role": "user", "content": "yes or no?"}],
                   logprobs=True, top_logprobs=2)
        score = chat(client, messages=[{"role": "user", "content": "score"}], logprobs=True,
                     top_logprobs=3)
        streamed = list(chat(client, messages=[{"role": "user", "content": "score"}],
                             logprobs=True, top_logprobs=3, stream=True))
        without_top = chat(client, messages=[{"role": "user", "content": "score"}],
                           logprobs=True)
        with pytest.raises(openai.BadRequestError) as caught:
            chat(client, logprobs=True, top_logprobs=21)

    assert [t.token for t in yes.choices[0].logprobs.content[0].top_logprobs] == ["Yes", "No"]
    tokens = score.choices[0].logprobs.content
    assert [t.token for t in tokens] == ["Score:", " 7"]
    assert [t.token for t in tokens[1].top_logprobs] == [" 7", " 6", " 8"]
    streamed_tokens = [t for c in streamed if c.choices and c.choices[0].logprobs
                       for t in c.choices[0].logprobs.content]
    assert [t.model_dump() for t in streamed_tokens] == [t.model_dump() for t in tokens]
    assert all(t.top_logprobs == [] for t in without_top.choices[0].logprobs.content)
    assert caught.value.code == "invalid_value" and caught.value.param == "top_logprobs"


def test_embeddings_come_as_base64_when_the_client_asks_by_default(server):
    client = sync_client(server)

    default = client.embeddings.create(model="e", input="a")
    explicit = client.embeddings.create(model="e", input="a", encoding_format="base64")

    assert server.requests[0].body["encoding_format"] == "base64"  # the client's default
    assert default.data[0].embedding == pytest.approx(hash_embedding("a"), abs=1e-6)
    raw = base64.b64decode(explicit.data[0].embedding)
    assert struct.unpack("<8f", raw) == pytest.approx(hash_embedding("a"), abs=1e-6)


# -- new CLI options ---------------------------------------------------------------------------


def test_cli_fail_rates_with_fault_names():
    assert parse_fail_rates(["cut=0.1", "UNFINISHED=0.2", "503=0.1"]) == {
        "cut": 0.1, "unfinished": 0.2, 503: 0.1}
    for bad in (["cuts=0.1"], ["hang=2"]):
        with pytest.raises(UserError):
            parse_fail_rates(bad)


def test_cli_stream_and_fault_options():
    args = cli_parser().parse_args(["testing", "serve", "--port", "0", "--fail-rate", "cut=1",
                                    "--cut-after", "1", "--stream-chunk-chars", "5",
                                    "--chunk-delay", "0.001"])
    with build_server(args) as server:
        client = sync_client(server)
        got = []
        with pytest.raises(openai.APIConnectionError):
            for chunk in chat(client, stream=True):
                got.append(chunk)
        server.set_faults(fail_rate={})
        pieces = [c.choices[0].delta.content for c in chat(client, stream=True)]
    assert len(got) == 1 and got[0].choices[0].delta.role == "assistant"
    assert all(len(p) <= 5 for p in pieces if p)
    for bad in (["--stream-chunk-chars", "0"], ["--cut-after", "-1"], ["--chunk-delay", "-1"]):
        args = cli_parser().parse_args(["testing", "serve", "--port", "0", *bad])
        with pytest.raises(UserError):
            build_server(args)


def test_cli_rules_with_delivery_faults(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text('rules:\n  - pattern: "flaky"\n    fault: {cut: 1}\n'
                     '  - pattern: "endless"\n    fault: {unfinished: true, reply: "so far"}\n',
                     encoding="utf-8")
    responder = load_rules(str(rules))
    with TestServer(responder) as server:
        client = sync_client(server)
        with pytest.raises(openai.APIConnectionError):
            list(chat(client, stream=True, messages=[{"role": "user", "content": "flaky"}]))
        chunks = list(chat(client, stream=True, messages=[{"role": "user",
                                                           "content": "endless"}]))
    assert join_chat_stream(chunks) == {0: "so far"}
    (tmp_path / "bad.yaml").write_text('- pattern: "x"\n  fault: {cut: -2}\n', encoding="utf-8")
    with pytest.raises(UserError, match="rule 1"):
        load_rules(str(tmp_path / "bad.yaml"))


def test_stall_mid_stream_makes_the_client_time_out_after_the_first_events(server):
    server.set_faults(stall_next=2, stall_seconds=60, cut_after=2)
    client = sync_client(server, timeout=1.0)  # a bound for the silence, not a timing
    received = []

    with pytest.raises(openai.APITimeoutError):
        for chunk in chat(client, stream=True):
            received.append(chunk)
    with pytest.raises(openai.APITimeoutError):
        chat(client)

    assert len(received) == 2 and received[1].choices[0].delta.content
    assert chat(client).choices[0].finish_reason == "stop"
    assert server.faults.stall_next == 0


def test_stall_from_rules_and_rates(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"pattern": "slow", "fault": {"stall": 60, "after": 1}}]),
                     encoding="utf-8")
    assert Fault.from_config({"stall": 5}).after == 2
    with pytest.raises(ValueError):
        Fault.from_config({"stall": 5, "after": -1})
    with TestServer(load_rules(str(rules))) as server:
        client = sync_client(server, timeout=1.0)
        got = []
        with pytest.raises(openai.APITimeoutError):
            for chunk in chat(client, stream=True, messages=[{"role": "user",
                                                              "content": "slow"}]):
                got.append(chunk)
        assert len(got) == 1
        server.set_faults(fail_rate={"stall": 1.0}, stall_seconds=60)
        with pytest.raises(openai.APITimeoutError):
            list(chat(client, stream=True))
    assert parse_fail_rates(["stall=0.5"]) == {"stall": 0.5}


def test_route_forms(server):
    body = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
    cases = [("POST", "/v1/chat/completions/", "chat.completions", 200, None),
             ("POST", "/openai/v1/chat/completions", "chat.completions", 200, None),
             ("POST", "/openai/deployments/my%20dep/v1/chat/completions", "chat.completions",
              200, "my dep"),
             ("GET", "/v1/models/", "models", 200, None),
             ("GET", "/v1/models/org/model-1", "models", 200, None),
             ("GET", "/openai/deployments/dep/models", "not_found", 404, None),
             ("POST", "/", "not_found", 404, None)]
    for method, path, endpoint, status, deployment in cases:
        got, _, raw = raw_request(server, method, path, body if method == "POST" else None)
        assert (got, server.last_request.endpoint) == (status, endpoint), path
        assert server.last_request.deployment == deployment and server.last_request.path == path
    assert json.loads(raw_request(server, "GET", "/v1/models/org/model-1")[2])["id"] == \
        "org/model-1"


def test_cli_reports_a_port_in_use(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = cli_parser().parse_args(["testing", "serve", "--port", str(port)])

        assert args.handler(args) == 1

    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_server_process_keeps_answering_after_many_unparseable_requests():
    # Each one is logged on the child's stderr; unread, 64 KiB of them would block the child.
    with TestServerProcess() as process:
        port = int(process.url.rsplit(":", 1)[1])
        for _ in range(200):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                             b"sk-\x01secret-value\r\n\r\n")
                assert re.match(rb"HTTP/1\.[01] 400 ", sock.recv(65536))
        with openai.OpenAI(base_url=process.base_url, api_key="k", max_retries=0,
                           timeout=5) as client:
            assert [m.id for m in client.models.list()] == list(DEFAULT_MODELS)


def test_cli_logs_unparseable_requests_in_one_line_without_their_bytes(capsys):
    import logging

    from pfkit.cli._testing import _OneLineErrors

    class BadHttpMessage(Exception):
        message = "Invalid header value char:\n\n  b'Authorization: Bearer sk-secret-value'\n ^"

    try:
        raise BadHttpMessage("400, message: " + BadHttpMessage.message)
    except BadHttpMessage:
        import sys

        record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                                   "Error handling request from %s", ("127.0.0.1",),
                                   sys.exc_info())
    line = _OneLineErrors().format(record)

    assert line == ("pfkit test server: Error handling request from 127.0.0.1 "
                    "(BadHttpMessage: Invalid header value char)")
