"""What a flex flow or prompty file takes, without creating the flow (no init values needed):
for evaluation mappings and other callers that only need the inputs."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path


def input_defaults(path: str | Path) -> dict[str, bool] | None:
    """``{input: has_default}`` of a flex flow or prompty file; None for anything else."""
    target = Path(path).expanduser()
    if target.suffix == ".prompty":
        from ..prompty._file import load_prompty_file

        return {n: i.has_default for n, i in load_prompty_file(target).inputs.items()}
    from ._spec import find_flex_file, load_flex_spec

    file = find_flex_file(target)
    if file is None:
        return None
    spec = load_flex_spec(file)
    if spec.inputs:
        return {n: p.has_default for n, p in spec.inputs.items()}
    from .._compat import promptflow_shim
    from ..engine._isolation import FlowContext, Holding, own_modules
    from ._entry import import_entry

    promptflow_shim.install()
    context = FlowContext(spec.code_dir, {})
    with Holding(context):
        before = dict(sys.modules)
        try:
            target_obj = import_entry(spec)
        finally:
            own_modules(context, before)
    func = target_obj.__call__ if inspect.isclass(target_obj) else target_obj
    params = list(inspect.signature(func).parameters.values())
    if inspect.isclass(target_obj):
        params = params[1:]  # self
    return {p.name: p.default is not p.empty for p in params
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
