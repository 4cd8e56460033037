"""Images: promptflow's Image objects, image inputs in every form, and the rule that untrusted
input never chooses a file or a private address (issue 7)."""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from pathlib import Path

import pytest

import pfkit
from pfkit.data import open_dataset
from pfkit.nodes._images import (
    PRIVATE_URLS_ENV,
    ROOTS_ENV,
    Image,
    ImageInputError,
    PFBytes,
    check_image_url,
    persist_images,
    to_image,
)
from pfkit.testing import EchoModel


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


FLOW = """
inputs:
  img: {type: image}
outputs:
  info: {type: object, reference: "${a.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
  inputs: {img: "${inputs.img}"}
"""
TOOL = """
from promptflow.core import tool
from promptflow.contracts.multimedia import Image


@tool
def a(img: Image) -> dict:
    return {"size": len(img), "mime": img._mime_type, "text": str(img)}
"""


@pytest.fixture
def image_flow(make_flow):
    return make_flow({"flow.dag.yaml": FLOW, "a.py": TOOL})


# -- the Image class ----------------------------------------------------------------------------


def test_image_is_bytes_with_promptflows_text_and_base64():
    data = png()
    img = Image(data)
    assert isinstance(img, PFBytes) and isinstance(img, bytes) and bytes(img) == data
    assert img._mime_type == "image/png"  # sniffed from the bytes
    assert str(img) == repr(img) == "Image(" + __import__("hashlib").sha1(data).hexdigest()[:8] + ")"
    assert img.to_base64() == base64.b64encode(data).decode()
    assert img.to_base64(with_type=True).startswith("data:image/png;base64,iVBOR")
    assert Image(b"not an image")._mime_type == "image/*"
    assert Image(data, mime_type="IMAGE/JPEG")._mime_type == "image/jpeg"


def test_image_outputs_are_saved_as_files_and_referenced(tmp_path):
    img = Image(png())
    url_img = to_image({"data:image/png;url": "https://93.184.216.34/cat.png"})
    out = persist_images({"a": img, "b": [url_img], "c": 1}, tmp_path / "images", tmp_path)
    ((key, path),) = out["a"].items()
    assert key == "data:image/png;path" and path.startswith("images/") and path.endswith(".png")
    assert (tmp_path / path).read_bytes() == bytes(img)
    assert out["b"] == [{"data:image/png;url": "https://93.184.216.34/cat.png"}]
    assert out["c"] == 1


# -- input forms ----------------------------------------------------------------------------------


def test_image_input_forms(tmp_path):
    data = png()
    (tmp_path / "a.png").write_bytes(data)
    b64 = base64.b64encode(data).decode()
    forms = [{"data:image/png;path": "a.png"}, "a.png", {"data:image/png;base64": b64},
             f"data:image/png;base64,{b64}"]
    for form in forms:
        img = to_image(form, tmp_path)
        assert bytes(img) == data and img._mime_type == "image/png", form
    # the mime type of a dict key is kept, even image/* (promptflow keeps it)
    assert to_image({"data:image/*;path": "a.png"}, tmp_path)._mime_type == "image/*"
    url = to_image({"data:image/jpeg;url": "https://93.184.216.34/x.jpg"})
    assert url.source_url == "https://93.184.216.34/x.jpg" and url.url == url.source_url
    other = to_image("https://93.184.216.34/y.jpg")
    assert str(url) != str(other)  # two URLs are two images in a template
    with pytest.raises(ImageInputError, match="base64"):
        to_image({"data:image/png;base64": "not base64!"})
    with pytest.raises(ImageInputError, match="one key"):
        to_image({"data:image/png;path": "a.png", "x": 1}, tmp_path)


def test_flow_gives_python_tools_promptflow_images(image_flow):
    (image_flow / "red.png").write_bytes(png())
    out = pfkit.load_flow(image_flow)(img={"data:image/png;path": "red.png"})
    assert out["info"]["size"] == len(png()) and out["info"]["mime"] == "image/png"


# -- paths: untrusted input never picks a file --------------------------------------------------


def test_flow_input_image_path_outside_the_flow_folder_is_refused(image_flow, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png())
    flow = pfkit.load_flow(image_flow)
    for path in ("/etc/passwd", str(secret), "../secret.png"):
        result = flow.test(img={"data:image/png;path": path})
        assert result.line.status == "Failed", path
        message = result.line.error["message"]
        assert "flow input 'img'" in message and "outside the folders" in message, message


def test_symlink_out_of_the_flow_folder_is_refused(image_flow, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(png())
    (image_flow / "link.png").symlink_to(outside)
    result = pfkit.load_flow(image_flow).test(img={"data:image/png;path": "link.png"})
    assert result.line.status == "Failed"
    assert "outside the folders" in result.line.error["message"]


def test_allowed_roots_env_var(image_flow, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "a.png").write_bytes(png())
    monkeypatch.setenv(ROOTS_ENV, str(shared))
    out = pfkit.load_flow(image_flow)(img={"data:image/png;path": str(shared / "a.png")})
    assert out["info"]["size"] == len(png())


def test_data_row_image_paths_stay_inside_the_data_folder(tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "imgs").mkdir(parents=True)
    (data_dir / "imgs" / "ok.png").write_bytes(png())
    (tmp_path / "outside.png").write_bytes(png())
    (data_dir / "imgs" / "sneaky.png").symlink_to(tmp_path / "outside.png")
    rows = [{"img": {"data:image/png;path": "imgs/ok.png"}},
            {"img": {"data:image/png;path": "/etc/passwd"}},
            {"img": {"data:image/png;path": "../outside.png"}},
            {"img": {"data:image/png;path": "imgs/sneaky.png"}},
            {"img": {"data:image/png;path": str(data_dir / "imgs" / "ok.png")}}]
    (data_dir / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    values = [row.data["img"] for row in open_dataset(data_dir / "data.jsonl")]
    assert bytes(to_image(values[0], Path("/"))) == png()
    assert bytes(to_image(values[4], Path("/"))) == png()
    for value in values[1:4]:
        with pytest.raises(ImageInputError, match="outside the folders"):
            to_image(value, data_dir)
    # the record keeps the row's (absolute) value: nothing is lost or rewritten
    assert values[1] == {"data:image/png;path": "/etc/passwd"}


def test_batch_run_fails_only_the_rows_with_refused_paths(image_flow, tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "ok.png").write_bytes(png())
    rows = [{"img": {"data:image/png;path": "ok.png"}},
            {"img": {"data:image/png;path": "/etc/passwd"}}]
    (data_dir / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = pfkit.run(image_flow, data_dir / "data.jsonl")
    lines = {line["line_number"]: line for line in run.lines()}
    assert lines[0]["status"] == "Completed"
    assert lines[1]["status"] == "Failed"
    message = lines[1]["error"]["message"]
    assert "flow input 'img'" in message and "/etc/passwd" in message
    assert lines[1]["error"].get("location", {}).get("row") == 1


# -- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.com/a.png", "http://127.0.0.1/a.png",
    "http://localhost:8080/a.png", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.5/x",
    "http://192.168.1.1/x.png", "http://[::1]/x.png", "http://0.0.0.0/x.png",
    "http://[::ffff:127.0.0.1]/x.png",
])
def test_image_urls_must_be_public_http(url):
    with pytest.raises(ImageInputError):
        to_image({"data:image/png;url": url})


def test_private_image_urls_allowed_explicitly(monkeypatch):
    monkeypatch.setenv(PRIVATE_URLS_ENV, "1")
    assert check_image_url("http://127.0.0.1:9/a.png") == "http://127.0.0.1:9/a.png"
    with pytest.raises(ImageInputError):
        check_image_url("file:///etc/passwd")  # never another scheme


# -- images in requests ---------------------------------------------------------------------------


def test_llm_node_sends_template_images_as_image_url_parts(make_flow):
    """promptflow 1.18.5's plain llm node sends the text '![image](Image(<hash>))' (fixture
    tests/flows/image_llm_node_template); pfkit sends the image the template names."""
    folder = make_flow({"flow.dag.yaml": """
inputs:
  img: {type: image}
outputs:
  answer: {type: string, reference: "${look.output}"}
nodes:
- name: look
  type: llm
  source: {type: code, path: look.jinja2}
  connection: echo
  api: chat
  inputs: {model: m, img: "${inputs.img}"}
""", "look.jinja2": "# user:\nDescribe:\n![image]({{img}})\n"})
    (folder / "red.png").write_bytes(png())
    echo = EchoModel()
    pfkit.load_flow(folder, models={"echo": echo})(img={"data:image/png;path": "red.png"})
    content = echo.requests[0]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "Describe:"}
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(png()).decode()


def test_direct_vision_call_in_tool_code(make_flow):
    folder = make_flow({"flow.dag.yaml": FLOW.replace("${a.output}", "${a.output}"), "a.py": """
from promptflow.core import tool
from promptflow.connections import OpenAIConnection
from promptflow.contracts.multimedia import Image
from promptflow.tools.openai_gpt4v import OpenAI


@tool
def a(img: Image) -> dict:
    conn = OpenAIConnection(api_key="sk-test", base_url="http://127.0.0.1:9/v1", name="echo")
    return {"reply": OpenAI(conn).chat(prompt="# user:\\n![image]({{img}})", img=img, model="m")}
"""})
    (folder / "red.png").write_bytes(png())
    echo = EchoModel()  # the flow's model for 'echo' answers the tool's direct call too
    pfkit.load_flow(folder, models={"echo": echo})(img={"data:image/png;path": "red.png"})
    request = echo.requests[0]
    assert request["n"] == 1 and request["presence_penalty"] == 0
    assert request["messages"][0]["content"][0]["type"] == "image_url"


def test_no_image_file_is_read_before_the_policy_check(tmp_path, monkeypatch):
    """The check happens on the real path before any read: a FIFO outside the folder would block
    a read forever; refusing it returns at once."""
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    inside = tmp_path / "flow"
    inside.mkdir()
    with pytest.raises(ImageInputError, match="outside"):
        to_image({"data:image/png;path": str(fifo)}, inside)


def test_batch_run_records_keep_image_data(make_flow, tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    flow = make_flow({"flow.dag.yaml": FLOW.replace(
        'outputs:\n', 'outputs:\n  same: {type: image, reference: "${inputs.img}"}\n'), "a.py": TOOL})
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "a.png").write_bytes(png())
    (data_dir / "data.jsonl").write_text(json.dumps({"img": {"data:image/png;path": "a.png"}}) + "\n")
    run = pfkit.run(flow, data_dir / "data.jsonl")
    (line,) = run.lines()
    assert line["status"] == "Completed", line["error"]
    assert line["outputs"]["same"] == {"data:image/png;base64": base64.b64encode(png()).decode()}
    # flow_outputs/output.jsonl references the image saved beside it, as promptflow's does
    outputs_dir = Path(os.environ["PFKIT_HOME"]) / "runs" / run.name / "flow_outputs"
    (record,) = [json.loads(x) for x in (outputs_dir / "output.jsonl").read_text().splitlines()]
    ((key, name),) = record["same"].items()
    assert key == "data:image/png;path" and (outputs_dir / name).read_bytes() == png()


def test_flow_test_saves_image_outputs_like_promptflow(make_flow):
    import subprocess
    import sys

    flow = make_flow({"flow.dag.yaml": FLOW.replace(
        'outputs:\n', 'outputs:\n  same: {type: image, reference: "${inputs.img}"}\n'), "a.py": TOOL})
    (flow / "red.png").write_bytes(png())
    proc = subprocess.run([sys.executable, "-m", "pfkit", "flow", "test", "--flow", str(flow),
                           "--inputs", "img=red.png"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)["same"]
    ((key, path),) = printed.items()
    assert key == "data:image/png;path" and os.path.isabs(path)
    assert Path(path).parent == flow / ".promptflow" / "output"
    assert Path(path).read_bytes() == png()
    saved = json.loads((flow / ".promptflow" / "flow.output.json").read_text())["same"]
    (relative,) = saved.values()
    assert relative.startswith(".promptflow/intermediate/") and (flow / relative).read_bytes() == png()


def test_images_inside_list_and_object_inputs(make_flow):
    flow = make_flow({"flow.dag.yaml": """
inputs:
  imgs: {type: list}
  doc: {type: object}
outputs:
  o: {type: object, reference: "${a.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
  inputs: {imgs: "${inputs.imgs}", doc: "${inputs.doc}"}
""", "a.py": """
from promptflow.core import tool
from promptflow.contracts.multimedia import Image


@tool
def a(imgs: list, doc: dict) -> dict:
    return {"kinds": [type(i).__name__ for i in imgs], "doc": type(doc["pic"]).__name__,
            "text": doc["text"]}
"""})
    (flow / "red.png").write_bytes(png())
    image = {"data:image/png;path": "red.png"}
    out = pfkit.load_flow(flow)(imgs=[image, "plain"], doc={"pic": image, "text": "t"})["o"]
    assert out == {"kinds": ["Image", "str"], "doc": "Image", "text": "t"}
    refused = pfkit.load_flow(flow).test(imgs=[{"data:image/png;path": "/etc/passwd"}], doc={})
    assert refused.line.status == "Failed" and "flow input 'imgs'" in refused.line.error["message"]


def test_tool_made_image_urls_are_checked_before_reaching_the_model(make_flow):
    folder = make_flow({"flow.dag.yaml": """
outputs:
  answer: {type: string, reference: "${look.output}"}
nodes:
- name: make
  type: python
  source: {type: code, path: make.py}
- name: look
  type: llm
  source: {type: code, path: look.jinja2}
  connection: echo
  api: chat
  inputs: {model: m, img: "${make.output}"}
""", "make.py": """
from promptflow.core import tool
from promptflow.contracts.multimedia import Image


@tool
def make() -> Image:
    return Image(b"", mime_type="image/png", source_url="http://169.254.169.254/latest/x.png")
""", "look.jinja2": "# user:\n![image]({{img}})\n"})
    echo = EchoModel()
    result = pfkit.load_flow(folder, models={"echo": echo}).test()
    assert result.line.status == "Failed" and not echo.requests
    assert "169.254.169.254" in result.line.error["message"]


def test_literal_image_input_outside_the_flow_folder_is_refused_at_load(make_flow):
    from pfkit.errors import PfkitError

    folder = make_flow({"flow.dag.yaml": """
outputs:
  o: {type: object, reference: "${a.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
  inputs: {img: /etc/passwd}
""", "a.py": TOOL})
    with pytest.raises(PfkitError) as info:
        pfkit.load_flow(folder)
    assert info.value.code == "NodeInputValidationError"
    assert info.value.location.node == "a" and "outside the folders" in info.value.message
