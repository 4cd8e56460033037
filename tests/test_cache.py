"""The model-call cache: keys, modes, streaming, cassettes, concurrency and schema migration."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from pfkit.errors import UserError
from pfkit.providers import ChatModel, ChatResponse, Usage
from pfkit.providers._cache import (
    SCHEMA_VERSION,
    CachingModel,
    ReplayMissError,
    ResponseCache,
    cache_key,
    is_nondeterministic,
    resolve_cache_mode,
)
from pfkit.providers._caching_model import _hit_fields
from pfkit.testing import EchoModel

IDENTITY = {"provider": "echo"}


def chat_request(text: str = "hello", **params: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": "gpt-4o", "temperature": 0,
                               "messages": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": text}]}
    request.update(params)
    return request


async def collect(stream) -> list[str]:
    return [chunk async for chunk in stream]


class NumberedModel(EchoModel):
    """Answers ``answer <n>`` where n counts its calls, so stale and fresh answers differ."""

    async def chat(self, request: dict[str, Any]) -> ChatResponse:
        self.requests.append(request)
        return ChatResponse({"role": "assistant", "content": f"answer {len(self.requests)}"})


class SlowEcho(EchoModel):
    """EchoModel that yields to the event loop inside every call, so tasks interleave."""

    async def chat(self, request: dict[str, Any]) -> ChatResponse:
        await asyncio.sleep(0)
        response = await super().chat(request)
        await asyncio.sleep(0)
        return response


class UsageStream(EchoModel):
    """Streams like the OpenAI provider: content deltas, then one ``Usage`` item."""

    async def chat_stream(self, request: dict[str, Any]):
        async for chunk in super().chat_stream(request):
            yield chunk
        yield Usage(3, 4, 7)


class FailingStream(EchoModel):
    async def chat_stream(self, request: dict[str, Any]):
        self.requests.append(request)
        yield "partial"
        raise RuntimeError("connection dropped")


# ---------------------------------------------------------------------------------------- keys

def test_key_is_sha256_of_the_documented_canonical_json():
    request = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}
    text = ('{"identity":{"provider":"echo"},"kind":"chat","request":{"messages":'
            '[{"content":"héllo","role":"user"}],"model":"m"},"v":1}')
    assert cache_key(IDENTITY, "chat", request) == hashlib.sha256(text.encode()).hexdigest()


def test_key_ignores_dict_order_none_values_stream_and_user():
    base = cache_key(IDENTITY, "chat", chat_request())
    reordered = dict(reversed(list(chat_request().items())))
    reordered["messages"] = [dict(reversed(list(m.items()))) for m in reordered["messages"]]
    assert cache_key(IDENTITY, "chat", reordered) == base
    assert cache_key({"provider": "echo"}, "chat", chat_request(max_tokens=None)) == base
    assert cache_key(IDENTITY, "chat", chat_request(stream=True,
                                                    stream_options={"include_usage": True},
                                                    user="alice")) == base
    assert cache_key(IDENTITY, "chat", chat_request(temperature=0.0)) == base


def test_key_changes_with_what_changes_the_answer():
    base = cache_key(IDENTITY, "chat", chat_request())
    assert cache_key(IDENTITY, "chat", chat_request("other")) != base
    assert cache_key(IDENTITY, "chat", chat_request(temperature=0.5)) != base
    assert cache_key({"provider": "echo", "base_url": "x"}, "chat", chat_request()) != base
    assert cache_key(IDENTITY, "completion", chat_request()) != base
    with pytest.raises(ValueError):
        cache_key(IDENTITY, "chats", chat_request())


# --------------------------------------------------------------------------------------- modes

def test_off_passes_through_and_never_touches_the_cache():
    inner, cache = EchoModel(), ResponseCache.in_memory()
    model = CachingModel(inner, cache, "off")
    first = asyncio.run(model.chat(chat_request()))
    second = asyncio.run(model.chat(chat_request()))
    assert first == second
    assert len(inner.requests) == 2
    assert cache.stats.writes == cache.stats.hits == cache.stats.misses == 0
    assert model.stats.calls == model.stats.inner_calls == 2
    assert CachingModel(EchoModel(), None, "off").mode == "off"


def test_read_write_answers_repeats_from_the_cache():
    inner, cache = EchoModel(), ResponseCache.in_memory()
    model = CachingModel(inner, cache, "read_write")
    first = asyncio.run(model.chat(chat_request()))
    second = asyncio.run(model.chat(chat_request(stream=False)))
    assert second == first and second.message == first.message
    assert list(second.message) == list(first.message)  # key order kept too
    assert len(inner.requests) == 1
    assert (model.stats.calls, model.stats.hits, model.stats.misses,
            model.stats.inner_calls) == (2, 1, 1, 1)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes) == (1, 1, 1)


def test_record_always_calls_and_overwrites():
    inner, cache = NumberedModel(), ResponseCache.in_memory()
    asyncio.run(CachingModel(inner, cache, "read_write").chat(chat_request()))
    recorder = CachingModel(inner, cache, "record")
    assert asyncio.run(recorder.chat(chat_request())).message["content"] == "answer 2"
    assert asyncio.run(recorder.chat(chat_request())).message["content"] == "answer 3"
    assert len(inner.requests) == 3
    assert recorder.stats.hits == 0
    replayed = asyncio.run(CachingModel(NumberedModel(), cache, "replay").chat(chat_request()))
    assert replayed.message["content"] == "answer 3"


def test_replay_hit_needs_no_model():
    cache = ResponseCache.in_memory()
    recorded = asyncio.run(CachingModel(EchoModel(), cache, "record").chat(chat_request()))
    inner = EchoModel()
    replayed = asyncio.run(CachingModel(inner, cache, "replay").chat(chat_request()))
    assert replayed == recorded
    assert inner.requests == []


def test_replay_miss_error_names_model_kind_key_and_message():
    cache = ResponseCache.in_memory()
    model = CachingModel(EchoModel(), cache, "replay")
    request = chat_request("What is   the capital\nof France? " + "x" * 200)
    with pytest.raises(ReplayMissError) as info:
        asyncio.run(model.chat(request))
    error = info.value
    assert isinstance(error, UserError)
    assert error.code == "CacheReplayMiss"
    key = cache_key(IDENTITY, "chat", request)
    assert error.key == key and error.kind == "chat"
    assert "gpt-4o" in error.message and "echo" in error.message
    assert "chat" in error.message and key[:12] in error.message
    assert "What is the capital of France?" in error.message
    assert "x" * 100 not in error.message  # only an excerpt
    assert "--cache record" in error.hint and "PFKIT_CACHE=record" in error.hint
    assert error.to_dict()["code"] == "CacheReplayMiss"
    assert cache.stats.replay_misses == 1
    assert model.stats.misses == 1 and model.stats.inner_calls == 0


def test_replay_miss_for_completion_and_embedding_shows_prompt_and_input():
    model = CachingModel(EchoModel(), ResponseCache.in_memory(), "replay")
    with pytest.raises(ReplayMissError, match="completion.*Once upon"):
        asyncio.run(model.complete({"model": "davinci", "prompt": "Once upon a time"}))
    with pytest.raises(ReplayMissError, match="embedding.*some text"):
        asyncio.run(model.embed({"model": "ada", "input": ["some text"]}))


def test_unknown_mode_is_a_user_error():
    with pytest.raises(UserError, match="read_write"):
        CachingModel(EchoModel(), ResponseCache.in_memory(), "sometimes")
    with pytest.raises(ValueError):
        CachingModel(EchoModel(), None, "replay")


def test_caching_model_is_a_chat_model_delegating_identity():
    inner = EchoModel(api_style="azure_openai")
    model = CachingModel(inner, ResponseCache.in_memory(), "read_write")
    assert isinstance(model, ChatModel)
    assert model.api_style == "azure_openai"
    assert model.identity == {"provider": "echo"}


# ------------------------------------------------------------------------ nondeterministic rule

@pytest.mark.parametrize(("params", "expected"), [
    ({}, True),
    ({"temperature": 0.7}, True),
    ({"temperature": 0}, False),
    ({"temperature": 0.7, "seed": 42}, False),
    ({"seed": 0}, False),
])
def test_nondeterministic_rule(params, expected):
    request = {"messages": [{"role": "user", "content": "hi"}], **params}
    assert is_nondeterministic("chat", request) is expected
    assert is_nondeterministic("completion", request) is expected
    assert is_nondeterministic("embedding", {"input": "hi"}) is False


def test_read_write_bypasses_sampled_requests():
    inner, cache = EchoModel(), ResponseCache.in_memory()
    model = CachingModel(inner, cache, "read_write")
    sampled = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}  # default 1.0
    for _ in range(2):
        asyncio.run(model.chat(sampled))
        asyncio.run(model.chat({**sampled, "temperature": 0.3}))
    assert len(inner.requests) == 4
    assert cache.stats.writes == 0 and model.stats.hits == model.stats.misses == 0
    for _ in range(2):
        asyncio.run(model.chat({**sampled, "temperature": 0.3, "seed": 7}))
    assert len(inner.requests) == 5


def test_read_write_caches_sampled_requests_when_asked():
    inner = EchoModel()
    model = CachingModel(inner, ResponseCache.in_memory(), "read_write",
                         cache_nondeterministic=True)
    request = chat_request(temperature=0.9)
    asyncio.run(model.chat(request))
    asyncio.run(model.chat(request))
    assert len(inner.requests) == 1


def test_record_and_replay_always_cache_sampled_requests():
    cache, request = ResponseCache.in_memory(), chat_request(temperature=0.9)
    recorded = asyncio.run(CachingModel(EchoModel(), cache, "record").chat(request))
    assert cache.stats.writes == 1
    inner = EchoModel()
    assert asyncio.run(CachingModel(inner, cache, "replay").chat(request)) == recorded
    assert inner.requests == []


# ------------------------------------------------------------------------------------ streaming

def test_stream_miss_streams_and_stores_then_hit_replays_the_chunks():
    inner, cache = EchoModel(), ResponseCache.in_memory()
    model = CachingModel(inner, cache, "read_write")
    request = chat_request("stream me", stream=True)
    first = asyncio.run(collect(model.chat_stream(request)))
    assert first == asyncio.run(collect(EchoModel().chat_stream(request)))
    assert len(first) > 1
    second = asyncio.run(collect(model.chat_stream(request)))
    assert second == first
    assert len(inner.requests) == 1
    assert model.stats.hits == 1 and model.stats.misses == 1


def test_stream_and_plain_chat_share_an_entry():
    inner, cache = EchoModel(), ResponseCache.in_memory()
    model = CachingModel(inner, cache, "read_write")
    chunks = asyncio.run(collect(model.chat_stream(chat_request("a", stream=True))))
    plain = asyncio.run(model.chat(chat_request("a")))
    assert plain.message["content"] == "".join(chunks)
    assert plain.message["role"] == "assistant"

    response = asyncio.run(model.chat(chat_request("b")))
    streamed = asyncio.run(collect(model.chat_stream(chat_request("b", stream=True))))
    assert streamed == [response.message["content"], response.usage]  # usage ends the stream
    assert len(inner.requests) == 2


def test_a_final_usage_item_is_stored_and_replayed():
    inner, cache = UsageStream(), ResponseCache.in_memory()
    model = CachingModel(inner, cache, "read_write")
    request = chat_request(stream=True)
    first = asyncio.run(collect(model.chat_stream(request)))
    assert first[-1] == Usage(3, 4, 7) and all(isinstance(c, str) for c in first[:-1])
    assert asyncio.run(collect(model.chat_stream(request))) == first
    plain = asyncio.run(model.chat(chat_request()))
    assert plain.usage == Usage(3, 4, 7) and plain.message["content"] == "".join(first[:-1])
    assert len(inner.requests) == 1


def test_hits_are_marked_cached_when_the_response_class_has_the_field():
    @dataclass(frozen=True)
    class Marked:
        text: str
        cached: bool = field(default=False, compare=False)

    assert _hit_fields(Marked) == {"cached": True}
    assert _hit_fields(ChatResponse) == ({"cached": True} if hasattr(ChatResponse, "cached")
                                         else {})


def test_stream_is_not_stored_when_it_fails_or_stops_early():
    cache = ResponseCache.in_memory()
    failing = CachingModel(FailingStream(), cache, "read_write")
    with pytest.raises(RuntimeError, match="connection dropped"):
        asyncio.run(collect(failing.chat_stream(chat_request(stream=True))))
    assert cache.stats.writes == 0

    async def first_chunk_only(model: CachingModel) -> str:
        stream = model.chat_stream(chat_request(stream=True))
        chunk = await stream.__anext__()
        await stream.aclose()
        return chunk

    asyncio.run(first_chunk_only(CachingModel(EchoModel(), cache, "record")))
    assert cache.stats.writes == 0


def test_stream_replay_hit_and_miss():
    cache, request = ResponseCache.in_memory(), chat_request(stream=True)
    recorded = asyncio.run(collect(CachingModel(EchoModel(), cache, "record").chat_stream(request)))
    inner = EchoModel()
    replay = CachingModel(inner, cache, "replay")
    assert asyncio.run(collect(replay.chat_stream(request))) == recorded
    with pytest.raises(ReplayMissError):
        asyncio.run(collect(replay.chat_stream(chat_request("new", stream=True))))
    assert inner.requests == []


# ---------------------------------------------------------------------- embeddings, completions

def test_embeddings_and_completions_round_trip_exactly():
    inner, cache = EchoModel(), ResponseCache.in_memory()
    model = CachingModel(inner, cache, "read_write")
    embed_request = {"model": "text-embedding-3-small", "input": ["one", "two"]}
    complete_request = {"model": "davinci", "prompt": "Say hi", "temperature": 0}
    embedded = asyncio.run(model.embed(embed_request))
    completed = asyncio.run(model.complete(complete_request))
    assert asyncio.run(model.embed(embed_request)) == embedded
    assert asyncio.run(model.complete(complete_request)) == completed
    assert len(inner.requests) == 2
    assert asyncio.run(model.embed({**embed_request, "input": "one"})) != embedded
    assert len(inner.requests) == 3


# ------------------------------------------------------------------------------------ cassettes

def record_some_calls(cache: ResponseCache) -> tuple[list[Any], list[str]]:
    async def go() -> list[Any]:
        model = CachingModel(EchoModel(), cache, "record")
        return [await model.chat(chat_request("ünïcode ✓")),
                await model.chat(chat_request("second", temperature=0.8)),
                await model.complete({"model": "davinci", "prompt": "p", "temperature": 0}),
                await model.embed({"model": "ada", "input": "e"}),
                await collect(model.chat_stream(chat_request("streamed", stream=True)))]

    return asyncio.run(go()), cache.keys_used()


async def replay_the_same_calls(model: CachingModel) -> list[Any]:
    return [await model.chat(chat_request("ünïcode ✓")),
            await model.chat(chat_request("second", temperature=0.8)),
            await model.complete({"model": "davinci", "prompt": "p", "temperature": 0}),
            await model.embed({"model": "ada", "input": "e"}),
            await collect(model.chat_stream(chat_request("streamed", stream=True)))]


def test_cassette_export_load_and_replay(tmp_path):
    with ResponseCache(tmp_path / "cache.db") as cache:
        recorded, keys = record_some_calls(cache)
        cassette = tmp_path / "run.jsonl"
        assert cache.export_cassette(cassette, keys=keys) == 5
        again = tmp_path / "again.jsonl"
        cache.export_cassette(again)
    assert cassette.read_bytes() == again.read_bytes()  # deterministic

    lines = cassette.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["key"] for r in records] == sorted(keys)
    assert all(set(r) == {"key", "kind", "identity", "request", "response"} for r in records)
    assert "ünïcode ✓" in cassette.read_text(encoding="utf-8")
    assert all("stream" not in r["request"] for r in records)

    fresh = ResponseCache.in_memory()
    assert fresh.load_cassette(cassette) == 5
    inner = EchoModel()
    replayed = asyncio.run(replay_the_same_calls(CachingModel(inner, fresh, "replay")))
    assert replayed == recorded
    assert inner.requests == []
    assert fresh.stats.hits == 5 and fresh.stats.misses == 0


def test_cassette_layer_is_consulted_first(tmp_path):
    key = cache_key(IDENTITY, "chat", chat_request())
    source = ResponseCache.in_memory()
    source.put(key, "chat", IDENTITY, chat_request(), {"message": {"content": "cassette"}})
    source.export_cassette(tmp_path / "c.jsonl")
    cache = ResponseCache.in_memory()
    cache.put(key, "chat", IDENTITY, chat_request(), {"message": {"content": "db"}})
    cache.load_cassette(tmp_path / "c.jsonl")
    assert cache.get(key) == {"message": {"content": "cassette"}}


def test_secrets_never_reach_disk(tmp_path):
    inner = EchoModel()
    inner.identity = {"provider": "echo", "api_key": "sk-SECRET",
                      "headers": {"Authorization": "Bearer TOKEN", "api-key": "AZ-KEY"}}
    with ResponseCache(tmp_path / "cache.db") as cache:
        asyncio.run(CachingModel(inner, cache, "read_write").chat(chat_request(max_tokens=5)))
        cache.export_cassette(tmp_path / "c.jsonl")
    for path in (tmp_path / "c.jsonl", tmp_path / "cache.db"):
        data = path.read_bytes()
        assert b"sk-SECRET" not in data and b"TOKEN" not in data and b"AZ-KEY" not in data
    record = json.loads((tmp_path / "c.jsonl").read_text(encoding="utf-8"))
    assert record["identity"] == {"headers": {}, "provider": "echo"}
    assert record["request"]["max_tokens"] == 5  # "tokens" is not a secret
    rotated = {"provider": "echo", "api_key": "sk-OTHER", "headers": {}}
    assert cache_key(rotated, "chat", {}) == cache_key(inner.identity, "chat", {})


def test_malformed_cassette_line_names_file_and_line(tmp_path):
    good = ResponseCache.in_memory()
    key = cache_key(IDENTITY, "chat", chat_request())
    good.put(key, "chat", IDENTITY, chat_request(), {"message": {"content": "x"}})
    good.export_cassette(tmp_path / "good.jsonl")
    first = (tmp_path / "good.jsonl").read_text(encoding="utf-8")

    path = tmp_path / "bad.jsonl"
    path.write_text(first + "\n" + '{"key": "abc", "kind": "chat", \n', encoding="utf-8")
    with pytest.raises(UserError) as info:
        ResponseCache.in_memory().load_cassette(path)
    assert info.value.code == "InvalidCassette"
    assert info.value.location.file == str(path) and info.value.location.line == 3
    assert str(path) in str(info.value) and "line 3" in str(info.value)

    path.write_text(first + json.dumps({"key": "abc", "kind": "chat"}) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 2.*'identity' must be a JSON object"):
        ResponseCache.in_memory().load_cassette(path)

    with pytest.raises(UserError, match="does not exist"):
        ResponseCache.in_memory().load_cassette(tmp_path / "missing.jsonl")


def test_keys_used_lists_reads_and_writes_only():
    cache = ResponseCache.in_memory()
    cache.put("k1", "chat", IDENTITY, {}, {"message": {}})
    cache.put("k2", "chat", IDENTITY, {}, {"message": {}})
    fresh = ResponseCache.in_memory()
    assert fresh.get("nothing") is None
    assert fresh.keys_used() == []
    assert cache.keys_used() == ["k1", "k2"]


# ---------------------------------------------------------------------------------- concurrency

def test_one_hundred_concurrent_tasks_share_a_cache():
    inner, cache = SlowEcho(), ResponseCache.in_memory()
    model = CachingModel(inner, cache, "read_write")
    requests = [chat_request(f"q{i % 20}") for i in range(100)]

    async def go(m: CachingModel) -> list[ChatResponse]:
        return list(await asyncio.gather(*(m.chat(r) for r in requests)))

    results = asyncio.run(go(model))
    expected = [asyncio.run(EchoModel().chat(r)) for r in requests]
    assert results == expected
    assert 20 <= len(inner.requests) <= 100
    assert model.stats.calls == 100
    assert model.stats.hits + model.stats.misses == 100

    replay_inner = SlowEcho()
    assert asyncio.run(go(CachingModel(replay_inner, cache, "replay"))) == expected
    assert replay_inner.requests == []
    assert len(set(cache.keys_used())) == 20


def test_threads_with_their_own_event_loops_share_a_file_cache(tmp_path):
    cache = ResponseCache(tmp_path / "cache.db")
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            model = CachingModel(SlowEcho(), cache, "read_write")

            async def go() -> None:
                await asyncio.gather(*(model.chat(chat_request(f"t{(offset + i) % 30}"))
                                       for i in range(25)))

            asyncio.run(go())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n * 7,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    inner = EchoModel()
    replay = CachingModel(inner, cache, "replay")
    for i in range(30):
        request = chat_request(f"t{i}")
        assert asyncio.run(replay.chat(request)) == asyncio.run(EchoModel().chat(request))
    assert inner.requests == []
    cache.close()


# ------------------------------------------------------------------------------------- database

def test_file_cache_persists_uses_wal_and_counts_hits(tmp_path):
    path = tmp_path / "sub" / "cache.db"
    with ResponseCache(path) as cache:
        asyncio.run(CachingModel(EchoModel(), cache, "read_write").chat(chat_request()))
    with ResponseCache(path) as cache:
        inner = EchoModel()
        model = CachingModel(inner, cache, "replay")
        for _ in range(3):
            asyncio.run(model.chat(chat_request()))
        assert inner.requests == []
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT hits FROM entries").fetchall() == [(3,)]
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


def test_database_from_an_older_schema_still_opens(tmp_path):
    path = tmp_path / "old.db"
    key = cache_key(IDENTITY, "chat", chat_request())
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
        CREATE TABLE entries (key TEXT PRIMARY KEY, kind TEXT NOT NULL,
            identity_json TEXT NOT NULL, request_json TEXT NOT NULL,
            response_json TEXT NOT NULL, created_at TEXT NOT NULL);
    """)
    conn.execute("INSERT INTO entries VALUES (?, 'chat', '{}', '{}', ?, '2024-01-01')",
                 (key, json.dumps({"message": {"role": "assistant", "content": "old"}})))
    conn.commit()
    conn.close()

    with ResponseCache(path) as cache:
        inner = EchoModel()
        old = asyncio.run(CachingModel(inner, cache, "replay").chat(chat_request()))
        assert old.message["content"] == "old" and inner.requests == []
        asyncio.run(CachingModel(EchoModel(), cache, "read_write").chat(chat_request("new")))

    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(entries)")]
    assert "hits" in columns
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert conn.execute("SELECT COUNT(*) FROM entries").fetchone() == (2,)
    assert conn.execute("SELECT hits FROM entries WHERE key = ?", (key,)).fetchone() == (1,)
    conn.close()


def test_database_from_a_newer_schema_keeps_its_version(tmp_path):
    path = tmp_path / "new.db"
    ResponseCache(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.execute("ALTER TABLE entries ADD COLUMN future TEXT")
    conn.commit()
    conn.close()
    with ResponseCache(path) as cache:
        cache.put("k", "chat", IDENTITY, {}, {"message": {"content": "x"}})
        assert cache.get("k") == {"message": {"content": "x"}}
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchone() == (99,)
    conn.close()


# -------------------------------------------------------------------------------- mode resolution

def test_cache_mode_resolution(monkeypatch):
    monkeypatch.delenv("PFKIT_CACHE", raising=False)
    assert resolve_cache_mode(None) == "off"
    assert resolve_cache_mode("replay") == "replay"
    monkeypatch.setenv("PFKIT_CACHE", "record")
    assert resolve_cache_mode(None) == "record"
    assert resolve_cache_mode("replay") == "replay"  # the flag wins
    monkeypatch.setenv("PFKIT_CACHE", "READ-WRITE")
    assert resolve_cache_mode(None) == "read_write"
    monkeypatch.setenv("PFKIT_CACHE", "")
    assert resolve_cache_mode(None) == "off"


def test_unknown_cache_mode_lists_the_valid_ones(monkeypatch):
    monkeypatch.setenv("PFKIT_CACHE", "always")
    with pytest.raises(UserError) as info:
        resolve_cache_mode(None)
    assert info.value.code == "InvalidCacheMode"
    assert "PFKIT_CACHE" in info.value.message
    for mode in ("off", "read_write", "record", "replay"):
        assert mode in info.value.message
    with pytest.raises(UserError, match="--cache"):
        resolve_cache_mode("bogus")
