"""Moved: the flow API lives in :mod:`pfkit.flows`, loading in :mod:`pfkit.engine`.
These names stay importable from here for existing callers."""

from __future__ import annotations

import os
from contextlib import contextmanager

from .engine import BoundFlow
from .engine._load import OVERRIDABLE, apply_connection_overrides, load_bound_flow
from .flows._api import Flow, TestResult, atest, atest_node, load_flow


@contextmanager
def flow_environment(flow: BoundFlow):
    """Deprecated (flows apply their environment around their own tool calls): the flow's
    environment_variables set for the block, then restored."""
    from .engine import GATE

    GATE.restore()
    saved = {k: os.environ.get(k) for k in flow.environment}
    os.environ.update(flow.environment)
    try:
        yield
    finally:
        GATE.restore()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


__all__ = ["OVERRIDABLE", "Flow", "TestResult", "apply_connection_overrides", "atest",
           "atest_node", "flow_environment", "load_bound_flow", "load_flow"]
