"""The flow file as frozen data: what ``flow.dag.yaml`` says, references already parsed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._references import Literal, NodeRef, Reference

INPUT_TYPES = frozenset(
    {"int", "double", "bool", "string", "list", "object", "image",
     "secret", "prompt_template", "file_path", "assistant_definition"}
)
NODE_TYPES = frozenset({"python", "prompt", "llm", "custom_llm"})
LLM_APIS = frozenset({"chat", "completion"})
SOURCE_TYPES = frozenset({"code", "package", "package_with_prompt"})


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class InputDef:
    name: str
    type: str
    default: Any = MISSING
    description: str | None = None
    enum: tuple[Any, ...] | None = None
    is_chat_input: bool = False
    is_chat_history: bool | None = None
    line: int | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING


@dataclass(frozen=True, slots=True)
class OutputDef:
    name: str
    type: str
    reference: Reference
    description: str | None = None
    evaluation_only: bool = False
    is_chat_output: bool = False
    line: int | None = None


@dataclass(frozen=True, slots=True)
class SourceSpec:
    type: str
    path: str | None = None
    tool: str | None = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class OutsidePath:
    """A path the flow file names (or a symlink in the flow folder) that leads out of the flow
    folder: its content is read, and copied into run snapshots, from elsewhere."""

    field: str  # "source.path", "additional_includes", "environment_variables" or "symlink"
    path: str  # as written in the flow file (for a symlink: its path inside the flow folder)
    target: str  # where it resolves to
    node: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"node '{self.node}' {self.field}" if self.node else self.field
        at = f" (line {self.line})" if self.line else ""
        return f"{where}{at}: {self.path} -> {self.target}"


@dataclass(frozen=True, slots=True)
class ActivateSpec:
    when: Reference
    is_value: Any


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    type: str
    source: SourceSpec | None
    inputs: dict[str, Reference] = field(default_factory=dict)
    connection: str | None = None
    api: str | None = None
    provider: str | None = None
    module: str | None = None
    aggregation: bool = False
    activate: ActivateSpec | None = None
    use_variants: bool = False
    line: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    # "all" (pfkit's rule: every non-literal input is untrusted text) or "promptflow" (only flow
    # inputs, as promptflow 1.18.5); from the node key  role_escaping:  that promptflow ignores.
    role_escaping: str = "all"

    def references(self) -> list[NodeRef]:
        """Node references of the inputs and of ``activate.when``."""
        refs = [v for v in self.inputs.values() if isinstance(v, NodeRef)]
        if self.activate and isinstance(self.activate.when, NodeRef):
            refs.append(self.activate.when)
        return refs

    def input_node_refs(self) -> list[NodeRef]:
        return [v for v in self.inputs.values() if isinstance(v, NodeRef)]


@dataclass(frozen=True, slots=True)
class NodeVariants:
    default_variant_id: str
    variants: dict[str, NodeSpec]
    line: int | None = None


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """A parsed ``flow.dag.yaml``. ``path`` is the YAML file; ``code_dir`` the folder that sources
    and ``sys.path`` are relative to."""

    path: Path
    code_dir: Path
    inputs: dict[str, InputDef]
    outputs: dict[str, OutputDef]
    nodes: tuple[NodeSpec, ...]
    node_variants: dict[str, NodeVariants] = field(default_factory=dict)
    environment_variables: dict[str, Any] = field(default_factory=dict)
    additional_includes: tuple[str, ...] = ()
    name: str = ""
    type: str | None = None
    message_format: str = "basic"
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    outside_paths: tuple[OutsidePath, ...] = field(default=(), compare=False)

    @property
    def file(self) -> str:
        return str(self.path)

    def node(self, name: str) -> NodeSpec | None:
        for node in self.nodes:
            if node.name == name:
                return node
        return None

    @property
    def chat_input(self) -> str | None:
        names = [i.name for i in self.inputs.values() if i.is_chat_input]
        return names[0] if len(names) == 1 else None

    @property
    def chat_history_input(self) -> str | None:
        for i in self.inputs.values():
            if i.is_chat_history:
                return i.name
        if "chat_history" in self.inputs and self.inputs["chat_history"].is_chat_history is not False:
            return "chat_history"
        return None

    @property
    def chat_output(self) -> str | None:
        names = [o.name for o in self.outputs.values() if o.is_chat_output]
        return names[0] if len(names) == 1 else None

    @property
    def is_chat(self) -> bool:
        """A chat flow: one chat input and a chat history input (promptflow's rule)."""
        return self.chat_input is not None and self.chat_history_input is not None


def literal_value(ref: Reference) -> Any:
    return ref.value if isinstance(ref, Literal) else None
