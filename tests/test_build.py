"""pfkit flow build --format docker: the folder, then installed into a fresh venv the way the
Dockerfile does (pip install of the bundled wheel) and started through its own entrypoint.

Docker does not run here. The fresh venv gets pfkit only from the bundled wheel
(``pip install --no-deps``); its dependencies (starlette, uvicorn, openai, ...) come from the
test venv's site-packages through a ``.pth`` line written after the install, so pip never sees
(or touches) the development install, and the wheel's pfkit shadows it.
"""

from __future__ import annotations

import json
import os
import signal
import site
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pfkit._version import __version__
from pfkit.cli import main
from pfkit.connections._store import ConnectionStore
from pfkit.testing import TestServer

SECRET = "sk-build-test-secret-0123456789"

FLOW = """
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: "${chat.output}"}
  shouted: {type: string, reference: "${shout.output}"}
nodes:
- name: shout
  type: python
  source: {type: code, path: shout.py}
  inputs: {text: "${inputs.question}"}
- name: chat
  use_variants: true
node_variants:
  chat:
    default_variant_id: variant_0
    variants:
      variant_0:
        node:
          type: llm
          source: {type: code, path: plain.jinja2}
          connection: builder_llm
          api: chat
          inputs: {model: gpt-4o-mini, question: "${inputs.question}"}
      variant_1:
        node:
          type: llm
          source: {type: code, path: polite.jinja2}
          connection: builder_llm
          api: chat
          inputs: {model: gpt-4o-mini, question: "${inputs.question}"}
"""
SHOUT = """
from promptflow.core import tool

@tool
def shout(text: str) -> str:
    return text.upper()
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PFKIT_CACHE", raising=False)
    return tmp_path / "home"


@pytest.fixture
def flow(make_flow, home):
    return make_flow({"flow.dag.yaml": FLOW, "shout.py": SHOUT,
                      "plain.jinja2": "# user:\n{{question}}\n",
                      "polite.jinja2": "# user:\nPlease: {{question}}\n",
                      "requirements.txt": "# nothing extra\n"}, name="asker")


def connect(base_url: str) -> None:
    ConnectionStore().create({"name": "builder_llm", "type": "open_ai", "api_key": SECRET,
                              "base_url": base_url})


def test_the_folder_holds_everything_a_deployment_needs(flow, tmp_path, capsys):
    connect("http://127.0.0.1:9/v1")
    out = tmp_path / "out"
    assert main(["flow", "build", "--source", str(flow), "--output", str(out), "--format",
                 "docker", "--variant", "${chat.variant_1}"]) == 0
    assert str(out) in capsys.readouterr().out
    dockerfile = (out / "Dockerfile").read_text()
    major, minor = sys.version_info[:2]
    assert f"FROM python:{major}.{minor}-slim" in dockerfile
    assert "useradd" in dockerfile and "\nUSER pfkit\n" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    assert f'"pfkit[serve]=={__version__}"' in dockerfile and "--find-links /app/wheels" in dockerfile
    assert "pip install -r /app/requirements.txt" in dockerfile
    assert 'CMD ["/app/start.sh"]' in dockerfile
    assert (out / "wheels" / f"pfkit-{__version__}-py3-none-any.whl").is_file()
    start = (out / "start.sh").read_text()
    assert "--workers" in start and "PFKIT_WORKERS:-4" in start
    # the variant is resolved: no node_variants, the chosen template is the node's
    import yaml

    resolved = yaml.safe_load((out / "flow" / "flow.dag.yaml").read_text())
    assert "node_variants" not in resolved
    chat = next(n for n in resolved["nodes"] if n["name"] == "chat")
    assert chat["source"]["path"] == "polite.jinja2" and "use_variants" not in chat
    # connections: every secret an environment reference, listed in settings.json
    connection = yaml.safe_load((out / "home" / "connections" / "builder_llm.yaml").read_text())
    assert connection["api_key"] == "${env:BUILDER_LLM_API_KEY}"
    assert connection["base_url"] == "http://127.0.0.1:9/v1"
    assert json.loads((out / "settings.json").read_text()) == {"BUILDER_LLM_API_KEY": ""}
    readme = (out / "README.md").read_text()
    assert "BUILDER_LLM_API_KEY" in readme and "docker build" in readme
    for path in out.rglob("*"):  # no secret anywhere in the folder
        if path.is_file() and path.suffix != ".whl":
            assert SECRET not in path.read_text(errors="replace"), path


def test_build_refuses_what_it_cannot_do_safely(flow, tmp_path, make_flow, capsys):
    connect("http://127.0.0.1:9/v1")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert main(["flow", "build", "--source", str(flow), "--output", str(busy)]) == 1
    assert "not empty" in capsys.readouterr().err and (busy / "keep.txt").read_text() == "mine"
    assert main(["flow", "build", "--source", str(flow), "--output", str(flow / "out")]) == 1
    assert "inside the flow folder" in capsys.readouterr().err
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "shout.py").write_text(SHOUT)
    leaky = make_flow({"flow.dag.yaml": FLOW.replace("path: shout.py",
                                                      "path: ../shared/shout.py"),
                       "plain.jinja2": "{{question}}", "polite.jinja2": "{{question}}"},
                      name="leaky")
    assert main(["flow", "build", "--source", str(leaky), "--output",
                 str(tmp_path / "o2")]) == 1
    assert "outside the flow folder" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    assert main(["flow", "build", "--source", str(leaky), "--output", str(tmp_path / "o3"),
                 "--allow-outside-paths"]) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(port: int, method: str, path: str, body=None):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body).encode())
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.slow
def test_the_built_folder_installs_and_serves_through_its_entrypoint(flow, tmp_path):
    with TestServer(expected_api_key=SECRET) as llm:
        connect(llm.base_url)
        out = tmp_path / "out"
        assert main(["flow", "build", "--source", str(flow), "--output", str(out)]) == 0

        venv = tmp_path / "image-venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        wheel = next((out / "wheels").glob("pfkit-*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                        "--no-deps", "--no-index", "--quiet", str(wheel)], check=True,
                       timeout=300)
        target = subprocess.run([str(python), "-c", "import sysconfig; "
                                 "print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
        Path(target, "deps-from-test-venv.pth").write_text(site.getsitepackages()[0] + "\n")
        where = subprocess.run([str(python), "-c", "import pfkit; print(pfkit.__file__)"],
                               capture_output=True, text=True, check=True, cwd=tmp_path,
                               env={"PATH": os.environ["PATH"]}).stdout.strip()
        assert where.startswith(target), where  # the wheel's pfkit, not the development tree

        port = free_port()
        env = {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
               "HOST": "127.0.0.1", "PORT": str(port), "PFKIT_WORKERS": "2",
               "BUILDER_LLM_API_KEY": SECRET}  # what settings.json says to set
        process = subprocess.Popen(["sh", str(out / "start.sh")], env=env, cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "the built server did not start"
                try:
                    if http(port, "GET", "/health")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            for _ in range(4):
                status, data = http(port, "POST", "/score", {"question": "ship it"})
                assert status == 200, data
                answer = json.loads(data)
                assert answer["shouted"] == "SHIP IT" and "ship it" in answer["answer"]
            assert json.loads(http(port, "GET", "/version")[1])["version"] == __version__
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        err = process.stderr.read().decode()
        assert "with 2 workers" in err
        assert SECRET not in err and SECRET not in process.stdout.read().decode()


def test_overrides_and_environment_references_reach_the_folder(flow, tmp_path, make_flow,
                                                               monkeypatch):
    import yaml

    connect("http://127.0.0.1:9/v1")
    out = tmp_path / "out"
    assert main(["flow", "build", "--source", str(flow), "--output", str(out),
                 "--connections", "chat.model=gpt-4o"]) == 0
    resolved = yaml.safe_load((out / "flow" / "flow.dag.yaml").read_text())
    chat = next(n for n in resolved["nodes"] if n["name"] == "chat")
    assert chat["inputs"]["model"] == "gpt-4o" and chat["source"]["path"] == "plain.jinja2"
    prompty = Path(__file__).resolve().parent / "flows" / "prompty_basic_chat" / "chat.prompty"
    folder = make_flow({"chat.prompty": prompty.read_text()}, name="prompty_flow")
    out2 = tmp_path / "out2"
    monkeypatch.setenv("ECHO_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ECHO_API_KEY", "sk-unused-0123456789")
    assert main(["flow", "build", "--source", str(folder / "chat.prompty"), "--output",
                 str(out2)]) == 0
    assert json.loads((out2 / "settings.json").read_text()) == {"ECHO_BASE_URL": "",
                                                                 "ECHO_API_KEY": ""}
    assert (out2 / "flow" / "chat.prompty").is_file()
    assert '--source "$HERE/flow/chat.prompty"' in (out2 / "start.sh").read_text()
