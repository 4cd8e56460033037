"""The OpenAPI document of a served flow (from its inputs and outputs) and the offline docs
page rendered from it (no CDN: one self-contained HTML page)."""

from __future__ import annotations

import html
import json
from typing import Any

from .._version import __version__

TYPES = {"int": "integer", "double": "number", "bool": "boolean", "string": "string",
         "list": "array", "object": "object", "image": "object", "file_path": "string",
         "prompt_template": "string", "secret": "string"}

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}},
        "required": ["code", "message"]}},
}


def _field_schema(definition: Any, *, output: bool = False) -> dict[str, Any]:
    kind = TYPES.get(getattr(definition, "type", None) or "string", "string")
    schema: dict[str, Any] = {"type": kind}
    description = getattr(definition, "description", None)
    if description:
        schema["description"] = str(description)
    if not output and getattr(definition, "has_default", False):
        default = definition.default
        if isinstance(default, (str, int, float, bool, list, dict)) or default is None:
            schema["default"] = default
    enum = getattr(definition, "enum", None)
    if not output and enum:
        schema["enum"] = list(enum)
    if kind == "object":
        schema["additionalProperties"] = {}
    if kind == "array":
        schema["items"] = {}
    return schema


def public_outputs(flow: Any) -> list[str]:
    """The outputs a response carries: all but ``evaluation_only`` ones."""
    return [name for name, out in flow.outputs.items()
            if not getattr(out, "evaluation_only", False)]


def build_openapi(flow: Any, *, auth: bool) -> dict[str, Any]:
    inputs = {name: _field_schema(d) for name, d in flow.inputs.items()}
    required = [name for name, d in flow.inputs.items() if not getattr(d, "has_default", False)]
    outputs = {name: _field_schema(flow.outputs[name], output=True)
               for name in public_outputs(flow)}
    request_schema: dict[str, Any] = {"type": "object", "properties": inputs}
    if required:
        request_schema["required"] = required
    info: dict[str, Any] = {"title": f"pfkit[{flow.name}] API", "version": __version__,
                            "x-flow-name": flow.name, "x-flow-kind": getattr(flow, "kind", "dag")}
    for name, d in flow.inputs.items():
        if getattr(d, "is_chat_input", False):
            info["x-chat-input"] = name
            info["x-flow-type"] = "chat"
        if getattr(d, "is_chat_history", False):
            info["x-chat-history"] = name
    for name in outputs:
        if getattr(flow.outputs[name], "is_chat_output", False):
            info["x-chat-output"] = name
    errors = {"content": {"application/json": {"schema": ERROR_SCHEMA}}}
    score = {
        "summary": f"run the flow {flow.name} on one set of inputs",
        "requestBody": {"required": bool(required), "description": "the flow's inputs",
                        "content": {"application/json": {"schema": request_schema}}},
        "responses": {
            "200": {"description": "the flow's outputs (server-sent events with "
                                   "Accept: text/event-stream when an output streams)",
                    "content": {"application/json": {"schema": {
                        "type": "object", "properties": outputs}},
                        "text/event-stream": {"schema": {"type": "string"}}}},
            "400": {"description": "invalid input (the message names the field)", **errors},
            "401": {"description": "missing or wrong API key", **errors},
            "406": {"description": "no acceptable media type in Accept", **errors},
            "413": {"description": "request body too large", **errors},
            "500": {"description": "a node failed", **errors},
            "504": {"description": "the flow ran past the request timeout", **errors},
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": info,
        "paths": {
            "/score": {"post": score},
            "/feedback": {"post": {
                "summary": "record feedback on an answer (any JSON body)",
                "requestBody": {"content": {"application/json": {"schema": {}}}},
                "responses": {"200": {"description": "recorded"}, "400": errors}}},
            "/health": {"get": {"summary": "liveness", "security": [],
                                "responses": {"200": {"description": "healthy"}}}},
            "/version": {"get": {"summary": "versions and build info", "security": [],
                                 "responses": {"200": {"description": "versions"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "text exposition"}}}},
        },
    }
    if auth:
        document["components"] = {"securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer"}}}
        document["security"] = [{"bearerAuth": []}]
    return document


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.4rem}} code,pre,textarea,input{{font:13px ui-monospace,monospace}}
table{{border-collapse:collapse;margin:.5rem 0 1rem}} td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}}
th{{background:#f4f4f4}} textarea{{width:100%;min-height:9rem}} pre{{background:#f6f6f6;padding:.7rem;overflow:auto;white-space:pre-wrap}}
.req{{color:#b00}} button{{padding:.35rem 1rem}} .muted{{color:#666}}
</style></head><body>
<h1>{title}</h1>
<p class="muted">pfkit {version} &middot; flow <code>{flow}</code> &middot;
<a href="swagger.json">swagger.json</a> &middot; <a href="metrics">metrics</a></p>
<h2>POST /score</h2>
<h3>Inputs</h3>
<table><tr><th>name</th><th>type</th><th>default</th><th>description</th></tr>{inputs}</table>
<h3>Outputs</h3>
<table><tr><th>name</th><th>type</th><th>description</th></tr>{outputs}</table>
<h3>Try it</h3>
<p><label>API key <input id="key" type="password" size="40" autocomplete="off"></label>
<label><input id="stream" type="checkbox"> stream (text/event-stream)</label></p>
<textarea id="body">{example}</textarea>
<p><button id="send">Send</button> <span id="status" class="muted"></span></p>
<pre id="out"></pre>
<h2>Other endpoints</h2>
<table><tr><th>path</th><th>what</th></tr>{paths}</table>
<script id="openapi" type="application/json">{document}</script>
<script>
document.getElementById("send").onclick = async function () {{
  const out = document.getElementById("out"), status = document.getElementById("status");
  const headers = {{"Content-Type": "application/json"}};
  const key = document.getElementById("key").value;
  if (key) headers["Authorization"] = "Bearer " + key;
  const stream = document.getElementById("stream").checked;
  headers["Accept"] = stream ? "text/event-stream" : "application/json";
  out.textContent = ""; status.textContent = "...";
  try {{
    const response = await fetch("score", {{method: "POST", headers: headers,
                                            body: document.getElementById("body").value}});
    status.textContent = response.status + " " + response.statusText;
    if (stream && response.body) {{
      const reader = response.body.getReader(), decoder = new TextDecoder();
      for (;;) {{ const part = await reader.read(); if (part.done) break;
                 out.textContent += decoder.decode(part.value, {{stream: true}}); }}
    }} else {{
      const text = await response.text();
      try {{ out.textContent = JSON.stringify(JSON.parse(text), null, 2); }}
      catch (e) {{ out.textContent = text; }}
    }}
  }} catch (e) {{ status.textContent = "request failed: " + e; }}
}};
</script>
</body></html>
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def render_docs(document: dict[str, Any]) -> str:
    """The interactive docs page: the OpenAPI document as tables and a form that posts to
    /score. Every value is HTML-escaped; the document is embedded with ``<`` escaped."""
    score = document["paths"]["/score"]["post"]
    schema = score["requestBody"]["content"]["application/json"]["schema"]
    required = set(schema.get("required", []))
    inputs = "".join(
        f"<tr><td><code>{_e(name)}</code>{' <span class=req>*</span>' if name in required else ''}"
        f"</td><td>{_e(s.get('type'))}</td><td>"
        f"{_e(json.dumps(s['default'])) if 'default' in s else ''}</td>"
        f"<td>{_e(s.get('description', ''))}</td></tr>"
        for name, s in schema.get("properties", {}).items())
    out_schema = score["responses"]["200"]["content"]["application/json"]["schema"]
    outputs = "".join(
        f"<tr><td><code>{_e(name)}</code></td><td>{_e(s.get('type'))}</td>"
        f"<td>{_e(s.get('description', ''))}</td></tr>"
        for name, s in out_schema.get("properties", {}).items())
    example = {name: s.get("default", _EXAMPLES.get(s.get("type"), ""))
               for name, s in schema.get("properties", {}).items()}
    paths = "".join(
        f"<tr><td><code>{_e(method.upper())} {_e(path)}</code></td>"
        f"<td>{_e(op.get('summary', ''))}</td></tr>"
        for path, ops in document["paths"].items() if path != "/score"
        for method, op in ops.items())
    embedded = json.dumps(document).replace("<", "\\u003c").replace(">", "\\u003e")
    return _PAGE.format(
        title=_e(document["info"]["title"]), version=_e(__version__),
        flow=_e(document["info"].get("x-flow-name", "")), inputs=inputs, outputs=outputs,
        example=_e(json.dumps(example, indent=2, ensure_ascii=False)), paths=paths,
        document=embedded)


_EXAMPLES: dict[str, Any] = {"integer": 0, "number": 0.0, "boolean": False, "string": "",
                             "array": [], "object": {}}
