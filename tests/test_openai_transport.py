"""The OpenAI-compatible model's transports (``pfkit.providers._http``): what goes on the wire,
how answers and event streams are read, and how failures are told apart. Both transports (pfkit's
own aiohttp one and the real openai client) are held to the same requests and errors, against
the test server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math

import pytest

from pfkit.errors import UserError
from pfkit.providers._http import (
    ConnectFailure,
    Endpoint,
    MalformedFailure,
    ServerEvents,
    status_failure,
)
from pfkit.providers._openai import (
    OpenAICompatibleModel,
    ProviderError,
    ProviderOptions,
    ProviderUserError,
)
from pfkit.testing import Fault, ScriptedResponder, TestServer, echo_responder

SECRET = "sk-transport-secret-0123456789"
TRANSPORTS = ["aiohttp", "openai"]


@pytest.fixture(autouse=True)
def clean(server):
    server.reset()
    server.responder = echo_responder
    server.clear_faults()
    yield


def model(server: TestServer, transport: str, *, azure: bool = False, **options) -> OpenAICompatibleModel:
    if azure:
        return OpenAICompatibleModel(kind="azure_openai", api_key=SECRET, base_url=server.url,
                                     api_version="2024-06-01", connection="az",
                                     transport=transport,
                                     options=ProviderOptions(**{"backoff_base": 0.01, **options}))
    return OpenAICompatibleModel(kind="openai", api_key=SECRET, base_url=server.base_url,
                                 organization="org-42", connection="oai", transport=transport,
                                 options=ProviderOptions(**{"backoff_base": 0.01, **options}))


# No explicit close: a transport's connections close as its loop ends (tested below).
run = asyncio.run


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "héllo wörld"}],
        "temperature": 0}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_openai_requests_carry_the_key_the_organization_and_the_body(server, transport):
    answer = run(model(server, transport).chat(dict(CHAT)))
    assert "héllo wörld" in answer.message["content"]
    request = server.last_request
    assert request.path.endswith("/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["openai-organization"] == "org-42"
    assert request.body == CHAT
    assert answer.usage.total_tokens > 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_azure_requests_name_the_deployment_and_the_api_version(server, transport):
    run(model(server, transport, azure=True).chat({**CHAT, "model": "my-deploy"}))
    request = server.last_request
    assert request.path == "/openai/deployments/my-deploy/chat/completions"
    assert request.deployment == "my-deploy"
    assert request.query == {"api-version": "2024-06-01"}
    assert request.headers["api-key"] == SECRET
    assert "authorization" not in request.headers


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_stream_gives_every_delta_then_the_usage(server, transport):
    async def collect():
        return [item async for item in model(server, transport).chat_stream(dict(CHAT))]

    items = run(collect())
    text = "".join(item for item in items if isinstance(item, str))
    assert "héllo wörld" in text
    assert items[-1].total_tokens > 0
    assert server.last_request.body["stream"] is True


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("status,error,code", [
    (401, ProviderUserError, "ProviderAuthenticationError"),
    (403, ProviderUserError, "ProviderPermissionError"),
    (404, ProviderUserError, "ModelNotFound"),
    (400, ProviderUserError, "ProviderBadRequest"),
    (422, ProviderError, "ProviderServerError"),
])
def test_error_statuses_are_told_apart_and_not_retried(server, transport, status, error, code):
    server.responder = ScriptedResponder([Fault.error(status, "refused here", code="some_code")])
    with pytest.raises(error) as info:
        run(model(server, transport).chat(dict(CHAT)))
    assert info.value.code == code
    assert f"Error code: {status} - refused here" in info.value.message
    assert "'oai'" in info.value.message and SECRET not in info.value.message
    assert len(server.requests) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_429_and_5xx_are_retried_until_an_answer(server, transport):
    server.set_faults(rate_limit_next=1, retry_after=0.01)
    m = model(server, transport)
    answer = run(m.chat(dict(CHAT)))
    assert "héllo" in answer.message["content"]
    server.set_faults(error_next=2, error_status=503)
    answer = run(m.chat(dict(CHAT)))
    assert "héllo" in answer.message["content"] and m.retries == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_context_length_error_says_the_prompt_is_too_long(server, transport):
    server.set_faults(max_context_words=1)
    with pytest.raises(ProviderUserError) as info:
        run(model(server, transport).chat(dict(CHAT)))
    assert info.value.code == "ContextLengthExceeded"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_stopped_server_fails_fast_and_names_the_connection(transport):
    closed = OpenAICompatibleModel(kind="openai", api_key=SECRET, base_url="http://127.0.0.1:9/v1",
                                   connection="down", transport=transport)
    with pytest.raises(ProviderError) as info:
        run(closed.chat(dict(CHAT)))
    assert info.value.code == "ProviderConnectionError"
    assert "'down'" in info.value.message and "after 3 attempts" in info.value.message


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_answer_within_the_timeout_is_a_timeout(server, transport):
    server.latency = 2.0
    try:
        with pytest.raises(ProviderError) as info:
            run(model(server, transport, timeout=0.2, max_retries=0).chat(dict(CHAT)))
    finally:
        server.latency = 0.0
    assert info.value.code == "ProviderTimeout"


def test_values_json_cannot_carry_are_a_clear_user_error(server):
    with pytest.raises(ProviderUserError) as info:
        run(model(server, "aiohttp").chat({**CHAT, "temperature": math.nan}))
    assert "cannot be sent as JSON" in info.value.message
    assert server.requests == []


def test_an_unknown_transport_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv("PFKIT_OPENAI_TRANSPORT", "carrier-pigeon")
    with pytest.raises(UserError) as info:
        OpenAICompatibleModel(kind="openai", api_key="k", base_url="http://127.0.0.1:1/v1")
    assert "aiohttp" in info.value.hint and "openai" in info.value.hint


def test_endpoint_urls_follow_the_openai_client():
    plain = Endpoint(kind="openai", base_url="http://h:1/v1/", api_key="", api_version=None,
                     organization=None)
    assert plain.url("/chat/completions", {"model": "m"}) == "http://h:1/v1/chat/completions"
    assert plain.headers["Authorization"] == "Bearer unused"
    azure = Endpoint(kind="azure_openai", base_url="https://x.openai.azure.com/", api_key="k",
                     api_version=None, organization=None)
    assert azure.url("/embeddings", {"model": "emb"}) == \
        "https://x.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-02-01"


def test_status_failures_keep_the_servers_code_and_word_it_as_openai_does():
    failure = status_failure(400, '{"error": {"message": "bad", "code": "invalid_x"}}', {})
    assert failure.code == "invalid_x" and not failure.retryable
    assert failure.message == "Error code: 400 - bad"
    gateway = status_failure(502, "<html>bad gateway</html>", {})
    assert gateway.retryable and gateway.message == "Error code: 502 - <html>bad gateway</html>"
    assert status_failure(502, "", {}).message == "Error code: 502"
    assert status_failure(500, '{"detail": "x"}', {}).message == "Error code: 500"


class _Content:
    def __init__(self, pieces):
        self._pieces = pieces

    async def iter_any(self):
        for piece in self._pieces:
            if isinstance(piece, Exception):
                raise piece
            yield piece


class _Response:
    def __init__(self, pieces):
        self.content = _Content(pieces)

    def release(self):
        pass


def _events(pieces):
    def failure(exc):
        return ConnectFailure(f"broke: {exc}")

    async def collect():
        return [event async for event in ServerEvents(_Response(pieces), failure)]

    return asyncio.run(collect())


def test_server_sent_events_are_read_across_any_split_and_line_ending():
    stream = (b': keep-alive comment\r\n\r\nevent: message\r\ndata: {"a": 1}\r\n\r\n'
              b'data: {"b":\ndata: 2}\n\nid: 7\ndata: {"c": "\xc3\xa9"}\n\ndata: [DONE]\n\n'
              b'data: {"after": "done"}\n\n')
    for size in (1, 2, 3, 7, len(stream)):
        pieces = [stream[i:i + size] for i in range(0, len(stream), size)]
        assert _events(pieces) == [{"a": 1}, {"b": 2}, {"c": "é"}], size


def test_an_error_event_and_a_broken_connection_are_failures():
    with pytest.raises(MalformedFailure, match="overloaded"):
        _events([b'data: {"error": {"message": "overloaded"}}\n\n'])
    with pytest.raises(ConnectFailure, match="broke"):
        _events([b'data: {"a": 1}\n\n', ConnectionResetError("reset by peer")])
    with pytest.raises(MalformedFailure):
        _events([b"data: {not json\n\n"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_users_own_event_loop_ends_with_its_connections_closed(server, transport):
    """``asyncio.run(...)`` around model calls, with no close call: the transports close as the
    loop ends (no 'Unclosed client session' report), and a later loop opens new ones."""
    import subprocess
    import sys

    script = f"""
import asyncio, gc
from pfkit.providers._openai import OpenAICompatibleModel
m = OpenAICompatibleModel(kind="openai", api_key="sk-x", base_url={server.base_url!r},
                          transport={transport!r})
body = {{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "hi"}}]}}
for _ in range(2):
    print(asyncio.run(m.chat(dict(body))).message["content"] is not None)
gc.collect()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
    assert "Unclosed" not in result.stderr and "Error" not in result.stderr, result.stderr
