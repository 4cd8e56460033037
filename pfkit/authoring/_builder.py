"""Building a DAG flow in Python and saving it as a flow folder promptflow runs.

The builder holds exactly what the folder will hold (the flow file as data, the scripts and
templates as text); every check is the flow loader's own (``pfkit.spec`` and ``pfkit.graph``) on
that folder, with the error pointed back at the line of Python that made the node.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .._names import is_safe_name
from ..errors import FlowValidationError, Location, PfkitError, UserError
from ._refs import InputRef, OutputRef, to_yaml_value
from ._source import tool_script

SCHEMA = "https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json"
FLOW_FILE = "flow.dag.yaml"
_IGNORED = {".promptflow", "__pycache__", ".git", ".ipynb_checkpoints", ".runs"}
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)
_INPUT_TYPES = {str: "string", int: "int", float: "double", bool: "bool", list: "list",
                dict: "object"}


def _call_site() -> tuple[str, int] | None:
    """The first frame outside pfkit: the user's line that asked for this."""
    frame = sys._getframe(1)
    while frame is not None:
        file = frame.f_code.co_filename
        if not os.path.abspath(file).startswith(_PACKAGE_DIR):
            return file, frame.f_lineno
        frame = frame.f_back
    return None


def dump_yaml(data: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True,
                          default_flow_style=False, width=100)


class Inputs:
    """``flow.inputs.question`` (or ``flow.inputs["question"]``): a reference to a flow input."""

    def __init__(self, builder: FlowBuilder) -> None:
        self._builder = builder

    def __getattr__(self, name: str) -> InputRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> InputRef:
        if name not in self._builder._inputs:
            raise KeyError(f"flow input '{name}' is not defined; inputs: "
                           f"{list(self._builder._inputs) or 'none'} (add it with flow.input(...))")
        return InputRef(name)

    def __iter__(self):
        return iter(self._builder._inputs)

    def __repr__(self) -> str:
        return f"Inputs({list(self._builder._inputs)})"


class Node:
    """A node of a flow being built: pass it (or ``node.output[...]``) to other nodes."""

    def __init__(self, builder: FlowBuilder, name: str) -> None:
        self.builder = builder
        self.name = name

    @property
    def output(self) -> OutputRef:
        return OutputRef(self.name)

    def __getitem__(self, key: Any) -> OutputRef:
        return self.output[key]

    def __repr__(self) -> str:
        return f"Node({self.name!r})"

    def variant(self, variant_id: str, template: str | Path | None = None, *,
                fn: Callable | None = None, default: bool = False, **changes: Any) -> Node:
        """Add a variant of this node: the same node with another template (or tool function)
        and/or other inputs (``temperature=0.7``); ``connection=``/``api=`` change those fields.
        The node as first written is variant ``variant_0`` unless it was given
        ``variant_id=``; ``default=True`` makes this one the default."""
        self.builder._add_variant(self.name, variant_id, template, fn, default, changes,
                                  _call_site())
        return self


class FlowBuilder:
    """A DAG flow written in Python::

        flow = FlowBuilder("qa")
        flow.input("question", "string")
        clean = flow.python(tidy, text=flow.inputs.question)
        answer = flow.llm("answer", "user:\\n{{q}}", q=clean, max_tokens=32)
        flow.output("answer", answer)
        flow.save("flows/qa")          # flow.dag.yaml, tidy.py, answer.jinja2
        flow(question="Why is the sky blue?")

    Validation is the flow loader's (the same codes and messages as for a flow file); errors
    name the line of Python that made the node."""

    def __init__(self, name: str | None = None, *, type: str | None = None,  # noqa: A002
                 description: str | None = None, environment_variables: Mapping[str, Any] | None = None,
                 requirements: Iterable[str] | None = None) -> None:
        self.name = name
        self.inputs = Inputs(self)
        self._meta: dict[str, Any] = {"$schema": SCHEMA}
        if description:
            self._meta["description"] = description
        if type:
            self._meta["type"] = type
        self._inputs: dict[str, dict[str, Any]] = {}
        self._outputs: dict[str, dict[str, Any]] = {}
        self._nodes: list[dict[str, Any]] = []
        self._variants: dict[str, dict[str, Any]] = {}
        self._tail: dict[str, Any] = {}
        if environment_variables:
            self._tail["environment_variables"] = dict(environment_variables)
        self._files: dict[str, bytes] = {}
        if requirements:
            self._files["requirements.txt"] = ("\n".join(requirements) + "\n").encode()
            self._tail["environment"] = {"python_requirements_txt": "requirements.txt"}
        self._sites: dict[tuple[str, str], tuple[str, int] | None] = {}
        self._original: tuple[dict[str, Any], str] | None = None
        self._staged: tuple[str, Path] | None = None
        self._flow: Any = None

    # -- reading a folder -------------------------------------------------------------------

    @classmethod
    def from_folder(cls, path: str | Path) -> FlowBuilder:
        """A builder holding a flow folder as it is: save it elsewhere unchanged, or add to it."""
        import yaml

        from ..spec import load_flow_spec, resolve_flow_file

        file = resolve_flow_file(path)
        load_flow_spec(file)  # a broken folder is refused with the loader's message
        text = file.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        builder = cls(file.parent.name)
        builder._meta = {}
        for key, value in data.items():
            if key == "inputs":
                builder._inputs = dict(value or {})
            elif key == "outputs":
                builder._outputs = dict(value or {})
            elif key == "nodes":
                builder._nodes = [dict(n) for n in value or []]
            elif key == "node_variants":
                builder._variants = dict(value or {})
            elif key in ("environment", "environment_variables", "additional_includes"):
                builder._tail[key] = value
            else:
                builder._meta[key] = value
        root = file.parent
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED)
            for filename in sorted(filenames):
                full = Path(dirpath) / filename
                rel = full.relative_to(root).as_posix()
                if full == file or filename.endswith(".pyc"):
                    continue
                builder._files[rel] = full.read_bytes()
        builder._original = (copy.deepcopy(builder.to_dict()), text)
        return builder

    # -- inputs and outputs -----------------------------------------------------------------

    def input(self, name: str, type: str | type = "string", *,  # noqa: A002
              default: Any = ..., description: str | None = None, enum: list[Any] | None = None,
              is_chat_input: bool = False, is_chat_history: bool = False) -> InputRef:
        """Declare a flow input (types: string, int, double, bool, list, object, image);
        returns its reference."""
        if not isinstance(type, str):
            if type not in _INPUT_TYPES:
                raise TypeError(f"flow input '{name}': type {type!r} has no flow input type; use "
                                "str, int, float, bool, list or dict, or a flow input type name "
                                "(string, int, double, bool, list, object, image)")
            type = _INPUT_TYPES[type]  # noqa: A001
        spec: dict[str, Any] = {"type": type}
        if default is not ...:
            spec["default"] = to_yaml_value(default, where=f"flow input '{name}'")
        if description:
            spec["description"] = description
        if enum is not None:
            spec["enum"] = list(enum)
        if is_chat_input:
            spec["is_chat_input"] = True
        if is_chat_history:
            spec["is_chat_history"] = True
        self._inputs[name] = spec
        self._sites[("input", name)] = _call_site()
        self._changed()
        return InputRef(name)

    def output(self, name: str, reference: Any, *, type: str = "string",  # noqa: A002
               description: str | None = None, is_chat_output: bool = False,
               evaluation_only: bool = False) -> None:
        """Declare a flow output from a node (its whole output or a part) or a flow input."""
        spec: dict[str, Any] = {"type": type,
                                "reference": to_yaml_value(reference, where=f"flow output '{name}'")}
        if description:
            spec["description"] = description
        if is_chat_output:
            spec["is_chat_output"] = True
        if evaluation_only:
            spec["evaluation_only"] = True
        self._outputs[name] = spec
        self._sites[("output", name)] = _call_site()
        self._changed()

    # -- nodes ------------------------------------------------------------------------------

    def python(self, fn: Callable, /, *, name: str | None = None, activate: Any = None,
               aggregation: bool = False, variant_id: str | None = None,
               inputs: Mapping[str, Any] | None = None, **kwargs: Any) -> Node:
        """A python node running ``fn`` (a function, ``@pfkit.tool`` or not). The saved script is
        its source with the imports and helpers it uses. Inputs are keyword arguments: literals,
        ``flow.inputs.x``, a node or ``node.output["key"]``."""
        node_name = name or getattr(fn, "__name__", "tool")
        site = _call_site()
        script = tool_script(fn)
        path = self._add_file(f"{fn.__name__}.py", script.encode(),
                              what=f"the script of tool '{fn.__name__}'")
        body = {"type": "python", "source": {"type": "code", "path": path}}
        return self._add_node(node_name, body, {**(inputs or {}), **kwargs}, activate,
                              aggregation, variant_id, site)

    def python_file(self, name: str, path: str | Path, /, *, activate: Any = None,
                    aggregation: bool = False, variant_id: str | None = None,
                    inputs: Mapping[str, Any] | None = None, **kwargs: Any) -> Node:
        """A python node from an existing script (one ``@tool`` in it), copied into the flow."""
        site = _call_site()
        source = Path(path)
        stored = self._add_file(source.name, self._read(source, name), what=f"script {source}")
        body = {"type": "python", "source": {"type": "code", "path": stored}}
        return self._add_node(name, body, {**(inputs or {}), **kwargs}, activate, aggregation,
                              variant_id, site)

    def prompt(self, name: str, template: str | Path, /, *, activate: Any = None,
               variant_id: str | None = None, inputs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> Node:
        """A prompt node: a Jinja2 template (text, or a ``Path`` to a file) rendered with its
        inputs; the output is the text."""
        site = _call_site()
        path = self._template_file(name, template, None)
        body = {"type": "prompt", "source": {"type": "code", "path": path}}
        return self._add_node(name, body, {**(inputs or {}), **kwargs}, activate, False,
                              variant_id, site)

    def llm(self, name: str, template: str | Path, /, *, connection: str = "local",
            api: str = "chat", activate: Any = None, variant_id: str | None = None,
            provider: str | None = None, inputs: Mapping[str, Any] | None = None,
            **kwargs: Any) -> Node:
        """An llm node: a chat (``system:`` / ``user:`` lines) or completion template (text or a
        ``Path``), sent to ``connection`` (default ``local``, the embedded model). Model
        parameters (``max_tokens=32``, ``temperature=0``) and template variables are inputs."""
        site = _call_site()
        path = self._template_file(name, template, None)
        body: dict[str, Any] = {"type": "llm", "source": {"type": "code", "path": path}}
        extra = {"connection": connection, "api": api}
        if provider:
            extra["provider"] = provider
        return self._add_node(name, body, {**(inputs or {}), **kwargs}, activate, False,
                              variant_id, site, extra)

    def add_data(self, rows: Iterable[Mapping[str, Any]], name: str = "data.jsonl") -> str:
        """A sample dataset saved with the flow (one JSON object a line), for
        ``pfkit run create --flow DIR --data DIR/data.jsonl``; returns its file name."""
        import json

        if not is_safe_name(name) or not name.endswith(".jsonl"):
            raise UserError(f"data file name {name!r} cannot be used", code="InvalidName",
                            hint="Give a plain file name ending in .jsonl, e.g. data.jsonl.")
        text = "".join(json.dumps(dict(row), ensure_ascii=False, default=str) + "\n"
                       for row in rows)
        self._files[name] = text.encode("utf-8")
        self._changed()
        return name

    def node(self, name: str) -> Node:
        """A handle on a node already in the flow (e.g. one read by :meth:`from_folder`)."""
        if not any(n.get("name") == name for n in self._nodes):
            raise KeyError(f"node '{name}' is not in the flow; nodes: "
                           f"{[n.get('name') for n in self._nodes]}")
        return Node(self, name)

    # -- internals --------------------------------------------------------------------------

    def _changed(self) -> None:
        self._flow = None

    def _read(self, path: Path, node: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}", code="FileNotFound",
                            location=Location(file=str(path), node=node),
                            hint="Give the path of an existing file.") from None

    def _add_file(self, rel: str, content: bytes, *, what: str) -> str:
        if not is_safe_name(rel):
            rel = "file_" + hashlib.sha256(rel.encode()).hexdigest()[:8] + Path(rel).suffix
        existing = self._files.get(rel)
        if existing is not None and existing != content:
            stem, suffix = os.path.splitext(rel)
            raise UserError(f"{what} would overwrite {rel}, which already holds other content",
                            code="DuplicateFile",
                            hint=f"Two different tools or templates want the same file name; "
                                 f"rename one (e.g. {stem}_2{suffix}).")
        self._files[rel] = content
        return rel

    def _template_file(self, name: str, template: str | Path, variant: str | None) -> str:
        base = name if is_safe_name(name) else "node"
        stem = f"{base}__{variant}" if variant else base
        if isinstance(template, Path):
            content = self._read(template, name)
            if self._files.get(template.name, content) == content and is_safe_name(template.name):
                return self._add_file(template.name, content, what=f"template {template}")
            return self._add_file(f"{stem}.jinja2", content, what=f"template {template}")
        if not isinstance(template, str):
            raise TypeError(f"node '{name}': the template is text or a pathlib.Path, not "
                            f"{type(template).__name__}")
        if "\n" not in template and "{" not in template and template.strip().endswith(
                (".jinja2", ".jinja", ".j2")):
            raise UserError(f"node '{name}': the template {template!r} looks like a file name",
                            code="InvalidTemplate", location=Location(node=name),
                            hint=f"Pass Path({template!r}) to use the file, or give the "
                                 "template's text itself.")
        return self._add_file(f"{stem}.jinja2", template.encode(),
                              what=f"the template of node '{name}'")

    def _node_body(self, body: dict[str, Any], inputs: Mapping[str, Any], activate: Any,
                   aggregation: bool, extra: Mapping[str, Any] | None, name: str) -> dict:
        out = dict(body)
        out.update(extra or {})
        out["inputs"] = {k: to_yaml_value(v, where=f"node '{name}' input '{k}'")
                         for k, v in inputs.items()}
        if aggregation:
            out["aggregation"] = True
        if activate is not None:
            if isinstance(activate, Mapping):
                when, is_value = activate.get("when"), activate.get("is")
            elif isinstance(activate, tuple) and len(activate) == 2:
                when, is_value = activate
            else:
                raise TypeError(f"node '{name}': activate is (when, value) or "
                                "{'when': ..., 'is': ...}")
            out["activate"] = {"when": to_yaml_value(when, where=f"node '{name}' activate"),
                               "is": to_yaml_value(is_value, where=f"node '{name}' activate")}
        return out

    def _add_node(self, name: str, body: dict[str, Any], inputs: Mapping[str, Any],
                  activate: Any, aggregation: bool, variant_id: str | None,
                  site: tuple[str, int] | None, extra: Mapping[str, Any] | None = None) -> Node:
        node = {"name": name, **self._node_body(body, inputs, activate, aggregation, extra, name)}
        self._nodes.append(node)
        self._sites[("node", name)] = site
        if variant_id is not None:
            self._to_variants(name, variant_id)
        self._changed()
        return Node(self, name)

    def _to_variants(self, name: str, variant_id: str) -> None:
        for i, node in enumerate(self._nodes):
            if node.get("name") == name and not node.get("use_variants"):
                body = {k: v for k, v in node.items() if k != "name"}
                self._nodes[i] = {"name": name, "use_variants": True}
                self._variants[name] = {"default_variant_id": variant_id,
                                        "variants": {variant_id: {"node": body}}}
                return

    def _add_variant(self, name: str, variant_id: str, template: Any, fn: Any, default: bool,
                     changes: dict[str, Any], site: tuple[str, int] | None) -> None:
        if name not in self._variants:
            self._to_variants(name, "variant_0")
        entry = self._variants.get(name)
        if entry is None:
            raise KeyError(f"node '{name}' is not in the flow")
        base = entry["variants"][entry["default_variant_id"]]["node"]
        body = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
        for key in ("connection", "api", "provider"):
            if key in changes:
                body[key] = changes.pop(key)
        if template is not None:
            safe_vid = variant_id if is_safe_name(variant_id) else "variant"
            body["source"] = {"type": "code",
                              "path": self._template_file(name, template, safe_vid)}
        if fn is not None:
            path = self._add_file(f"{fn.__name__}.py", tool_script(fn).encode(),
                                  what=f"the script of tool '{fn.__name__}'")
            body["source"] = {"type": "code", "path": path}
        inputs = dict(body.get("inputs") or {})
        inputs.update({k: to_yaml_value(v, where=f"variant '{variant_id}' input '{k}'")
                       for k, v in changes.items()})
        body["inputs"] = inputs
        entry["variants"][variant_id] = {"node": body}
        if default:
            entry["default_variant_id"] = variant_id
        self._sites[("variant", f"{name}.{variant_id}")] = site
        self._changed()

    # -- the flow file ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """What ``flow.dag.yaml`` holds."""
        data = dict(self._meta)
        data["inputs"] = self._inputs
        data["outputs"] = self._outputs
        data["nodes"] = self._nodes
        if self._variants:
            data["node_variants"] = self._variants
        data.update(self._tail)
        return data

    def to_yaml(self) -> str:
        if self._original is not None and self._original[0] == self.to_dict():
            return self._original[1]  # an unchanged folder keeps its file (comments too)
        return dump_yaml(self.to_dict())

    def files(self) -> dict[str, bytes]:
        """Every file of the folder, ``flow.dag.yaml`` included."""
        return {**self._files, FLOW_FILE: self.to_yaml().encode("utf-8")}

    def _digest(self) -> str:
        h = hashlib.sha256()
        for rel, content in sorted(self.files().items()):
            h.update(rel.encode() + b"\0" + hashlib.sha256(content).digest())
        return h.hexdigest()

    def _write(self, folder: Path) -> None:
        for rel, content in self.files().items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)

    def _stage(self) -> Path:
        """The folder as it would be saved, in a private temporary folder."""
        digest = self._digest()
        if self._staged and self._staged[0] == digest and self._staged[1].is_dir():
            return self._staged[1]
        folder = Path(tempfile.mkdtemp(prefix="pfkit-flow-")) / _safe(self.name)
        folder.mkdir()
        self._write(folder)
        self._staged = (digest, folder)
        return folder

    def validate(self) -> None:
        """The flow loader's checks (structure, references, cycles, every variant), raised as
        :class:`~pfkit.errors.FlowValidationError` pointing at the line of Python involved."""
        self._check(self._stage())

    def _check(self, folder: Path) -> None:
        from ..graph import plan
        from ..spec import load_flow_spec

        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                spec = load_flow_spec(folder)
            plan(spec)
        except FlowValidationError as exc:
            raise self._relocate(exc) from None
        for node, entry in spec.node_variants.items():
            for vid in entry.variants:
                try:
                    plan(spec, {node: vid})
                except FlowValidationError as exc:
                    raise self._relocate(exc, variant=f"{node}.{vid}") from None

    def _relocate(self, exc: PfkitError, variant: str | None = None) -> PfkitError:
        where = exc.location
        field = where.field or ""
        site = None
        if variant and ("variant", variant) in self._sites:
            site = self._sites[("variant", variant)]
        elif where.node:
            site = self._sites.get(("node", where.node))
        elif field.startswith("inputs."):
            site = self._sites.get(("input", field.split(".")[1]))
        elif field.startswith("outputs."):
            site = self._sites.get(("output", field.split(".")[1]))
        label = f"flow '{self.name}' built in Python" if self.name else "flow built in Python"
        file, line = (site if site else (f"<{label}>", None))
        if re.search(r"ipykernel_\d+[/\\]\d+\.py$", file):
            file = "notebook cell"  # the cell's code has a temporary file name; its line counts
        new = type(exc)(exc.message, code=exc.code, hint=exc.hint,
                        location=Location(file=file, line=line, node=where.node, field=where.field))
        return new

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write the flow folder: ``flow.dag.yaml``, the tool scripts and the templates.

        A folder that exists and is not empty is refused unless ``overwrite=True`` (then the
        flow's files are written over, other files are left)."""
        target = Path(folder).expanduser()
        if target.exists() and not target.is_dir():
            raise UserError(f"{target} is a file, not a folder", code="InvalidPath",
                            location=Location(file=str(target)),
                            hint="Save the flow into a folder.")
        if target.is_dir() and any(target.iterdir()) and not overwrite:
            raise UserError(f"{target} is not empty", code="FolderNotEmpty",
                            location=Location(file=str(target)),
                            hint="Save into a new or empty folder, or pass overwrite=True.")
        self._check(self._stage())
        target.mkdir(parents=True, exist_ok=True)
        self._write(target)
        self._staged = (self._digest(), target.resolve())
        self._flow = None
        return target

    # -- running ----------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The folder the flow runs from (where it was saved, or a private staging folder)."""
        folder = self._stage()
        return folder

    def build(self, **kwargs: Any) -> Any:
        """The flow, loaded: a :class:`pfkit.Flow` (call it, ``.test``, ``.run``, ...)."""
        if self._flow is not None and not kwargs and self._staged and \
                self._staged[0] == self._digest():
            return self._flow
        folder = self._stage()
        self._check(folder)
        from ..flows import Flow

        try:
            flow = Flow(folder, **kwargs)
        except FlowValidationError as exc:
            raise self._relocate(exc) from None
        if not kwargs:
            self._flow = flow
        return flow

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        return self.build()(**inputs)

    def test(self, inputs: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.build().test(inputs, **kwargs)

    def run(self, data: Any, **kwargs: Any) -> Any:
        return self.build().run(data, **kwargs)

    def evaluate(self, run: Any = None, **kwargs: Any) -> Any:
        return self.build().evaluate(run, **kwargs)

    def compare(self, runs: Any = None, **kwargs: Any) -> Any:
        return self.build().compare(runs, **kwargs)

    def graph(self) -> Any:
        from ._svg import FlowGraphView

        self.validate()
        return FlowGraphView.of(self.path)

    def _repr_html_(self) -> str:
        try:
            return self.graph()._repr_html_()
        except PfkitError as exc:
            import html

            return f"<pre>{html.escape(str(exc))}</pre>"

    def __repr__(self) -> str:
        return (f"FlowBuilder({self.name!r}: {len(self._inputs)} inputs, {len(self._nodes)} "
                f"nodes, {len(self._outputs)} outputs)")


def _safe(name: str | None) -> str:
    text = "".join(c if c.isalnum() or c in "_-" else "_" for c in (name or "flow"))
    return text[:40] or "flow"


def remove_folder(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
