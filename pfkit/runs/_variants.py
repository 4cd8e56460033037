"""``--all-variants``: one run per combination of the flow's node variants, as one group."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from ..errors import UserError


def create_variant_runs(request: Any, *, progress: bool = True,
                        **options: Any) -> tuple[str, list[Any]]:
    """Run every variant combination of ``request.flow`` (named ``GROUP__node.variant``, in
    group ``request.name`` or ``<flow>_variants_<time>``); returns the group and its runs."""
    from ..graph import variant_combinations
    from ..spec import load_flow_spec, resolve_flow_file
    from ._api import create_run
    from ._batch import safe_name_part
    from ._store_api import check_run_name

    if request.variant:
        raise UserError("--all-variants and --variant cannot be combined", code="UsageError")
    flow_file = resolve_flow_file(request.flow)
    combos = variant_combinations(load_flow_spec(flow_file))
    if not combos or combos == [{}]:
        raise UserError("the flow has no nodes with variants", code="UsageError",
                        hint="Drop --all-variants.")
    group = request.name or (safe_name_part(flow_file.parent.name)
                             + f"_variants_{datetime.now():%Y%m%d_%H%M%S}")
    check_run_name(group, "group name")
    runs = []
    for combo in combos:
        label = "-".join(f"{node}.{vid}" for node, vid in combo.items())
        runs.append(create_run(replace(request, variant=combo, name=f"{group}__{label}",
                                       group=group), progress=progress, **options))
    return group, runs
