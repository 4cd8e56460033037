"""Connections as promptflow's mappings, checked when created and loaded, and checked against
the tool parameter's annotation before a run."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import pfkit
from pfkit.connections import (
    AzureOpenAIConnection,
    CustomConnection,
    CustomStrongTypeConnection,
    OpenAIConnection,
    ServerlessConnection,
)
from pfkit.connections._store import ConnectionStore
from pfkit.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("PFKIT_HOME", str(path))
    return path


# -- mappings (issue 9) ---------------------------------------------------------------------------

def test_custom_connection_is_a_mapping_of_configs_and_secrets():
    conn = CustomConnection(configs={"endpoint": "https://x", "shared": "config"},
                            secrets={"token": "s3cret-token", "shared": "secret"}, name="c")
    assert dict(conn) == {"endpoint": "https://x", "shared": "secret", "token": "s3cret-token"}
    assert {**conn} == dict(conn)
    assert conn.keys() == ["endpoint", "shared", "token", "shared"]  # promptflow's keys()
    assert list(conn) == conn.keys() and "token" in conn and "nope" not in conn
    assert conn["endpoint"] == conn.endpoint == conn.configs["endpoint"] == "https://x"
    assert conn["token"] == conn.token == conn.secrets["token"]
    assert conn.is_secret("token") and not conn.is_secret("endpoint")
    assert conn.get("nope", 1) == 1
    with pytest.raises(KeyError, match="Key 'nope' not found in connection 'c'"):
        conn["nope"]
    with pytest.raises(AttributeError):
        conn.nope  # noqa: B018
    assert "s3cret-token" not in repr(conn)
    assert dict(copy.deepcopy(conn)) == dict(conn) and dict(pickle.loads(pickle.dumps(conn))) == \
        dict(conn)


def test_typed_connections_are_mappings_with_promptflows_keys_and_aliases():
    oai = OpenAIConnection(api_key="k-123456", base_url="http://h/v1", name="o")
    assert dict(oai) == {"organization": None, "base_url": "http://h/v1", "api_key": "k-123456"}
    assert oai.configs == {"organization": None, "base_url": "http://h/v1"}
    assert oai.secrets == {"api_key": "k-123456"}
    assert oai.api_base == oai.base_url == oai["base_url"]
    assert OpenAIConnection(api_key="k", base_url="").base_url is None  # promptflow's rule

    aoai = AzureOpenAIConnection(api_key="k-123456", api_base="https://a.openai.azure.com/")
    assert dict(aoai) == {"api_base": "https://a.openai.azure.com/", "api_type": "azure",
                          "api_version": "2024-02-01", "auth_mode": "key", "resource_id": None,
                          "api_key": "k-123456"}  # as promptflow 1.18.5 gives
    assert (aoai.type, oai.type) == ("AzureOpenAI", "OpenAI")
    assert aoai.base_url == aoai.api_base
    aoai.api_version = "2024-06-01"
    assert aoai.configs["api_version"] == "2024-06-01"

    serverless = ServerlessConnection(api_key="k-123456", api_base="https://s")
    assert dict(serverless) == {"api_base": "https://s", "api_key": "k-123456"}
    assert serverless.base_url == "https://s"


def test_stored_connections_keep_pfkit_options_out_of_the_mapping():
    ConnectionStore().create({"name": "lim", "type": "open_ai", "api_key": "k-123456",
                              "max_concurrency": "4", "timeout": "2.5"})
    conn = ConnectionStore().get("lim")
    assert conn.max_concurrency == 4 and conn.timeout == 2.5
    assert dict(conn) == {"organization": None, "base_url": None, "api_key": "k-123456"}
    assert isinstance(conn, OpenAIConnection) and conn.name == "lim"


def test_custom_strong_type_connection_fields():
    from pfkit._compat import promptflow_shim  # noqa: F401 - Secret's home when promptflow is absent

    class Secret(str):
        pass

    class MyConnection(CustomStrongTypeConnection):
        api_key: Secret
        api_url: str = "https://default"

    conn = MyConnection(secrets={"api_key": "strong-key-1"}, configs={})
    assert conn.api_key == "strong-key-1" and conn.api_url == "https://default"
    conn.api_url = "https://set"
    assert conn.configs["api_url"] == "https://set" and dict(conn)["api_key"] == "strong-key-1"


# -- checked when created and loaded (issue 7) ------------------------------------------------------

BAD_SETTINGS = [
    ("timeout", "abc", "a number of seconds"),
    ("max_retries", "many", "a whole number"),
    ("max_concurrency", "-1", "1 or more"),
    ("requests_per_minute", "0", "1 or more"),
    ("tokens_per_minute", "1.5", "a whole number"),
    ("base_url", "not a url", "not an http(s) URL"),
    ("base_url", "ftp://h/v1", "not an http(s) URL"),
]


@pytest.mark.parametrize(("field", "value", "expected"), BAD_SETTINGS)
def test_bad_settings_are_refused_at_create_naming_connection_and_field(field, value, expected):
    with pytest.raises(UserError) as info:
        ConnectionStore().create({"name": "bad", "type": "open_ai", "api_key": "k-123456",
                                  field: value}, source="conn.yaml")
    err = info.value
    assert "connection 'bad'" in err.message and f"'{field}'" in err.message
    assert expected in err.message and err.location.field == field
    assert err.location.file == "conn.yaml"


@pytest.mark.parametrize(("field", "value", "expected"), BAD_SETTINGS)
def test_bad_settings_in_a_file_are_refused_when_loaded(home, field, value, expected):
    folder = home / "connections"
    folder.mkdir(parents=True)
    (folder / "hand.yaml").write_text(f"name: hand\ntype: open_ai\napi_key: k-123456\n"
                                      f"{field}: '{value}'\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        ConnectionStore().get("hand")
    err = info.value
    assert "connection 'hand'" in err.message and f"'{field}'" in err.message
    assert expected in err.message and err.location.file == str(folder / "hand.yaml")


def test_a_bad_setting_from_the_environment_is_named_when_loaded(monkeypatch):
    monkeypatch.setenv("PFKIT_TEST_TIMEOUT", "soon")
    ConnectionStore().create({"name": "envt", "type": "open_ai", "api_key": "k-123456",
                              "timeout": "${env:PFKIT_TEST_TIMEOUT}"})
    with pytest.raises(UserError, match="field 'timeout' is 'soon'"):
        ConnectionStore().get("envt")


def test_a_key_with_a_trailing_newline_is_stripped_with_a_warning(capsys):
    ConnectionStore().create({"name": "nl", "type": "open_ai", "api_key": "k-123456\n"})
    assert "api_key" in capsys.readouterr().err
    assert ConnectionStore().read("nl")["api_key"] == "k-123456"  # stored clean
    assert ConnectionStore().get("nl").api_key == "k-123456"


def test_a_key_with_inner_whitespace_is_refused():
    with pytest.raises(UserError, match="'api_key' contains whitespace") as info:
        ConnectionStore().create({"name": "ws", "type": "open_ai", "api_key": "k-12 3456"})
    assert "k-12 3456" not in str(info.value)


def test_good_settings_are_parsed_to_numbers():
    ConnectionStore().create({"name": "ok", "type": "azure_open_ai", "api_key": "k-123456",
                              "api_base": "https://a.openai.azure.com/", "max_retries": "0",
                              "requests_per_minute": 60, "timeout": 30})
    conn = ConnectionStore().get("ok")
    assert (conn.max_retries, conn.requests_per_minute, conn.timeout) == (0, 60, 30.0)
    from pfkit.providers._registry import options_of

    options, limits = options_of(conn)
    assert options.max_retries == 0 and limits.requests_per_minute == 60


def test_connection_create_on_the_command_line_names_the_bad_field(tmp_path, home):
    conn_file = tmp_path / "conn.yaml"
    conn_file.write_text("name: cli_bad\ntype: open_ai\napi_key: k-123456\ntimeout: abc\n",
                         encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "pfkit", "connection", "create", "--file",
                             str(conn_file)], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PFKIT_HOME": str(home)})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "connection 'cli_bad'" in result.stderr and "'timeout'" in result.stderr
    assert str(conn_file) in result.stderr
    assert not (home / "connections" / "cli_bad.yaml").exists()


# -- checked against the tool's annotation (issue 9) -------------------------------------------------

TYPED_TOOL = """
from promptflow.core import tool
from promptflow.connections import AzureOpenAIConnection


@tool
def use(conn: AzureOpenAIConnection, text: str) -> str:
    return conn.api_base + text
"""
TYPED_FLOW = """
inputs:
  text: {type: string}
outputs:
  out: {type: string, reference: "${use.output}"}
nodes:
- name: use
  type: python
  source: {type: code, path: use.py}
  inputs: {conn: CONN, text: "${inputs.text}"}
"""


def test_a_connection_of_the_wrong_type_is_refused_before_the_run(make_flow):
    ConnectionStore().create({"name": "oai", "type": "open_ai", "api_key": "k-123456"})
    flow = make_flow({"flow.dag.yaml": TYPED_FLOW.replace("CONN", "oai"), "use.py": TYPED_TOOL})
    with pytest.raises(UserError) as info:
        pfkit.load_flow(flow)
    err = info.value
    assert ("Input 'conn' for node 'use' of type 'OpenAIConnection' is not supported, valid "
            "types ['AzureOpenAIConnection']." in err.message)
    assert err.location.node == "use" and err.location.field == "inputs.conn"


def test_a_connection_of_the_right_type_is_passed(make_flow):
    ConnectionStore().create({"name": "az", "type": "azure_open_ai", "api_key": "k-123456",
                              "api_base": "https://a.openai.azure.com/"})
    flow = make_flow({"flow.dag.yaml": TYPED_FLOW.replace("CONN", "az"), "use.py": TYPED_TOOL})
    assert pfkit.load_flow(flow)(text="!")["out"] == "https://a.openai.azure.com/!"


def test_a_custom_connection_becomes_the_tools_strong_type(make_flow):
    ConnectionStore().create({"name": "cc", "type": "custom", "configs": {"api_url": "https://u"},
                              "secrets": {"api_key": "strong-secret-1"}})
    tool = """
from promptflow.core import tool
from promptflow.connections import CustomStrongTypeConnection
from promptflow.contracts.types import Secret


class MyConnection(CustomStrongTypeConnection):
    api_key: Secret
    api_url: str = "https://default"


@tool
def use(conn: MyConnection, text: str) -> str:
    return f"{type(conn).__name__} {conn.api_url} {len(conn.api_key)} {text}"
"""
    flow = make_flow({"flow.dag.yaml": TYPED_FLOW.replace("CONN", "cc"), "use.py": tool})
    assert pfkit.load_flow(flow)(text="x")["out"] == "MyConnection https://u 15 x"


def test_promptflow_connection_classes_import_in_tool_code(make_flow):
    tool = """
from promptflow.core import tool
from promptflow.connections import (AzureOpenAIConnection, CustomConnection, OpenAIConnection,
                                    ServerlessConnection)


@tool
def use(conn: CustomConnection, text: str) -> str:
    return ",".join(sorted(dict(conn))) + text
"""
    ConnectionStore().create({"name": "cust", "type": "custom", "configs": {"a": "1"},
                              "secrets": {"b": "custom-secret-2"}})
    flow = make_flow({"flow.dag.yaml": TYPED_FLOW.replace("CONN", "cust"), "use.py": tool})
    assert pfkit.load_flow(flow)(text="!")["out"] == "a,b!"


def test_a_union_annotation_accepts_each_of_its_types(make_flow):
    tool = """
from typing import Union
from promptflow.core import tool
from promptflow.connections import AzureOpenAIConnection, OpenAIConnection


@tool
def use(conn: Union[AzureOpenAIConnection, OpenAIConnection], text: str) -> str:
    return type(conn).__name__ + text
"""
    ConnectionStore().create({"name": "oai", "type": "open_ai", "api_key": "k-123456"})
    ConnectionStore().create({"name": "cust", "type": "custom", "secrets": {"k": "v-123456"}})
    ok = make_flow({"flow.dag.yaml": TYPED_FLOW.replace("CONN", "oai"), "use.py": tool}, "ok")
    assert pfkit.load_flow(ok)(text="!")["out"] == "OpenAIConnection!"
    bad = make_flow({"flow.dag.yaml": TYPED_FLOW.replace("CONN", "cust"), "use.py": tool}, "bad")
    with pytest.raises(UserError, match=r"of type 'CustomConnection' is not supported, valid types "
                                        r"\['AzureOpenAIConnection', 'OpenAIConnection'\]"):
        pfkit.load_flow(bad)
