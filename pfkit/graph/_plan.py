"""Planning: pick variants, check every reference, order the nodes. The result is frozen."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ..errors import FlowValidationError, Location, UserError
from ..spec import FlowInputRef, FlowSpec, NodeRef, NodeSpec

_VARIANT_RE = re.compile(r"^\$\{([^.]+)\.([^}]+)\}$")


@dataclass(frozen=True, slots=True)
class VariantChoice:
    node: str
    variant_id: str


def parse_variant(text: str) -> VariantChoice:
    """``${node.variant_1}`` (quotes allowed around it) -> VariantChoice."""
    value = text.strip().strip("'\"")
    match = _VARIANT_RE.match(value)
    if not match:
        raise UserError(
            f"invalid variant {text!r}", code="InvalidVariant",
            hint="Write it as  --variant '${node_name.variant_id}'  (quote it for the shell).",
        )
    return VariantChoice(match.group(1), match.group(2))


@dataclass(frozen=True, slots=True)
class FlowGraph:
    """A flow ready to bind: variants chosen, references checked, nodes in execution order."""

    spec: FlowSpec
    nodes: tuple[NodeSpec, ...]  # topological order, stable with respect to the YAML
    dependencies: dict[str, frozenset[str]] = field(default_factory=dict)
    variant: VariantChoice | None = None
    variants_used: dict[str, str] = field(default_factory=dict)  # node -> variant id

    @property
    def line_nodes(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if not n.aggregation)

    @property
    def aggregation_nodes(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.aggregation)

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def variant_id(self) -> str | None:
        return self.variant.variant_id if self.variant else None


def _error(spec: FlowSpec, message: str, code: str, node: NodeSpec | None = None,
           field: str | None = None, line: int | None = None, hint: str | None = None):
    return FlowValidationError(
        message, code=code, hint=hint,
        location=Location(file=spec.file, line=line or (node.line if node else None),
                          node=node.name if node else None, field=field),
    )


def _field_of(node: NodeSpec, ref: NodeRef | FlowInputRef) -> str:
    for key, value in node.inputs.items():
        if value is ref:
            return f"inputs.{key}"
    return "activate.when"


def _check_choice(spec: FlowSpec, choice: VariantChoice) -> None:
    target = spec.node(choice.node)
    if target is None:
        raise _error(spec, f"--variant names node '{choice.node}', which is not in the flow",
                     "InvalidVariant", hint=f"Nodes with variants: {sorted(spec.node_variants)}.")
    if not target.use_variants or choice.node not in spec.node_variants:
        raise _error(spec, f"node '{choice.node}' has no variants", "InvalidVariant", target,
                     hint=f"Nodes with variants: {sorted(spec.node_variants) or 'none'}.")
    known = spec.node_variants[choice.node].variants
    if choice.variant_id not in known:
        raise _error(spec, f"node '{choice.node}' has no variant '{choice.variant_id}'",
                     "InvalidVariant", target, hint=f"Its variants: {list(known)}.")


def _apply_variants(spec: FlowSpec, choices: list[VariantChoice]) -> tuple[list[NodeSpec], dict]:
    for choice in choices:
        _check_choice(spec, choice)
    chosen = {c.node: c.variant_id for c in choices}
    nodes, used = [], {}
    for node in spec.nodes:
        if not node.use_variants:
            nodes.append(node)
            continue
        variants = spec.node_variants.get(node.name)
        if variants is None:
            raise _error(spec, f"node '{node.name}' sets use_variants but node_variants has no "
                         f"entry '{node.name}'", "InvalidFlowSchema", node, "use_variants",
                         hint="Add its variants under node_variants, or remove use_variants.")
        vid = chosen.get(node.name, variants.default_variant_id)
        body = variants.variants[vid]
        nodes.append(replace(body, line=body.line or node.line))
        used[node.name] = vid
    return nodes, used


def plan(spec: FlowSpec, variant: str | VariantChoice | dict[str, str] | None = None) -> FlowGraph:
    """Check the flow as a graph and order it. Raises :class:`FlowValidationError`.

    ``variant`` picks one node's variant (``"${node.variant_1}"``, as promptflow's --variant) or,
    as a ``{node: variant_id}`` dict, a variant for several nodes at once."""
    if isinstance(variant, dict):
        choices = [VariantChoice(n, v) for n, v in variant.items()]
        choice = choices[0] if len(choices) == 1 else None
    else:
        choice = parse_variant(variant) if isinstance(variant, str) else variant
        choices = [choice] if choice else []
    nodes, used = _apply_variants(spec, choices)

    by_name: dict[str, NodeSpec] = {}
    for node in nodes:
        if node.name in by_name:
            raise _error(spec, f"node name '{node.name}' appears more than once",
                         "DuplicateNodeName", node, "name",
                         hint="Rename or remove one of the nodes.")
        by_name[node.name] = node

    deps: dict[str, frozenset[str]] = {}
    for node in nodes:
        for ref in [*node.inputs.values(), *([node.activate.when] if node.activate else [])]:
            if isinstance(ref, FlowInputRef) and ref.name not in spec.inputs:
                raise _error(spec, f"'{ref}' names flow input '{ref.name}', which is not defined",
                             "InputReferenceNotFound", node, _field_of(node, ref),
                             hint=f"Flow inputs: {sorted(spec.inputs) or 'none'}.")
        refs = node.references()
        for ref in refs:
            target = by_name.get(ref.node)
            if target is None:
                raise _error(spec, f"'{ref}' names node '{ref.node}', which is not in the flow",
                             "NodeReferenceNotFound", node, _field_of(node, ref),
                             hint=f"Nodes: {sorted(by_name)}.")
            if target.aggregation and not node.aggregation:
                raise _error(
                    spec, f"'{ref}' refers to aggregation node '{ref.node}'; only aggregation "
                    "nodes may use an aggregation node's output", "InvalidNodeReference", node,
                    _field_of(node, ref),
                    hint=f"Mark '{node.name}' as  aggregation: true, or reference a line node.",
                )
        if node.aggregation and node.activate and isinstance(node.activate.when, NodeRef):
            target = by_name[node.activate.when.node]
            if not target.aggregation:
                raise _error(
                    spec, f"aggregation node's activate.when refers to line node "
                    f"'{target.name}'", "InvalidNodeReference", node, "activate.when",
                    hint="An aggregation node can only be activated by a flow input, a literal or "
                         "another aggregation node.",
                )
        deps[node.name] = frozenset(r.node for r in refs)

    for out in spec.outputs.values():
        ref = out.reference
        if isinstance(ref, NodeRef) and ref.node not in by_name:
            raise _error(spec, f"flow output '{out.name}' refers to node '{ref.node}', which is "
                         "not in the flow", "OutputReferenceNotFound", field=f"outputs.{out.name}",
                         line=out.line, hint=f"Nodes: {sorted(by_name)}.")
        if isinstance(ref, FlowInputRef) and ref.name not in spec.inputs:
            raise _error(spec, f"flow output '{out.name}' refers to flow input '{ref.name}', which "
                         "is not defined", "OutputReferenceNotFound", field=f"outputs.{out.name}",
                         line=out.line, hint=f"Flow inputs: {sorted(spec.inputs) or 'none'}.")

    ordered = _topological(spec, nodes, deps)
    resolved = replace(spec, nodes=tuple(nodes))
    return FlowGraph(spec=resolved, nodes=ordered, dependencies=deps, variant=choice,
                     variants_used=used)


def _topological(spec: FlowSpec, nodes: list[NodeSpec], deps: dict[str, frozenset[str]]):
    """Stable order: repeatedly take the first node (in YAML order) whose dependencies are done."""
    done: set[str] = set()
    ordered: list[NodeSpec] = []
    pending = list(nodes)
    while pending:
        for i, node in enumerate(pending):
            if deps[node.name] <= done:
                ordered.append(node)
                done.add(node.name)
                del pending[i]
                break
        else:
            cycle = _find_cycle(pending, deps)
            names = " -> ".join(cycle)
            raise _error(spec, f"the nodes form a cycle: {names}", "NodeCircularDependency",
                         next(n for n in pending if n.name == cycle[0]),
                         hint="Break the cycle: a node cannot depend, directly or through others, "
                              "on its own output.")
    return tuple(ordered)


def _find_cycle(pending: list[NodeSpec], deps: dict[str, frozenset[str]]) -> list[str]:
    names = {n.name for n in pending}
    for start in (n.name for n in pending):
        path, seen = [start], {start}
        node = start
        while True:
            nxt = next((d for d in sorted(deps[node]) if d in names), None)
            if nxt is None:
                break
            if nxt in seen:
                return path[path.index(nxt):] + [nxt]
            path.append(nxt)
            seen.add(nxt)
            node = nxt
    return [n.name for n in pending]


def variant_combinations(spec: FlowSpec) -> list[dict[str, str]]:
    """Every combination of the variants of every ``use_variants`` node (in YAML order)."""
    import itertools

    names = [n.name for n in spec.nodes if n.use_variants and n.name in spec.node_variants]
    options = [list(spec.node_variants[name].variants) for name in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*options)]
