"""Every secret value of every connection is registered when the connection is resolved, so it
is masked wherever pfkit writes: provider errors, the response cache, cassettes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pfkit import _secrets
from pfkit.connections import CustomConnection, OpenAIConnection
from pfkit.connections._store import ConnectionStore, SecretResolver
from pfkit.errors import PfkitError
from pfkit.providers._cache import CachingModel, ResponseCache
from pfkit.testing import TestServer
from pfkit.testing._echo import EchoModel

ROOT = Path(__file__).resolve().parent.parent
KEY = "pfkit-test-key-9f8e7d6c5b4a"  # not shaped like an OpenAI key: only the registry masks it


@pytest.fixture(autouse=True)
def fresh_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    _secrets._reset_for_tests()
    yield
    _secrets._reset_for_tests()


def store(tmp_path: Path) -> ConnectionStore:
    return ConnectionStore(home=tmp_path / "home", resolver=SecretResolver())


def test_a_connection_resolved_from_the_environment_registers_its_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_TEST_KEY", KEY)
    conns = store(tmp_path)
    conns.create({"name": "env", "type": "open_ai", "api_key": "${env:PFKIT_TEST_KEY}"})
    assert _secrets.scrub(f"boom {KEY}") == f"boom {KEY}"  # nothing known before it is resolved
    conn = conns.get("env")
    assert conn.api_key == KEY
    assert _secrets.scrub(f"the key {KEY} leaked") == "the key ****** leaked"
    assert _secrets.scrub_value({"error": [f"x{KEY}y"]}) == {"error": ["x******y"]}


def test_a_key_with_a_trailing_newline_is_stripped_and_masked_in_both_forms(tmp_path, monkeypatch,
                                                                           capsys):
    monkeypatch.setenv("PFKIT_TEST_KEY_NL", KEY + "\n")
    conns = store(tmp_path)
    conns.create({"name": "nl_env", "type": "open_ai", "api_key": "${env:PFKIT_TEST_KEY_NL}"})
    conn = conns.get("nl_env")
    assert conn.api_key == KEY  # stripped
    err = capsys.readouterr().err
    assert "connection 'nl_env'" in err and "api_key" in err and KEY not in err
    assert _secrets.scrub(f"{KEY}\n!") == "******!"
    assert _secrets.scrub(KEY) == "******"


def test_literal_secrets_in_files_and_custom_secrets_are_registered(tmp_path):
    conns = store(tmp_path)
    path = conns.create({"name": "lit", "type": "custom", "configs": {"endpoint": "e"},
                         "secrets": {"token": "custom-secret-abc123", "other": "second-secret-x"}})
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    _secrets._reset_for_tests()  # a new process: only the file knows the secret
    conns.get("lit")
    assert _secrets.scrub("custom-secret-abc123 / second-secret-x") == "****** / ******"
    assert _secrets.scrub("e") == "e"  # configs are not secrets


def test_connection_objects_made_in_code_register_their_secrets():
    OpenAIConnection(api_key="made-in-code-key-1")
    CustomConnection(secrets={"k": "made-in-code-key-2"})
    conn = OpenAIConnection(api_key=None)
    conn.api_key = "assigned-later-key-3"
    assert _secrets.scrub("made-in-code-key-1 made-in-code-key-2 assigned-later-key-3") == \
        "****** ****** ******"
    assert "assigned-later-key-3" not in repr(conn)


def test_provider_errors_never_show_any_connections_secret(tmp_path):
    """The server echoes a secret of *another* connection (a custom one): only the registry of
    every resolved connection's secrets can mask it."""
    import asyncio

    from pfkit.providers._openai import close_loop_clients
    from pfkit.providers._registry import ModelRegistry
    from pfkit.testing import Fault, ScriptedResponder

    with TestServer() as server:
        conns = store(tmp_path)
        conns.create({"name": "other", "type": "custom", "secrets": {"token": KEY}})
        conns.create({"name": "srv", "type": "open_ai", "api_key": "the-model-key-1",
                      "base_url": server.base_url, "max_retries": 0})
        registry = ModelRegistry(conns)
        registry.connection("other")  # the flow uses it too
        server.responder = ScriptedResponder([Fault.error(400, f"bad request: {KEY}")])
        model = registry.model("srv")

        async def call():
            try:
                await model.chat({"model": "m", "messages": [{"role": "user", "content": "x"}]})
            finally:
                await close_loop_clients()

        with pytest.raises(PfkitError) as info:
            asyncio.run(call())
        text = str(info.value) + json.dumps(info.value.to_dict())
        assert KEY not in text and "******" in text and "srv" in text


def test_cache_and_cassette_files_never_hold_a_registered_secret(tmp_path):
    import asyncio

    _secrets.register(KEY)
    cache = ResponseCache(tmp_path / "cache.sqlite")
    model = CachingModel(EchoModel(), cache, "record")
    request = {"model": "m", "temperature": 0,
               "messages": [{"role": "user", "content": f"my key is {KEY}"}]}
    response = asyncio.run(model.chat(request))
    assert KEY in response.message["content"]  # the live answer is what the model said
    cassette = tmp_path / "pfkit.cassette.jsonl"
    cache.export_cassette(cassette)
    cache.close()
    stored = "\n".join(str(row) for row in sqlite3.connect(tmp_path / "cache.sqlite").execute(
        "SELECT request_json, response_json FROM entries"))
    assert KEY not in stored and "******" in stored
    assert KEY not in cassette.read_text(encoding="utf-8")


def test_connection_create_on_the_command_line_masks_a_literal_secret(tmp_path):
    conn_file = tmp_path / "conn.yaml"
    conn_file.write_text("name: cli\ntype: open_ai\napi_key: <user-input>\n", encoding="utf-8")
    env = {**os.environ, "PFKIT_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "pfkit", "connection", "create", "--file",
                             str(conn_file), "--set", f"api_key={KEY}"],
                            capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout + result.stderr
    assert json.loads(result.stdout)["api_key"] == "******"


def test_a_key_from_a_dotenv_file_is_registered(tmp_path, monkeypatch):
    monkeypatch.delenv("PFKIT_TEST_DOTENV_KEY", raising=False)
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".env").write_text(f"export PFKIT_TEST_DOTENV_KEY='{KEY}'\n", encoding="utf-8")
    conns = store(tmp_path)
    conns.create({"name": "dotenv", "type": "open_ai", "api_key": "${env:PFKIT_TEST_DOTENV_KEY}"})
    assert conns.get("dotenv").api_key == KEY
    assert _secrets.scrub(KEY) == "******"


@pytest.mark.parametrize("secret", ["sk-plain-key-0042", 'p@ss"wo\\rd-with-quote', "tab\tkey-x", "clé-secrète-9"])
def test_encoded_records_mask_secrets_in_values_keys_and_odd_objects(secret):
    """Records are encoded with the secrets masked, whether or not the secret reads the same
    inside JSON text (a quote, a backslash or a control character is escaped there)."""
    class Odd:
        def __repr__(self):
            return f"Odd({secret})"

    from pfkit.runs._runner import dumps

    _secrets.register(secret)
    value = {"out": f"the key is {secret}!", secret: [1, {"deep": (secret,)}], "odd": Odd()}
    text = _secrets.dumps_scrubbed(value, dumps)
    assert secret not in text and json.dumps(secret)[1:-1] not in text
    decoded = json.loads(text)
    assert decoded["out"] == "the key is ******!"
    assert decoded["******"] == [1, {"deep": ["******"]}]
    deep: list = []
    for _ in range(5000):  # too deep to encode: an error (the line fails), never the secret
        deep = [deep, secret]
    try:
        assert secret not in _secrets.dumps_scrubbed({"x": deep}, dumps)
    except RecursionError:
        pass
